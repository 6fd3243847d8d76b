package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func TestTrafficFlags(t *testing.T) {
	ok := func(f *trafficFlags) {}
	for _, c := range []struct {
		name  string
		edit  func(*trafficFlags)
		error string
	}{
		{"no exporter", func(f *trafficFlags) { f.exporters = nil }, "at least one --exporter"},
		{"exporter without URL", func(f *trafficFlags) { f.exporters = []string{"edge-1"} }, `--exporter "edge-1": want NAME=http://host:port`},
		{"exporter not HTTP", func(f *trafficFlags) { f.exporters = []string{"edge-1=127.0.0.1:8000"} }, "want NAME=http://host:port"},
		{"exporter twice", func(f *trafficFlags) { f.exporters = append(f.exporters, "edge-1=http://x:1") }, "node edge-1 given twice"},
		{"drift unknown node", func(f *trafficFlags) { f.drifted = []string{"edge-1,edge-9"} }, `--drift "edge-9" is not an --exporter's name`},
		{"shape not numbers", func(f *trafficFlags) { f.shape = "28x28" }, "want positive integers"},
		{"shape of another size", func(f *trafficFlags) { f.shape = "3,32,32" }, "holds 3072 values"},
		{"drift contrast negative", func(f *trafficFlags) { f.contrast = -1 }, "--drift-contrast must be 0 to 10"},
		{"one class", func(f *trafficFlags) { f.classes = 1 }, "--classes must be at least 2"},
		{"rate zero", func(f *trafficFlags) { f.rate = 0 }, "--rate must be 1 to 10000"},
		{"negative drift-after", func(f *trafficFlags) { f.driftAfter = -1 }, "--drift-after and --duration not negative"},
		{"label without token", func(f *trafficFlags) { f.labelURL = "http://c:9751"; f.labelBucket = "file:///b" }, "--label needs --label-token-file"},
		{"label bucket alone", func(f *trafficFlags) { f.labelBucket = "file:///b" }, "go with --label"},
		{"valid", ok, ""},
		{"valid CNN shape and two drifted", func(f *trafficFlags) {
			f.shape = "1,28,28"
			f.drifted = []string{"edge-1", "edge-2"}
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := trafficFlags{exporters: []string{"edge-1=http://127.0.0.1:8001", "edge-2=http://127.0.0.1:8002/"}, drifted: []string{"edge-2"},
				rate: 50, every: 1, contrast: 0.7, brightness: 0.15, shape: "784", classes: 10, model: "fashion", input: "input"}
			c.edit(&f)
			m, nodes, drifted, err := f.check()
			if c.error != "" {
				if err == nil || !strings.Contains(err.Error(), c.error) {
					t.Fatalf("check() = %v, want an error containing %q", err, c.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Width() != fmnist.Pixels || len(nodes) != 2 || nodes[1].url != "http://127.0.0.1:8002" || len(drifted) == 0 {
				t.Fatalf("check() = %+v, %+v, %v", m, nodes, drifted)
			}
		})
	}
}

func TestTrafficUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runTraffic([]string{"extra"}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `unexpected arguments ["extra"]`) {
		t.Fatalf("traffic extra = %d:\n%s", code, errOut.String())
	}
	errOut.Reset()
	if code := runTraffic([]string{"-h"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "usage: edgeloop traffic") {
		t.Fatalf("traffic -h = %d:\n%s", code, errOut.String())
	}
}

// TestTrafficEvalOut writes the evaluation half of the split and checks it is what
// `edgeloop evalset create --from-dir` reads: 200 images of each class, [784] float32 in 0-1,
// labelled by class index in a CSV outside the images' directory.
func TestTrafficEvalOut(t *testing.T) {
	data := testenv.FashionMNIST(t, fmnist.DefaultDir)
	dir := filepath.Join(t.TempDir(), "eval")
	var out, errOut bytes.Buffer
	if code := runTraffic([]string{"--data", data, "--eval-out", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("traffic --eval-out = %d:\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "wrote 2000 evaluation images") {
		t.Errorf("output: %q", out.String())
	}
	csv, err := os.ReadFile(filepath.Join(dir, "labels.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(lines) != 2001 || lines[0] != "file,label" {
		t.Fatalf("labels.csv: %d lines, first %q", len(lines), lines[0])
	}
	perClass := map[string]int{}
	for _, l := range lines[1:] {
		file, label, _ := strings.Cut(l, ",")
		perClass[label]++
		if file == "" {
			t.Fatalf("line %q", l)
		}
	}
	for c := range fmnist.NumClasses {
		if n := perClass[string(rune('0'+c))]; n != 200 {
			t.Errorf("class %d: %d images, want 200", c, n)
		}
	}
	first, _, _ := strings.Cut(lines[1], ",")
	f, err := os.Open(filepath.Join(dir, "images", first))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := npy.Read(f)
	if err != nil || len(a.Data) != fmnist.Pixels {
		t.Fatalf("%s: %d values (%v)", first, len(a.Data), err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "images"))
	if err != nil || len(entries) != 2000 {
		t.Fatalf("images/: %d files (%v), want 2000", len(entries), err)
	}
	// An --exporter with --eval-out is a mistake, not a run.
	if code := runTraffic([]string{"--data", data, "--eval-out", dir, "--exporter", "a=http://x:1"}, &out, &errOut); code != exitUsage {
		t.Errorf("--eval-out with --exporter = %d, want %d", code, exitUsage)
	}
}
