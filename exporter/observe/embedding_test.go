package observe

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// embeddingRows returns n embeddings of width values drawn from N(shift, 1).
func embeddingRows(rng *rand.Rand, n, width int, shift float64) []float32 {
	v := make([]float32, n*width)
	for i := range v {
		v[i] = float32(shift + rng.NormFloat64())
	}
	return v
}

// TestEmbeddingSignal drives windows of embeddings from the reference's distribution and
// from shifted ones through Observe, unprojected and projected, and reads
// the exported gauge: absent until the window is full, about 0 without drift, growing with
// the shift, and the same as Drift reports.
func TestEmbeddingSignal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	// 16: compared as they are; 100: projected at scrape time; 6000: projected on the request
	// path (200 raw rows of 6000 would pass maxRawEmbeddingValues).
	for _, width := range []int{16, 100, 6000} {
		ref, err := modelrepo.ComputeEmbeddingReference(embeddingRows(rng, 300, width, 0), width, 3, 256)
		if err != nil {
			t.Fatal(err)
		}
		dref := &modelrepo.DriftReference{Embedding: ref}
		var last float64
		for _, shift := range []float64{0, 0.3, 1} {
			cfg := driftConfig(10, 20, 10)
			cfg.Drift.Signals = Signals{Embedding: true, EmbeddingWindow: 200}
			reg, _, m := newTestModel(t, cfg, signalsSpec(dref))
			if m.embedding == nil || m.classMix != nil || m.input != nil {
				t.Fatalf("kept embedding %v, class mix %v, input %v; want only the embedding", m.embedding != nil, m.classMix != nil, m.input != nil)
			}
			if raw := m.embedding.raw; raw != (width == 100) {
				t.Fatalf("width %d: raw ring %v", width, raw)
			}
			emb := embeddingRows(rng, 200, width, shift)
			// Batches of 4 rows: 4 predictions and 4 embeddings a request.
			scores := []float32{0.7, 0.2, 0.1, 0.7, 0.2, 0.1, 0.7, 0.2, 0.1, 0.7, 0.2, 0.1}
			for i := 0; i < 200; i += 4 {
				if _, ok := gauge(t, reg, "edgeloop_embedding_mmd", "1"); ok {
					t.Fatalf("width %d: exported after %d of 200 embeddings", width, i)
				}
				m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: scores, Embedding: emb[i*width : (i+4)*width]})
			}
			got, ok := gauge(t, reg, "edgeloop_embedding_mmd", "1")
			if !ok {
				t.Fatalf("width %d shift %v: not exported with a full window", width, shift)
			}
			if d := m.Drift().EmbeddingMMD; math.Abs(d-got) > 1e-12 {
				t.Errorf("width %d shift %v: Drift says %v, the gauge %v", width, shift, d, got)
			}
			if again, _ := gauge(t, reg, "edgeloop_embedding_mmd", "1"); again != got {
				t.Errorf("width %d shift %v: second scrape %v, first %v", width, shift, again, got)
			}
			t.Logf("width %d shift %.1f: MMD %.4f", width, shift, got)
			switch {
			case shift == 0 && got > 0.08:
				t.Errorf("width %d: no drift reads %v, want near 0", width, got)
			case shift > 0 && got <= last:
				t.Errorf("width %d: shift %v reads %v, not above the smaller shift's %v", width, shift, got, last)
			}
			last = got
		}
		if last < 0.3 {
			t.Errorf("width %d: a shift of one standard deviation reads only %v", width, last)
		}
	}
}

// TestEmbeddingSignalIgnoresMisfits: rows of another width, or none, leave the window as it
// was, and the signal stays absent when off or without a reference.
func TestEmbeddingSignalIgnoresMisfits(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ref, err := modelrepo.ComputeEmbeddingReference(embeddingRows(rng, 100, 8, 0), 8, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	cfg := driftConfig(10, 20, 10)
	cfg.Drift.Signals = Signals{Embedding: true, EmbeddingWindow: 10}
	_, _, m := newTestModel(t, cfg, signalsSpec(&modelrepo.DriftReference{Embedding: ref}))
	row := []float32{0.7, 0.2, 0.1}
	for _, e := range [][]float32{nil, make([]float32, 7), make([]float32, 12)} {
		m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: row, Embedding: e})
	}
	if m.embedding.added != 0 {
		t.Fatalf("%d misfit embeddings were added", m.embedding.added)
	}
	for _, tc := range []struct {
		name string
		sig  Signals
		ref  *modelrepo.DriftReference
	}{
		{"off", Signals{ClassMix: true}, &modelrepo.DriftReference{Embedding: ref}},
		{"without reference", Signals{Embedding: true}, &modelrepo.DriftReference{ClassMix: []float64{1, 1, 1}}},
	} {
		cfg.Drift.Signals = tc.sig
		_, _, m := newTestModel(t, cfg, signalsSpec(tc.ref))
		if m.embedding != nil {
			t.Errorf("%s: the embedding window is kept", tc.name)
		}
		if d := m.Drift().EmbeddingMMD; !math.IsNaN(d) {
			t.Errorf("%s: Drift reports %v, want NaN", tc.name, d)
		}
	}
}
