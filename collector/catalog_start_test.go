package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// unlistable is a bucket whose listings fail while down is set: the catalog cannot read it,
// while puts (the shard uploads) still work.
type unlistable struct {
	objstore.Bucket
	down   atomic.Bool
	listed atomic.Int64 // listings that failed
}

func (b *unlistable) Iter(ctx context.Context, prefix string, recursive bool, f func(key string) error) error {
	if b.down.Load() {
		b.listed.Add(1)
		return errors.New("bucket unreachable")
	}
	return b.Bucket.Iter(ctx, prefix, recursive, f)
}

// TestResendBeforeCatalogRead restarts the collector while its bucket cannot be listed, so
// that the catalog does not know the shards uploaded before the restart, and resends a batch
// whose shard was uploaded: the collector must answer 503 (the sender sends it again) rather
// than store it in a second shard, and once the catalog has read the bucket, answer the
// resend as duplicates. Before the dedup asked whether the catalog had read the bucket, the
// resend was accepted and stored twice: the chaos soak found it in a resend that arrived
// within the 0.3 s between a restart and the catalog's first read (bench/chaos, seed
// 1796646547126176262, 10 keys in two shards).
func TestResendBeforeCatalogRead(t *testing.T) {
	ctx := context.Background()
	inner, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bucket := &unlistable{Bucket: inner}
	cfg := testConfig(t, "edge-a")
	var batch []*sample.Sample
	for i := range 20 {
		batch = append(batch, collectortest.Sample(t, "edge-a", i, 600))
	}
	for run := range 2 {
		bucket.down.Store(run == 1)
		srv, err := New(cfg, Options{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- srv.Run(runCtx) }()
		if run == 0 {
			if r := post(t, srv.Addr(), "edge-a", batch); r.Accepted != len(batch) {
				t.Fatalf("first send: accepted %d of %d", r.Accepted, len(batch))
			}
		} else {
			code, body := postStatus(t, srv.Addr(), "edge-a", batch)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "catalog") {
				t.Errorf("resend before the catalog read the bucket: %d %s; want 503 naming the catalog", code, body)
			}
			if bucket.listed.Load() == 0 {
				t.Fatal("the catalog never tried to list the bucket")
			}
			bucket.down.Store(false)
			deadline := time.Now().Add(10 * time.Second)
			for !srv.catalog.Synced() {
				if time.Now().After(deadline) {
					t.Fatal("the catalog did not read the bucket within 10s of it coming back")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if r := post(t, srv.Addr(), "edge-a", batch); r.Accepted != 0 || r.Duplicates != len(batch) {
				t.Errorf("resend after the catalog read the bucket: accepted %d, duplicates %d; want 0 and %d", r.Accepted, r.Duplicates, len(batch))
			}
		}
		waitDrained(t, srv)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	keys, err := objstore.List(ctx, inner, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range keys {
		if !strings.HasSuffix(k, ".index.jsonl") {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, inner, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := catalog.ParseIndex(data)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, e := range entries {
			count[e.Key]++
		}
	}
	for _, s := range batch {
		if n := count[s.Meta.Key]; n != 1 {
			t.Errorf("sample %s in %d shards, want 1", s.Meta.Key, n)
		}
	}
}

// TestNewReadsTheCatalog: a collector whose bucket answers has read it before New returns,
// so a resend right after a restart is a duplicate at once, not a 503.
func TestNewReadsTheCatalog(t *testing.T) {
	ctx := context.Background()
	bucket, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "edge-a")
	batch := []*sample.Sample{collectortest.Sample(t, "edge-a", 1, 600), collectortest.Sample(t, "edge-a", 2, 600)}
	for run := range 2 {
		srv, err := New(cfg, Options{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		if !srv.catalog.Synced() {
			t.Errorf("run %d: the catalog has not read the bucket when New returns", run)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- srv.Run(runCtx) }()
		r := post(t, srv.Addr(), "edge-a", batch)
		if want := map[bool]int{true: len(batch)}[run == 1]; r.Duplicates != want {
			t.Errorf("run %d: duplicates %d, want %d", run, r.Duplicates, want)
		}
		waitDrained(t, srv)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// postStatus posts a batch and returns the status and body, whatever they are.
func postStatus(t *testing.T, addr, node string, samples []*sample.Sample) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/samples", bytes.NewReader(collectortest.Zstd(t, collectortest.Tar(t, samples...))))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+collectortest.Token(node))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, string(body)
}
