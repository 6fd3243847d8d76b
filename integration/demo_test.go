//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestDemo runs `edgeloop demo` as `make demo` does (the default model, the Go MLP; without a
// terminal: progress lines) on a fresh work directory, base model training included: it must
// end by itself with exit 0 once the drifted nodes serve a retrained model that recovered
// their accuracy, print the summary and write the report.
func TestDemo(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	runDemo(t, dataDir, "mlp", []string{"input [784]", "contrast ×0.70"})
}

// TestDemoCNN runs `edgeloop demo --model cnn`: the base model is a CNN trained by the PyTorch
// job, served by the built-in runtime, fine-tuned by the same job through the local backend,
// gated on the evaluation set in its [1,28,28] shape. Without Debian's python3-torch it is
// skipped, and fails when CI=true.
func TestDemoCNN(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch, onnx, numpy").CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("%s cannot import torch, onnx, numpy (apt-get install python3-torch python3-onnx python3-numpy; scripts/debs.sh does): %v: %s", python, err, tail(string(out), 300)))
	}
	job, err := filepath.Abs(filepath.Join("..", "trainers", "pytorch", "train.py"))
	if err != nil {
		t.Fatal(err)
	}
	runDemo(t, dataDir, "cnn", []string{"input [1 28 28]", "CNN by the PyTorch job", "contrast ×0.40"}, "--model", "cnn", "--pytorch-job", job, "--python", python)
}

// runDemo runs the demo with args and checks its output, its accuracies and its report; want
// are more strings the output must hold.
func runDemo(t *testing.T, dataDir, model string, want []string, args ...string) {
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	// The default --recovery-share, 90%, is about where the demo's first retrain lands (84-96%
	// in the runs docs/demo.md lists), so the default run often needs the label policy's second
	// job; the test asks for 80% so that it checks the loop, not the model's ceiling, within
	// its deadline on a loaded machine.
	args = append([]string{"demo", "--data", dataDir, "--work-dir", work, "--deadline", "8m", "--recovery-share", "0.8"}, args...)
	cmd := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "run", "demo.log"))
		t.Fatalf("edgeloop %s: %v after %s\n%s\nlast of demo.log:\n%s", strings.Join(args, " "), err, took.Round(time.Second), out.String(), tail(string(log), 4000))
	}
	text := out.String()
	t.Logf("edgeloop demo --model %s took %s:\n%s", model, took.Round(time.Second), text)
	want = append(want, "training the base model", "evaluation set fashion/demo-golden: 2000 test images", "every node serves version 1",
		"version 2 published", "edgeloop demo: recovered: the drifted nodes regained", "model "+model+": version 1 → ")
	for _, w := range want {
		if !strings.Contains(text, w) && !strings.Contains(strings.Join(strings.Fields(text), " "), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	acc := func(name string) float64 {
		m := regexp.MustCompile(name + ` (\d\.\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("summary lacks %q", name)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	before, under, after := acc("before drift"), acc("under drift"), acc("after retrain")
	if !(under < before-0.2 && after > under+0.2) {
		t.Errorf("accuracy before %.3f, under drift %.3f, after retrain %.3f: want a drop and a recovery of more than 0.2 each", before, under, after)
	}
	// The gate scored on the evaluation set the demo wrote, named in its decision record.
	gates, _ := filepath.Glob(filepath.Join(work, "run", "retrain", "jobs", "*", "gate.json"))
	found := false
	for _, g := range gates {
		data, err := os.ReadFile(g)
		if err == nil && strings.Contains(string(data), "demo-golden") {
			found = true
		}
	}
	if !found {
		t.Errorf("no gate.json under %s names the evaluation set demo-golden (%d gate.json files)", filepath.Join(work, "run", "retrain", "jobs"), len(gates))
	}
	report := filepath.Join(work, "run", "report.html")
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(html), "<svg"); n != 3 || !strings.Contains(string(html), "edge-3") {
		t.Errorf("report %s: %d charts, want 3 with every node", report, n)
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
