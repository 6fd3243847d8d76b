// Package collectortest makes what the collector's tests and benchmarks send: valid samples of
// a chosen size, batches as a sender encodes them, and token files.
package collectortest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/token"
)

// BaseTime is the prediction time of Sample(…, 0, …).
var BaseTime = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

// Sample returns a valid sample of node numbered n whose .npy input is about inputBytes long
// (at least 1 float32). Different (node, n) give different keys; the time is BaseTime plus n
// milliseconds, so shards group them by hour.
func Sample(t testing.TB, node string, n, inputBytes int) *sample.Sample {
	t.Helper()
	s, err := NewSample(node, n, inputBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TracedSample is Sample captured in the trace traceID (32 hex digits): its metadata's
// trace_id, as an exporter records a sampled request's.
func TracedSample(t testing.TB, node string, n, inputBytes int, traceID string) *sample.Sample {
	t.Helper()
	s, err := newSample(node, n, inputBytes, traceID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewSample is Sample without a testing.TB, for benchmarks' helpers and child processes.
func NewSample(node string, n, inputBytes int) (*sample.Sample, error) {
	return newSample(node, n, inputBytes, "")
}

func newSample(node string, n, inputBytes int, traceID string) (*sample.Sample, error) {
	vals := max(1, (inputBytes-128)/4)
	data := make([]float32, vals)
	for i := range data {
		data[i] = float32((i*31+n*7)%997) / 997
	}
	data[0] = float32(n)
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, []int{1, vals}, data); err != nil {
		return nil, err
	}
	return sample.New(sample.Meta{
		Model: "fashion", Version: "3", Node: node, Time: BaseTime.Add(time.Duration(n) * time.Millisecond),
		RequestID: fmt.Sprintf("req-%d", n), Prediction: 1, Scores: []float32{0.1, 0.7, 0.2},
		ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.7},
		Reason: "low_confidence", TraceID: traceID, Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, int64(vals)}, File: sample.NPYFile},
	}, b.Bytes())
}

// Tar returns samples as an uncompressed batch.
func Tar(t testing.TB, samples ...*sample.Sample) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := sample.WriteTar(&b, samples); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Zstd compresses b as a sender does.
func Zstd(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := sample.NewBatchEncoder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// TokensFile writes a tokens file binding each node to the token "token-<node>" and returns its
// path.
func TokensFile(t testing.TB, dir string, nodes ...string) string {
	t.Helper()
	path := filepath.Join(dir, "tokens")
	WriteTokens(t, path, nodes...)
	return path
}

// WriteTokens (re)writes the tokens file at path for nodes.
func WriteTokens(t testing.TB, path string, nodes ...string) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# test tokens\n")
	for _, n := range nodes {
		b.WriteString(token.HashLine(n, Token(n)) + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Token is the token TokensFile gives node.
func Token(node string) string { return "token-" + node }
