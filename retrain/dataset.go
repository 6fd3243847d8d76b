package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ds "github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/objstore"
	tokenfile "github.com/edgeloop/edgeloop/internal/token"
)

// dataset reads the training data: dataset manifests from the collector, the files they
// list from the bucket.
type dataset struct {
	base      string // the collector's URL, without a trailing slash
	tokenFile string
	client    *http.Client
	bucket    objstore.Bucket
	logger    *slog.Logger

	mu     sync.Mutex
	counts map[string]int // label file key → labels in it (label files never change)
}

// maxLabelFileBytes bounds one label file (the collector writes at most 10,000 labels each).
const maxLabelFileBytes = 64 << 20

func newDataset(cfg DatasetConfig, bucket objstore.Bucket, logger *slog.Logger) *dataset {
	return &dataset{
		base: strings.TrimRight(cfg.CollectorURL, "/"), tokenFile: cfg.TokenFile,
		client: &http.Client{Timeout: cfg.Timeout}, bucket: bucket, logger: logger, counts: map[string]int{},
	}
}

// manifest asks the collector for the model's dataset manifest: every shard and label file.
// A model the collector knows nothing of yet has an empty one.
func (d *dataset) manifest(ctx context.Context, model string) (*ds.Manifest, error) {
	token := ""
	if d.tokenFile != "" {
		tok, err := tokenfile.ReadSecret(d.tokenFile) // read each time: a rotated token needs no restart
		if err != nil {
			return nil, fmt.Errorf("dataset: token: %w", err)
		}
		token = tok
	}
	m, err := ds.FetchManifest(ctx, d.client, d.base, token, model)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return m, nil
}

// labelFileTime returns the nanosecond timestamp in a label file's key
// (labels/<model>/dt=<date>/<instance>-<unix nanoseconds>-<random>.jsonl, docs/labels.md).
func labelFileTime(key string) (int64, bool) {
	name := strings.TrimSuffix(path.Base(key), ".jsonl")
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	j := strings.LastIndexByte(name[:i], '-')
	if j < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(name[j+1:i], 10, 64)
	return n, err == nil && n > 0
}

// newLabels returns the label files of m written after watermark, and the newest time.
func newLabels(m *ds.Manifest, watermark int64) (keys []string, newest int64) {
	newest = watermark
	for _, k := range m.Labels {
		t, ok := labelFileTime(k)
		if !ok || t <= watermark {
			continue
		}
		keys = append(keys, k)
		newest = max(newest, t)
	}
	return keys, newest
}

// countLabels counts the labels (lines) in the label files.
func (d *dataset) countLabels(ctx context.Context, keys []string) (int, error) {
	total := 0
	for _, k := range keys {
		d.mu.Lock()
		n, ok := d.counts[k]
		d.mu.Unlock()
		if !ok {
			data, _, err := objstore.ReadAll(ctx, d.bucket, k, maxLabelFileBytes)
			if err != nil {
				return 0, fmt.Errorf("dataset: count labels: %w", err)
			}
			n = bytes.Count(data, []byte{'\n'})
			if len(data) > 0 && data[len(data)-1] != '\n' {
				n++
			}
			d.mu.Lock()
			d.counts[k] = n
			d.mu.Unlock()
		}
		total += n
	}
	return total, nil
}

// download copies the manifest's shards and label files into dir, keeping their keys as
// relative paths, and writes there a local manifest of them (ds.ReadManifest reads it). It
// returns that manifest with absolute paths.
func (d *dataset) download(ctx context.Context, m *ds.Manifest, dir string) (*ds.Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	local := &ds.Manifest{Shards: []string{}, Labels: []string{}}
	rel := &ds.Manifest{Shards: []string{}, Labels: []string{}}
	for _, list := range []struct {
		keys     []string
		abs, rel *[]string
	}{{m.Shards, &local.Shards, &rel.Shards}, {m.Labels, &local.Labels, &rel.Labels}} {
		for _, k := range list.keys {
			p := filepath.Join(dir, filepath.FromSlash(k))
			if err := d.fetch(ctx, k, p); err != nil {
				return nil, err
			}
			*list.abs = append(*list.abs, p)
			*list.rel = append(*list.rel, k)
		}
	}
	data, err := json.MarshalIndent(rel, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestFile), append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return local, nil
}

// manifestFile is the dataset manifest's name in a job's data directory.
const manifestFile = "manifest.json"

// fetch copies one object of the dataset's bucket to a file, unless a resumed job already
// has it whole.
func (d *dataset) fetch(ctx context.Context, key, p string) error {
	attrs, err := d.bucket.Attributes(ctx, key)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	if fi, err := os.Stat(p); err == nil && fi.Size() == attrs.Size {
		return nil
	}
	if err := objstore.Download(ctx, d.bucket, key, p); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	return nil
}
