package dataset_test

import (
	"bytes"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
)

// FuzzReadShard feeds hostile shards through everything ReadLabelled does with one: it must
// never panic, and whatever it accepts must fit the spec.
func FuzzReadShard(f *testing.F) {
	var good bytes.Buffer
	writeTarTo(f, &good, append(pair("k1", 3, f32npy(f, []int{1, 2, 2}, []float32{0, 0.5, 1, 0.25})), pair("k2", "b", npyFile("|u1", []int{2, 2}, []byte{0, 1, 2, 255}))...)...)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:700])
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	spec := dataset.Spec{Shape: []int64{1, 2, 2}, Datatype: "FP32", Classes: []string{"a", "b", "c", "d"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, err := dataset.ReadShard(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, s := range samples {
			raw, err := s.OwnLabel()
			if err == nil && len(raw) > 0 {
				if l, err := dataset.ParseLabel(raw, spec.Classes); err == nil && (l < 0 || l >= 4) {
					t.Fatalf("label %d accepted", l)
				}
			}
			if v, err := dataset.DecodeInput(s.NPY, spec); err == nil && len(v) != 4 {
				t.Fatalf("%d values accepted for a width of 4", len(v))
			}
		}
	})
}
