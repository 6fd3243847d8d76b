package sampler

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStrategies checks each strategy type's condition and class filter, one prediction at a
// time, with probability 1 (no draw) unless a case says otherwise.
func TestStrategies(t *testing.T) {
	type pred struct {
		s     observe.Scores
		class string
		want  bool
	}
	conf := func(c float64, want bool) pred { return pred{s: scores(c), want: want} }
	for _, tc := range []struct {
		name  string
		st    StrategyConfig
		preds []pred
	}{
		{
			name: "threshold is strict",
			st:   StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6)},
			preds: []pred{
				conf(0.59, true), conf(0.6, false), conf(0.61, false), conf(0, true), conf(1, false),
			},
		},
		{
			name: "threshold by the margin scorer",
			st:   StrategyConfig{Name: "low", Type: Threshold, Scorer: observe.Margin, Threshold: ptr(0.2)},
			preds: []pred{
				{s: observe.Scores{MaxSoftmax: 0.55, Margin: 0.1, Entropy: 0.9}, want: true},
				{s: observe.Scores{MaxSoftmax: 0.30, Margin: 0.25, Entropy: 0.1}, want: false},
			},
		},
		{
			name: "threshold by the entropy scorer",
			st:   StrategyConfig{Name: "low", Type: Threshold, Scorer: observe.Entropy, Threshold: ptr(0.5)},
			preds: []pred{
				{s: observe.Scores{MaxSoftmax: 0.99, Margin: 0.98, Entropy: 0.4}, want: true},
				{s: observe.Scores{MaxSoftmax: 0.2, Margin: 0.01, Entropy: 0.5}, want: false},
			},
		},
		{
			name: "margin type",
			st:   StrategyConfig{Name: "close_call", Type: Margin, Threshold: ptr(0.1)},
			preds: []pred{
				{s: observe.Scores{MaxSoftmax: 0.5, Margin: 0.05, Entropy: 0.9}, want: true},
				{s: observe.Scores{MaxSoftmax: 0.2, Margin: 0.1, Entropy: 0.1}, want: false},
			},
		},
		{
			name: "entropy type",
			st:   StrategyConfig{Name: "spread", Type: Entropy, Threshold: ptr(0.3)},
			preds: []pred{
				{s: observe.Scores{MaxSoftmax: 0.9, Margin: 0.9, Entropy: 0.29}, want: true},
				{s: observe.Scores{MaxSoftmax: 0.1, Margin: 0.0, Entropy: 0.3}, want: false},
			},
		},
		{
			// The open interval (0.25, 0.75), bounds exact in binary.
			name: "close_to_threshold excludes both bounds",
			st:   StrategyConfig{Name: "band", Type: CloseToThreshold, Threshold: ptr(0.5), Epsilon: 0.25},
			preds: []pred{
				conf(0.25, false), conf(0.2500001, true), conf(0.5, true), conf(0.7499999, true), conf(0.75, false), conf(0.1, false), conf(0.9, false),
			},
		},
		{
			// Roboflow's documented example: threshold 0.9, epsilon 0.1 is the range (0.8, 1.0).
			name: "close_to_threshold as Roboflow documents it",
			st:   StrategyConfig{Name: "sure", Type: CloseToThreshold, Threshold: ptr(0.9), Epsilon: 0.1},
			preds: []pred{
				conf(0.8, false), conf(0.80001, true), conf(0.95, true), conf(0.99999, true), conf(1, false),
			},
		},
		{
			name: "close_to_threshold by the margin scorer",
			st:   StrategyConfig{Name: "band", Type: CloseToThreshold, Scorer: observe.Margin, Threshold: ptr(0.1), Epsilon: 0.05},
			preds: []pred{
				{s: observe.Scores{MaxSoftmax: 0.9, Margin: 0.08}, want: true},
				{s: observe.Scores{MaxSoftmax: 0.1, Margin: 0.2}, want: false},
			},
		},
		{
			name: "close_to_threshold with selected_class_names",
			st:   StrategyConfig{Name: "band", Type: CloseToThreshold, Threshold: ptr(0.5), Epsilon: 0.2, SelectedClassNames: []string{"Shirt", "Coat"}},
			preds: []pred{
				{s: scores(0.5), class: "Shirt", want: true},
				{s: scores(0.5), class: "Coat", want: true},
				{s: scores(0.5), class: "Sneaker", want: false},
				{s: scores(0.9), class: "Shirt", want: false},
			},
		},
		{
			name: "classes",
			st:   StrategyConfig{Name: "rare", Type: Classes, Classes: []string{"Shirt"}},
			preds: []pred{
				{s: scores(0.99), class: "Shirt", want: true},
				{s: scores(0.1), class: "Trouser", want: false},
				{s: scores(0.1), class: "", want: false}, // no name and the entry is no number
			},
		},
		{
			name: "classes_based is an alias",
			st:   StrategyConfig{Name: "rare", Type: "classes_based", SelectedClassNames: []string{"Bag"}},
			preds: []pred{
				{s: scores(0.9), class: "Bag", want: true},
				{s: scores(0.9), class: "Dress", want: false},
			},
		},
		{
			// A model without class names: numeric entries match the class index.
			name: "classes by index",
			st:   StrategyConfig{Name: "six", Type: Classes, Classes: []string{"6", "8"}},
			preds: []pred{
				{s: observe.Scores{Class: 6, MaxSoftmax: 0.9}, want: true},
				{s: observe.Scores{Class: 8, MaxSoftmax: 0.9}, want: true},
				{s: observe.Scores{Class: 7, MaxSoftmax: 0.9}, want: false},
				{s: observe.Scores{Class: 7, MaxSoftmax: 0.9}, class: "6", want: true}, // names first
			},
		},
		{
			name: "threshold with a classes filter",
			st:   StrategyConfig{Name: "low_shirts", Type: Threshold, Threshold: ptr(0.6), Classes: []string{"Shirt"}},
			preds: []pred{
				{s: scores(0.4), class: "Shirt", want: true},
				{s: scores(0.4), class: "Pullover", want: false},
				{s: scores(0.8), class: "Shirt", want: false},
			},
		},
		{
			name: "random",
			st:   StrategyConfig{Name: "baseline", Type: Random, Probability: ptr(0.3)},
			// fixedRand(0.25) wins every draw below 0.3; the confidence does not matter.
			preds: []pred{conf(0.99, true), conf(0.01, true)},
		},
		{
			name:  "random that never wins",
			st:    StrategyConfig{Name: "baseline", Type: Random, TrafficPercentage: ptr(0.2)},
			preds: []pred{conf(0.99, false), conf(0.01, false)},
		},
		{
			name: "random with a classes filter",
			st:   StrategyConfig{Name: "baseline", Type: Random, Probability: ptr(1.0), Classes: []string{"Bag"}},
			preds: []pred{
				{s: scores(0.9), class: "Bag", want: true},
				{s: scores(0.9), class: "Coat", want: false},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, enabled(tc.st), Options{Rand: fixedRand(0.25)})
			for i, p := range tc.preds {
				c := cand(0, uint64(i))
				c.Scores, c.ClassName = p.s, p.class
				d := s.Decide(c)
				if d.Capture != p.want {
					t.Errorf("prediction %d (%+v, class %q): Capture = %v, want %v", i, p.s, p.class, d.Capture, p.want)
				}
				if d.Capture && d.Reason != tc.st.Name {
					t.Errorf("prediction %d: Reason = %q, want %q", i, d.Reason, tc.st.Name)
				}
			}
		})
	}
}

// TestProbability checks the draw that follows a match: capture when the draw is below the
// probability, a "probability" skip otherwise, and no draw at all for probability 1 or 0 or
// for a prediction that does not match.
func TestProbability(t *testing.T) {
	st := StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6), Probability: ptr(0.5)}
	s := mustNew(t, enabled(st), Options{Rand: seqRand(t, 0.49, 0.5, 0.0)})
	for i, want := range []Decision{
		{Capture: true, Reason: "low"},
		{Skipped: SkipProbability},
		{}, // confident: no match, no draw
		{Capture: true, Reason: "low"},
	} {
		conf := 0.3
		if i == 2 {
			conf = 0.9
		}
		got := s.Decide(cand(conf, uint64(i)))
		if got.Capture != want.Capture || got.Reason != want.Reason || got.Skipped != want.Skipped {
			t.Errorf("candidate %d: %+v, want %+v", i, got, want)
		}
	}

	for _, p := range []float64{0, 1} {
		s := mustNew(t, enabled(StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6), Probability: ptr(p)}),
			Options{Rand: seqRand(t)}) // any draw fails the test
		d := s.Decide(cand(0.3, 1))
		if d.Capture != (p == 1) {
			t.Errorf("probability %g: %+v", p, d)
		}
	}
}

// TestRandomShare checks that the default Rand wins a draw at its probability.
func TestRandomShare(t *testing.T) {
	s := mustNew(t, enabled(StrategyConfig{Name: "random", Type: Random, Probability: ptr(0.1)}), Options{})
	const n = 20000
	wins := 0
	for range n {
		if s.draw(0.1) {
			wins++
		}
	}
	// Binomial(20000, 0.1): mean 2000, standard deviation 42; 6 sigma either way.
	if wins < 1750 || wins > 2250 {
		t.Fatalf("%d of %d draws won at probability 0.1", wins, n)
	}
}

// TestEvaluationOrder checks that the first strategy that matches, wins its draw and has room
// in its own limits names the capture, and which reason a refusal is counted under.
func TestEvaluationOrder(t *testing.T) {
	lowConf := StrategyConfig{Name: "low_confidence", Type: Threshold, Threshold: ptr(0.6)}
	band := StrategyConfig{Name: "band", Type: CloseToThreshold, Threshold: ptr(0.5), Epsilon: 0.2}
	shirts := StrategyConfig{Name: "shirts", Type: Classes, Classes: []string{"Shirt"}}
	random := StrategyConfig{Name: "random", Type: Random, Probability: ptr(0.01)}

	t.Run("first match wins", func(t *testing.T) {
		s := mustNew(t, enabled(band, lowConf, shirts), Options{})
		for _, tc := range []struct {
			conf   float64
			class  string
			reason string
		}{
			{0.5, "Shirt", "band"},           // all three match: the first
			{0.2, "Shirt", "low_confidence"}, // band does not
			{0.9, "Shirt", "shirts"},
			{0.9, "Coat", ""},
		} {
			c := cand(tc.conf, uint64(len(tc.class))+uint64(tc.conf*100))
			c.ClassName = tc.class
			if d := s.Decide(c); d.Reason != tc.reason || d.Capture != (tc.reason != "") {
				t.Errorf("confidence %g class %s: %+v, want reason %q", tc.conf, tc.class, d, tc.reason)
			}
		}
	})

	t.Run("random first sees every prediction", func(t *testing.T) {
		// Draws: random wins for the first prediction, loses for the second.
		s := mustNew(t, enabled(random, lowConf), Options{Rand: seqRand(t, 0.001, 0.5)})
		if d := s.Decide(cand(0.3, 1)); d.Reason != "random" {
			t.Errorf("low confidence, random draw won: %+v, want reason random", d)
		}
		if d := s.Decide(cand(0.3, 2)); d.Reason != "low_confidence" {
			t.Errorf("low confidence, random draw lost: %+v, want reason low_confidence", d)
		}
	})

	t.Run("a lost random draw is no skip", func(t *testing.T) {
		s := mustNew(t, enabled(random, lowConf), Options{Rand: fixedRand(0.5)})
		if d := s.Decide(cand(0.9, 1)); d.Capture || d.Skipped != "" {
			t.Errorf("confident prediction: %+v, want no capture and no skip", d)
		}
	})

	t.Run("a strategy out of tokens falls through to the next", func(t *testing.T) {
		limited := lowConf
		limited.Limits = []Limit{{Type: Minutely, Value: 1}}
		s := mustNew(t, enabled(limited, band), Options{Now: newClock().Now})
		if d := s.Decide(cand(0.5, 1)); d.Reason != "low_confidence" {
			t.Fatalf("first: %+v", d)
		}
		if d := s.Decide(cand(0.5, 2)); d.Reason != "band" {
			t.Fatalf("second, low_confidence out of tokens: %+v, want reason band", d)
		}
		if d := s.Decide(cand(0.2, 3)); d.Skipped != SkipRateLimit {
			t.Fatalf("third, only low_confidence matches: %+v, want skipped rate_limit", d)
		}
	})

	t.Run("the furthest step names the refusal", func(t *testing.T) {
		halfBand := band
		halfBand.Probability = ptr(0.5)
		limited := lowConf
		limited.Limits = []Limit{{Type: Minutely, Value: 1}}
		s := mustNew(t, enabled(halfBand, limited), Options{Now: newClock().Now, Rand: fixedRand(0.7)})
		s.Decide(cand(0.4, 1)) // spends low_confidence's token
		// band loses its draw (probability), low_confidence is out of tokens (rate_limit).
		if d := s.Decide(cand(0.4, 2)); d.Skipped != SkipRateLimit {
			t.Fatalf("%+v, want skipped rate_limit", d)
		}
	})
}

// TestTokenBuckets checks per-strategy and overall limits per minute, hour and day, refilling
// with an injected clock, and that strategy limits are per model.
func TestTokenBuckets(t *testing.T) {
	low := StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6)}
	for _, tc := range []struct {
		name   string
		limits []Limit // overall when strategy is false
		per    bool    // limits on the strategy instead
		steps  []step
	}{
		{
			name:   "minutely",
			limits: []Limit{{Type: Minutely, Value: 2}},
			steps: []step{
				{0, 2, 0}, {0, 0, 1}, // burst of 2, then empty
				{30 * time.Second, 1, 0}, // 2 a minute: one token per 30 s
				{10 * time.Second, 0, 1},
				{20 * time.Second, 1, 0},
				{time.Hour, 2, 1}, // refills to the capacity, not beyond
			},
		},
		{
			name:   "hourly",
			limits: []Limit{{Type: Hourly, Value: 3}},
			steps:  []step{{0, 3, 1}, {19 * time.Minute, 0, 1}, {time.Minute, 1, 0}, {19 * time.Minute, 0, 1}, {time.Hour, 3, 1}},
		},
		{
			name:   "daily",
			limits: []Limit{{Type: Daily, Value: 2}},
			steps:  []step{{0, 2, 1}, {11 * time.Hour, 0, 1}, {time.Hour, 1, 0}, {24 * time.Hour, 2, 1}},
		},
		{
			name:   "every bucket must have a token",
			limits: []Limit{{Type: Minutely, Value: 5}, {Type: Hourly, Value: 6}},
			steps:  []step{{0, 5, 1}, {time.Minute, 1, 1}, {10 * time.Minute, 1, 1}},
		},
		{
			name:   "strategy limits",
			limits: []Limit{{Type: Minutely, Value: 2}, {Type: Daily, Value: 100}},
			per:    true,
			steps:  []step{{0, 2, 1}, {30 * time.Second, 1, 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			st := low
			cfg := enabled(st)
			if tc.per {
				cfg.Strategies[0].Limits = tc.limits
			} else {
				cfg.Limits = tc.limits
			}
			s := mustNew(t, cfg, Options{Now: clk.Now})
			seed := uint64(0)
			for i, step := range tc.steps {
				clk.Advance(step.advance)
				for range step.captures {
					seed++
					if d := s.Decide(cand(0.3, seed)); !d.Capture {
						t.Fatalf("step %d: %+v, want a capture", i, d)
					}
				}
				for range step.refusals {
					seed++
					if d := s.Decide(cand(0.3, seed)); d.Capture || d.Skipped != SkipRateLimit {
						t.Fatalf("step %d: %+v, want skipped rate_limit", i, d)
					}
				}
			}
		})
	}

	t.Run("strategy limits are per model, overall limits are not", func(t *testing.T) {
		cfg := enabled(low)
		cfg.Strategies[0].Limits = []Limit{{Type: Minutely, Value: 1}}
		cfg.Limits = []Limit{{Type: Minutely, Value: 3}}
		s := mustNew(t, cfg, Options{Now: newClock().Now})
		got := []bool{}
		for i, m := range []string{"a", "a", "b", "c", "d"} {
			c := cand(0.3, uint64(i))
			c.Model = m
			got = append(got, s.Decide(c).Capture)
		}
		// a: own token; a again: none; b, c: own tokens (overall now spent); d: overall empty.
		if want := []bool{true, false, true, true, false}; !slices.Equal(got, want) {
			t.Fatalf("captures %v, want %v", got, want)
		}
	})

	t.Run("batching_strategy max_batch_images is an overall limit", func(t *testing.T) {
		cfg := enabled(low)
		cfg.Roboflow.BatchingStrategy = &BatchingConfig{BatchesNamePrefix: "al", RecreationInterval: "weekly", MaxBatchImages: 2}
		clk := newClock()
		s := mustNew(t, cfg, Options{Now: clk.Now})
		for i, want := range []bool{true, true, false} {
			if d := s.Decide(cand(0.3, uint64(i))); d.Capture != want {
				t.Fatalf("candidate %d: %+v", i, d)
			}
		}
		clk.Advance(84 * time.Hour) // half a week: one image back
		if !s.Decide(cand(0.3, 9)).Capture {
			t.Fatal("no capture half a week later")
		}
	})
}

// step advances the clock, then expects captures and refusals in that order.
type step struct {
	advance            time.Duration
	captures, refusals int
}

// TestByteBudget checks the daily byte budget: refusals past it, a new budget after midnight
// UTC, and no effect from a clock stepping back.
func TestByteBudget(t *testing.T) {
	clk := newClock()
	clk.Advance(14*time.Hour + 20*time.Minute) // 23:50 UTC
	cfg := enabled(StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6)})
	cfg.MaxBytesPerDay = 1000
	s := mustNew(t, cfg, Options{Now: clk.Now})
	try := func(size int64, seed uint64) Decision {
		c := cand(0.3, seed)
		c.Size = size
		return s.Decide(c)
	}
	for i, tc := range []struct {
		advance time.Duration
		size    int64
		want    string // "capture" or the skip reason
	}{
		{0, 400, "capture"},
		{0, 400, "capture"},
		{0, 400, SkipByteBudget}, // 1200 > 1000
		{0, 200, "capture"},      // exactly 1000
		{0, 1, SkipByteBudget},
		{9 * time.Minute, 1, SkipByteBudget}, // 23:59, same day
		{2 * time.Minute, 1000, "capture"},   // 00:01 the next day
		{0, 1, SkipByteBudget},
		{-5 * time.Minute, 1, SkipByteBudget}, // the clock steps back over midnight: no new day
		{0, 1001, SkipByteBudget},             // larger than the whole budget
	} {
		clk.Advance(tc.advance)
		d := try(tc.size, uint64(i))
		got := d.Skipped
		if d.Capture {
			got = "capture"
		}
		if got != tc.want {
			t.Errorf("step %d (%s, %d bytes): %s, want %s", i, clk.Now().Format("15:04"), tc.size, got, tc.want)
		}
	}
}

// TestDedup checks duplicate suppression with real-looking images.
func TestDedup(t *testing.T) {
	low := StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6)}
	img, other := image(1), image(2)
	frame := func(in []float32) *Candidate {
		return &Candidate{Model: "cam", Scores: scores(0.3), Input: in, Shape: []int64{28, 28}, Size: 100}
	}
	type try struct {
		advance time.Duration
		input   []float32
		want    string // "capture" or the skip reason
	}
	for _, tc := range []struct {
		name  string
		dedup DedupConfig
		tries []try
	}{
		{
			name:  "near duplicates",
			dedup: DefaultDedupConfig(),
			tries: []try{
				{0, img, "capture"},
				{time.Second, img, SkipDuplicate},
				{time.Second, noisy(img, 0.02, 1), SkipNearDuplicate},
				{time.Second, noisy(img, 0.02, 2), SkipNearDuplicate},
				{time.Second, other, "capture"},
				{time.Second, noisy(other, 0.02, 3), SkipNearDuplicate},
				{10 * time.Minute, noisy(img, 0.02, 4), "capture"}, // img's entry is 10m4s old
				{0, img, SkipNearDuplicate},                        // ... and the noisy frame is new
			},
		},
		{
			name:  "exact duplicates with near duplicates off",
			dedup: DedupConfig{Enabled: false, Window: time.Minute, MaxDistance: 4, MaxEntries: 10},
			tries: []try{
				{0, img, "capture"},
				{time.Second, noisy(img, 0.02, 1), "capture"},
				{time.Second, img, SkipDuplicate},
				{time.Minute, img, "capture"},
			},
		},
		{
			name:  "max_distance -1",
			dedup: DedupConfig{Enabled: true, Window: time.Minute, MaxDistance: -1, MaxEntries: 10},
			tries: []try{
				{0, img, "capture"},
				{0, noisy(img, 0.02, 1), "capture"},
				{0, img, SkipDuplicate},
			},
		},
		{
			name:  "max_entries evicts the oldest",
			dedup: DedupConfig{Enabled: true, Window: time.Hour, MaxDistance: 0, MaxEntries: 2},
			tries: []try{
				{0, image(10), "capture"},
				{0, image(11), "capture"},
				{0, image(10), SkipDuplicate},
				{0, image(12), "capture"}, // evicts image(10)
				{0, image(10), "capture"},
				{0, image(12), SkipDuplicate},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			cfg := enabled(low)
			cfg.Dedup = tc.dedup
			s := mustNew(t, cfg, Options{Now: clk.Now})
			for i, tr := range tc.tries {
				clk.Advance(tr.advance)
				d := s.Decide(frame(tr.input))
				got := d.Skipped
				if d.Capture {
					got = "capture"
				}
				if got != tr.want {
					t.Errorf("try %d: %s, want %s", i, got, tr.want)
				}
			}
		})
	}

	t.Run("duplicates spend no tokens or bytes", func(t *testing.T) {
		cfg := enabled(low)
		cfg.Limits = []Limit{{Type: Minutely, Value: 2}}
		cfg.MaxBytesPerDay = 200
		s := mustNew(t, cfg, Options{Now: newClock().Now})
		for i, tc := range []struct {
			in   []float32
			want string
		}{
			{img, "capture"}, {img, SkipDuplicate}, {noisy(img, 0.02, 9), SkipNearDuplicate}, {img, SkipDuplicate},
			{other, "capture"}, // the second token and the last 100 bytes
			{image(3), SkipRateLimit},
		} {
			d := s.Decide(frame(tc.in))
			got := d.Skipped
			if d.Capture {
				got = "capture"
			}
			if got != tc.want {
				t.Errorf("try %d: %s, want %s", i, got, tc.want)
			}
		}
	})

	t.Run("inputs without values are never duplicates", func(t *testing.T) {
		s := mustNew(t, enabled(low), Options{})
		for i := range 3 {
			if d := s.Decide(frame(nil)); !d.Capture {
				t.Fatalf("empty input %d: %+v", i, d)
			}
		}
	})

	t.Run("dedup is per model", func(t *testing.T) {
		s := mustNew(t, enabled(low), Options{})
		a, b := frame(img), frame(img)
		b.Model = "other"
		if !s.Decide(a).Capture || !s.Decide(b).Capture {
			t.Fatal("the same input for two models must be captured for each")
		}
	})
}

// TestDisabled checks that a disabled sampler captures and counts nothing.
func TestDisabled(t *testing.T) {
	cfg := DefaultConfig()
	reg := prometheus.NewPedanticRegistry()
	s := mustNew(t, cfg, Options{Registerer: reg, Rand: fixedRand(0)})
	if d := s.Decide(cand(0.1, 1)); d.Capture || d.Skipped != "" {
		t.Fatalf("disabled: %+v", d)
	}
	if n := testutil.CollectAndCount(s.metrics); n != 0 {
		t.Fatalf("disabled sampler exported %d series", n)
	}
}

// TestConcurrentDecide runs Decide from many goroutines (run it with -race): with the clock
// frozen, exactly the overall limit's capacity is captured, whatever the interleaving, and
// every decision is counted once.
func TestConcurrentDecide(t *testing.T) {
	cfg := enabled(
		StrategyConfig{Name: "random", Type: Random, Probability: ptr(0.5)},
		StrategyConfig{Name: "low", Type: Threshold, Threshold: ptr(0.6), Limits: []Limit{{Type: Minutely, Value: 30}}},
	)
	cfg.Limits = []Limit{{Type: Hourly, Value: 100}}
	reg := prometheus.NewPedanticRegistry()
	s := mustNew(t, cfg, Options{Registerer: reg, Now: newClock().Now})
	const goroutines, each = 16, 500
	var captured atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				c := cand(float64(i%10)/10, uint64(g*each+i))
				c.Model = []string{"a", "b", "c"}[i%3]
				if s.Decide(c).Capture {
					captured.Add(1)
				}
				if i%100 == 0 {
					s.Skipped(c.Model, "spool_full")
				}
			}
		})
	}
	wg.Wait()
	if n := captured.Load(); n != 100 {
		t.Fatalf("captured %d, want exactly the overall hourly limit, 100", n)
	}
	var considered, capturedMetric float64
	for _, m := range []string{"a", "b", "c"} {
		considered += counter(t, s.metrics.considered, m)
		for _, st := range []string{"random", "low"} {
			capturedMetric += counter(t, s.metrics.captured, m, st)
		}
	}
	if considered != goroutines*each || capturedMetric != 100 {
		t.Fatalf("considered %v, captured %v; want %d and 100", considered, capturedMetric, goroutines*each)
	}
}
