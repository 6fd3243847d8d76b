package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// Manifest is a dataset manifest, the job contract's list of data (docs/trainer.md): the
// collector answers one per model (GET /v1/datasets/{model}) with keys relative to Bucket; the
// retrain controller writes a local one, of the files it downloaded, for a local job. It is the
// one type for both: the collector, the controller, the reference trainer and the PyTorch job
// read the same fields.
type Manifest struct {
	// Model names the model (the collector's manifests).
	Model string `json:"model,omitempty"`
	// Bucket is the bucket URL the keys are relative to; empty in a local manifest, whose
	// paths are relative to the manifest's directory.
	Bucket string `json:"bucket,omitempty"`
	// Since and Version repeat the collector's request filters.
	Since   *time.Time `json:"since,omitempty"`
	Version string     `json:"version,omitempty"`
	// Generated is when the collector made the manifest.
	Generated time.Time `json:"generated,omitzero"`
	// Shards are sample shards (".tar"): object keys, or in a local manifest files,
	// directories or file:// URIs.
	Shards []string `json:"shards"`
	// Labels are JSONL label files ({"key": ..., "label": ...} per line).
	Labels []string `json:"labels"`
}

// MaxManifestBytes bounds a dataset manifest a client reads: about a million shard keys.
const MaxManifestBytes = 128 << 20

// FetchManifest asks the collector at collectorURL (its base URL) for model's dataset manifest
// with an operator token: every shard and label file (GET /v1/datasets/{model}). A model the
// collector knows nothing of yet has an empty manifest; every key is checked to be a safe
// object key, so a caller may use them as local paths.
func FetchManifest(ctx context.Context, client *http.Client, collectorURL, token, model string) (*Manifest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(collectorURL, "/")+"/v1/datasets/"+url.PathEscape(model), nil)
	if err != nil {
		return nil, fmt.Errorf("dataset manifest: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dataset manifest: collector: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("dataset manifest: collector: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return &Manifest{Model: model, Shards: []string{}, Labels: []string{}}, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("dataset manifest: collector answered %s: %.300s", resp.Status, bytes.ToValidUTF8(bytes.TrimSpace(body), nil))
	case len(body) > MaxManifestBytes:
		return nil, fmt.Errorf("dataset manifest: larger than %d bytes", MaxManifestBytes)
	}
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("dataset manifest: %w", err)
	}
	for _, k := range append(append([]string(nil), m.Shards...), m.Labels...) {
		if err := objstore.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("dataset manifest: %w", err)
		}
	}
	return &m, nil
}

// ReadManifest reads a local dataset manifest. Relative paths in it are relative to the
// manifest's directory and come back absolute; file:// URIs become paths; other URI schemes
// are errors (a remote job fetches its objects first, trainer.FetchDataset).
func ReadManifest(name string) (*Manifest, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	for _, list := range []*[]string{&m.Shards, &m.Labels} {
		for i, p := range *list {
			if (*list)[i], err = localPath(p, filepath.Dir(name)); err != nil {
				return nil, fmt.Errorf("read manifest %s: %w", name, err)
			}
		}
	}
	return &m, nil
}

func localPath(p, base string) (string, error) {
	if u, err := url.Parse(p); err == nil && u.Scheme != "" && len(u.Scheme) > 1 { // not a Windows drive letter
		if u.Scheme != "file" {
			return "", fmt.Errorf("%q: a local manifest names local files; copy %s:// objects to a local directory first", p, u.Scheme)
		}
		p = u.Path
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return p, nil
}
