package dataset

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
)

func TestReadShardSizeLimit(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range []string{"a.json", "b.json", "c.json"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 100, Typeflag: tar.TypeReg})
		tw.Write(make([]byte, 100))
	}
	tw.Close()
	// Three members of 1024 bytes each, then the 1024-byte trailer: limits on a member's
	// boundary, inside one, and just enough.
	for _, tc := range []struct {
		limit int64
		err   bool
	}{{1024, true}, {2048, true}, {1500, true}, {3 * 1024, true}, {int64(b.Len()), false}} {
		samples, err := readShard(bytes.NewReader(b.Bytes()), tc.limit)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "bytes of tar") {
				t.Errorf("limit %d: %d samples, %v; want the size error", tc.limit, len(samples), err)
			}
		} else if err != nil || len(samples) != 3 {
			t.Errorf("limit %d: %d samples, %v", tc.limit, len(samples), err)
		}
	}
}
