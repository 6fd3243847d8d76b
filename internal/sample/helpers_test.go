package sample_test

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// fixedTime is the golden sample's prediction time.
var fixedTime = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// npyInput returns a 1×28×28 float32 array whose values depend on seed.
func npyInput(t testing.TB, seed int) []byte {
	t.Helper()
	data := make([]float32, 784)
	for i := range data {
		data[i] = float32((i*7+seed*13)%256) / 255
	}
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, []int{1, 28, 28}, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testMeta is a complete, valid metadata without key; seed varies it.
func testMeta(seed int) sample.Meta {
	return sample.Meta{
		Model:          "fashion",
		Version:        "3",
		Node:           "edge-0001",
		Time:           fixedTime.Add(time.Duration(seed) * time.Millisecond),
		RequestID:      "req-42",
		Prediction:     7,
		PredictedClass: "Sneaker",
		Scores:         []float32{-1.5, 0.25, 0, 1e-7, -3, 2, 0.5, 4.75, -0.125, 1},
		ScoresKind:     sample.ScoresLogits,
		Confidence:     map[string]float64{"max_softmax": 0.61, "margin": 0.27, "entropy": 1.13},
		Reason:         "low_confidence",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
		Input:          sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
	}
}

// newSample returns a valid sample; samples with different seeds have different keys.
func newSample(t testing.TB, seed int) *sample.Sample {
	t.Helper()
	s, err := sample.New(testMeta(seed), npyInput(t, seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// member is one file of a hand-made tar.
type member struct {
	name     string
	data     []byte
	typeflag byte // tar.TypeReg when 0
}

// rawTar writes members as a tar without any checks, for malformed batches.
func rawTar(t testing.TB, members ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: m.typeflag}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeSymlink {
			h.Linkname, h.Size = "elsewhere", 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// members returns s's two files as WriteTar names them, with metadata JSON json.
func members(t testing.TB, s *sample.Sample) []member {
	t.Helper()
	j, err := s.MetaJSON()
	if err != nil {
		t.Fatal(err)
	}
	return []member{{name: s.MetaName(), data: j}, {name: s.InputName(), data: s.Input}}
}

func writeTar(t testing.TB, samples ...*sample.Sample) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := sample.WriteTar(&b, samples); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
