package observe

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

// Rows of a 3-class probability output whose max-softmax confidence lands in a known bin:
// low (0.4) in the lower half of [0, 1], high (0.9) in the upper half.
var (
	lowRow  = []float32{0.4, 0.3, 0.3}
	highRow = []float32{0.05, 0.9, 0.05}
)

// newTestModel returns a core on its own registry with one loaded 3-class model.
func newTestModel(t *testing.T, cfg Config, spec ModelSpec) (*prometheus.Registry, *Core, *Model) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name == "" {
		spec.Name, spec.Version = "fmnist", "1"
	}
	if spec.Classes == nil {
		spec.Classes = []string{"shirt", "bag", "boot"}
	}
	if spec.Output == 0 {
		spec.Output = Probabilities
	}
	m, err := c.Model(spec)
	if err != nil {
		t.Fatal(err)
	}
	return reg, c, m
}

func driftConfig(bins, window, referenceSamples int) Config {
	cfg := DefaultConfig()
	cfg.Drift = DriftConfig{Bins: bins, Window: window, ReferenceSamples: referenceSamples}
	return cfg
}

// observeN sends n single-row requests.
func observeN(m *Model, n int, row []float32) {
	for range n {
		m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: row})
	}
}

// gauge returns the value of the named gauge for version, and whether it is exported at all.
func gauge(t *testing.T, g prometheus.Gatherer, name, version string) (float64, bool) {
	t.Helper()
	return testenv.MetricValue(t, g, name, map[string]string{"version": version})
}

// TestPSIKnown drives the real Observe path into windows whose PSI against the reference is
// known in closed form, and reads the PSI back from the exported gauge.
func TestPSIKnown(t *testing.T) {
	const eps = 1e-4 // the documented ε, spelled out so that a change to PSIEpsilon fails here
	tests := []struct {
		name      string
		bins      int
		reference []float64
		low, high int // predictions per window of 100
		want      float64
	}{
		{"uniform vs 0.25/0.75", 2, []float64{0.5, 0.5}, 25, 75,
			(0.25-0.5)*math.Log(0.25/0.5) + (0.75-0.5)*math.Log(0.75/0.5)},
		{"identical", 2, []float64{0.5, 0.5}, 50, 50, 0},
		// the manifest may give counts: [1, 3] is the distribution (0.25, 0.75)
		{"reference as counts", 2, []float64{1, 3}, 75, 25,
			(0.75-0.25)*math.Log(0.75/0.25) + (0.25-0.75)*math.Log(0.25/0.75)},
		// an empty window bin is raised to ε: (ε − 0.5)·ln(ε/0.5) + (1 − 0.5)·ln(1/0.5)
		{"empty window bin", 2, []float64{0.5, 0.5}, 0, 100,
			(eps-0.5)*math.Log(eps/0.5) + (1-0.5)*math.Log(1/0.5)},
		// bins empty on both sides add (ε − ε)·ln 1 = 0: same PSI as the first case
		{"bins empty on both sides", 4, []float64{0, 0.5, 0, 0.5}, 25, 75,
			(0.25-0.5)*math.Log(0.25/0.5) + (0.75-0.5)*math.Log(0.75/0.5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, _, m := newTestModel(t, driftConfig(tt.bins, 100, 1000), ModelSpec{Reference: tt.reference})
			observeN(m, tt.low, lowRow)
			observeN(m, tt.high, highRow)
			got, ok := gauge(t, reg, "edgeloop_confidence_psi", "1")
			if !ok {
				t.Fatal("edgeloop_confidence_psi absent with a full window and a reference")
			}
			if math.Abs(got-tt.want) > 1e-12 {
				t.Fatalf("PSI = %.15f, want %.15f", got, tt.want)
			}
			if st := m.Drift(); st.PSI != got {
				t.Errorf("Drift().PSI = %v, gauge %v", st.PSI, got)
			}
		})
	}
}

// TestPSIAbsentUntilWindowFull: a window one short of full exports no PSI (and no accuracy);
// the next prediction makes both appear.
func TestPSIAbsentUntilWindowFull(t *testing.T) {
	reg, _, m := newTestModel(t, driftConfig(2, 20, 1000), ModelSpec{Reference: []float64{0.5, 0.5}})
	observeN(m, 19, highRow)
	for _, name := range []string{"edgeloop_confidence_psi", "edgeloop_estimated_accuracy"} {
		if v, ok := gauge(t, reg, name, "1"); ok {
			t.Errorf("%s = %v with 19 of 20 predictions; want absent", name, v)
		}
	}
	if st := m.Drift(); !math.IsNaN(st.PSI) || !math.IsNaN(st.EstimatedAccuracy) || st.WindowCount != 19 {
		t.Errorf("Drift() = %+v, want NaN signals and 19 predictions", st)
	}
	observeN(m, 1, highRow)
	for _, name := range []string{"edgeloop_confidence_psi", "edgeloop_estimated_accuracy"} {
		if _, ok := gauge(t, reg, name, "1"); !ok {
			t.Errorf("%s absent with a full window", name)
		}
	}
}

// TestReferenceLearned: without a manifest reference, the first reference_samples predictions
// become the reference, and later ones only move the window.
func TestReferenceLearned(t *testing.T) {
	reg, _, m := newTestModel(t, driftConfig(2, 20, 40), ModelSpec{})
	observeN(m, 30, lowRow)
	st := m.Drift()
	if st.Reference != nil || st.ReferenceRemaining != 10 {
		t.Fatalf("after 30 of 40: Reference = %v, remaining %d; want nil, 10", st.Reference, st.ReferenceRemaining)
	}
	if _, ok := gauge(t, reg, "edgeloop_confidence_psi", "1"); ok {
		t.Fatal("PSI exported before the reference was learned")
	}
	observeN(m, 10, highRow)
	st = m.Drift()
	if !equalFloats(st.Reference, []float64{0.75, 0.25}) || st.ReferenceRemaining != 0 {
		t.Fatalf("learned reference = %v (remaining %d), want [0.75 0.25]", st.Reference, st.ReferenceRemaining)
	}
	// The window holds the last 20: 10 low, 10 high.
	want := (0.5-0.75)*math.Log(0.5/0.75) + (0.5-0.25)*math.Log(0.5/0.25)
	if got, _ := gauge(t, reg, "edgeloop_confidence_psi", "1"); math.Abs(got-want) > 1e-12 {
		t.Fatalf("PSI = %v, want %v", got, want)
	}
	observeN(m, 20, highRow)
	st = m.Drift()
	if !equalFloats(st.Reference, []float64{0.75, 0.25}) {
		t.Fatalf("reference moved after learning: %v", st.Reference)
	}
	const eps = 1e-4
	want = (eps-0.75)*math.Log(eps/0.75) + (1-0.25)*math.Log(1/0.25)
	if math.Abs(st.PSI-want) > 1e-12 {
		t.Fatalf("PSI = %v, want %v", st.PSI, want)
	}
}

// TestWindowSlides: the window keeps exactly the last `window` predictions.
func TestWindowSlides(t *testing.T) {
	_, _, m := newTestModel(t, driftConfig(2, 10, 1000), ModelSpec{})
	steps := []struct {
		n          int
		row        []float32
		wantWindow []float64
		wantCount  int
	}{
		{4, lowRow, []float64{1, 0}, 4},
		{6, lowRow, []float64{1, 0}, 10},
		{4, highRow, []float64{0.6, 0.4}, 10},
		{5, highRow, []float64{0.1, 0.9}, 10},
		{1, highRow, []float64{0, 1}, 10},
		{3, lowRow, []float64{0.3, 0.7}, 10},
	}
	for i, s := range steps {
		observeN(m, s.n, s.row)
		st := m.Drift()
		if st.WindowCount != s.wantCount || !equalFloats(st.Window, s.wantWindow) {
			t.Fatalf("step %d: window %v of %d, want %v of %d", i, st.Window, st.WindowCount, s.wantWindow, s.wantCount)
		}
	}
}

// TestEstimatedAccuracy: the gauge is the mean top-1 probability of the rows in the window,
// even when the configured scorer is another one, and stays exact over a long stream (the
// running sum is integer fixed point, so adding and evicting never accumulates error).
func TestEstimatedAccuracy(t *testing.T) {
	for _, scorer := range []Scorer{MaxSoftmax, Margin, Entropy} {
		t.Run(string(scorer), func(t *testing.T) {
			cfg := driftConfig(10, 100, 1000)
			cfg.Scorer = scorer
			reg, _, m := newTestModel(t, cfg, ModelSpec{Output: Logits})
			rng := rand.New(rand.NewPCG(3, 4))
			var top1 []float64
			for i := range 30_000 {
				row := []float32{float32(rng.NormFloat64() * 3), float32(rng.NormFloat64() * 3), float32(rng.NormFloat64())}
				if i%1000 == 999 {
					row[1] = float32(math.NaN()) // not scored: must not enter the window
				}
				m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: row})
				if s, err := Score(row, Logits); err == nil {
					top1 = append(top1, s.MaxSoftmax)
				}
			}
			var want float64
			for _, p := range top1[len(top1)-100:] {
				want += p
			}
			want /= 100
			got, ok := gauge(t, reg, "edgeloop_estimated_accuracy", "1")
			if !ok || math.Abs(got-want) > 1e-7 {
				t.Fatalf("estimated accuracy = %v (exported %v), want mean top-1 of the window %v", got, ok, want)
			}
		})
	}
}

func TestModelRejectsBadReference(t *testing.T) {
	c, err := New(prometheus.NewRegistry(), driftConfig(2, 10, 10))
	if err != nil {
		t.Fatal(err)
	}
	classes := []string{"a", "b"}
	for _, spec := range []ModelSpec{
		{Reference: []float64{1, 2, 3}},
		{Reference: []float64{0, 0}},
		{Reference: []float64{-1, 2}},
		{Reference: []float64{math.NaN(), 1}},
		{Reference: []float64{math.Inf(1), 1}},
		{Reference: []float64{1, 1}, ReferenceScorer: Entropy},
	} {
		spec.Name, spec.Version, spec.Classes, spec.Output = "m", "1", classes, Logits
		if _, err := c.Model(spec); err == nil {
			t.Errorf("reference %v (scorer %q) accepted", spec.Reference, spec.ReferenceScorer)
		}
	}
	if _, err := c.Model(ModelSpec{Name: "m", Version: "1", Classes: classes, Output: Logits,
		Reference: []float64{1, 1}, ReferenceScorer: MaxSoftmax}); err != nil {
		t.Errorf("matching reference scorer refused: %v", err)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12 {
			return false
		}
	}
	return true
}
