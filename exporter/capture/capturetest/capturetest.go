// Package capturetest builds what tests of the capture pipeline need: a configuration that
// captures every prediction and ships it quickly, and numbered predictions that all differ.
package capturetest

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/capture"
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/sampler"
)

// Config captures every prediction (a random strategy at probability 1, no limits, no
// near-duplicate suppression) into a spool under dir, sending to url with the bearer token
// in tokenFile, in small batches with short backoffs and no rate limit to speak of.
func Config(t testing.TB, dir, url, tokenFile string) capture.Config {
	t.Helper()
	cfg := capture.DefaultConfig()
	one := 1.0
	cfg.Sampler.Enabled = true
	cfg.Sampler.Strategies = []sampler.StrategyConfig{{Name: "everything", Type: "random", Probability: &one}}
	cfg.Sampler.Limits = nil
	cfg.Sampler.MaxBytesPerDay = 1 << 40
	cfg.Sampler.Dedup.Enabled = false
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Spool.SyncInterval = 20 * time.Millisecond
	cfg.Sender.URL = url
	cfg.Sender.TokenFile = tokenFile
	cfg.Sender.BatchDelay = 0
	cfg.Sender.MaxBatchSamples = 50
	cfg.Sender.InitialBackoff = 10 * time.Millisecond
	cfg.Sender.MaxBackoff = 50 * time.Millisecond
	cfg.Sender.MaxRate = 100000
	cfg.Sender.MaxBytesPerSecond = 1 << 30
	cfg.Sender.DeadLetterDir = filepath.Join(dir, "deadletter")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Prediction is a one-row request numbered n (its request id): its input encodes n, so every
// sample differs.
func Prediction(n int) *infer.Prediction {
	in := make([]float32, 16)
	for i := range in {
		in[i] = float32((n>>(i%8))&1) + float32(i)/100
	}
	in[0] = float32(n)
	return &infer.Prediction{
		Model: "fashion", Version: "1", RequestID: strconv.Itoa(n), Classes: []string{"a", "b", "c"},
		Kind: observe.Logits, Scores: []float32{0.2, 0.1, 0.3},
		Input: infer.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{1, 16}, Data: in},
	}
}
