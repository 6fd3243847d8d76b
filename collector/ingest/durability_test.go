package ingest_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// failingSyncWAL is a real log whose Sync fails while fail is set: the fsync error of a disk
// going bad, after the records were written.
type failingSyncWAL struct {
	*spool.Spool
	fail  atomic.Bool
	syncs atomic.Int64
}

func (w *failingSyncWAL) Sync() error {
	w.syncs.Add(1)
	if w.fail.Load() {
		return errors.New("fsync: input/output error")
	}
	return w.Spool.Sync()
}

// TestSyncFailureIsNotStored: a batch whose WAL fsync failed is answered 503, and its keys are
// not remembered as stored, so that the node's resend is stored (accepted), not answered
// "duplicates" — which would make the node delete samples the collector may not hold.
func TestSyncFailureIsNotStored(t *testing.T) {
	var wal *failingSyncWAL
	e := newEnvWAL(t, nil, func(sp *spool.Spool) ingest.WAL {
		wal = &failingSyncWAL{Spool: sp}
		return wal
	})

	tok := collectortest.Token("edge-a")
	body := batch(t, "edge-a", 0, 5)
	wal.fail.Store(true)
	if got := e.post(t, tok, "", body, nil); got.code != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Fatalf("batch with a failed fsync: %d %v, want 503 with Retry-After", got.code, got.body)
	}
	if wal.syncs.Load() != 1 {
		t.Fatalf("%d syncs, want 1", wal.syncs.Load())
	}
	wal.fail.Store(false)
	got := e.post(t, tok, "", body, nil)
	if got.code != http.StatusOK || got.result.Accepted != 5 || got.result.Duplicates != 0 {
		t.Fatalf("resend after the failure: %d %+v, want all 5 accepted (stored now), none a duplicate", got.code, got.result)
	}
	// And now they are stored: a third send is all duplicates.
	got = e.post(t, tok, "", body, nil)
	if got.code != http.StatusOK || got.result.Duplicates != 5 {
		t.Fatalf("third send: %d %+v, want 5 duplicates", got.code, got.result)
	}
}
