package sample_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// fashionSamples returns n samples of real Fashion-MNIST test images, as the exporter captures
// them (float32 [1, 28, 28], 10 logits), so that sizes and costs are the demo's.
func fashionSamples(b *testing.B, n int) []*sample.Sample {
	b.Helper()
	ds, err := fmnist.Load(testenv.FashionMNIST(b, fmnist.DefaultDir), fmnist.Test)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]*sample.Sample, n)
	for i := range out {
		var buf bytes.Buffer
		if err := npy.WriteFloat32(&buf, []int{1, 28, 28}, ds.Image(i)); err != nil {
			b.Fatal(err)
		}
		m := testMeta(i)
		m.Prediction = int(ds.Labels[i])
		m.RequestID = fmt.Sprintf("req-%d", i)
		m.Time = fixedTime.Add(time.Duration(i) * 37 * time.Millisecond)
		if out[i], err = sample.New(m, buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func BenchmarkKey(b *testing.B) {
	s := fashionSamples(b, 1)[0]
	b.SetBytes(int64(len(s.Input)))
	for b.Loop() {
		sample.Key(s.Meta, s.Input)
	}
}

func BenchmarkValidate(b *testing.B) {
	s := fashionSamples(b, 1)[0]
	for b.Loop() {
		if err := s.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalRecord(b *testing.B) {
	s := fashionSamples(b, 1)[0]
	for b.Loop() {
		if _, err := s.MarshalRecord(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalRecord(b *testing.B) {
	rec, err := fashionSamples(b, 1)[0].MarshalRecord()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := sample.UnmarshalRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteTar and BenchmarkReadTar are one default-size batch (500 samples) each way:
// the sender's and the collector's cost per batch, before compression.
func BenchmarkWriteTar(b *testing.B) {
	samples := fashionSamples(b, 500)
	var buf bytes.Buffer
	if err := sample.WriteTar(&buf, samples); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if err := sample.WriteTar(io.Discard, samples); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/500, "tar-bytes/sample") // after the loop, which resets metrics
}

func BenchmarkReadTar(b *testing.B) {
	var buf bytes.Buffer
	if err := sample.WriteTar(&buf, fashionSamples(b, 500)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		got, rejected, err := sample.ReadTar(bytes.NewReader(buf.Bytes()), sample.Limits{})
		if err != nil || len(rejected) > 0 || len(got) != 500 {
			b.Fatal(err, rejected)
		}
	}
}

// storedRecords returns n Fashion-MNIST samples as the collector's write-ahead log holds them.
func storedRecords(b *testing.B, n int) [][]byte {
	b.Helper()
	recs := make([][]byte, n)
	for i, s := range fashionSamples(b, n) {
		rec, err := s.MarshalStored()
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = rec
	}
	return recs
}

// BenchmarkParseStored is the shard builder's cost per sample read back from the log.
func BenchmarkParseStored(b *testing.B) {
	rec := storedRecords(b, 1)[0]
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := sample.ParseStored(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteStoredTar is the shard builder writing a tar of 500 stored samples.
func BenchmarkWriteStoredTar(b *testing.B) {
	var stored []*sample.Stored
	for _, rec := range storedRecords(b, 500) {
		st, err := sample.ParseStored(rec)
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, st)
	}
	var buf bytes.Buffer
	if err := writeStoredTar(&buf, stored); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if err := writeStoredTar(io.Discard, stored); err != nil {
			b.Fatal(err)
		}
	}
}

// writeStoredTar writes stored samples with a StoredTarWriter, as the shard builder does.
func writeStoredTar(w io.Writer, stored []*sample.Stored) error {
	tw := sample.NewStoredTarWriter(w)
	for _, s := range stored {
		if err := tw.Write(&s.Entry, s.Meta, s.Input); err != nil {
			return err
		}
	}
	return tw.Close()
}
