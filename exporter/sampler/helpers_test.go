package sampler

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// t0 is the tests' start time: mid-morning UTC, so a day boundary is hours away.
var t0 = time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixedRand returns an Options.Rand that always draws v.
func fixedRand(v float64) func() float64 { return func() float64 { return v } }

// seqRand returns an Options.Rand that draws vs in turn, then fails the test.
func seqRand(t *testing.T, vs ...float64) func() float64 {
	var mu sync.Mutex
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if len(vs) == 0 {
			t.Error("more probability draws than expected")
			return 0.999
		}
		v := vs[0]
		vs = vs[1:]
		return v
	}
}

// enabled returns the defaults with capture on and the given strategies, no overall limits,
// no byte budget: each test adds what it exercises.
func enabled(strategies ...StrategyConfig) Config {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.Strategies = strategies
	cfg.Limits = nil
	cfg.MaxBytesPerDay = 0
	return cfg
}

func mustNew(t testing.TB, cfg Config, opts Options) *Sampler {
	t.Helper()
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scores returns Scores with all three confidences equal to conf.
func scores(conf float64) observe.Scores {
	return observe.Scores{MaxSoftmax: conf, Margin: conf, Entropy: conf}
}

// cand returns a candidate of model "fmnist" with confidence conf and a distinct image per
// seed, so dedup never interferes unless a test wants it to.
func cand(conf float64, seed uint64) *Candidate {
	return &Candidate{Model: "fmnist", Scores: scores(conf), Input: image(seed), Shape: []int64{784}, Size: 3200}
}

// image draws a 28×28 grey picture in [0, 1] that looks like a Fashion-MNIST item rather
// than white noise (which no perceptual hash is meant for): a centred silhouette of a random
// width profile with sharp edges, a shaded interior, a seam and a few stripes, on black.
// Each seed gives a different item.
func image(seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	img := make([]float32, 28*28)
	top, bottom := 2+r.IntN(6), 20+r.IntN(7)
	w0, w1 := 3+r.Float64()*9, 3+r.Float64()*9 // half-widths at top and bottom
	base := 0.4 + 0.5*r.Float64()
	shade := 0.3 * (r.Float64() - 0.5)
	seam := 10 + r.IntN(8)
	stripes := 2 + r.IntN(4)
	for y := top; y < bottom; y++ {
		f := float64(y-top) / float64(bottom-top)
		half := w0 + (w1-w0)*f + 2*math.Sin(f*math.Pi*float64(1+seed%3))
		for x := range 28 {
			if math.Abs(float64(x)-13.5) > half {
				continue
			}
			v := base + shade*(float64(x)-13.5)/14
			if y == seam {
				v *= 0.5
			}
			if (x/stripes)%2 == 0 && y > seam {
				v += 0.15
			}
			img[y*28+x] = float32(min(1, max(0, v)))
		}
	}
	return img
}

// noisy returns img with Gaussian noise of standard deviation sigma, clipped to [0, 1]: the
// next frame of a still scene.
func noisy(img []float32, sigma float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x401e))
	out := make([]float32, len(img))
	for i, v := range img {
		out[i] = float32(min(1, max(0, float64(v)+r.NormFloat64()*sigma)))
	}
	return out
}

// counter reads one counter child of a vector.
func counter(t *testing.T, v *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	c, err := v.GetMetricWithLabelValues(labels...)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.ToFloat64(c)
}
