package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Labeler stands in for the annotators: it reads the shards the collector lists, finds each
// sample's image in what the traffic sent, and posts its true class to the collector's
// labels API after a delay, as a labelling team working through a queue would.
type Labeler struct {
	collector string // the collector's base URL
	token     string // an operator token of the collector
	bucket    objstore.Bucket
	model     ModelIO
	truth     *Truth
	test      *fmnist.Dataset
	delay     time.Duration
	logger    *slog.Logger

	seen     map[string]time.Time // shard key → first listed
	done     map[string]bool
	labelled atomic.Int64
	unknown  atomic.Int64 // samples whose image the traffic did not send (never expected)
	withheld atomic.Int64 // samples of withheld images, left unlabelled
}

// NewLabeler returns a labeller of the model m: it lists shards at collectorURL with an
// operator token, reads them from bucket, and finds each sample's true class in tr (images of
// test); a sample of another size than the model's input is not one the traffic sent.
func NewLabeler(collectorURL, operatorToken string, bucket objstore.Bucket, m ModelIO, tr *Truth, test *fmnist.Dataset, delay time.Duration, logger *slog.Logger) *Labeler {
	return &Labeler{collector: collectorURL, token: operatorToken, bucket: bucket, model: m, truth: tr, test: test, delay: delay, logger: logger}
}

// Labelled is the number of labels posted so far.
func (l *Labeler) Labelled() int64 { return l.labelled.Load() }

// Run labels the shards listed at least the delay ago, every interval, until ctx ends.
func (l *Labeler) Run(ctx context.Context, every time.Duration) {
	l.seen, l.done = map[string]time.Time{}, map[string]bool{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := l.pass(ctx); err != nil && ctx.Err() == nil {
			l.logger.Warn("labeller: pass failed; next time", "err", err)
		}
	}
}

// pass labels the shards listed at least l.delay ago.
func (l *Labeler) pass(ctx context.Context) error {
	m, err := dataset.FetchManifest(ctx, http.DefaultClient, l.collector, l.token, l.model.Name)
	if err != nil {
		return err
	}
	now := time.Now()
	var out []labels.Label
	for _, key := range m.Shards {
		if l.done[key] {
			continue
		}
		first, ok := l.seen[key]
		if !ok {
			l.seen[key] = now
			continue
		}
		if now.Sub(first) < l.delay {
			continue
		}
		ls, err := l.labelShard(ctx, key)
		if err != nil {
			return err
		}
		out = append(out, ls...)
		l.done[key] = true
	}
	for len(out) > 0 {
		n := min(len(out), labels.MaxLabels)
		if err := l.post(ctx, out[:n]); err != nil {
			return err
		}
		l.labelled.Add(int64(n))
		out = out[n:]
	}
	return nil
}

// labelShard returns the labels of one shard's samples.
func (l *Labeler) labelShard(ctx context.Context, key string) ([]labels.Label, error) {
	rc, _, err := l.bucket.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("labeller: %w", err)
	}
	defer rc.Close()
	samples, _, err := sample.ReadTar(rc, sample.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("labeller: %s: %w", key, err)
	}
	var out []labels.Label
	for _, s := range samples {
		a, err := npy.Read(bytes.NewReader(s.Input))
		if err != nil || len(a.Data) != l.model.Width() {
			l.unknown.Add(1)
			continue
		}
		k := keyOf(a.Data)
		index, ok := l.truth.lookup(k)
		if !ok {
			l.unknown.Add(1)
			continue
		}
		if l.truth.Withheld(index) {
			l.withheld.Add(1)
			continue
		}
		out = append(out, labels.Label{Key: s.Meta.Key, Label: sample.IndexLabel(int(l.test.Labels[index])), Source: "human", Annotator: "demo-labeller"})
	}
	return out, nil
}

func (l *Labeler) post(ctx context.Context, ls []labels.Label) error {
	data, err := json.Marshal(labels.Request{Model: l.model.Name, Labels: ls})
	if err != nil {
		return err
	}
	code, body, err := l.do(ctx, http.MethodPost, "/v1/labels", data)
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("labeller: labels: %d %s", code, body)
	}
	return nil
}

func (l *Labeler) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, l.collector+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, data, err
}
