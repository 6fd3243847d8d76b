package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// condBucket is a directory bucket with the S3 backend's conditional writes, made atomic by a
// mutex: what the lock needs, without a MinIO.
type condBucket struct {
	objstore.Bucket
	mu sync.Mutex
}

func (c *condBucket) PutIf(ctx context.Context, key string, data []byte, ifNoneMatch bool, ifMatch string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	attrs, err := c.Attributes(ctx, key)
	switch {
	case err != nil && !objstore.IsNotFound(err):
		return "", err
	case ifNoneMatch && err == nil, !ifNoneMatch && (err != nil || attrs.ETag != ifMatch):
		return "", objstore.ErrPreconditionFailed
	}
	if err := c.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return "", err
	}
	attrs, err = c.Attributes(ctx, key)
	return attrs.ETag, err
}

// noLog is a write-ahead log with nothing in it.
type noLog struct{}

func (noLog) PeekAfter(uint64, int, int64) ([]spool.Record, error) { return nil, nil }
func (noLog) Ack(uint64) error                                     { return nil }

func newLockBuilder(t *testing.T, b objstore.Bucket, instance string, now func() time.Time) *Builder {
	t.Helper()
	cfg := DefaultConfig()
	cfg.UploadTimeout = time.Second
	bl, err := New(cfg, Options{Instance: instance, Bucket: b, Log: noLog{}, JournalPath: filepath.Join(t.TempDir(), "journal"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return bl
}

// readLock returns the lock object's content.
func readLock(t *testing.T, b objstore.Bucket, key string) lockBody {
	t.Helper()
	data, _, err := objstore.ReadAll(context.Background(), b, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lb lockBody
	if err := json.Unmarshal(data, &lb); err != nil {
		t.Fatalf("lock %s: %v", data, err)
	}
	return lb
}

// TestLock: a second instance waits for the hour's lock until the holder releases it; each
// release of a publish counts it, and an instance lists the hour only when another one
// published since its own last release; a lock past its expiry is taken over, and so is one
// the instance left itself in a crash, at once; an unexpired lock of another instance is not.
func TestLock(t *testing.T) {
	ctx := context.Background()
	fsb, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &condBucket{Bucket: fsb}
	const lockKey = "locks/samples/fashion/3/dt=2026-03-14/hour=15"
	a := newLockBuilder(t, b, "a-00000001", time.Now)
	c := newLockBuilder(t, b, "c-00000002", time.Now)

	la, err := a.lock(ctx, lockKey, "samples/fashion/3/dt=2026-03-14/hour=15/a-00000001-1")
	if err != nil || !la.refresh {
		t.Fatalf("first lock: %+v, %v; want a lock that asks for a listing (nothing known of the hour)", la, err)
	}
	if lb := readLock(t, b, lockKey); lb.Instance != "a-00000001" || lb.Seq != 0 {
		t.Fatalf("held lock %+v", lb)
	}
	got := make(chan time.Time)
	go func() {
		lc, err := c.lock(ctx, lockKey, "samples/fashion/3/dt=2026-03-14/hour=15/c-00000002-1")
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		at := time.Now()
		if !lc.refresh {
			t.Error("instance c's first lock of the hour does not ask for a listing")
		}
		lc.release(ctx, false)
		got <- at
	}()
	time.Sleep(150 * time.Millisecond)
	released := time.Now()
	la.release(ctx, false)
	if at := <-got; at.Before(released) {
		t.Fatalf("the second instance took the lock %s before the holder released it", released.Sub(at))
	}
	if lb := readLock(t, b, lockKey); lb.Instance != "" || lb.Seq != 2 {
		t.Fatalf("lock after two publishes: %+v; want free, seq 2", lb)
	}
	// c published last: c's next lock needs no listing, a's does.
	lc, err := c.lock(ctx, lockKey, "c2")
	if err != nil || lc.refresh {
		t.Fatalf("c again: %+v, %v; want no listing (nobody published since c)", lc, err)
	}
	lc.release(ctx, false)
	la, err = a.lock(ctx, lockKey, "a2")
	if err != nil || !la.refresh {
		t.Fatalf("a again: %+v, %v; want a listing (c published since a)", la, err)
	}
	la.release(ctx, false)
	if lb := readLock(t, b, lockKey); lb.Seq != 4 {
		t.Fatalf("seq %d after four publishes", lb.Seq)
	}

	// An unexpired lock of another instance: waited for until the context ends.
	held, _ := json.Marshal(lockBody{Instance: "z-00000009", Shard: "x", Expires: time.Now().Add(time.Hour), Seq: 3})
	if err := b.Put(ctx, lockKey, bytes.NewReader(held), int64(len(held))); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = a.lock(wctx, lockKey, "s")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock held by another instance: %v; want to wait until the deadline", err)
	}
	// The same lock, from an instance whose clock is past its expiry: taken over, with a listing.
	late := newLockBuilder(t, b, "d-00000003", func() time.Time { return time.Now().Add(2 * time.Hour) })
	ld, err := late.lock(ctx, lockKey, "s")
	if err != nil || !ld.refresh {
		t.Fatalf("expired lock: %+v, %v; want it taken over, with a listing", ld, err)
	}
	if lb := readLock(t, b, lockKey); lb.Instance != "d-00000003" {
		t.Fatalf("lock after takeover: %+v", lb)
	}
	ld.release(ctx, false)
	// A lock this instance left in a crash (same name): taken over at once, with a listing
	// (the stopped holder may have published without counting it).
	left, _ := json.Marshal(lockBody{Instance: "a-00000001", Shard: "old", Expires: time.Now().Add(time.Hour), Seq: 4})
	if err := b.Put(ctx, lockKey, bytes.NewReader(left), int64(len(left))); err != nil {
		t.Fatal(err)
	}
	a.lastSeq[lockKey] = 4
	wctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	la, err = a.lock(wctx, lockKey, "new")
	if err != nil || !la.refresh {
		t.Fatalf("own lock left in a crash: %+v, %v; want it taken over at once, with a listing", la, err)
	}
	la.release(ctx, false)
	if n := testutil.ToFloat64(a.m.lockTakeovers); n != 1 {
		t.Fatalf("instance a counted %v takeovers, want 1", n)
	}
}

// TestMetaTraceID finds the trace id in metadata JSON as the sample format writes it, and
// nothing in metadata without one or with a malformed one.
func TestMetaTraceID(t *testing.T) {
	for _, tc := range []struct {
		meta string
		want string
	}{
		{`{"key":"k","trace_id":"0af7651916cd43dd8448eb211c80319c","x":1}`, "0af7651916cd43dd8448eb211c80319c"},
		{`{"trace_id" : "0af7651916cd43dd8448eb211c80319c"}`, "0af7651916cd43dd8448eb211c80319c"},
		{`{"key":"k"}`, ""},
		{`{"trace_id":"0af7651916cd43dd8448eb211c8031"}`, ""},
		{`{"trace_id":"00000000000000000000000000000000"}`, ""},
		{`{"trace_id":1}`, ""},
		{`{"trace_id"`, ""},
	} {
		tid, ok := metaTraceID([]byte(tc.meta))
		if got := ""; ok {
			got = tid.String()
			if got != tc.want {
				t.Errorf("%s: %s, want %q", tc.meta, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: none, want %s", tc.meta, tc.want)
		}
	}
}

// fakePeers places keys in shards.
type fakePeers struct {
	owner     map[string]string
	refreshed []string
}

func (p *fakePeers) Refresh(_ context.Context, prefix string) error {
	p.refreshed = append(p.refreshed, prefix)
	return nil
}

func (p *fakePeers) AddShard(context.Context, string, []sample.IndexEntry) {}

func (p *fakePeers) Owner(key string) (string, bool) {
	o, ok := p.owner[key]
	return o, ok
}

// TestPublishLeavesOutOwned publishes a shard of four samples, one of which another shard holds
// and one of which this shard's earlier upload holds (a replay after a crash): the index and the
// tar keep three; with every sample elsewhere the tar is deleted and no index written.
func TestPublishLeavesOutOwned(t *testing.T) {
	ctx := context.Background()
	fsb, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &condBucket{Bucket: fsb}
	bl := newLockBuilder(t, b, "a-00000001", time.Now)
	const key = "samples/fashion/3/dt=2026-03-14/hour=15/a-00000001-00000000000000000001"
	// The tar is written from the log: the records are in a real one.
	log, err := spool.Open(filepath.Join(t.TempDir(), "wal"), spool.DefaultConfig(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	bl.opts.Log = log
	var stored []member
	for i := range 4 {
		rec, err := collectortest.Sample(t, "edge-a", i, 200).MarshalStored()
		if err != nil {
			t.Fatal(err)
		}
		st, err := sample.ParseStored(rec)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := log.Append(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, newMember(seq, st))
	}
	peers := &fakePeers{owner: map[string]string{
		stored[1].entry.Key: "samples/fashion/3/dt=2026-03-14/hour=15/b-00000002-00000000000000000009.tar",
		stored[2].entry.Key: key + ".tar",
	}}
	bl.opts.Peers = peers
	kept, err := bl.put(ctx, key, stored, storedTarSize(stored))
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 3 || kept[0].seq != stored[0].seq || kept[1].seq != stored[2].seq || kept[2].seq != stored[3].seq {
		t.Fatalf("kept %d samples; want samples 0, 2 and 3", len(kept))
	}
	if len(peers.refreshed) != 1 || peers.refreshed[0] != "samples/fashion/3/dt=2026-03-14/hour=15/" {
		t.Errorf("refreshed %v; want the shard's hour", peers.refreshed)
	}
	index, _, err := objstore.ReadAll(ctx, b, key+".index.jsonl", 0)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(index, []byte("\n")); lines != 3 || bytes.Contains(index, []byte(stored[1].entry.Key)) {
		t.Errorf("index of %d lines, holding the other shard's sample: %v", lines, bytes.Contains(index, []byte(stored[1].entry.Key)))
	}
	data, _, err := objstore.ReadAll(ctx, b, key+".tar", 0)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != storedTarSize(kept) || bytes.Contains(data, []byte(stored[1].entry.Key)) {
		t.Errorf("tar of %d bytes (want %d), holding the other shard's sample: %v", len(data), storedTarSize(kept), bytes.Contains(data, []byte(stored[1].entry.Key)))
	}
	if n := testutil.ToFloat64(bl.m.dropped); n != 1 {
		t.Errorf("dropped counter %v, want 1", n)
	}

	const key2 = "samples/fashion/3/dt=2026-03-14/hour=15/a-00000001-00000000000000000002"
	kept, err = bl.put(ctx, key2, stored[1:2], storedTarSize(stored[1:2]))
	if err != nil || len(kept) != 0 {
		t.Fatalf("a shard of one sample held elsewhere: kept %d, %v", len(kept), err)
	}
	for _, k := range []string{key2 + ".tar", key2 + ".index.jsonl"} {
		if ok, _ := b.Exists(ctx, k); ok {
			t.Errorf("%s exists; a shard left empty is not stored", k)
		}
	}
}
