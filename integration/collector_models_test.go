//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// TestModelSyncThroughCollector publishes the reference model into the collector's bucket and
// runs an exporter whose only credential is its node token: it syncs the model through the
// collector's read-only repository (GET /v1/repo/...) and serves it.
func TestModelSyncThroughCollector(t *testing.T) {
	keys, trained, _ := referenceModel(t)
	e := newCollectorEnv(t, testShards, "edge-7")
	e.start(t)
	repo := modelrepo.New(e.bucket)
	signer, err := modelrepo.LoadSigner(filepath.Join(keys, modelrepo.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	draft, err := modelrepo.DraftManifest(trained)
	if err != nil {
		t.Fatal(err)
	}
	files, err := modelrepo.DirFiles(trained)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(context.Background(), "fashion", *draft, files, signer, modelrepo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(collectortest.Token("edge-7")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := startExporterEnv(t, []string{objstore.EnvTokenFile + "=" + token}, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
model_sync:
  repository: http://%s/v1/repo
  trusted_keys: [%s]
  cache_dir: %s
`, e.addr, filepath.Join(keys, "edgeloop.pub"), filepath.Join(t.TempDir(), "cache")))
	p.waitForVersion(t, "1", 30*time.Second)
}
