package ingest_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// countingWAL is a real log that counts the appends and fsyncs the handler asks of it and
// the largest append in framed bytes.
type countingWAL struct {
	*spool.Spool
	mu                    sync.Mutex
	appends, syncs        int
	records, largestBytes int64
}

func (w *countingWAL) AppendBatch(ctx context.Context, records [][]byte) ([]uint64, error) {
	var n int64
	for _, r := range records {
		n += spool.FrameSize(len(r))
	}
	w.mu.Lock()
	w.appends++
	w.records += int64(len(records))
	w.largestBytes = max(w.largestBytes, n)
	w.mu.Unlock()
	return w.Spool.AppendBatch(ctx, records)
}

func (w *countingWAL) Sync() error {
	w.mu.Lock()
	w.syncs++
	w.mu.Unlock()
	return w.Spool.Sync()
}

func (w *countingWAL) counts() (appends, syncs int, records, largest int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.appends, w.syncs, w.records, w.largestBytes
}

func newCountingEnv(t *testing.T) (*env, *countingWAL) {
	t.Helper()
	var wal *countingWAL
	e := newEnvWAL(t, nil, func(sp *spool.Spool) ingest.WAL {
		wal = &countingWAL{Spool: sp}
		return wal
	})
	return e, wal
}

// streamedSamples and streamedInput make a batch of 1.5 MiB of inputs: several of the
// handler's 256 KiB chunks.
const streamedSamples, streamedInput = 96, 16 << 10

func streamedBatch(t *testing.T) []byte {
	ss := make([]*sample.Sample, streamedSamples)
	for i := range ss {
		ss[i] = collectortest.Sample(t, "edge-a", i, streamedInput)
	}
	return collectortest.Zstd(t, collectortest.Tar(t, ss...))
}

// TestBatchStoredAsRead: a large batch is appended to the log a chunk at a time as it is
// decoded, so that the handler never holds the batch whole, and still answered after one
// fsync.
func TestBatchStoredAsRead(t *testing.T) {
	e, wal := newCountingEnv(t)
	body := streamedBatch(t)
	got := e.post(t, collectortest.Token("edge-a"), "", body, nil)
	if got.code != http.StatusOK || got.result.Accepted != streamedSamples {
		t.Fatalf("answer %d %+v, want all %d accepted", got.code, got.body, streamedSamples)
	}
	appends, syncs, records, largest := wal.counts()
	if records != streamedSamples || syncs != 1 {
		t.Errorf("%d records in %d syncs, want %d in 1", records, syncs, streamedSamples)
	}
	// 1.5 MiB in chunks of 256 KiB (each closed by the record that fills it).
	if appends < 6 || largest > 256<<10+spool.FrameSize(streamedInput+2048) {
		t.Errorf("%d appends, the largest %d bytes; want at least 6 of about 256 KiB", appends, largest)
	}
}

// TestCutOffBatchKeepsWhatItStored: the samples of a batch that were read whole before its
// body was cut off are stored and made durable although the batch is answered 408: the resend
// gets them back as duplicates, the rest accepted, and nothing is in the log twice.
func TestCutOffBatchKeepsWhatItStored(t *testing.T) {
	e, wal := newCountingEnv(t)
	body := streamedBatch(t)
	if code := halfClosedPost(t, strings.TrimPrefix(e.srv.URL, "http://"), body[:len(body)*2/3], len(body)); code != http.StatusRequestTimeout {
		t.Fatalf("cut-off batch answered %d, want 408", code)
	}
	_, syncs, kept, _ := wal.counts()
	if kept == 0 || kept >= streamedSamples || syncs != 1 {
		t.Fatalf("%d records appended and %d syncs after the cut; want some but not all of %d, synced once", kept, syncs, streamedSamples)
	}
	got := e.post(t, collectortest.Token("edge-a"), "", body, nil)
	if got.code != http.StatusOK || int64(got.result.Duplicates) != kept || int64(got.result.Accepted) != streamedSamples-kept {
		t.Fatalf("resend: %d %+v; want the %d stored before the cut as duplicates, the other %d accepted", got.code, got.body, kept, streamedSamples-kept)
	}
	if n := e.wal.Stats().Records; n != streamedSamples {
		t.Errorf("%d records in the log, want %d: each sample once", n, streamedSamples)
	}
}
