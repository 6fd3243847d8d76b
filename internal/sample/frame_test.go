package sample

import (
	"bytes"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/npy"
)

// TestMarshalStoredInPlace checks that a sample ReadTar returned is encoded in front of its
// input, with the same bytes as a copy, and that a second encoding leaves the first intact.
func TestMarshalStoredInPlace(t *testing.T) {
	var in bytes.Buffer
	if err := npy.WriteFloat32(&in, []int{1, 4}, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	m := metaFixture()
	m.Prediction, m.Scores, m.Input.Shape = 1, []float32{0.2, 0.8}, []int64{1, 4}
	m.Time = time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC)
	orig, err := New(m, in.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want, err := orig.MarshalStored() // no frame: a copy
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := WriteTar(&tarball, []*Sample{orig}); err != nil {
		t.Fatal(err)
	}
	samples, rejected, err := ReadTar(&tarball, Limits{})
	if err != nil || len(rejected) > 0 || len(samples) != 1 {
		t.Fatalf("ReadTar: %v, %v, %d samples", err, rejected, len(samples))
	}
	s := samples[0]
	if s.frame == nil {
		t.Fatal("ReadTar left no room in front of the input")
	}
	first, err := s.MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	if &first[len(first)-1] != &s.Input[len(s.Input)-1] {
		t.Error("the record was copied, not written in front of the input")
	}
	if !bytes.Equal(first, want) {
		t.Fatalf("in place:\n%q\ncopied:\n%q", first, want)
	}
	kept := bytes.Clone(first)
	s.Meta.Label = IndexLabel(3)
	s.metaJSON = nil
	second, err := s.MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, kept) || bytes.Equal(second, first) {
		t.Fatal("a second MarshalStored wrote over the first record")
	}
	if st, err := ParseStored(first); err != nil || st.Entry.Key != orig.Meta.Key {
		t.Fatalf("ParseStored of the in-place record: %v", err)
	}
}
