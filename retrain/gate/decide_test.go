package gate

import (
	"strings"
	"testing"
)

// handReport is a report on 1000 samples of two classes, "a" and "b" (500 each), whose
// per-class recalls are a and b; precision is taken equal to recall, so F1 is too.
func handReport(a, b float64) *Report {
	ca, cb := int(a*500+0.5), int(b*500+0.5)
	ra, rb := float64(ca)/500, float64(cb)/500
	return &Report{
		EvalDigest: "set-1",
		Samples:    1000,
		Correct:    ca + cb,
		Accuracy:   float64(ca+cb) / 1000,
		MacroF1:    (ra + rb) / 2,
		Classes:    []string{"a", "b"},
		PerClass: []ClassResult{
			{Class: "a", Samples: 500, Correct: ca, Recall: ra, Precision: ra, F1: ra},
			{Class: "b", Samples: 500, Correct: cb, Recall: rb, Precision: rb, F1: rb},
		},
		ECE: 0.05,
	}
}

func TestDecide(t *testing.T) {
	def := DefaultRules()
	def.MinEvalSamples = 500
	with := func(edit func(*Rules)) Rules {
		c := def
		edit(&c)
		return c
	}
	small := handReport(0.9, 0.9)
	small.Samples = 400
	fewB := handReport(0.9, 0.75)
	fewB.PerClass[1].Samples = 10
	otherSet := handReport(0.8, 0.8)
	otherSet.EvalDigest = "set-2"
	miscalibrated := handReport(0.9, 0.9)
	miscalibrated.ECE = 0.2
	calibrated := handReport(0.9, 0.9)
	calibrated.ECE, calibrated.Calibration = 0.2, &Calibration{Temperature: 2, ECEAfter: 0.03}
	topK := handReport(0.7, 0.7)
	topK.TopKAccuracy = 0.99
	worseF1 := handReport(0.85, 0.85)
	worseF1.MacroF1 = 0.7
	tests := []struct {
		name               string
		rules              Rules
		candidate, current *Report
		promote            bool
		reason             string
	}{
		{"better everywhere", def, handReport(0.9, 0.9), handReport(0.8, 0.8), true,
			"promoted: candidate accuracy 0.9000 ≥ current 0.8000 + margin 0.0000; no class recall regressed by more than 0.020 (worst: a +0.100); ECE 0.0500 within 0.0500 of current 0.0500"},
		{"equal passes a zero margin", def, handReport(0.8, 0.8), handReport(0.8, 0.8), true, "promoted"},
		{"worse overall", def, handReport(0.79, 0.8), handReport(0.8, 0.8), false,
			"refused: candidate accuracy 0.7950 < current 0.8000 + margin 0.0000"},
		{"margin not met", with(func(c *Rules) { c.MinImprovement = 0.01 }), handReport(0.804, 0.804), handReport(0.8, 0.8), false,
			"refused: candidate accuracy 0.8040 < current 0.8000 + margin 0.0100"},
		{"margin met exactly", with(func(c *Rules) { c.MinImprovement = 0.01 }), handReport(0.81, 0.81), handReport(0.8, 0.8), true, "≥ current 0.8000 + margin 0.0100"},
		{"negative margin tolerates a loss", with(func(c *Rules) { c.MinImprovement = -0.01 }), handReport(0.796, 0.796), handReport(0.8, 0.8), true, "+ margin -0.0100"},
		{"class regression", def, handReport(0.95, 0.77), handReport(0.8, 0.8), false,
			"refused: class b recall regressed by 0.030 > 0.020 (0.800 → 0.770)"},
		{"class regression at the limit", def, handReport(0.95, 0.78), handReport(0.8, 0.8), true, "worst: b -0.020"},
		{"both rules broken", def, handReport(0.7, 0.8), handReport(0.8, 0.8), false,
			"refused: candidate accuracy 0.7500 < current 0.8000 + margin 0.0000; class a recall regressed by 0.100 > 0.020 (0.800 → 0.700)"},
		{"small class not judged", def, fewB, handReport(0.8, 0.8), true, "worst: a +0.100"},
		{"set too small", def, small, handReport(0.8, 0.8), false, "refused: evaluation set has 400 samples < min_eval_samples 500"},
		{"different sets", def, handReport(0.9, 0.9), otherSet, false, "refused: the reports were made on different evaluation sets"},
		{"ECE grew", def, miscalibrated, handReport(0.8, 0.8), false, "refused: ECE grew by 0.1500 > max_ece_increase 0.0500 (0.0500 → 0.2000)"},
		{"ECE judged after calibration", def, calibrated, handReport(0.8, 0.8), true, "ECE 0.0300 within"},
		{"ECE rule off", with(func(c *Rules) { c.MaxECEIncrease = -1 }), miscalibrated, handReport(0.8, 0.8), true, "promoted"},
		{"macro-F1 primary", with(func(c *Rules) { c.PrimaryMetric = MetricMacroF1 }), worseF1, handReport(0.8, 0.8), false,
			"refused: candidate macro_f1 0.7000 < current 0.8000 + margin 0.0000"},
		{"top-k primary", with(func(c *Rules) { c.PrimaryMetric = MetricTopK; c.MaxClassRegression = 1 }), topK, handReport(0.8, 0.8), true,
			"candidate top_k 0.9900 ≥ current 0.0000"},
		{"first model", def, handReport(0.6, 0.4), nil, true, "promoted: first model: candidate accuracy 0.5000 ≥ first_model_min 0.5000"},
		{"first model too weak", def, handReport(0.5, 0.4), nil, false, "refused: first model: candidate accuracy 0.4500 < first_model_min 0.5000"},
		{"first model by macro-F1", with(func(c *Rules) { c.PrimaryMetric = MetricMacroF1; c.FirstModelMin = 0.8 }), worseF1, nil, false,
			"refused: first model: candidate macro_f1 0.7000 < first_model_min 0.8000"},
		{"first model, small set", def, small, nil, false, "evaluation set has 400 samples"},
		{"no candidate", def, nil, handReport(0.8, 0.8), false, "no candidate report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.rules, tt.candidate, tt.current)
			if d.Promote != tt.promote || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide: promote %v, reason %q\nwant %v, a reason containing %q", d.Promote, d.Reason, tt.promote, tt.reason)
			}
			if tt.current != nil && tt.candidate != nil && tt.candidate.EvalDigest == tt.current.EvalDigest {
				if d.Current == nil || len(d.PerClassDelta) != 2 {
					t.Errorf("current %v, per-class deltas %+v", d.Current, d.PerClassDelta)
				}
			}
		})
	}
	d := Decide(def, fewB, handReport(0.8, 0.8))
	if b := d.PerClassDelta[1]; b.Checked || b.Samples != 10 || b.Delta > -0.04 {
		t.Errorf("class b of 10 samples: %+v, want unchecked with its delta", b)
	}
}
