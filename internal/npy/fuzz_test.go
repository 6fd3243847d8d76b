package npy

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read and Check (seeds: testdata/fuzz/FuzzRead, arrays
// numpy 1.x wrote: every dtype Read takes, big-endian, format versions 1 to 3, a scalar, an
// empty array, Fortran order, NaN and infinities, and an int32 array it refuses). Neither may
// panic; they must agree on what they accept and what it is; an accepted array holds exactly
// the values its shape calls for, and written back with WriteFloat32 it reads back the same.
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Read(bytes.NewReader(data))
		c, cerr := Check(bytes.NewReader(data))
		if (err == nil) != (cerr == nil) {
			t.Fatalf("Read and Check disagree: %v / %v", err, cerr)
		}
		if err != nil {
			return
		}
		if c.Descr != a.Descr || !slices.Equal(c.Shape, a.Shape) || c.Data != nil {
			t.Fatalf("Check says %s %v (data %v), Read %s %v", c.Descr, c.Shape, c.Data != nil, a.Descr, a.Shape)
		}
		if len(a.Shape) > MaxRank {
			t.Fatalf("rank %d above MaxRank", len(a.Shape))
		}
		n := a.Elements()
		if n < 0 || n > MaxElements || len(a.Data) != n {
			t.Fatalf("shape %v: %d elements, %d values", a.Shape, n, len(a.Data))
		}
		var b bytes.Buffer
		if err := WriteFloat32(&b, a.Shape, a.Data); err != nil {
			t.Fatalf("WriteFloat32 refuses what Read returned: %v", err)
		}
		again, err := Read(&b)
		if err != nil {
			t.Fatalf("Read refuses what WriteFloat32 wrote: %v", err)
		}
		if again.Descr != "<f4" || !slices.Equal(again.Shape, a.Shape) || len(again.Data) != len(a.Data) {
			t.Fatalf("round trip: %s %v, want <f4 %v", again.Descr, again.Shape, a.Shape)
		}
		for i := range a.Data {
			if math.Float32bits(again.Data[i]) != math.Float32bits(a.Data[i]) {
				t.Fatalf("value %d: %v, want %v", i, again.Data[i], a.Data[i])
			}
		}
	})
}
