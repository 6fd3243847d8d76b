//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/onnx"
	trainer "github.com/edgeloop/edgeloop/trainers/go"
)

// need skips the test with why, or fails it under CI=true, where make test has installed
// everything (scripts/debs.sh).
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestARM64Smoke cross-compiles the edge binary for linux/arm64 as `make arm64` does (cgo,
// static) once, and runs it under qemu-user: `version`, then the exporter serving a small MLP
// through model sync with the built-in runtime, reading /metrics and making one V2 inference
// whose logits must match the trainer's reference forward pass.
func TestARM64Smoke(t *testing.T) {
	cc, err := exec.LookPath("aarch64-linux-gnu-gcc")
	need(t, err == nil, "aarch64-linux-gnu-gcc not found: install gcc-aarch64-linux-gnu (scripts/debs.sh)")
	qemu, err := exec.LookPath("qemu-aarch64-static")
	need(t, err == nil, "qemu-aarch64-static not found: install qemu-user-static (scripts/debs.sh)")

	work := t.TempDir()
	bin := filepath.Join(work, "edgeloop-exporter")
	start := time.Now()
	build := exec.Command("go", "build", "-trimpath", "-tags", "netgo osusergo",
		"-ldflags", "-s -w -linkmode external -extldflags -static", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=arm64", "CC="+cc)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compile: %v\n%s", err, out)
	}
	t.Logf("arm64 build: %s", time.Since(start).Round(time.Second))
	if out, err := exec.Command("file", bin).Output(); err == nil && (!bytes.Contains(out, []byte("ARM aarch64")) || !bytes.Contains(out, []byte("statically linked"))) {
		t.Fatalf("not a static arm64 binary: %s", out)
	}

	out, err := exec.Command(qemu, bin, "version").CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("edgeloop ")) {
		t.Fatalf("version under qemu: %v: %s", err, out)
	}

	// A small untrained MLP, published signed into a file:// repository.
	net, err := trainer.NewNetwork([]int{fmnist.Pixels, 16, 10}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	repoURL, pub := publishModel(t, work, net)

	metrics, front := freePort(t), freePort(t)
	cfg := filepath.Join(work, "exporter.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`log:
  format: json
metrics:
  listen: %s
inference:
  listen: %s
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
`, metrics, front, repoURL, pub, filepath.Join(work, "cache"))), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	exp := exec.Command(qemu, bin, "exporter", "--config", cfg)
	exp.Stdout, exp.Stderr = &log, &log
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exp.Process.Kill()
		_ = exp.Wait()
		if t.Failed() {
			t.Logf("exporter log:\n%s", log.String())
		}
	})
	// Emulation is slow: the model loads within seconds natively, well within a minute here.
	waitOK(t, "http://"+metrics+"/readyz", time.Minute)
	_, body := get(t, "http://"+metrics+"/metrics")
	for _, want := range []string{"edgeloop_build_info{", "edgeloop_gpu_expected{", `edgeloop_model_info{`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics under qemu lacks %q", want)
		}
	}

	test, err := fmnist.Load(fmnist.DefaultDir, fmnist.Test)
	var input []float32
	if err == nil {
		input = test.Images[:fmnist.Pixels]
	} else {
		// Without the data set, any image will do: the check is arm64 against the reference.
		input = make([]float32, fmnist.Pixels)
		for i := range input {
			input[i] = float32(i%255) / 255
		}
	}
	want, err := trainer.Predict(net, input)
	if err != nil {
		t.Fatal(err)
	}
	got := infer(t, "http://"+front+"/v2/models/fashion/infer", input)
	var logits, probs []float64
	for _, o := range got.Outputs {
		switch o.Name {
		case "logits":
			logits = o.Data
		case "probabilities":
			probs = o.Data
		}
	}
	// Compare whichever the answer holds: the logits, or the probabilities computed from them.
	name, gotV, refV, tol := "logits", logits, make([]float64, len(want)), 1e-4
	for i, v := range want {
		refV[i] = float64(v)
	}
	if logits == nil {
		name, gotV, refV, tol = "probabilities", probs, softmax(want), 1e-5
	}
	if len(gotV) != len(refV) {
		t.Fatalf("the answer has %d %s, want %d: %+v", len(gotV), name, len(refV), got)
	}
	worst := 0.0
	for i := range refV {
		worst = math.Max(worst, math.Abs(gotV[i]-refV[i]))
	}
	if worst > tol {
		t.Fatalf("%s from arm64 %v, reference %v: differ by %g", name, gotV, refV, worst)
	}
	t.Logf("one V2 inference under qemu: %d %s, at most %.2g from the reference forward pass", len(gotV), name, worst)
	if got.ModelVersion != "1" {
		t.Errorf("answered by version %q, want 1", got.ModelVersion)
	}
	if err := exp.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := exp.Wait(); err != nil {
		t.Errorf("the arm64 exporter exited on SIGTERM with %v", err)
	}
	t.Logf("arm64 smoke test: %s in all", time.Since(start).Round(time.Second))
}

// publishModel writes net as model.onnx, signs it with a new key and publishes it as version 1
// of "fashion" into a file:// repository; it returns the repository URL and the public key file.
func publishModel(t *testing.T, work string, net *trainer.Network) (repoURL, pub string) {
	t.Helper()
	m, err := trainer.ToONNX(net, fmnist.ClassNames(), "fashion", "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "version")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, modelrepo.ModelFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := modelrepo.GenerateKey(filepath.Join(work, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := modelrepo.LoadSigner(keys.Private)
	if err != nil {
		t.Fatal(err)
	}
	draft, err := modelrepo.DraftManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	draft.Model = "fashion"
	files, err := modelrepo.DirFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(work, "repo")
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bucket, err := objstore.Open(ctx, "file://"+repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	if _, err := modelrepo.New(bucket).Publish(ctx, "fashion", *draft, files, signer, modelrepo.PublishOptions{Version: 1, MaxBatchSize: modelrepo.DefaultMaxBatchSize}); err != nil {
		t.Fatal(err)
	}
	return "file://" + repoDir, keys.Public
}

// v2Response is the part of an Open Inference Protocol answer the test reads.
type v2Response struct {
	ModelVersion string `json:"model_version"`
	Outputs      []struct {
		Name  string    `json:"name"`
		Shape []int     `json:"shape"`
		Data  []float64 `json:"data"`
	} `json:"outputs"`
}

// infer sends one FP32 image to url and decodes the answer.
func infer(t *testing.T, url string, input []float32) v2Response {
	t.Helper()
	req, err := json.Marshal(map[string]any{"inputs": []map[string]any{{
		"name": "input", "shape": []int{1, len(input)}, "datatype": "FP32", "data": input,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	var r v2Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return r
}

func softmax(logits []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	p := make([]float64, len(logits))
	sum := 0.0
	for i, v := range logits {
		p[i] = math.Exp(float64(v) - mx)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
