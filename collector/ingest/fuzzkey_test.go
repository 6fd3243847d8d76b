package ingest_test

import (
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/sample/samplefuzz"
)

// FuzzIngestDecodeKeyed is FuzzIngestDecode past the key check: the fuzzed tar's samples get
// the keys of their fuzzed content (samplefuzz.FixTar), then the batch is compressed when
// zstd is set, as a sender would, so the fuzzer spends its time on what the decoder does with
// samples that pass the key check. Seeds: testdata/fuzz/FuzzIngestDecodeKeyed.
func FuzzIngestDecodeKeyed(f *testing.F) {
	d := ingest.NewDecoder(fuzzLimits)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tarBytes []byte, compress bool) {
		body, encoding := samplefuzz.FixTar(tarBytes), ""
		if compress {
			body, encoding = enc.EncodeAll(body, nil), "zstd"
		}
		for _, s := range checkDecode(t, d, body, encoding) {
			if _, err := s.MarshalStored(); err != nil {
				t.Fatalf("an accepted sample does not encode for the WAL: %v", err)
			}
		}
	})
}
