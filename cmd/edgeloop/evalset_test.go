package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
)

func runEvalsetCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runEvalset(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// greyImages writes n 28×28 grey PNGs (distinct) and a labels CSV cycling over classes, and
// returns the directory and the CSV.
func greyImages(t *testing.T, n int, classes []string) (dir, csv string) {
	t.Helper()
	dir = t.TempDir()
	var b strings.Builder
	b.WriteString("file,label\n")
	for i := range n {
		img := image.NewGray(image.Rect(0, 0, 28, 28))
		for j := range img.Pix {
			img.Pix[j] = uint8((j*7 + i*13) % 256)
		}
		img.Pix[0] = uint8(i)
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%03d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s,%s\n", name, classes[i%len(classes)])
	}
	csv = filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, csv
}

func TestEvalsetUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage: edgeloop evalset <command>"},
		{[]string{"help"}, exitOK, "create"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"create"}, exitUsage, "--bucket, --model and --name are required"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n"}, exitUsage, "give either --from-dir DIR --labels CSV or --freeze --shards"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--freeze"}, exitUsage, "give either"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d"}, exitUsage, "--from-dir needs --labels CSV"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--freeze"}, exitUsage, "--freeze needs --shards"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l"}, exitUsage, "the model's classes are required"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a,b"}, exitUsage, "--shape is required with --classes"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--classes-from-model", "file:///r"}, exitUsage, "not both"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--freeze", "--shards", "s", "--resize", "2,2", "--classes", "a", "--shape", "1"}, exitUsage, "image pre-processing flags go with --from-dir"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--held-out-only", "--classes", "a", "--shape", "1"}, exitUsage, "go with --freeze"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "../m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1"}, exitUsage, "model name"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n/x", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1"}, exitUsage, "set name"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1", "--resize", "28"}, exitUsage, "resize: want [H, W]"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1", "--scale", "x"}, exitUsage, "--scale: want a positive number"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1", "--mean", "a,b"}, exitUsage, "--mean: want comma-separated numbers"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "1", "--color", "sepia"}, exitUsage, "color: want grey, rgb or bgr"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a", "--shape", "-1,28"}, exitFailure, "shape[0]: must be > 0"},
		{[]string{"create", "--bucket", "file:///tmp/x", "--model", "m", "--name", "n", "--from-dir", "d", "--labels", "l", "--classes", "a,a", "--shape", "1"}, exitFailure, `"a" appears twice`},
		{[]string{"ls"}, exitUsage, "--bucket is required"},
		{[]string{"ls", "--bucket", "file:///nonexistent/evalsets"}, exitFailure, "no bucket at"},
		{[]string{"show", "--bucket", "file:///tmp/x"}, exitUsage, "--bucket, --model and --name are required"},
		{[]string{"create", "-h"}, exitOK, "-classes-from-model"},
	} {
		code, stdout, stderr := runEvalsetCmd(t, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("evalset %q = %d\nstdout: %s\nstderr: %s\nwant %d and %q", c.args, code, stdout, stderr, c.code, c.want)
		}
	}
}

func TestEvalsetCreateLsShow(t *testing.T) {
	classes := []string{"zero", "one", "two", "three"}
	dir, csv := greyImages(t, 30, classes)
	root := t.TempDir()
	bucket := "file://" + root
	create := []string{"create", "--bucket", bucket, "--model", "digits", "--name", "golden-v1", "--from-dir", dir, "--labels", csv,
		"--shape", "1,28,28", "--classes", strings.Join(classes, ","), "--description", "thirty synthetic images"}
	code, stdout, stderr := runEvalsetCmd(t, create...)
	if code != exitOK {
		t.Fatalf("create = %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "created evalset digits/golden-v1: 30 samples, 4 classes, input [1 28 28] FP32, 1 shard(s), digest ") {
		t.Errorf("create stdout: %s", stdout)
	}
	if !strings.Contains(stderr, "30/30 files") || !strings.Contains(stderr, "writing 30 samples to evalsets/digits/golden-v1/") {
		t.Errorf("create progress: %s", stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "evalsets/digits/golden-v1/manifest.json")); err != nil {
		t.Fatal(err)
	}

	// Immutable: the same name again fails before reading anything.
	code, _, stderr = runEvalsetCmd(t, create...)
	if code != exitFailure || !strings.Contains(stderr, "digits/golden-v1: evaluation set already exists (sets are immutable: choose another name)") {
		t.Errorf("create again = %d: %s", code, stderr)
	}

	code, stdout, stderr = runEvalsetCmd(t, "ls", "--bucket", bucket)
	if code != exitOK {
		t.Fatalf("ls = %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "MODEL") {
		t.Fatalf("ls:\n%s", stdout)
	}
	fields := strings.Fields(lines[1])
	if len(fields) != 7 || fields[0] != "digits" || fields[1] != "golden-v1" || fields[2] != "30" || fields[3] != "4" || fields[4] != "1x28x28" || len(fields[5]) != 12 {
		t.Errorf("ls row: %q", lines[1])
	}
	if _, err := time.Parse(time.RFC3339, fields[6]); err != nil {
		t.Errorf("ls CREATED column: %v", err)
	}
	code, stdout, _ = runEvalsetCmd(t, "ls", "--bucket", bucket, "--model", "other")
	if code != exitOK || strings.Count(stdout, "\n") != 1 {
		t.Errorf("ls --model other = %d:\n%s", code, stdout)
	}

	code, stdout, stderr = runEvalsetCmd(t, "show", "--bucket", bucket, "--model", "digits", "--name", "golden-v1", "--verify")
	if code != exitOK {
		t.Fatalf("show = %d: %s", code, stderr)
	}
	for _, want := range []string{"count        30", "input        1x28x28 FP32", "description  thirty synthetic images", "verified", "INDEX  CLASS  COUNT  SHARE", "0      zero   8      26.7%", "3      three  7      23.3%", "source       files:" + dir} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runEvalsetCmd(t, "show", "--bucket", bucket, "--model", "digits", "--name", "golden-v1", "--json")
	var m evalset.Manifest
	if code != exitOK || json.Unmarshal([]byte(stdout), &m) != nil || m.Count != 30 || len(m.ClassCounts) != 4 || m.ClassCounts[0] != 8 {
		t.Errorf("show --json = %d: %s", code, stdout)
	}
	code, stdout, _ = runEvalsetCmd(t, "ls", "--bucket", bucket, "--json")
	var ms []evalset.Manifest
	if code != exitOK || json.Unmarshal([]byte(stdout), &ms) != nil || len(ms) != 1 || ms[0].Digest != m.Digest {
		t.Errorf("ls --json = %d: %s", code, stdout)
	}
	code, _, stderr = runEvalsetCmd(t, "show", "--bucket", bucket, "--model", "digits", "--name", "nope")
	if code != exitFailure || !strings.Contains(stderr, "digits/nope: evaluation set not found") {
		t.Errorf("show nope = %d: %s", code, stderr)
	}
}

func TestEvalsetCreateErrors(t *testing.T) {
	classes := []string{"zero", "one", "two", "three"}
	dir, _ := greyImages(t, 3, classes)
	bucket := "file://" + t.TempDir()
	base := []string{"create", "--bucket", bucket, "--model", "digits", "--name", "bad", "--from-dir", dir}
	writeCSV := func(content string) string {
		p := filepath.Join(t.TempDir(), "labels.csv")
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	for _, c := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"unknown class", []string{"--labels", writeCSV("000.png,zero\n001.png,four\n"), "--shape", "1,28,28", "--classes", "zero,one,two,three"},
			[]string{`labels.csv:2: label "four" names no class of the model`}},
		{"missing file", []string{"--labels", writeCSV("000.png,zero\n009.png,one\n"), "--shape", "1,28,28", "--classes", "zero,one,two,three"},
			[]string{"1 of 2 files cannot be used", "labels.csv:2: 009.png: open", "no such file or directory"}},
		{"wrong shape", []string{"--labels", writeCSV("000.png,zero\n"), "--shape", "3,32,32", "--classes", "zero,one,two,three"},
			[]string{"labels.csv:1: 000.png: image is 28x28 (WxH), the model takes 32x32: declare resize 32,32"}},
		{"grey for rgb", []string{"--labels", writeCSV("000.png,zero\n"), "--shape", "3,28,28", "--classes", "zero,one,two,three", "--color", "grey"},
			[]string{"color grey does not fit the 3 channels of input shape [3 28 28]"}},
		{"missing CSV", []string{"--labels", "/nonexistent/labels.csv", "--shape", "1,28,28", "--classes", "zero,one,two,three"},
			[]string{"no such file or directory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runEvalsetCmd(t, append(append([]string(nil), base...), c.extra...)...)
			if code != exitFailure {
				t.Fatalf("create = %d\n%s\n%s", code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	// Nothing was stored.
	if code, stdout, _ := runEvalsetCmd(t, "ls", "--bucket", bucket); code != exitOK || strings.Count(stdout, "\n") != 1 {
		t.Errorf("ls after failures = %d:\n%s", code, stdout)
	}
}

func TestEvalsetClassesFromModel(t *testing.T) {
	// A model published to a repository (input [-1,3], classes cat and dog) gives the set its
	// shape and classes.
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, stderr := runModelCmd(t, "keygen", "--out", keys); code != exitOK {
		t.Fatal(stderr)
	}
	repo := "file://" + t.TempDir()
	if code, _, stderr := runModelCmd(t, "publish", "--repo", repo, "--key", filepath.Join(keys, "edgeloop.key"), "--model", "pets", trainerOutput(t, "0.9")); code != exitOK {
		t.Fatal(stderr)
	}
	dir := t.TempDir()
	var csv strings.Builder
	for i := range 10 {
		var b bytes.Buffer
		npy.WriteFloat32(&b, []int{1, 3}, []float32{float32(i), 0.5, -1})
		name := fmt.Sprintf("s%d.npy", i)
		os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644)
		fmt.Fprintf(&csv, "%s,%s\n", name, []string{"cat", "dog"}[i%2])
	}
	labels := filepath.Join(t.TempDir(), "labels.csv")
	os.WriteFile(labels, []byte(csv.String()), 0o644)
	bucket := "file://" + t.TempDir()
	code, stdout, stderr := runEvalsetCmd(t, "create", "--bucket", bucket, "--model", "pets", "--name", "first", "--from-dir", dir, "--labels", labels, "--classes-from-model", repo)
	if code != exitOK || !strings.Contains(stdout, "10 samples, 2 classes, input [3] FP32") {
		t.Fatalf("create = %d\n%s\n%s", code, stdout, stderr)
	}
	code, _, stderr = runEvalsetCmd(t, "create", "--bucket", bucket, "--model", "pets", "--name", "second", "--from-dir", dir, "--labels", labels, "--classes-from-model", repo, "--model-version", "7")
	if code != exitFailure || !strings.Contains(stderr, "--classes-from-model: model pets 7") {
		t.Errorf("create with a missing version = %d: %s", code, stderr)
	}
}

func TestEvalsetFreeze(t *testing.T) {
	// Captured samples in a collector-style shard, labelled partly by a label file.
	shards := filepath.Join(t.TempDir(), "samples", "fashion", "3")
	os.MkdirAll(shards, 0o755)
	var samples []*sample.Sample
	var posted strings.Builder
	for i := range 200 {
		v := make([]float32, 784)
		for j := range v {
			v[j] = float32((j*7+i*13)%256) / 255
		}
		v[0] = float32(i) / 255
		var b bytes.Buffer
		npy.WriteFloat32(&b, []int{1, 1, 28, 28}, v)
		meta := sample.Meta{
			Model: "fashion", Version: "3", Node: "edge-1", Time: time.Date(2026, 12, 1, 0, 0, i, 0, time.UTC),
			Scores: []float32{1}, ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.4},
			Reason: "low_confidence", Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 1, 28, 28}, File: sample.NPYFile},
		}
		if i%2 == 0 {
			meta.Label = sample.IndexLabel(i % 10)
		}
		s, err := sample.New(meta, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 && i%3 == 0 {
			fmt.Fprintf(&posted, "{\"key\":%q,\"label\":\"Bag\"}\n", s.Meta.Key)
		}
		samples = append(samples, s)
	}
	var tarball bytes.Buffer
	if err := sample.WriteTar(&tarball, samples); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(shards, "000001.tar"), tarball.Bytes(), 0o644)
	labels := filepath.Join(t.TempDir(), "labels.jsonl")
	os.WriteFile(labels, []byte(posted.String()), 0o644)
	bucket := "file://" + t.TempDir()
	classes := "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
	args := []string{"create", "--bucket", bucket, "--model", "fashion", "--freeze", "--shards", "file://" + shards, "--label-files", labels, "--shape", "1,28,28", "--classes", classes}
	code, stdout, stderr := runEvalsetCmd(t, append(args, "--name", "all")...)
	// 100 labelled in the samples, 33 by the file (odd multiples of 3 below 200).
	if code != exitOK || !strings.Contains(stdout, "133 samples, 10 classes") || !strings.Contains(stderr, "1 shards: 133 labelled, 67 unlabelled, 0 duplicates, 0 refused") {
		t.Fatalf("freeze = %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runEvalsetCmd(t, append(args, "--name", "held", "--held-out-only")...)
	if code != exitOK || !strings.Contains(stderr, "keeping the held-out side: ") {
		t.Fatalf("freeze --held-out-only = %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("%s", strings.TrimSpace(stdout))
	// The frozen held-out set holds exactly the held-out side of the split.
	code, stdout, _ = runEvalsetCmd(t, "show", "--bucket", bucket, "--model", "fashion", "--name", "held", "--json")
	var m evalset.Manifest
	if code != exitOK || json.Unmarshal([]byte(stdout), &m) != nil {
		t.Fatalf("show = %d: %s", code, stdout)
	}
	l, err := dataset.ReadLabelled([]string{shards}, []string{labels}, m.Spec(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, held := l.Split()
	if m.Count != held.Len() || m.Count == 0 || !strings.HasPrefix(m.Source, "frozen:") {
		t.Errorf("held-out set has %d samples, the split %d; source %q", m.Count, held.Len(), m.Source)
	}
}
