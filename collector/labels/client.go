package labels

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// maxManifestBytes bounds a dataset manifest a client reads: about a million shard keys.
const maxManifestBytes = 128 << 20

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
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("dataset manifest: collector: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return &Manifest{Model: model}, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("dataset manifest: collector answered %s: %.300s", resp.Status, bytes.TrimSpace(body))
	case len(body) > maxManifestBytes:
		return nil, fmt.Errorf("dataset manifest: larger than %d bytes", maxManifestBytes)
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
