//go:build integration

package gate_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

// startExporter builds and starts a real edgeloop exporter (built-in
// runtime, `edgeloop exporter`) serving the oip evaluator's two model names from the scratch repository at
// repoURL, trusting pubKey; it returns the inference front's address.
func startExporter(t *testing.T, repoURL, pubKey string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "edgeloop")
	build := exec.Command("go", "build", "-o", bin, "github.com/edgeloop/edgeloop/cmd/edgeloop")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the exporter: %v\n%s", err, out)
	}
	def := gate.DefaultConfig().OIP
	cfg := fmt.Sprintf(`node: gate-test
log:
  format: json
metrics:
  listen: 127.0.0.1:0
gpu:
  enabled: false
inference:
  listen: 127.0.0.1:0
models:
  - name: %s
  - name: %s
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: 1s
`, def.CandidateName, def.CurrentName, repoURL, pubKey, filepath.Join(dir, "models"))
	path := filepath.Join(dir, "exporter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "exporter", "--config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	var mu sync.Mutex
	var logged strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logged.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "inference front started" {
				if a, ok := line["listen"].(string); ok {
					addr <- a
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("exporter log:\n%s", logged.String())
			mu.Unlock()
		}
	})
	select {
	case a := <-addr:
		return a
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the exporter did not start its inference front:\n%s", logged.String())
		return ""
	}
}

// TestOIPPollConformance runs the conformance suite against the oip evaluator in poll mode:
// both versions are published, signed, into a scratch repository that a real edgeloop
// exporter's model_sync follows, and scored through its Open Inference Protocol front.
func TestOIPPollConformance(t *testing.T) {
	dir := t.TempDir()
	keys, err := modelrepo.GenerateKey(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := modelrepo.LoadSigner(keys.Private)
	if err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(dir, "scratch")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	repoURL := "file://" + scratch
	front := startExporter(t, repoURL, keys.Public)
	gatetest.Run(t, func(t *testing.T) gate.Evaluator {
		cfg := gate.DefaultConfig().OIP
		cfg.URL, cfg.Mode, cfg.ScratchBucket, cfg.BatchSize, cfg.ReadyTimeout = "http://"+front, gate.OIPModePoll, repoURL, 16, 30*time.Second
		ev, err := gate.NewOIP(cfg, signer, discard())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	})
}
