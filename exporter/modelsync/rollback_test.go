package modelsync

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// TestAliasRollbackRefused is the attack the signed sequence stops: whoever can write the
// bucket keeps an old signed alias (stable → 1) and writes it back after stable moved to 2.
// The replay verifies (it is a genuine signature) but its sequence is older than the one
// accepted: it is refused, logged, counted, version 2 keeps serving, and a restarted exporter
// (a new Syncer on the same cache) still refuses it. An unsigned alias is refused too once a
// signed one was accepted; a newer signed alias is followed, down to version 1 included.
func TestAliasRollbackRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "stable")
	f.publish(1)
	f.publish(2)
	key := modelrepo.AliasKey("tiny", "stable")
	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 1, f.signer); err != nil {
		t.Fatal(err)
	}
	old, _, err := objstore.ReadAll(ctx, f.repo.Bucket(), key, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	f.start()
	if err := f.attempt(); err != nil || f.serving() != "1" {
		t.Fatalf("first sync: %v, serving %q", err, f.serving())
	}
	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 2, f.signer); err != nil {
		t.Fatal(err)
	}
	if err := f.attempt(); err != nil || f.serving() != "2" {
		t.Fatalf("after stable → 2: %v, serving %q", err, f.serving())
	}
	replay := func(data []byte) {
		t.Helper()
		if err := f.repo.Bucket().Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	replay(old)
	for i := 1; i <= 2; i++ {
		if err := f.attempt(); !errors.Is(err, modelrepo.ErrPointerRollback) {
			t.Fatalf("replayed alias, attempt %d: %v, want ErrPointerRollback", i, err)
		}
		if f.serving() != "2" {
			t.Fatalf("replayed alias: serving %q, want 2", f.serving())
		}
		if got := testutil.ToFloat64(f.syncer.metrics.rollbacks.WithLabelValues("tiny")); got != float64(i) {
			t.Fatalf("rollbacks refused = %g, want %d", got, i)
		}
		if got := testutil.ToFloat64(f.syncer.metrics.failures.WithLabelValues("tiny", "rollback")); got != float64(i) {
			t.Fatalf("failures{rollback} = %g, want %d", got, i)
		}
	}
	if code, v := f.infer(); code != 200 || v != "2" {
		t.Fatalf("inference during the attempt: %d from version %q, want 200 from 2", code, v)
	}

	unsigned := []byte(`{"version":1,"updated":"2026-12-01T00:00:00Z"}`)
	replay(unsigned)
	if err := f.attempt(); !errors.Is(err, modelrepo.ErrNoSignature) || f.serving() != "2" {
		t.Fatalf("unsigned alias after a signed one: %v, serving %q; want ErrNoSignature and 2", err, f.serving())
	}

	// A restart: a new Syncer (and registry) on the same cache remembers the accepted sequence.
	replay(old)
	f.syncer.Close()
	f.reg = prometheus.NewRegistry()
	f.start()
	if err := f.attempt(); !errors.Is(err, modelrepo.ErrPointerRollback) {
		t.Fatalf("replayed alias after a restart: %v, want ErrPointerRollback", err)
	}

	// A genuine, newer alias back to 1 (an operator's rollback) is followed.
	if err := f.repo.SetSignedAlias(ctx, "tiny", "stable", 1, f.signer); err != nil {
		t.Fatal(err)
	}
	if err := f.attempt(); err != nil || f.serving() != "1" {
		t.Fatalf("newer signed alias to 1: %v, serving %q", err, f.serving())
	}
}

// TestLatestHintRollbackRefused replays an old signed latest hint: refused and counted, the
// serving version stays. In strict mode (require_signed_pointers) deleting the newest manifest
// is refused too, unsigned hints are refused from the start, and Retire (a signed hint) moves
// exporters down.
func TestLatestHintRollbackRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "latest")
	f.cfg.RequireSignedPointers = true
	f.publish(1)
	key := modelrepo.LatestKey("tiny")
	old, _, err := objstore.ReadAll(ctx, f.repo.Bucket(), key, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	f.publish(2)
	f.start()
	if err := f.attempt(); err != nil || f.serving() != "2" {
		t.Fatalf("first sync: %v, serving %q", err, f.serving())
	}
	if err := f.repo.Bucket().Put(ctx, key, bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	if err := f.attempt(); !errors.Is(err, modelrepo.ErrPointerRollback) || f.serving() != "2" {
		t.Fatalf("replayed hint: %v, serving %q; want ErrPointerRollback and 2", err, f.serving())
	}
	// Put the current hint back, then delete version 2's manifest under it.
	f.publish(3)
	if err := f.attempt(); err != nil || f.serving() != "3" {
		t.Fatalf("after publishing 3: %v, serving %q", err, f.serving())
	}
	if err := f.repo.Bucket().Delete(ctx, modelrepo.ManifestKey("tiny", 3)); err != nil {
		t.Fatal(err)
	}
	for range listEvery {
		if err := f.attempt(); err != nil && !errors.Is(err, modelrepo.ErrPointerRollback) {
			t.Fatal(err)
		}
	}
	if f.serving() != "3" {
		t.Fatalf("strict mode after deleting 3's manifest: serving %q, want 3", f.serving())
	}
	if got := testutil.ToFloat64(f.syncer.metrics.rollbacks.WithLabelValues("tiny")); got < 2 {
		t.Fatalf("rollbacks refused = %g, want the replayed hint and the listing", got)
	}
	f.publish(3) // the manifest again, then a signed retirement
	if v, err := f.repo.Retire(ctx, "tiny", 3, f.signer); err != nil || v != 2 {
		t.Fatalf("Retire = %d, %v; want 2", v, err)
	}
	if err := f.attempt(); err != nil || f.serving() != "2" {
		t.Fatalf("after a signed retirement: %v, serving %q; want 2", err, f.serving())
	}

	unsigned := []byte(`{"version":2,"updated":"2026-12-01T00:00:00Z"}`)
	g := newFixture(t, "latest")
	g.cfg.RequireSignedPointers = true
	g.publish(1)
	if err := g.repo.Bucket().Put(ctx, key, bytes.NewReader(unsigned), int64(len(unsigned))); err != nil {
		t.Fatal(err)
	}
	g.start()
	if err := g.attempt(); !errors.Is(err, modelrepo.ErrNoSignature) {
		t.Fatalf("strict mode, unsigned hint: %v, want ErrNoSignature", err)
	}
}
