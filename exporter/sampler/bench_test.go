package sampler

import (
	"math/rand/v2"
	"testing"
	"time"
)

// losingRand costs what the default Rand costs but never wins a draw below 0.5.
func losingRand() float64 { return 0.5 + rand.Float64()/2 }

// BenchmarkDecideNoCapture is the request-path cost for almost every prediction: the default
// strategies, capture on, a confident prediction that matches close_call not at all and
// the random strategy only by its draw, which it loses. Target: ≤ 200 ns, 0 allocs.
func BenchmarkDecideNoCapture(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	s := mustNew(b, cfg, Options{Rand: losingRand})
	c := cand(0.95, 1)
	b.ReportAllocs()
	for b.Loop() {
		if s.Decide(c).Capture {
			b.Fatal("captured")
		}
	}
}

// BenchmarkDecideNoCaptureParallel is the same from every P at once: the considered counter
// is the one shared write.
func BenchmarkDecideNoCaptureParallel(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	s := mustNew(b, cfg, Options{Rand: losingRand})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := cand(0.95, 1)
		for pb.Next() {
			s.Decide(c)
		}
	})
}

// BenchmarkDecideCapture is the cost of a capture, for reference: a low-confidence 28×28
// image that passes every step, so it pays the content hash, the pHash and a scan of a full
// dedup ring (4096 entries, about 4000 of them inside the window), under no limits.
func BenchmarkDecideCapture(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.Limits, cfg.MaxBytesPerDay = nil, 0
	clk := newClock()
	s := mustNew(b, cfg, Options{Now: clk.Now, Rand: losingRand})
	const images = 4096
	cands := make([]*Candidate, images)
	for i := range cands {
		cands[i] = cand(0.3, uint64(i))
	}
	// Each image comes back after 4096 calls, 4096 × 150 ms = 614 s later: just past the
	// 10-minute window, so it is captured again after scanning ~4000 live entries.
	step := 150 * time.Millisecond
	captured := 0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(step)
		if s.Decide(cands[i%images]).Capture {
			captured++
		}
		i++
	}
	b.ReportMetric(float64(captured)/float64(i), "captured/op")
}

// BenchmarkDecideRateLimited is the cost during a drift flood, for reference: every
// prediction is low-confidence but the limits are spent, so each takes the clock and the
// capture lock once to be refused, and no input is hashed.
func BenchmarkDecideRateLimited(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Enabled = true
	s := mustNew(b, cfg, Options{Rand: losingRand})
	s.mu.Lock()
	for i := range s.overall {
		s.overall[i].capacity, s.overall[i].tokens = 0, 0
	}
	s.mu.Unlock()
	c := cand(0.3, 1)
	b.ReportAllocs()
	for b.Loop() {
		if d := s.Decide(c); d.Skipped != SkipRateLimit {
			b.Fatalf("%+v", d)
		}
	}
}
