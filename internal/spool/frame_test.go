package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

// TestFrameLayout pins the format docs/spool.md describes, byte by byte.
func TestFrameLayout(t *testing.T) {
	data := []byte("sample")
	b := encodeFrame(nil, 0x0102030405060708, -2, data)
	want := []byte{
		0xE5, 0x9A, 1, 0, // magic, version, flags
		6, 0, 0, 0, // length
		0, 0, 0, 0, // CRC, filled below
		8, 7, 6, 5, 4, 3, 2, 1, // seq
		0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // time -2
		's', 'a', 'm', 'p', 'l', 'e',
	}
	covered := append(append([]byte{}, want[4:8]...), want[12:]...)
	binary.LittleEndian.PutUint32(want[8:12], crc32.Checksum(covered, crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(b, want) {
		t.Fatalf("frame\n% x\nwant\n% x", b, want)
	}
	fr, n, err := decodeFrame(append(b, 0xaa), 100)
	if err != nil || n != len(want) || fr.seq != 0x0102030405060708 || fr.nanos != -2 || string(fr.data) != "sample" {
		t.Fatalf("decode = %+v, %d, %v", fr, n, err)
	}

	for _, tt := range []struct {
		name string
		b    []byte
		max  int64
		want error
	}{
		{"short header", b[:27], 100, errShort},
		{"short data", b[:len(b)-1], 100, errShort},
		{"bad magic", append([]byte{0xE6}, b[1:]...), 100, errMagic},
		{"unknown version", append([]byte{0xE5, 0x9A, 2}, b[3:]...), 100, errMagic},
		{"length above the limit", b, 5, errLength},
		{"CRC mismatch", append(b[:len(b)-1:len(b)-1], 'E'), 100, errCRC},
	} {
		if _, _, err := decodeFrame(tt.b, tt.max); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestPositionLayout(t *testing.T) {
	b := encodePosition(42)
	want := []byte{'E', 'S', 'P', 'O', 1, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0}
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum(want, crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(b, want) {
		t.Fatalf("position\n% x\nwant\n% x", b, want)
	}
	if head, err := decodePosition(b); err != nil || head != 42 {
		t.Fatalf("decode = %d, %v", head, err)
	}
	for _, bad := range [][]byte{b[:19], append(b, 0), append([]byte("XSPO"), b[4:]...)} {
		if _, err := decodePosition(bad); err == nil {
			t.Errorf("decoded a damaged position file % x", bad)
		}
	}
	flipped := bytes.Clone(b)
	flipped[10] ^= 1
	if _, err := decodePosition(flipped); err == nil {
		t.Error("decoded a position file with a flipped bit")
	}
}

func TestSegmentName(t *testing.T) {
	if got := segmentName(42); got != "00000000000000000042.seg" {
		t.Fatalf("segmentName(42) = %q", got)
	}
	for name, want := range map[string]bool{
		"00000000000000000042.seg":            true,
		"18446744073709551615.seg":            true,
		"0000000000000000042.seg":             false, // 19 digits
		"00000000000000000042.seg.unreadable": false,
		"0000000000000000004x.seg":            false,
		"99999999999999999999.seg":            false, // above u64
	} {
		if _, ok := parseSegmentName(name); ok != want {
			t.Errorf("parseSegmentName(%q) ok = %v", name, ok)
		}
	}
}
