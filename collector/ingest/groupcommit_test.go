package ingest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupCommit checks that batches reaching the fsync within the delay share one, that
// they all get its error, and that a batch after the round has its own.
func TestGroupCommit(t *testing.T) {
	var syncs atomic.Int32
	fail := errors.New("fsync failed")
	var failing atomic.Bool
	g := &groupCommit{delay: 50 * time.Millisecond, sync: func() error {
		syncs.Add(1)
		if failing.Load() {
			return fail
		}
		return nil
	}}
	run := func(n int) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = g.Sync() })
		}
		wg.Wait()
		return errs
	}
	for _, err := range run(8) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := syncs.Load(); n != 1 {
		t.Fatalf("8 concurrent batches made %d fsyncs, want 1", n)
	}
	failing.Store(true)
	for _, err := range run(4) {
		if !errors.Is(err, fail) {
			t.Fatalf("a batch of a failed round got %v, want the fsync's error", err)
		}
	}
	failing.Store(false)
	if err := g.Sync(); err != nil || syncs.Load() != 3 {
		t.Fatalf("a batch after the rounds: err %v, %d fsyncs in all, want nil and 3", err, syncs.Load())
	}
	g.delay = 0
	if err := g.Sync(); err != nil || syncs.Load() != 4 {
		t.Fatalf("without a delay: err %v, %d fsyncs in all, want nil and 4", err, syncs.Load())
	}
}
