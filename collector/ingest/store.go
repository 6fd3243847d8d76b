package ingest

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// appendChunkBytes is how many framed bytes of a batch's records wait before they are
// appended to the write-ahead log. A batch in flight holds one chunk of decoded samples, not
// the whole batch: with ingest.max_concurrent batches at once, the decoded samples in memory
// are bounded by bytes (64 × 256 KiB by default) rather than by 64 × max_uncompressed_bytes.
// Each chunk is one write; the batch still gets one fsync.
const appendChunkBytes = 256 << 10

// storeError is a failure to store a batch that is not the batch's fault (the log full or
// failing, the dedup set unable to tell): answered 503, and the node sends the batch again.
type storeError struct{ msg string }

func (e *storeError) Error() string { return e.msg }

// batchWriter stores a batch's samples as the decoder reads them (sample.ReadTarFunc): it
// appends them to the write-ahead log a chunk at a time, then, once the batch is read, makes
// them durable with one fsync shared with concurrent batches (the group commit) and remembers
// their keys as stored. Samples appended before the batch failed (a body cut off, a limit
// passed) are made durable too: a resend finds them stored.
type batchWriter struct {
	h    *Handler
	ctx  context.Context
	node string
	nm   *nodeMetrics

	res                      Result
	received                 int      // samples read whole (rejections are counted apart)
	claims                   []*Claim // claims[:appended] are of appended records, the rest of pending ones
	pending                  [][]byte // records not appended yet
	pendBytes, appendedBytes int64
	appended                 int
	failed                   *storeError // the first failure to store; nothing is appended after it
	werr                     error       // the write-ahead log's error, when it failed
	span                     trace.Span  // collector.wal.append: from the first append to the fsync
}

func (h *Handler) newBatchWriter(ctx context.Context, node string, nm *nodeMetrics) *batchWriter {
	return &batchWriter{h: h, ctx: ctx, node: node, nm: nm}
}

// add takes one sample the decoder read whole: a duplicate is counted, a sample of another
// node rejected, and a new one queued for the log, appending the chunk once it is full. Its
// error (a *storeError) stops the decoding.
func (b *batchWriter) add(s *sample.Sample) error {
	b.received++
	if s.Meta.Node != b.node {
		b.reject(s.Meta.Key, "node mismatch: the credential is bound to "+b.node)
		b.nm.nodeMismatch.Inc()
		return nil
	}
	c, err := b.h.dedup.Reserve(b.ctx, s.Meta.Key)
	if err != nil {
		if b.ctx.Err() != nil {
			return b.fail("cancelled while waiting for a concurrent write of the same sample")
		}
		return b.fail(err.Error())
	}
	if c == nil {
		b.res.Duplicates++
		return nil
	}
	rec, err := s.MarshalStored() // the decoder validated it
	if err != nil {               // cannot happen, but never store what does not encode
		c.Done(false)
		b.reject(s.Meta.Key, err.Error())
		b.nm.invalid.Inc()
		return nil
	}
	b.claims = append(b.claims, c)
	b.pending = append(b.pending, rec)
	b.pendBytes += spool.FrameSize(len(rec))
	if b.pendBytes >= appendChunkBytes {
		return b.flush()
	}
	return nil
}

func (b *batchWriter) reject(key, msg string) {
	b.res.Rejected = append(b.res.Rejected, Rejection{Key: key, Error: msg})
}

// fail records the first failure to store and returns it.
func (b *batchWriter) fail(msg string) error {
	if b.failed == nil {
		b.failed = &storeError{msg: msg}
	}
	return b.failed
}

// flush appends the pending records, within ingest.max_wal_bytes.
func (b *batchWriter) flush() error {
	if b.failed != nil {
		return b.failed
	}
	if len(b.pending) == 0 {
		return nil
	}
	need := b.pendBytes
	if held, ok := b.h.reserve(need); !ok {
		b.h.logger.Warn("write-ahead log full; batch refused", "node", b.node, "bytes", need, "held", held, "max_wal_bytes", b.h.cfg.MaxWALBytes)
		return b.fail(fmt.Sprintf("write-ahead log full: %d bytes held or reserved, %d more would pass the limit of %d", held, need, b.h.cfg.MaxWALBytes))
	}
	b.startSpan()
	seqs, err := b.h.opts.WAL.AppendBatch(b.ctx, b.pending)
	// The log counts what was appended from here on: the reservation has done its job.
	b.h.release(need)
	for _, rec := range b.pending[:len(seqs)] {
		b.appendedBytes += spool.FrameSize(len(rec))
	}
	b.appended += len(seqs)
	clear(b.pending) // the log's pages hold them now
	b.pending, b.pendBytes = b.pending[:0], 0
	if err != nil {
		b.werr = err
		msg := "write-ahead log unavailable"
		if errors.Is(err, spool.ErrFull) {
			msg = "write-ahead log full"
		}
		return b.fail(msg)
	}
	return nil
}

// startSpan starts the batch's collector.wal.append span unless it was.
func (b *batchWriter) startSpan() {
	if b.span == nil {
		_, b.span = b.h.opts.Tracer.Start(b.ctx, "collector.wal.append")
	}
}

// finish appends what is pending (unless storing failed), gives back the batch's decoding
// slot (release) so that waiting for the shared fsync holds no decoded sample, makes the
// appended records durable and ends every claim. It returns the first failure to store, nil
// when there was none.
func (b *batchWriter) finish(release func()) *storeError {
	b.flush()
	release()
	for _, c := range b.claims[b.appended:] {
		c.Done(false) // never appended
	}
	if b.appended > 0 {
		if err := b.h.commit.Sync(); err != nil && b.werr == nil {
			b.werr = err
			b.fail("write-ahead log unavailable")
		}
	}
	if b.received > 0 {
		b.startSpan() // a batch of duplicates has its span too, of no records
	}
	if b.span != nil {
		b.span.SetAttributes(attribute.Int("edgeloop.wal.records", b.appended), attribute.Int64("edgeloop.wal.bytes", b.appendedBytes))
		if b.werr != nil {
			b.span.RecordError(b.werr)
			b.span.SetStatus(codes.Error, "write-ahead log")
		}
		b.span.End()
	}
	// A key is remembered as stored only once its record is synced. After a failed fsync
	// (or append) nothing says the record is on disk — Linux may have dropped the pages that
	// failed — so the keys are released: the node's resend is stored again rather than
	// answered "duplicates", which would make the node delete what may be lost. A record
	// that did reach the disk is then in the log twice; the shard builder keeps a key once
	// per shard, and keys are content-derived, so a reader drops any other copy.
	for _, c := range b.claims[:b.appended] {
		c.Done(b.werr == nil)
	}
	if b.appended > 0 {
		b.h.opts.Appended()
	}
	if b.werr != nil {
		b.h.logger.Error("write-ahead log: cannot store a batch", "node", b.node, "err", b.werr)
	} else {
		b.res.Accepted = b.appended
	}
	return b.failed
}
