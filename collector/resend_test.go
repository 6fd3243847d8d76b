package collector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// TestResendAfterRestartIsDuplicate sends a batch, lets its shard upload (the log is then
// empty), restarts the collector on the same log and sends the batch again, as a sender does
// whose answer a crash or a network fault cut off: every sample must be a duplicate and stay
// in one shard. Before the dedup asked the catalog, the restarted collector only knew the keys
// still in its log and stored the batch in a second shard (found by the chaos soak).
func TestResendAfterRestartIsDuplicate(t *testing.T) {
	ctx := context.Background()
	bucket, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "edge-a")
	var batch []*sample.Sample
	for i := range 20 {
		batch = append(batch, collectortest.Sample(t, "edge-a", i, 600))
	}
	for run := range 2 {
		srv, err := New(cfg, Options{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- srv.Run(runCtx) }()
		if run == 1 {
			// The resend of a real sender comes after a backoff; here it waits for the
			// catalog's first read of the bucket, which the restart starts.
			deadline := time.Now().Add(10 * time.Second)
			for !srv.catalog.Synced() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		r := post(t, srv.Addr(), "edge-a", batch)
		want := ingestResult{Accepted: len(batch)}
		if run == 1 {
			want = ingestResult{Duplicates: len(batch)}
		}
		if r.Accepted != want.Accepted || r.Duplicates != want.Duplicates {
			t.Errorf("run %d: accepted %d, duplicates %d; want %d and %d", run, r.Accepted, r.Duplicates, want.Accepted, want.Duplicates)
		}
		waitDrained(t, srv)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	keys, err := objstore.List(ctx, bucket, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range keys {
		if !strings.HasSuffix(k, ".index.jsonl") {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, bucket, k, 0)
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
