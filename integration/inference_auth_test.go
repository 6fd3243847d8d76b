//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/token"
)

// TestInferenceTokensReloadOnSIGHUP runs the real exporter binary with inference.tokens_file:
// a request without the token gets 401, with it 200; after the file is rewritten without that
// client and the process gets SIGHUP, the same token gets 401 and the new one 200. This is how
// an operator revokes a leaked client token at a site without a restart.
func TestInferenceTokensReloadOnSIGHUP(t *testing.T) {
	keys, trained, _ := referenceModel(t)
	work := t.TempDir()
	repo := "file://" + filepath.Join(work, "models")
	run(t, nil, "model", "publish", "--repo", repo, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)
	tokens := filepath.Join(work, "inference.sha256")
	if err := os.WriteFile(tokens, []byte(token.HashLine("camera-1", "old-secret")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := startExporter(t, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
  tokens_file: %s
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
`, tokens, repo, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache")))
	front := "http://" + p.waitFor(t, "inference front started", 20*time.Second)["listen"].(string)
	p.waitForVersion(t, "1", 30*time.Second)

	status := func(token string) int {
		req := newRequest(t, front+"/v2/models/fashion")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, _ := get(t, req)
		return resp.StatusCode
	}
	if got := status(""); got != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", got)
	}
	if got := status("old-secret"); got != http.StatusOK {
		t.Fatalf("listed token: %d, want 200", got)
	}
	if resp, _ := get(t, newRequest(t, front+"/v2/health/ready")); resp.StatusCode != http.StatusOK {
		t.Fatalf("readiness without a token: %s, want 200 (probes carry no token)", resp.Status)
	}

	// Revoke camera-1's token, add camera-2's, and tell the exporter.
	if err := os.WriteFile(tokens, []byte(token.HashLine("camera-2", "new-secret")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "infer: tokens reloaded", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for status("old-secret") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the revoked token is still accepted 5s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := status("new-secret"); got != http.StatusOK {
		t.Fatalf("new token after SIGHUP: %d, want 200", got)
	}
}
