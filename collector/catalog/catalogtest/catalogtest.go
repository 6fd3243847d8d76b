// Package catalogtest writes shards into a bucket as the collector's shard builder does, for
// tests of the catalog and of what reads through it.
package catalogtest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Base is the prediction time of Sample(…, 0).
var Base = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

// Sample returns a valid sample of model and version with a 1×28×28 float32 input; samples
// with different seeds have different keys. It is predicted at Base plus seed seconds, as
// class pred ("Coat" for 4, else its index), kept for reason.
func Sample(t testing.TB, model, version, reason string, pred, seed int) *sample.Sample {
	t.Helper()
	return SampleOf(t, model, version, reason, pred, seed, "edge-0001", "")
}

// SampleOf is Sample made on node from the request with id requestID ("" for none).
func SampleOf(t testing.TB, model, version, reason string, pred, seed int, node, requestID string) *sample.Sample {
	t.Helper()
	data := make([]float32, 784)
	for i := range data {
		data[i] = float32((i*7+seed*13)%256) / 255
	}
	var in bytes.Buffer
	if err := npy.WriteFloat32(&in, []int{1, 28, 28}, data); err != nil {
		t.Fatal(err)
	}
	class := ""
	if pred == 4 {
		class = "Coat"
	}
	s, err := sample.New(sample.Meta{
		Model: model, Version: version, Node: node, RequestID: requestID,
		Time:       Base.Add(time.Duration(seed) * time.Second),
		Prediction: pred, PredictedClass: class,
		Scores:     []float32{0.1, 0.2, 0.3, 0.4, 0.9, 0, 0, 0, 0, 0},
		ScoresKind: sample.ScoresProbabilities,
		Confidence: map[string]float64{"max_softmax": 0.42},
		Reason:     reason,
		Input:      sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
	}, in.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PutShard uploads samples as the shard key (ending in ".tar") and its index, tar first, and
// returns the index entries.
func PutShard(t testing.TB, b objstore.Bucket, key string, samples []*sample.Sample) []sample.IndexEntry {
	t.Helper()
	ctx := context.Background()
	var tarBuf, index bytes.Buffer
	if err := sample.WriteTar(&tarBuf, samples); err != nil {
		t.Fatal(err)
	}
	entries := make([]sample.IndexEntry, len(samples))
	for i, s := range samples {
		entries[i] = s.Index()
		line, err := json.Marshal(entries[i])
		if err != nil {
			t.Fatal(err)
		}
		index.Write(append(line, '\n'))
	}
	if err := b.Put(ctx, key, bytes.NewReader(tarBuf.Bytes()), int64(tarBuf.Len())); err != nil {
		t.Fatal(err)
	}
	ikey := key[:len(key)-len(".tar")] + ".index.jsonl"
	if err := b.Put(ctx, ikey, bytes.NewReader(index.Bytes()), int64(index.Len())); err != nil {
		t.Fatal(err)
	}
	return entries
}
