package onnx

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic, and whatever it accepts must
// survive Encode and a second Decode unchanged: the bytes of the two encodings are compared
// (not the structs, so NaN payloads compare equal).
func FuzzDecode(f *testing.F) {
	full, err := Encode(sampleModel())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add(tinyGraphFixture())
	f.Add([]byte{})
	f.Add([]byte("version https://git-lfs.github.com/spec/v1\n"))
	f.Add(withTensor([]byte{0x08, 0x02, 0x10, 0x07}, ld(0x3a, []byte{0x7f, 0x02})))
	f.Add(withGraph(ld(0x0a, str(0x22, "If"), ld(0x2a, str(0x0a, "g"), ld(0x32), []byte{0xa0, 0x01, 0x05}))))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("Decode accepted a model that Encode refuses: %v", err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode refuses what Encode wrote: %v", err)
		}
		enc2, err := Encode(m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatal("decode(encode(m)) differs from m")
		}
	})
}
