// Package ingest is the collector's ingest endpoint, POST /v1/samples and GET /v1/limits, as
// docs/wire-format.md specifies it: it authenticates the node (package auth), decodes the
// zstd-compressed tar within limits, rejects invalid samples one by one, drops samples it
// already holds (duplicates), and answers 200 only once every accepted sample is fsynced in
// the write-ahead log.
package ingest

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// Errors of Decode that decide the answer's status.
var (
	// ErrUnsupported is a Content-Encoding other than zstd or identity: 415.
	ErrUnsupported = errors.New("unsupported content encoding")
	// ErrTooLarge is a batch past a limit on the whole: 413. It is sample.ErrTooLarge, the
	// error ReadTar wraps, so that a message says "batch too large" once.
	ErrTooLarge = sample.ErrTooLarge
)

// Decoder turns request bodies into samples. It keeps zstd decoders for reuse, since each
// costs allocations worth more than a small batch; it is safe for concurrent use.
type Decoder struct {
	lim   sample.Limits
	zstds sync.Pool
}

// NewDecoder returns a Decoder enforcing lim on the uncompressed tar.
func NewDecoder(lim sample.Limits) *Decoder { return &Decoder{lim: lim} }

// Decode reads a batch: body is the request body as sent, encoding its Content-Encoding
// ("zstd", "identity" or ""). It passes each valid sample to emit as soon as it is read
// (sample.ReadTarFunc) and returns the rejected ones, or emit's error as emit returned it, or
// an error wrapping ErrUnsupported (415), ErrTooLarge (413), or neither (400: unreadable).
// Samples emitted before an error stay emitted.
func (d *Decoder) Decode(body io.Reader, encoding string, emit func(*sample.Sample) error) ([]sample.Rejection, error) {
	var r io.Reader
	switch encoding {
	case "", "identity":
		r = body
	case "zstd":
		zr, err := d.zstd(body)
		if err != nil {
			return nil, fmt.Errorf("ingest: zstd: %w", err)
		}
		defer d.release(zr)
		r = zr
	default:
		return nil, fmt.Errorf("ingest: %w %.64q: send zstd or no Content-Encoding", ErrUnsupported, encoding)
	}
	var emitErr error
	rejected, err := sample.ReadTarFunc(r, d.lim, func(s *sample.Sample) error {
		emitErr = emit(s)
		return emitErr
	})
	switch {
	case err != nil && err == emitErr:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return rejected, nil
}

func (d *Decoder) zstd(r io.Reader) (*zstd.Decoder, error) {
	if zr, ok := d.zstds.Get().(*zstd.Decoder); ok {
		if err := zr.Reset(r); err != nil {
			zr.Close()
			return nil, err
		}
		return zr, nil
	}
	return zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1), // one goroutine per request; requests run in parallel
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(sample.MaxBatchWindow),
		zstd.WithDecoderMaxMemory(uint64(d.lim.MaxTotalBytes)+sample.MaxBatchWindow),
	)
}

func (d *Decoder) release(zr *zstd.Decoder) {
	// Drop the reference to the body so a pooled decoder does not pin a finished request.
	if err := zr.Reset(nil); err != nil {
		zr.Close()
		return
	}
	d.zstds.Put(zr)
}
