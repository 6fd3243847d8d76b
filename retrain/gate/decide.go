package gate

import (
	"fmt"
	"slices"
	"strings"
)

// Summary is the headline of one Report in a Decision.
type Summary struct {
	Accuracy       float64 `json:"accuracy"`
	Loss           float64 `json:"loss"`
	MeanConfidence float64 `json:"mean_confidence"`
	Samples        int     `json:"samples"`
}

func summarize(r *Report) Summary {
	return Summary{Accuracy: r.Accuracy, Loss: r.Loss, MeanConfidence: r.MeanConfidence, Samples: r.Samples}
}

// ClassDelta compares one class's accuracy between candidate and current.
type ClassDelta struct {
	// Class is the class name.
	Class string `json:"class"`
	// Candidate and Current are the class's accuracies; Delta is Candidate − Current.
	Candidate float64 `json:"candidate"`
	Current   float64 `json:"current"`
	Delta     float64 `json:"delta"`
	// Samples is the class's number of held-out images.
	Samples int `json:"samples"`
	// Checked is false when the class has fewer than Config.MinClassSamples images, so its
	// Delta did not count.
	Checked bool `json:"checked"`
}

// Decision is the gate's verdict on a candidate.
type Decision struct {
	// Promote is true when the candidate may replace the serving version.
	Promote bool `json:"promote"`
	// Reason says why, in one line: every rule the candidate broke, or the rules it passed.
	Reason string `json:"reason"`
	// Candidate and Current summarize the two reports; Current is nil for a first model.
	Candidate Summary  `json:"candidate"`
	Current   *Summary `json:"current,omitempty"`
	// PerClassDelta has one entry per class, in class order, when there is a current version.
	PerClassDelta []ClassDelta `json:"per_class_delta,omitempty"`
}

// Decide applies the decision rule of docs/gate.md to the candidate's report and the serving
// version's (nil when none is serving). It refuses, naming every broken rule, when the
// held-out set is smaller than cfg.MinEvalSamples, when the two reports were not made on the
// same held-out set, when the candidate's accuracy is below current + cfg.MinImprovement (or
// below cfg.FirstModelMinAccuracy when there is no current version), or when a class with at
// least cfg.MinClassSamples images lost more than cfg.MaxClassRegression accuracy. cfg is
// assumed valid (Config.Validate).
func Decide(cfg Config, candidate, current *Report) Decision {
	if candidate == nil {
		return Decision{Reason: "no candidate report"}
	}
	d := Decision{Candidate: summarize(candidate)}
	var broken, passed []string
	if candidate.Samples < cfg.MinEvalSamples {
		broken = append(broken, fmt.Sprintf("held-out set has %d images < min_eval_samples %d", candidate.Samples, cfg.MinEvalSamples))
	}
	if current == nil {
		if candidate.Accuracy+accuracyEpsilon < cfg.FirstModelMinAccuracy {
			broken = append(broken, fmt.Sprintf("first model: candidate accuracy %.4f < first_model_min_accuracy %.4f", candidate.Accuracy, cfg.FirstModelMinAccuracy))
		} else {
			passed = append(passed, fmt.Sprintf("first model: candidate accuracy %.4f ≥ first_model_min_accuracy %.4f", candidate.Accuracy, cfg.FirstModelMinAccuracy))
		}
		return d.conclude(broken, passed)
	}
	cur := summarize(current)
	d.Current = &cur
	if candidate.EvalDigest != current.EvalDigest || !slices.Equal(candidate.Classes, current.Classes) || len(candidate.PerClass) != len(current.PerClass) {
		// Different sets make every comparison below meaningless: refuse without them.
		broken = append(broken, "the reports were made on different held-out sets")
		return d.conclude(broken, passed)
	}
	need := current.Accuracy + cfg.MinImprovement
	if candidate.Accuracy+accuracyEpsilon < need {
		broken = append(broken, fmt.Sprintf("candidate accuracy %.4f < current %.4f + margin %.4f", candidate.Accuracy, current.Accuracy, cfg.MinImprovement))
	} else {
		passed = append(passed, fmt.Sprintf("candidate accuracy %.4f ≥ current %.4f + margin %.4f", candidate.Accuracy, current.Accuracy, cfg.MinImprovement))
	}
	worst := -1
	for i, c := range candidate.PerClass {
		p := current.PerClass[i]
		cd := ClassDelta{Class: c.Class, Candidate: c.Accuracy, Current: p.Accuracy, Delta: c.Accuracy - p.Accuracy,
			Samples: c.Samples, Checked: c.Samples >= cfg.MinClassSamples}
		d.PerClassDelta = append(d.PerClassDelta, cd)
		if !cd.Checked {
			continue
		}
		if -cd.Delta > cfg.MaxClassRegression+accuracyEpsilon {
			broken = append(broken, fmt.Sprintf("class %s regressed by %.3f > %.3f (%.3f → %.3f)", c.Class, -cd.Delta, cfg.MaxClassRegression, p.Accuracy, c.Accuracy))
		}
		if worst < 0 || cd.Delta < d.PerClassDelta[worst].Delta {
			worst = i
		}
	}
	if worst >= 0 {
		w := d.PerClassDelta[worst]
		passed = append(passed, fmt.Sprintf("no class regressed by more than %.3f (worst: %s %+.3f)", cfg.MaxClassRegression, w.Class, w.Delta))
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
