package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// A remote job (the kubernetes and http backends, docs/job-backends.md) gets its dataset
// manifest and output prefix as object URLs: s3://bucket/key?endpoint=... (credentials from
// the environment, as everywhere in edgeloop). The reference trainer fetches the manifest and
// the files it lists into a local directory, trains there, and uploads its outputs.

// IsRemote reports whether p is an object URL rather than a local path or file:// URI.
func IsRemote(p string) bool { return objstore.IsObjectURL(p) }

// FetchDataset downloads the dataset manifest at manifestURL and every shard and label file it
// lists into dir, and returns the path of a local manifest of them (relative paths), which
// dataset.ReadManifest reads.
func FetchDataset(ctx context.Context, manifestURL, dir string, logger *slog.Logger) (string, error) {
	bucketURL, key, err := objstore.SplitObjectURL(manifestURL)
	if err != nil {
		return "", fmt.Errorf("fetch dataset: %w", err)
	}
	b, err := objstore.Open(ctx, bucketURL)
	if err != nil {
		return "", fmt.Errorf("fetch dataset: %w", err)
	}
	defer b.Close()
	data, _, err := objstore.ReadAll(ctx, b, key, dataset.MaxManifestBytes)
	if err != nil {
		return "", fmt.Errorf("fetch dataset: manifest: %w", err)
	}
	var m dataset.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("fetch dataset: manifest %s: %w", manifestURL, err)
	}
	src := b
	if m.Bucket != "" && m.Bucket != bucketURL {
		if src, err = objstore.Open(ctx, m.Bucket); err != nil {
			return "", fmt.Errorf("fetch dataset: the manifest's bucket: %w", err)
		}
		defer src.Close()
	}
	local := dataset.Manifest{Shards: []string{}, Labels: []string{}}
	for _, list := range []struct {
		keys []string
		out  *[]string
	}{{m.Shards, &local.Shards}, {m.Labels, &local.Labels}} {
		for _, k := range list.keys {
			if err := objstore.ValidateKey(k); err != nil {
				return "", fmt.Errorf("fetch dataset: manifest: %w", err)
			}
			if err := objstore.Download(ctx, src, k, filepath.Join(dir, filepath.FromSlash(k))); err != nil {
				return "", fmt.Errorf("fetch dataset: %w", err)
			}
			*list.out = append(*list.out, k)
		}
	}
	out, err := json.Marshal(local)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		return "", fmt.Errorf("fetch dataset: %w", err)
	}
	logger.Info("dataset fetched", "manifest", manifestURL, "shards", len(local.Shards), "label_files", len(local.Labels), "dir", dir)
	return p, nil
}

// UploadOutputs puts the contract's outputs (ModelFile, MetricsFile) of dir under the object
// URL prefix outputURL, the model last, so that a model under the prefix means a finished job.
func UploadOutputs(ctx context.Context, dir, outputURL string, logger *slog.Logger) error {
	bucketURL, prefix, err := objstore.SplitObjectURL(outputURL)
	if err != nil {
		return fmt.Errorf("upload outputs: %w", err)
	}
	b, err := objstore.Open(ctx, bucketURL)
	if err != nil {
		return fmt.Errorf("upload outputs: %w", err)
	}
	defer b.Close()
	for _, name := range []string{MetricsFile, ModelFile} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("upload outputs: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = b.Put(ctx, path.Join(prefix, name), f, fi.Size())
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("upload outputs: %s: %w", name, err)
		}
	}
	logger.Info("outputs uploaded", "output", outputURL)
	return nil
}
