package gate

import (
	"fmt"
	"slices"
	"strings"
)

// Summary is the headline of one Report in a Decision.
type Summary struct {
	Accuracy       float64 `json:"accuracy"`
	MacroF1        float64 `json:"macro_f1"`
	TopKAccuracy   float64 `json:"top_k_accuracy"`
	Loss           float64 `json:"loss"`
	MeanConfidence float64 `json:"mean_confidence"`
	// ECE is the expected calibration error the rule compares: after temperature scaling
	// when the report was calibrated, else raw.
	ECE     float64 `json:"ece"`
	Samples int     `json:"samples"`
	// Primary is the value of the rule's primary metric.
	Primary float64 `json:"primary"`
}

func summarize(r *Report, primary string) Summary {
	return Summary{Accuracy: r.Accuracy, MacroF1: r.MacroF1, TopKAccuracy: r.TopKAccuracy, Loss: r.Loss,
		MeanConfidence: r.MeanConfidence, ECE: judgedECE(r), Samples: r.Samples, Primary: r.Metric(primary)}
}

// judgedECE is the ECE a version would have as served: exporters apply the recorded
// temperature, so a calibrated report is judged after it.
func judgedECE(r *Report) float64 {
	if r.Calibration != nil {
		return r.Calibration.ECEAfter
	}
	return r.ECE
}

// ClassDelta compares one class's recall between candidate and current.
type ClassDelta struct {
	// Class is the class name.
	Class string `json:"class"`
	// Candidate and Current are the class's recalls; Delta is Candidate − Current.
	Candidate float64 `json:"candidate"`
	Current   float64 `json:"current"`
	Delta     float64 `json:"delta"`
	// Samples is the class's number of evaluation samples.
	Samples int `json:"samples"`
	// Checked is false when the class has fewer than Rules.MinClassSamples samples, so its
	// Delta did not count.
	Checked bool `json:"checked"`
}

// Decision is the gate's verdict on a candidate.
type Decision struct {
	// Promote is true when the candidate may replace the serving version.
	Promote bool `json:"promote"`
	// Reason says why, in one line: every rule the candidate broke, or the rules it passed.
	Reason string `json:"reason"`
	// PrimaryMetric names the metric the rule compared.
	PrimaryMetric string `json:"primary_metric"`
	// EvalDigest names the evaluation set both versions were scored on.
	EvalDigest string `json:"eval_digest"`
	// Candidate and Current summarize the two reports; Current is nil for a first model.
	Candidate Summary  `json:"candidate"`
	Current   *Summary `json:"current,omitempty"`
	// PerClassDelta has one entry per class, in class order, when there is a current version.
	PerClassDelta []ClassDelta `json:"per_class_delta,omitempty"`
}

// Decide applies the rule of docs/gate.md to the candidate's report and the serving
// version's (nil when none is serving). It refuses, naming every broken rule, when the set
// is smaller than rules.MinEvalSamples; when the two reports were not made on the same set;
// when the candidate's primary metric is below current + MinImprovement (or below
// FirstModelMin when there is no current version); when a class with at least
// MinClassSamples samples lost more than MaxClassRegression recall; or when the ECE grew by
// more than MaxECEIncrease (when that is not negative). rules is assumed valid.
func Decide(rules Rules, candidate, current *Report) Decision {
	if candidate == nil {
		return Decision{Reason: "no candidate report"}
	}
	pm := rules.PrimaryMetric
	if pm == "" {
		pm = MetricAccuracy
	}
	d := Decision{PrimaryMetric: pm, EvalDigest: candidate.EvalDigest, Candidate: summarize(candidate, pm)}
	var broken, passed []string
	if candidate.Samples < rules.MinEvalSamples {
		broken = append(broken, fmt.Sprintf("evaluation set has %d samples < min_eval_samples %d", candidate.Samples, rules.MinEvalSamples))
	}
	cand := candidate.Metric(pm)
	if current == nil {
		if cand+metricEpsilon < rules.FirstModelMin {
			broken = append(broken, fmt.Sprintf("first model: candidate %s %.4f < first_model_min %.4f", pm, cand, rules.FirstModelMin))
		} else {
			passed = append(passed, fmt.Sprintf("first model: candidate %s %.4f ≥ first_model_min %.4f", pm, cand, rules.FirstModelMin))
		}
		return d.conclude(broken, passed)
	}
	cur := summarize(current, pm)
	d.Current = &cur
	if candidate.EvalDigest != current.EvalDigest || !slices.Equal(candidate.Classes, current.Classes) || len(candidate.PerClass) != len(current.PerClass) {
		// Different sets make every comparison below meaningless: refuse without them.
		broken = append(broken, "the reports were made on different evaluation sets")
		return d.conclude(broken, passed)
	}
	if need := cur.Primary + rules.MinImprovement; cand+metricEpsilon < need {
		broken = append(broken, fmt.Sprintf("candidate %s %.4f < current %.4f + margin %.4f", pm, cand, cur.Primary, rules.MinImprovement))
	} else {
		passed = append(passed, fmt.Sprintf("candidate %s %.4f ≥ current %.4f + margin %.4f", pm, cand, cur.Primary, rules.MinImprovement))
	}
	worst := -1
	for i, c := range candidate.PerClass {
		p := current.PerClass[i]
		cd := ClassDelta{Class: c.Class, Candidate: c.Recall, Current: p.Recall, Delta: c.Recall - p.Recall,
			Samples: c.Samples, Checked: c.Samples >= rules.MinClassSamples}
		d.PerClassDelta = append(d.PerClassDelta, cd)
		if !cd.Checked {
			continue
		}
		if -cd.Delta > rules.MaxClassRegression+metricEpsilon {
			broken = append(broken, fmt.Sprintf("class %s recall regressed by %.3f > %.3f (%.3f → %.3f)", c.Class, -cd.Delta, rules.MaxClassRegression, p.Recall, c.Recall))
		}
		if worst < 0 || cd.Delta < d.PerClassDelta[worst].Delta {
			worst = i
		}
	}
	if worst >= 0 {
		w := d.PerClassDelta[worst]
		passed = append(passed, fmt.Sprintf("no class recall regressed by more than %.3f (worst: %s %+.3f)", rules.MaxClassRegression, w.Class, w.Delta))
	}
	if rules.MaxECEIncrease >= 0 {
		if inc := d.Candidate.ECE - cur.ECE; inc > rules.MaxECEIncrease+metricEpsilon {
			broken = append(broken, fmt.Sprintf("ECE grew by %.4f > max_ece_increase %.4f (%.4f → %.4f)", inc, rules.MaxECEIncrease, cur.ECE, d.Candidate.ECE))
		} else {
			passed = append(passed, fmt.Sprintf("ECE %.4f within %.4f of current %.4f", d.Candidate.ECE, rules.MaxECEIncrease, cur.ECE))
		}
	}
	return d.conclude(broken, passed)
}

// conclude sets Promote and Reason: the broken rules when there are any, else the passed ones.
func (d Decision) conclude(broken, passed []string) Decision {
	if len(broken) > 0 {
		d.Reason = "refused: " + strings.Join(broken, "; ")
		return d
	}
	d.Promote = true
	d.Reason = "promoted: " + strings.Join(passed, "; ")
	return d
}
