package builtin

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/edgeloop/edgeloop/internal/npy"
)

// debianPython is the interpreter with Debian's torch (scripts/debs.sh installs it); the
// python3 first in PATH may be another one.
const debianPython = "/usr/bin/python3"

// parityCases are the exports of testdata/make_cnn.py: each ONNX file and the PyTorch outputs
// it must reproduce, at batch 1 and 8.
var parityCases = []struct {
	file, data string
	batches    []string
}{
	{"small_cnn.onnx", "small_cnn", []string{"1", "8"}},
	{"small_cnn_bn.onnx", "small_cnn", []string{"1", "8"}},
	{"small_cnn_view.onnx", "small_cnn", []string{"1"}}, // exported at a fixed batch of 1
	{"small_cnn_view_dyn.onnx", "small_cnn", []string{"1", "8"}},
	{"mobilenet.onnx", "mobilenet", []string{"1", "8"}},
	{"mobilenet_bn.onnx", "mobilenet", []string{"1", "8"}},
}

// TestPyTorchParity checks the committed CNN exports against PyTorch's logits within 1e-4.
func TestPyTorchParity(t *testing.T) {
	checkParity(t, "testdata")
}

// TestPyTorchParityRegenerated re-runs testdata/make_cnn.py with Debian's torch into a
// temporary directory and checks the fresh exports, so that the committed files stay what the
// script makes. It needs torch: it fails in CI without it and skips elsewhere.
func TestPyTorchParityRegenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PyTorch (seconds); -short")
	}
	if err := exec.Command(debianPython, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Debian's python3-torch is missing (scripts/debs.sh installs it): %v", err)
		}
		t.Skipf("Debian's python3-torch is not installed: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command(debianPython, "testdata/make_cnn.py", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make_cnn.py: %v\n%s", err, out)
	}
	checkParity(t, dir)
}

func checkParity(t *testing.T, dir string) {
	checked := 0
	for _, pc := range parityCases {
		t.Run(pc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, pc.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range pc.batches {
				x := readNpy(t, filepath.Join(dir, pc.data+"_x"+b+".npy"))
				want := readNpy(t, filepath.Join(dir, pc.data+"_y"+b+".npy"))
				res, err := m.Run(context.Background(), []Tensor{x})
				if err != nil {
					t.Fatalf("batch %s: %v", b, err)
				}
				got := res.Outputs[0]
				if !equalShape(got.Shape, want.Shape) {
					t.Fatalf("batch %s: logits of shape %v, want %v", b, got.Shape, want.Shape)
				}
				worst := 0.0
				for i, w := range want.Data {
					worst = max(worst, math.Abs(float64(got.Data[i]-w)))
				}
				res.Release()
				if worst > 1e-4 {
					t.Errorf("batch %s: logits differ from PyTorch's by up to %g, want ≤ 1e-4", b, worst)
				}
				t.Logf("batch %s: largest difference from PyTorch %.2g", b, worst)
				checked++
			}
		})
	}
	if checked != 11 {
		t.Errorf("checked %d model and batch pairs, want 11", checked)
	}
}

func readNpy(t *testing.T, path string) Tensor {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := npy.Read(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	shape := make([]int64, len(a.Shape))
	for i, d := range a.Shape {
		shape[i] = int64(d)
	}
	return Tensor{Shape: shape, Data: a.Data}
}

// TestCNNConcurrentRuns runs one CNN model from several goroutines at batch 1 and 8 at once:
// each run must still match PyTorch (the kernels keep their working storage in the request's
// pooled values, never in the shared plan).
func TestCNNConcurrentRuns(t *testing.T) {
	_, data := loadTestModel(t, "mobilenet_bn.onnx")
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	var cases [2][2]Tensor
	for i, b := range []string{"1", "8"} {
		cases[i] = [2]Tensor{readNpy(t, "testdata/mobilenet_x"+b+".npy"), readNpy(t, "testdata/mobilenet_y"+b+".npy")}
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for i := range 10 {
				c := cases[(g+i)%2]
				res, rerr := m.Run(context.Background(), []Tensor{c[0]})
				if rerr != nil {
					err = rerr
					break
				}
				if !near(res.Outputs[0].Data, c[1].Data, 1e-4) {
					err = fmt.Errorf("goroutine %d run %d: logits differ from PyTorch's", g, i)
				}
				res.Release()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
