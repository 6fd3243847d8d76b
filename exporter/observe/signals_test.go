package observe

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

func TestJSDistanceKnown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		counts []uint32
		ref    []float64
		want   float64
	}{
		{"equal", []uint32{50, 25, 25}, []float64{0.5, 0.25, 0.25}, 0},
		{"disjoint", []uint32{0, 100}, []float64{1, 0}, 1},
		// p = (1, 0), q = (0.5, 0.5), m = (0.75, 0.25):
		// JSD = ½·log2(1/0.75) + ½·(0.5·log2(0.5/0.75) + 0.5·log2(0.5/0.25)) ≈ 0.311278.
		{"half", []uint32{10, 0}, []float64{0.5, 0.5}, math.Sqrt(0.5*math.Log2(1/0.75) + 0.25*math.Log2(0.5/0.75) + 0.25)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, c := range tc.counts {
				n += int(c)
			}
			if got := jsDistance(tc.counts, n, tc.ref); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("jsDistance = %v, want %v", got, tc.want)
			}
		})
	}
}

// testReference is a drift reference for 3 classes and samples of 2 channels × 8 values drawn
// from N(0.5, 0.2), computed by modelrepo as the publisher computes it.
func testReference(t *testing.T, rng *rand.Rand) *modelrepo.DriftReference {
	t.Helper()
	in := make([]float32, 4000*16)
	for i := range in {
		in[i] = float32(0.5 + 0.2*rng.NormFloat64())
	}
	ir, err := modelrepo.ComputeInputReference(in, 16, 2, 42, 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	return &modelrepo.DriftReference{ClassMix: []float64{0.6, 0.3, 0.1}, Input: ir, Samples: 4000}
}

func signalsSpec(ref *modelrepo.DriftReference) ModelSpec {
	return ModelSpec{Name: "fmnist", Version: "1", Classes: []string{"shirt", "bag", "boot"},
		Output: Probabilities, DriftReference: ref, InputShape: []int64{2, 2, 4}}
}

// TestSignalsOffOrWithoutReference: a signal is absent (not zero) when it is off, when the
// manifest has no reference for it, and until its window is full; off keeps no window at all.
func TestSignalsOffOrWithoutReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := testReference(t, rng)
	for _, tc := range []struct {
		name     string
		signals  Signals
		models   map[string]Signals
		ref      *modelrepo.DriftReference
		mix, inp bool
	}{
		{"off", Signals{}, nil, ref, false, false},
		{"on without reference", Signals{ClassMix: true, Input: true}, nil, nil, false, false},
		{"on, old manifest without input", Signals{ClassMix: true, Input: true}, nil, &modelrepo.DriftReference{ClassMix: ref.ClassMix}, true, false},
		{"class mix only", Signals{ClassMix: true}, nil, ref, true, false},
		{"both", Signals{ClassMix: true, Input: true}, nil, ref, true, true},
		{"per-model override off", Signals{ClassMix: true, Input: true}, map[string]Signals{"fmnist": {}}, ref, false, false},
		{"per-model override on", Signals{}, map[string]Signals{"fmnist": {Input: true}}, ref, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := driftConfig(10, 20, 10)
			cfg.Drift.Signals, cfg.Drift.Models = tc.signals, tc.models
			reg, _, m := newTestModel(t, cfg, signalsSpec(tc.ref))
			if (m.classMix != nil) != tc.mix || (m.input != nil) != tc.inp {
				t.Fatalf("class mix kept %v, input kept %v; want %v, %v", m.classMix != nil, m.input != nil, tc.mix, tc.inp)
			}
			row := []float32{0.7, 0.2, 0.1}
			x := make([]float32, 16)
			for i := range x {
				x[i] = 0.5
			}
			for i := range 20 {
				if _, ok := gauge(t, reg, "edgeloop_class_mix_js_distance", "1"); ok {
					t.Fatalf("class mix exported after %d of 20 predictions", i)
				}
				m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: row, Input: x})
			}
			_, mix := gauge(t, reg, "edgeloop_class_mix_js_distance", "1")
			st := m.Drift()
			if mix != tc.mix || (st.InputMeanShift != nil) != tc.inp {
				t.Errorf("class mix exported %v, input signals %v; want %v, %v", mix, st.InputMeanShift != nil, tc.mix, tc.inp)
			}
		})
	}
}

// TestInputSignals compares windows drawn from the reference's distribution and from shifted
// ones with what each signal should read.
func TestInputSignals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ref := testReference(t, rng)
	const window = 2000
	for _, tc := range []struct {
		name              string
		mean, std         float64 // of the window's values
		wantShift, wantSR float64
		psiAtLeast        float64 // max over projections
		psiBelow          float64
	}{
		{"same", 0.5, 0.2, 0, 1, 0, 0.05},
		{"brighter", 0.7, 0.2, 1, 1, 0.5, math.Inf(1)},
		{"less contrast", 0.5, 0.1, 0, 0.5, 0.2, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := driftConfig(10, window, 10)
			cfg.Drift.Signals = Signals{Input: true}
			_, _, m := newTestModel(t, cfg, signalsSpec(ref))
			x := make([]float32, 2*16) // batches of 2 samples
			for range window / 2 {
				for i := range x {
					x[i] = float32(tc.mean + tc.std*rng.NormFloat64())
				}
				m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: []float32{0.7, 0.2, 0.1, 0.7, 0.2, 0.1}, Input: x})
			}
			st := m.Drift()
			if len(st.InputMeanShift) != 2 || len(st.InputSketchPSI) != 4 {
				t.Fatalf("%d channels, %d projections; want 2, 4", len(st.InputMeanShift), len(st.InputSketchPSI))
			}
			for c := range 2 {
				if d := st.InputMeanShift[c] - tc.wantShift; math.Abs(d) > 0.1 {
					t.Errorf("channel %d: mean shift %.3f, want %.3f ± 0.1", c, st.InputMeanShift[c], tc.wantShift)
				}
				if d := st.InputStdRatio[c] - tc.wantSR; math.Abs(d) > 0.05 {
					t.Errorf("channel %d: std ratio %.3f, want %.3f ± 0.05", c, st.InputStdRatio[c], tc.wantSR)
				}
			}
			worst := 0.0
			for _, p := range st.InputSketchPSI {
				worst = max(worst, p)
			}
			if worst < tc.psiAtLeast || worst >= tc.psiBelow {
				t.Errorf("sketch PSI %v: max %.3f, want in [%g, %g)", st.InputSketchPSI, worst, tc.psiAtLeast, tc.psiBelow)
			}
		})
	}
}

// TestClassMixSignal: a window with the reference's mix reads near 0, one of a single class
// reads high.
func TestClassMixSignal(t *testing.T) {
	ref := &modelrepo.DriftReference{ClassMix: []float64{0.6, 0.3, 0.1}}
	cfg := driftConfig(10, 100, 10)
	cfg.Drift.Signals = Signals{ClassMix: true}
	_, _, m := newTestModel(t, cfg, signalsSpec(ref))
	rows := [][]float32{{0.8, 0.1, 0.1}, {0.1, 0.8, 0.1}, {0.1, 0.1, 0.8}}
	for i := range 100 {
		c := 0
		switch {
		case i%10 >= 9:
			c = 2
		case i%10 >= 6:
			c = 1
		}
		m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: rows[c]})
	}
	if d := m.Drift().ClassMixDistance; math.Abs(d) > 1e-9 {
		t.Errorf("same mix: distance %v, want 0", d)
	}
	observeN(m, 100, rows[2])
	// p = (0, 0, 1) against q = (0.6, 0.3, 0.1).
	mid := []float64{0.3, 0.15, 0.55}
	jsd := 0.5*math.Log2(1/mid[2]) + 0.5*(0.6*math.Log2(0.6/0.3)+0.3*math.Log2(0.3/0.15)+0.1*math.Log2(0.1/0.55))
	if d := m.Drift().ClassMixDistance; math.Abs(d-math.Sqrt(jsd)) > 1e-9 {
		t.Errorf("one class: distance %v, want %v", d, math.Sqrt(jsd))
	}
}

// TestCalibratedAccuracy: with a temperature, the estimated accuracy is the mean top-1
// probability of softmax(z/T), for logits and for probabilities (p^(1/T) renormalised), as
// internal/classify computes it for the gate; without, or with calibration off, the raw mean.
func TestCalibratedAccuracy(t *testing.T) {
	logits := [][]float32{{2, 0.5, -1}, {0.1, 0.3, 0.2}, {-2, 4, 1}, {1, 1, 0}}
	for _, tc := range []struct {
		name       string
		kind       OutputKind
		temp       float64
		calibrated bool
	}{
		{"logits T=2", Logits, 2, true},
		{"logits T=0.5", Logits, 0.5, true},
		{"probabilities T=1.7", Probabilities, 1.7, true},
		{"logits T=2 calibration off", Logits, 2, false},
		{"logits no temperature", Logits, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := driftConfig(10, 40, 10)
			cfg.Drift.CalibratedAccuracy = tc.calibrated
			_, _, m := newTestModel(t, cfg, ModelSpec{Output: tc.kind, Temperature: tc.temp})
			effT := tc.temp
			if !tc.calibrated || tc.temp == 0 {
				effT = 1
			}
			var want float64
			p := make([]float64, 3)
			for i := range 40 {
				z := logits[i%len(logits)]
				row := z
				if tc.kind == Probabilities {
					classify.Softmax(z, 1, p)
					row = []float32{float32(p[0]), float32(p[1]), float32(p[2])}
				}
				classify.Softmax(z, effT, p)
				want += max(p[0], p[1], p[2]) / 40
				m.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: row})
			}
			st := m.Drift()
			if math.Abs(st.EstimatedAccuracy-want) > 1e-6 {
				t.Errorf("estimated accuracy %v, want %v", st.EstimatedAccuracy, want)
			}
			if math.Abs(st.Temperature-effT) > 1e-12 {
				t.Errorf("temperature %v, want %v", st.Temperature, effT)
			}
		})
	}
}

func TestSignalsSpecErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ref := testReference(t, rng)
	cfg := driftConfig(10, 20, 10)
	cfg.Drift.Signals = Signals{ClassMix: true, Input: true}
	for _, tc := range []struct {
		name   string
		modify func(*ModelSpec)
	}{
		{"class mix length", func(s *ModelSpec) { s.DriftReference = &modelrepo.DriftReference{ClassMix: []float64{1, 1}} }},
		{"class mix zero", func(s *ModelSpec) { s.DriftReference = &modelrepo.DriftReference{ClassMix: []float64{0, 0, 0}} }},
		{"negative temperature", func(s *ModelSpec) { s.Temperature = -1 }},
		{"input shape channels", func(s *ModelSpec) { s.InputShape = []int64{16} }},
		{"input shape variable", func(s *ModelSpec) { s.InputShape = []int64{2, -1, 4} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(prometheus.NewRegistry(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			spec := signalsSpec(ref)
			tc.modify(&spec)
			if _, err := c.Model(spec); err == nil {
				t.Error("Model accepted the spec")
			}
		})
	}
}
