package sender

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// BenchmarkEncodeBatch is the sender's cost of one default batch: 500 real Fashion-MNIST
// samples as the exporter captures them (float32 [1, 28, 28]) to a zstd-compressed tar. It
// reports the bytes per sample on the wire and the compression ratio, which size
// max_bytes_per_second and the collector's body limit.
func BenchmarkEncodeBatch(b *testing.B) {
	ds, err := fmnist.Load(testenv.FashionMNIST(b, fmnist.DefaultDir), fmnist.Test)
	if err != nil {
		b.Fatal(err)
	}
	items := make([]item, 500)
	for i := range items {
		var buf bytes.Buffer
		if err := npy.WriteFloat32(&buf, []int{1, 28, 28}, ds.Image(i)); err != nil {
			b.Fatal(err)
		}
		s, err := sample.New(sample.Meta{
			Model: "fashion", Version: "3", Node: "edge-0001", Time: t0.Add(time.Duration(i) * 37 * time.Millisecond),
			RequestID: fmt.Sprintf("req-%d", i), Prediction: int(ds.Labels[i]),
			Scores:     []float32{-1.52, 0.25, 0.013, 1.1e-3, -3.3, 2.05, 0.51, 4.75, -0.125, 1.0625},
			ScoresKind: sample.ScoresLogits,
			Confidence: map[string]float64{"max_softmax": 0.61, "margin": 0.27, "entropy": 1.13},
			Reason:     "low_confidence",
			Input:      sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
		}, buf.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		items[i] = item{seq: uint64(i + 1), s: s}
	}
	enc, err := sample.NewBatchEncoder(1)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	s := &Sender{enc: enc}
	body, err := s.encode(items)
	if err != nil {
		b.Fatal(err)
	}
	raw := s.tarBuf.Len()
	b.SetBytes(int64(raw))
	for b.Loop() {
		if _, err := s.encode(items); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop's start resets reported metrics.
	b.ReportMetric(float64(len(body))/500, "wire-bytes/sample")
	b.ReportMetric(float64(raw)/float64(len(body)), "ratio")
}
