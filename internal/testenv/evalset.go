package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/npy"
)

// EvalFiles writes what `edgeloop evalset create --from-dir DIR --labels CSV` reads: one
// float32 .npy file of the given per-sample shape for each of samples, and a CSV naming each
// file's label (a class index). The values are written as they are, with no pre-processing, so
// a set made from them holds exactly these numbers.
func EvalFiles(t testing.TB, shape []int, samples [][]float32, labels []int) (dir, csv string) {
	t.Helper()
	if len(samples) != len(labels) {
		t.Fatalf("testenv: %d samples, %d labels", len(samples), len(labels))
	}
	dir = t.TempDir()
	var lines strings.Builder
	lines.WriteString("file,label\n")
	for i, s := range samples {
		name := fmt.Sprintf("%06d.npy", i)
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, shape, s); err != nil {
			t.Fatalf("testenv: sample %d: %v", i, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&lines, "%s,%d\n", name, labels[i])
	}
	// The CSV lives outside the directory so that it is not taken for a sample.
	csv = filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(csv, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, csv
}

// SystemPython is the interpreter with Debian's python3-torch, python3-onnx and python3-numpy
// (scripts/debs.sh); the python3 first in PATH may be another one without them.
const SystemPython = "/usr/bin/python3"

// Torch returns SystemPython when it can import torch, onnx and numpy; otherwise it reports
// PyTorch Missing (a failure in CI, a skip elsewhere).
func Torch(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(SystemPython, "-c", "import torch, onnx, numpy").CombinedOutput()
	if err != nil {
		Missing(t, fmt.Sprintf("%s cannot import torch, onnx and numpy (%v: %s): apt-get install python3-torch python3-onnx python3-numpy (scripts/debs.sh)",
			SystemPython, err, strings.TrimSpace(string(out))))
	}
	return SystemPython
}
