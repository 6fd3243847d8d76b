package oip

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// TestParseRequestBF16: BF16, which the decoder's own datatype list used to lack, is read as
// numbers in binary (the top 16 bits of a float32) and in JSON, and a binary tensor of the
// wrong size is refused rather than decoded short.
func TestParseRequestBF16(t *testing.T) {
	header := `{"inputs":[{"name":"a","shape":[3],"datatype":"BF16","parameters":{"binary_data_size":6}},` +
		`{"name":"b","shape":[2],"datatype":"BF16","data":[0.5,-3]}]}`
	body := []byte(header)
	for _, f := range []float32{1, -2.5, float32(math.Inf(1))} { // exact in bfloat16
		body = binary.LittleEndian.AppendUint16(body, uint16(math.Float32bits(f)>>16))
	}
	req, err := ParseRequest(body, len(header))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]float32{{1, -2.5, float32(math.Inf(1))}, {0.5, -3}} {
		got, err := req.Inputs[i].Float32s(nil)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("input %d: %v, %v; want %v", i, got, err, want)
		}
	}

	short := `{"inputs":[{"name":"a","shape":[3],"datatype":"BF16","parameters":{"binary_data_size":4}}]}`
	req, err = ParseRequest(append([]byte(short), 0, 0, 0, 0), len(short))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := req.Inputs[0].Float32s(nil); err == nil || err.Error() != `input "a": shape [3] of BF16 needs 6 bytes of binary data, got 4` {
		t.Errorf("short BF16 data: %v", err)
	}
}
