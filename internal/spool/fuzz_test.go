package spool

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzRecordDecode feeds arbitrary bytes to the frame decoder and to the segment scan that
// recovery runs on top of it. Neither may panic, and neither may return a record whose bytes
// do not match their CRC. Seeds: testdata/fuzz/FuzzRecordDecode.
func FuzzRecordDecode(f *testing.F) {
	f.Add(encodeFrame(nil, 1, 1700000000000000000, []byte("a sample")))
	f.Add(append(encodeFrame(nil, 7, 0, nil), encodeFrame(nil, 8, 1, []byte{0xE5, 0x9A, 1, 0})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := decodeFrame(b, maxRecordLimit)
		if err == nil {
			if n < headerSize || n > len(b) || len(fr.data) != n-headerSize {
				t.Fatalf("frame of %d bytes with %d of data from %d bytes", n, len(fr.data), len(b))
			}
			if frameCRC(b[:n]) != binary.LittleEndian.Uint32(b[8:12]) {
				t.Fatal("decoded a frame whose CRC does not match")
			}
			// A decoded frame is exactly what encoding its record gives.
			if again := encodeFrame(nil, fr.seq, fr.nanos, fr.data); !bytes.Equal(again, b[:n]) {
				t.Fatal("re-encoding the decoded frame gives other bytes")
			}
		}
		recs, damaged, end := scanSegment(b, 0, 1<<63)
		if end < 0 || end > len(b) || damaged < 0 {
			t.Fatalf("scan: end %d of %d, damaged %d", end, len(b), damaged)
		}
		var last int64 = -1
		for i, r := range recs {
			if r.off <= last || r.off+frameSize(int(r.n)) > int64(len(b)) {
				t.Fatalf("scan: record %d at %d overlaps or overruns", i, r.off)
			}
			fr, _, err := decodeFrame(b[r.off:], maxRecordLimit)
			if err != nil || fr.seq != r.seq || len(fr.data) != int(r.n) {
				t.Fatalf("scan returned record %d at %d that does not decode: %v", r.seq, r.off, err)
			}
			if i > 0 && r.seq <= recs[i-1].seq {
				t.Fatalf("scan: sequence %d after %d", r.seq, recs[i-1].seq)
			}
			last = r.off + frameSize(int(r.n)) - 1
		}
	})
}
