package sample

import "github.com/klauspost/compress/zstd"

// MaxBatchWindow is the largest zstd window a batch's frames may need (docs/wire-format.md):
// the collector refuses more, which bounds each decoder's memory.
const MaxBatchWindow = 8 << 20

// BatchWindow is the zstd window edgeloop's senders compress batches with. A collector's
// decoder holds about the window plus 256 KiB for each batch being read, and 64 batches are
// read at once by default: with the window at a batch's size (a 4 MiB batch compressed whole)
// the decoders alone held 170+ MiB of the collector's heap in BenchmarkCollectorIngest. The
// samples of a batch share little beyond their metadata's field names, so a smaller window
// costs nothing measurable in size.
const BatchWindow = 512 << 10

// NewBatchEncoder returns the zstd encoder of a sender's batches: zstd's default level, a
// window of BatchWindow, concurrency goroutines for its streaming API (EncodeAll uses none
// of them and is safe for concurrent use).
func NewBatchEncoder(concurrency int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(concurrency), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(BatchWindow))
}
