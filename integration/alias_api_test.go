//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain"
)

// TestAliasAPIMovesExporter is issue 16's alias API on real parts: two versions published into
// MinIO with `edgeloop model publish`, an `edgeloop retrain` controller holding the signing key,
// and an `edgeloop exporter` following stable with require_signed_pointers. Operator moves
// through PUT /v1/models/fashion/aliases/stable roll the exporter forward to version 2 and back
// to version 1, each within a few polls; the stable pointer of version 2 written back into the
// bucket afterwards (an old signed pointer, as an attacker with write access could replay) is
// refused as a rollback and version 1 keeps serving.
func TestAliasAPIMovesExporter(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	s3 := objstore.S3Config{Endpoint: endpoint, Bucket: "models", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, s3); err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewS3(s3)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	repo := modelrepo.New(bucket)
	repoURL := "s3://models?endpoint=" + endpoint + "&insecure=true"
	env := []string{objstore.EnvAccessKey + "=" + access, objstore.EnvSecretKey + "=" + secret}
	keys, trained, _ := referenceModel(t)
	for range 2 {
		run(t, env, "model", "publish", "--repo", repoURL, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)
	}

	work := t.TempDir()
	c, addr := baseController(t, nil, repoURL, keys, work)
	c.Command = []string{"true"}
	cfg := writeController(t, c)
	ctrl := startEnv(t, env, "retrain", "--config", cfg)
	ctrl.waitFor(t, "retrain controller started", 30*time.Second)

	move := func(version int64, reason string) retrain.AliasMove {
		t.Helper()
		code, body := operatorDo(t, http.MethodPut, "http://"+addr+"/v1/models/fashion/aliases/stable", "op-token",
			map[string]any{"version": version, "reason": reason})
		var m retrain.AliasMove
		if code != http.StatusOK || json.Unmarshal(body, &m) != nil || !m.Signed || m.Version != version || m.By != "alice" {
			t.Fatalf("move stable to %d: %d %s", version, code, body)
		}
		return m
	}
	first := move(1, "first rollout")

	const poll = time.Second
	p, metricsAddr := startExporterEnv(t, env, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
    version: stable
model_sync:
  repository: %s
  trusted_keys: [%s]
  require_signed_pointers: true
  cache_dir: %s
  poll_interval: %s
  jitter: 0.1
`, repoURL, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache"), poll))
	waitLoads(t, p, 1, 1, 30*time.Second)

	forward := move(2, "promote version 2")
	moved := time.Now()
	waitLoads(t, p, 2, 1, 30*time.Second)
	t.Logf("stable 1 -> 2 served %s after the move (poll %s)", time.Since(moved).Round(time.Millisecond), poll)
	replay, _, err := objstore.ReadAll(ctx, bucket, modelrepo.AliasKey("fashion", "stable"), 1<<16)
	if err != nil {
		t.Fatal(err)
	}

	back := move(1, "rollback: incident 42")
	moved = time.Now()
	waitLoads(t, p, 1, 2, 30*time.Second)
	t.Logf("stable 2 -> 1 (rollback) served %s after the move", time.Since(moved).Round(time.Millisecond))
	if !(first.Sequence < forward.Sequence && forward.Sequence < back.Sequence) || back.Previous != 2 || forward.Previous != 1 {
		t.Fatalf("moves: %+v %+v %+v", first, forward, back)
	}

	// The pointer to version 2, validly signed but older, written back: refused.
	if err := bucket.Put(ctx, modelrepo.AliasKey("fashion", "stable"), bytes.NewReader(replay), int64(len(replay))); err != nil {
		t.Fatal(err)
	}
	p.waitForLog(t, "refused a rolled-back model pointer", 30*time.Second)
	time.Sleep(2 * poll)
	_, m := get(t, newRequest(t, "http://"+metricsAddr+"/metrics"))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`edgeloop_model_sync_rollbacks_refused_total\{model="fashion"\} [1-9]`),
		regexp.MustCompile(`edgeloop_model_info\{model="fashion",sha256="[0-9a-f]{64}",version="1"\} 1`),
	} {
		if !want.MatchString(m) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if n := countLoads(p, 2); n != 1 {
		t.Errorf("version 2 loaded %d times, want once: the replayed pointer was followed", n)
	}
	if a, err := repo.Alias(ctx, "fashion", "stable"); err != nil || a.Sequence != forward.Sequence {
		t.Fatalf("the bucket should hold the replayed pointer: %+v %v", a, err)
	}

	// The controller logged every move with its operator and reason.
	for _, want := range []string{`"reason":"first rollout"`, `"reason":"promote version 2"`, `"reason":"rollback: incident 42"`} {
		if !strings.Contains(ctrl.log(), want) || !strings.Contains(ctrl.log(), `"operator":"alice"`) {
			t.Errorf("controller log lacks the move with %s", want)
		}
	}
}

// countLoads counts the exporter's log lines saying version v of a model was loaded.
func countLoads(p *process, v float64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if l["msg"] == "model version loaded" && l["version"] == v {
			n++
		}
	}
	return n
}

// waitLoads waits until version v has been loaded n times.
func waitLoads(t *testing.T, p *process, v float64, n int, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); countLoads(p, v) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("version %v loaded %d times within %s, want %d:\n%s", v, countLoads(p, v), timeout, n, p.log())
		}
	}
}
