package observe

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// benchLogits is one prediction of a 10-class model, with the spread of a trained classifier.
var benchLogits = []float32{-1.2, 0.3, 4.1, -2.0, 0.9, 1.7, -0.4, 2.2, -3.1, 0.05}

// BenchmarkObserve is one request through the core: batch 1, 10 classes, logits, no span.
func BenchmarkObserve(b *testing.B) {
	benchmarkObserve(b, benchLogits)
}

// BenchmarkObserveBatch32 is one request carrying a batch of 32 such predictions.
func BenchmarkObserveBatch32(b *testing.B) {
	batch := make([]float32, 0, 32*len(benchLogits))
	for i := range 32 {
		for j, z := range benchLogits {
			batch = append(batch, z+float32((i*j)%5)) // vary the winner and the confidence
		}
	}
	benchmarkObserve(b, batch)
}

func benchmarkObserve(b *testing.B, scores []float32) {
	c, err := New(prometheus.NewRegistry(), DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, err := c.Model(ModelSpec{
		Name: "bench", Version: "1", Output: Logits,
		Classes: []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	o := Observation{Latency: 3 * time.Millisecond, Outcome: OutcomeSuccess, Scores: scores}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, o)
	}
}

// BenchmarkObserveCalibrated is BenchmarkObserve for a version with a fitted temperature:
// the estimated accuracy's calibrated top-1 probability costs one exponential per class.
func BenchmarkObserveCalibrated(b *testing.B) {
	benchmarkObserveWith(b, benchLogits, func(cfg *Config, spec *ModelSpec) { spec.Temperature = 1.5 })
}

// BenchmarkObserveClassMix is BenchmarkObserve with the class-mix signal on.
func BenchmarkObserveClassMix(b *testing.B) {
	benchmarkObserveWith(b, benchLogits, func(cfg *Config, spec *ModelSpec) {
		cfg.Drift.Signals.ClassMix = true
		spec.DriftReference = benchReference(b)
	})
}

// BenchmarkObserveInput is BenchmarkObserve with the input signals on, for a Fashion-MNIST
// sized input (1×28×28) and 4 projections: the per-request cost of the input statistics.
func BenchmarkObserveInput(b *testing.B) {
	benchmarkObserveWith(b, benchLogits, func(cfg *Config, spec *ModelSpec) {
		cfg.Drift.Signals.Input = true
		spec.DriftReference = benchReference(b)
	})
}

// BenchmarkObserveEmbedding is BenchmarkObserve with the embedding signal on, for the
// reference MLP's 128-wide embedding projected to 32 values: the per-request cost of
// projecting a row and writing it into the window.
func BenchmarkObserveEmbedding(b *testing.B) {
	ref := benchEmbeddingReference(b, 128)
	emb := make([]float32, 128)
	for i := range emb {
		emb[i] = float32(i%13) / 13
	}
	benchmarkObserveWith(b, benchLogits, func(cfg *Config, spec *ModelSpec) {
		cfg.Drift.Signals.Embedding = true
		spec.DriftReference = &modelrepo.DriftReference{Embedding: ref}
	}, emb...)
}

// BenchmarkEmbeddingDistance is the scrape's cost of the embedding signal: the MMD of a full
// window against the gate's 256 reference points of 32 values, per window size.
func BenchmarkEmbeddingDistance(b *testing.B) {
	ref := benchEmbeddingReference(b, 128)
	for _, window := range []int{256, 1024} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			d, err := newEmbeddingDrift(window, ref)
			if err != nil {
				b.Fatal(err)
			}
			for i := range d.ring {
				d.ring[i] = float32(i%29) / 29
			}
			d.filled = window
			b.ReportAllocs()
			for b.Loop() {
				d.added++ // a new embedding since the last scrape: no cached value
				changed, _ := d.snapshot()
				_ = d.distance(changed)
			}
		})
	}
}

// benchEmbeddingReference is an embedding reference of width values, 256 points.
func benchEmbeddingReference(b *testing.B, width int) *modelrepo.EmbeddingReference {
	emb := make([]float32, 2000*width)
	for i := range emb {
		emb[i] = float32(i%37) / 37
	}
	ref, err := modelrepo.ComputeEmbeddingReference(emb, width, 1, 256)
	if err != nil {
		b.Fatal(err)
	}
	return ref
}

// BenchmarkObserveAllSignals has every signal on and a temperature.
func BenchmarkObserveAllSignals(b *testing.B) {
	benchmarkObserveWith(b, benchLogits, func(cfg *Config, spec *ModelSpec) {
		cfg.Drift.Signals = Signals{ClassMix: true, Input: true}
		spec.DriftReference = benchReference(b)
		spec.Temperature = 1.5
	})
}

// benchReference is a drift reference for 10 classes and 1×28×28 inputs.
func benchReference(b *testing.B) *modelrepo.DriftReference {
	in := make([]float32, 500*784)
	for i := range in {
		in[i] = float32(i%251) / 251
	}
	ir, err := modelrepo.ComputeInputReference(in, 784, 1, 1, 4, 10)
	if err != nil {
		b.Fatal(err)
	}
	return &modelrepo.DriftReference{ClassMix: []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Input: ir, Samples: 500}
}

func benchmarkObserveWith(b *testing.B, scores []float32, setup func(*Config, *ModelSpec), embedding ...float32) {
	cfg := DefaultConfig()
	spec := ModelSpec{
		Name: "bench", Version: "1", Output: Logits, InputShape: []int64{1, 28, 28},
		Classes: []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"},
	}
	setup(&cfg, &spec)
	c, err := New(prometheus.NewRegistry(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := c.Model(spec)
	if err != nil {
		b.Fatal(err)
	}
	input := make([]float32, 784)
	for i := range input {
		input[i] = float32(i%17) / 17
	}
	ctx := context.Background()
	o := Observation{Latency: 3 * time.Millisecond, Outcome: OutcomeSuccess, Scores: scores, Input: input, Embedding: embedding}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(ctx, o)
	}
}

// BenchmarkRawClientGolang is the floor Observe is measured against: the two histogram
// observations any hand-written instrumentation of latency and confidence makes, on cached
// children of client_golang histograms with the core's buckets and native histogram settings,
// with the confidence already known.
func BenchmarkRawClientGolang(b *testing.B) {
	latencyVec, confidenceVec := rawHistograms()
	latency := latencyVec.WithLabelValues("bench", "1")
	confidence := confidenceVec.WithLabelValues("bench", "1")
	sec := (3 * time.Millisecond).Seconds()
	b.ReportAllocs()
	for b.Loop() {
		latency.Observe(sec)
		confidence.Observe(0.8046)
	}
}

// rawHistograms returns client_golang histogram vectors configured as the core's latency and
// confidence histograms.
func rawHistograms() (latency, confidence *prometheus.HistogramVec) {
	mv := []string{"model", "version"}
	latency = prometheus.NewHistogramVec(latencyOpts("raw_latency_seconds", "Raw latency."), mv)
	bounds := confidenceBuckets()
	confidence = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "raw_confidence",
		Help:                            "Raw confidence.",
		Buckets:                         bounds[:],
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramZeroThreshold:    confZeroThreshold,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: nativeMinReset,
	}, mv)
	return latency, confidence
}
