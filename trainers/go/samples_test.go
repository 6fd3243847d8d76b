package trainer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	edgesample "github.com/edgeloop/edgeloop/internal/sample"
)

// image is a 784-value input whose every value is v.
func image(v float32) []float32 {
	img := make([]float32, fmnist.Pixels)
	for i := range img {
		img[i] = v
	}
	return img
}

func npyBytes(t *testing.T, shape []int, data []float32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, shape, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeShard writes a tar shard of the given files (name → content, in the order given by
// names), gzipped when the name says so.
func writeShard(t *testing.T, path string, names []string, files map[string][]byte) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	if strings.HasSuffix(path, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write(data)
		_ = zw.Close()
		data = z.Bytes()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sampleFixtures writes two shards into dir/shards and a label file, covering every kind of
// sample the trainer meets, and returns the label file's path. Inputs fit the Fashion-MNIST
// model's input [784] by internal/dataset's rule: [784] or [1,784] (a [28,28] image is another
// layout and refused, as the gate refuses it).
func sampleFixtures(t *testing.T, dir string) string {
	t.Helper()
	dict := "{'descr': '|u1', 'fortran_order': False, 'shape': (784,), }\n"
	u8 := append([]byte(npy.Magic+"\x01\x00"), byte(len(dict)), 0)
	u8 = append(append(u8, dict...), bytes.Repeat([]byte{51}, fmnist.Pixels)...)
	files := map[string][]byte{
		"a.json":          []byte(`{"label": 7}`),
		"a.input.npy":     npyBytes(t, []int{1, 784}, image(0.5)),
		"b.json":          []byte(`{"label": "Bag", "model": "fashion"}`),
		"b.input.npy":     npyBytes(t, []int{784}, image(0.25)),
		"c.json":          []byte(`{"label": "3"}`),
		"c.input.npy":     u8,
		"d.json":          []byte(`{"prediction": 1}`), // not labelled yet
		"d.input.npy":     npyBytes(t, []int{784}, image(0)),
		"e.json":          []byte(`{"label": "Hat"}`), // no such class
		"e.input.npy":     npyBytes(t, []int{784}, image(0)),
		"f.json":          []byte(`{"label": 1}`),
		"f.input.npy":     npyBytes(t, []int{10}, make([]float32, 10)), // wrong size
		"g.json":          []byte(`{"label": 1}`),
		"g.input.jpg":     []byte("not for this trainer"), // no .npy
		"h.json":          []byte(`{"label": 1.5}`),
		"h.input.npy":     npyBytes(t, []int{784}, image(0)),
		"i.input.npy":     npyBytes(t, []int{784}, image(0.75)), // labelled by the label file only
		"sub/j.json":      []byte(`{"label": null}`),            // label posted later, in the file
		"sub/j.input.npy": npyBytes(t, []int{784}, image(1)),
	}
	writeShard(t, filepath.Join(dir, "shards", "00.tar"),
		[]string{"a.json", "a.input.npy", "b.json", "b.input.npy", "c.json", "c.input.npy", "d.json", "d.input.npy", "e.json", "e.input.npy"}, files)
	files["a.json"] = []byte(`{"label": 0}`) // a duplicate of key a: the first one counts
	writeShard(t, filepath.Join(dir, "shards", "more", "01.tar.gz"),
		[]string{"a.json", "a.input.npy", "f.json", "f.input.npy", "g.json", "g.input.jpg", "h.json", "h.input.npy", "i.input.npy", "sub/j.json", "sub/j.input.npy"}, files)
	if err := os.WriteFile(filepath.Join(dir, "shards", "README"), []byte("not a shard"), 0o644); err != nil {
		t.Fatal(err)
	}
	labels := filepath.Join(dir, "labels.jsonl")
	if err := os.WriteFile(labels, []byte("{\"key\": \"i\", \"label\": \"Sandal\"}\n\n{\"key\": \"j\", \"label\": 9}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return labels
}

// fashionSpec is what a sample must be to join Fashion-MNIST: the model's input [784].
func fashionSpec() dataset.Spec {
	return dataset.Spec{Shape: []int64{fmnist.Pixels}, Datatype: dataset.DatatypeFP32, Classes: fmnist.ClassNames()}
}

// TestReadSamples checks the fixtures against the shared reader the trainer uses, and the
// counts metrics.json reports.
func TestReadSamples(t *testing.T) {
	dir := t.TempDir()
	labels := sampleFixtures(t, dir)
	set, err := dataset.ReadLabelled([]string{filepath.Join(dir, "shards")}, []string{labels}, fashionSpec(), discard())
	if err != nil {
		t.Fatal(err)
	}
	got := sampleStats(set.Stats)
	want := SampleStats{Shards: 2, Labelled: 5, Unlabelled: 1, Rejected: 4, Duplicates: 1,
		RejectedByReason: map[string]int{dataset.ReasonLabel: 2, dataset.ReasonShape: 1, dataset.ReasonNPY: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	if wantShards := []string{filepath.Join(dir, "shards", "00.tar"), filepath.Join(dir, "shards", "more", "01.tar.gz")}; !slices.Equal(set.Shards, wantShards) {
		t.Errorf("shards read %q, want %q", set.Shards, wantShards)
	}
	// a (7), b (Bag = 8), c ("3"), i (Sandal = 5 from the label file), j (9 from the label file).
	ds := examplesOf(set)
	if wantLabels := []int{7, 8, 3, 5, 9}; !slices.Equal(ds.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", ds.Labels, wantLabels)
	}
	for i, v := range []float32{0.5, 0.25, 0.2, 0.75, 1} { // c was uint8 51, scaled by 1/255
		if img := ds.Input(i); img[0] != v || img[783] != v {
			t.Errorf("sample %d: input starts with %v, want %v", i, img[0], v)
		}
	}
}

func TestLoadDataErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tar")
	if err := os.WriteFile(bad, []byte("this is not a tar file, but it is long enough to hold a header? no."), 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.tar")
	writeShard(t, huge, []string{"x.json"}, map[string][]byte{"x.json": bytes.Repeat([]byte(" "), dataset.MaxMemberBytes+1)})
	badLabels := filepath.Join(dir, "labels.jsonl")
	if err := os.WriteFile(badLabels, []byte(`{"label": 1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(manifest, []byte(`{"shards": [], "labels": ["labels.jsonl"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	unlabelled := filepath.Join(dir, "unlabelled.tar")
	writeShard(t, unlabelled, []string{"u.json", "u.input.npy"}, map[string][]byte{"u.json": []byte(`{}`), "u.input.npy": npyBytes(t, []int{4}, make([]float32, 4))})
	for _, tt := range []struct {
		shards   []string
		manifest string
		want     string
	}{
		{[]string{filepath.Join(dir, "missing.tar")}, "", "no such file"},
		{[]string{bad}, "", "bad.tar"},
		{[]string{huge}, "", "more than the 8388608 a sample file may have"},
		{nil, manifest, "labels.jsonl:1: want a JSON object with a key and a label"},
		{[]string{unlabelled}, "", "nothing to take the input shape from"},
	} {
		cfg := DefaultConfig()
		cfg.DataDir, cfg.Classes, cfg.Samples, cfg.Manifest = "", []string{"a", "b"}, tt.shards, tt.manifest
		_, err := LoadData(cfg, discard())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadData(shards %v, manifest %q) = %v, want an error containing %q", tt.shards, tt.manifest, err, tt.want)
		}
	}
}

// TestLoadDataWithSamples adds collected samples through a manifest and holds out a fraction
// of the merged training data for evaluation.
func TestLoadDataWithSamples(t *testing.T) {
	fashionDir(t)
	dir := t.TempDir()
	sampleFixtures(t, dir)
	manifest := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(manifest, []byte(`{"shards": ["shards"], "labels": ["labels.jsonl"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TrainLimit, cfg.Manifest, cfg.EvalSplit = 95, manifest, "0.2"
	d, err := LoadData(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	// The labelled samples are a, b, c, i and j, whose inputs are constant images; those the
	// gate's split holds out are not trained on.
	held := 0
	for _, v := range []float32{0.5, 0.25, 0.2, 0.75, 1} {
		if dataset.HeldOut(dataset.ContentKey(image(v))) {
			held++
		}
	}
	if held == 0 || held == 5 {
		t.Fatalf("the fixtures hold out %d of 5 samples; the test wants some on each side", held)
	}
	kept := 95 + 5 - held
	if d.Samples.Labelled != 5 || d.Samples.HeldOut != held || d.Train.Len()+d.Eval.Len() != kept {
		t.Fatalf("%d samples (%d held out), %d training and %d evaluation images; want 5 (%d) and %d in all",
			d.Samples.Labelled, d.Samples.HeldOut, d.Train.Len(), d.Eval.Len(), held, kept)
	}
	// Every image is in exactly one of the two parts: count the samples' labels 7, 8, 3, 5, 9
	// whose inputs are constant images (Fashion-MNIST images are not).
	constant := 0
	for _, part := range []*Examples{d.Train, d.Eval} {
		for i := range part.Len() {
			img := part.Input(i)
			if slices.Min(img) == slices.Max(img) {
				constant++
			}
		}
	}
	if constant != 5-held {
		t.Errorf("%d constant images across the split, want the %d samples not held out", constant, 5-held)
	}
	res, err := Train(context.Background(), func() Config { c := cfg; c.Hidden, c.Epochs = []int{8}, 1; return c }(), d, discard())
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics.EvalSplit != "0.2" || res.Metrics.Samples.Labelled != 5 || res.Metrics.TrainSize != d.Train.Len() {
		t.Errorf("metrics %+v", res.Metrics)
	}
	wantSources := []string{"file://" + fmnist.DefaultDir, "file://" + filepath.Join(dir, "shards", "00.tar"), "file://" + filepath.Join(dir, "shards", "more", "01.tar.gz")}
	if !slices.Equal(res.Metrics.Datasets, wantSources) {
		t.Errorf("datasets %q, want %q", res.Metrics.Datasets, wantSources)
	}
}

// TestReadsCapturedShards checks the contract between the capture side and the trainer: a
// shard written by internal/sample (as the sender's batches and the collector's shards are)
// gives the trainer its shape and samples, labels as index or class name.
func TestReadsCapturedShards(t *testing.T) {
	var samples []*edgesample.Sample
	for i, label := range []json.RawMessage{edgesample.IndexLabel(4), edgesample.NameLabel("Sneaker"), nil} {
		meta := edgesample.Meta{
			Model: "fashion", Version: "1", Node: "edge-1", Time: time.Date(2026, 11, 29, 3, 0, i, 0, time.UTC),
			Prediction: 2, Scores: []float32{0.1, 0.2, 0.7}, ScoresKind: edgesample.ScoresProbabilities,
			Confidence: map[string]float64{"max_softmax": 0.7}, Reason: "low_confidence", Label: label,
			Input: edgesample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{784}, File: edgesample.NPYFile},
		}
		s, err := edgesample.New(meta, npyBytes(t, []int{784}, image(float32(i+1)/10)))
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
	}
	dir := t.TempDir()
	var b bytes.Buffer
	if err := edgesample.WriteTar(&b, samples); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shard.tar"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	shape, err := sampleShape([]string{dir}, nil, fmnist.ClassNames())
	if err != nil || !slices.Equal(shape, []int64{fmnist.Pixels}) {
		t.Fatalf("sample shape %v, %v; want [784]", shape, err)
	}
	set, err := dataset.ReadLabelled([]string{dir}, nil, fashionSpec(), discard())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sampleStats(set.Stats), (SampleStats{Shards: 1, Labelled: 2, Unlabelled: 1}); !reflect.DeepEqual(got, want) {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	// Coat is class 4, Sneaker class 7; samples are read in the tar's key order.
	got := map[int]float32{}
	for i, l := range set.Labels {
		got[l] = set.Input(i)[0]
	}
	if len(got) != 2 || got[4] != 0.1 || got[7] != 0.2 {
		t.Fatalf("labels and inputs %v, want 4 → 0.1 and 7 → 0.2", got)
	}
}
