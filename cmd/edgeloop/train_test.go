package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func TestTrainUsage(t *testing.T) {
	t.Setenv("EDGELOOP_OUTPUT", "")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, exitOK, "usage: edgeloop train --out DIR"},
		{[]string{"--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"--epochs", "2"}, exitUsage, "--out (or EDGELOOP_OUTPUT) is required"},
		{[]string{"--out", "x", "extra"}, exitUsage, `unexpected arguments ["extra"]`},
		{[]string{"--out", "x", "--hidden", "256,a"}, exitUsage, "not a comma-separated list of integers"},
		{[]string{"--out", "x", "--hidden", "0", "--lr", "0"}, exitUsage, "hidden: widths must be between 1 and 8192"},
		{[]string{"--out", "x", "--eval-split", "train"}, exitUsage, "eval-split:"},
		{[]string{"--out", "x", "--log.format", "xml"}, exitUsage, "format: must be logfmt or json"},
		{[]string{"--out", "x", "--data", "", "--samples", "s"}, exitUsage, "classes: required when the base dataset is the shards alone"},
		{[]string{"--out", "x", "--data", "", "--classes", "a,b"}, exitUsage, "data: must name the IDX directory, or --samples or --dataset-manifest"},
		{[]string{"--out", "x", "--classes", "a,,b"}, exitUsage, "classes[1]: must be 1-256 bytes"},
		{[]string{"--out", "x", "--classes", "a,b,a"}, exitUsage, `classes[2]: "a" appears twice`},
	} {
		var stdout, stderr bytes.Buffer
		code := runTrain(tt.args, &stdout, &stderr)
		if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.want) {
			t.Errorf("edgeloop train %q: exit %d, output %q; want exit %d and %q", tt.args, code, stdout.String()+stderr.String(), tt.code, tt.want)
		}
	}
}

// TestTrainJob runs a tiny training job configured through the job contract's environment.
func TestTrainJob(t *testing.T) {
	testenv.FashionMNIST(t, fmnist.DefaultDir)
	out := filepath.Join(t.TempDir(), "out")
	t.Setenv("EDGELOOP_OUTPUT", out)
	t.Setenv("EDGELOOP_MODEL", "from-env")
	t.Setenv("EDGELOOP_BASE_VERSION", "4")
	t.Setenv("EDGELOOP_DATASET_MANIFEST", "")
	var stdout, stderr bytes.Buffer
	code := runTrain([]string{"--train-limit", "2000", "--hidden", "8", "--epochs", "1", "--model", "from-flag", "--log.format", "json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"model.onnx", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	metrics, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), `"model": "from-flag"`) || !strings.Contains(string(metrics), `"base_version": "4"`) {
		t.Errorf("metrics.json does not show the flag's model and the environment's base version:\n%.300s", metrics)
	}
	if !strings.Contains(stderr.String(), `"msg":"epoch done"`) || !strings.HasPrefix(stdout.String(), "edgeloop train: accuracy 0.") {
		t.Errorf("progress on stderr:\n%s\nsummary on stdout: %q", stderr.String(), stdout.String())
	}
}

// TestTrainShardsAlone runs the job on shards alone (--data ""), of 2×4 inputs and 3 classes
// named by --classes.
func TestTrainShardsAlone(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		l := i % 3
		v := make([]float32, 8)
		for j := range v {
			v[j] = float32(i%7) / 70
		}
		v[l] += 1
		var x bytes.Buffer
		if err := npy.WriteFloat32(&x, []int{2, 4}, v); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("k%03d", i)
		add(key+".json", []byte(fmt.Sprintf(`{"label": %d}`, l)))
		add(key+".input.npy", x.Bytes())
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00.tar"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	t.Setenv("EDGELOOP_DATASET_MANIFEST", "")
	var stdout, stderr bytes.Buffer
	code := runTrain([]string{"--out", out, "--data", "", "--samples", dir, "--classes", "left, middle ,right",
		"--hidden", "8", "--epochs", "3", "--eval-split", "0.2", "--log.format", "json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	metrics, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"classes": [
    "left",
    "middle",
    "right"
  ]`, `"input_shape": [
    2,
    4
  ]`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics.json has no %s:\n%.600s", want, metrics)
		}
	}
}
