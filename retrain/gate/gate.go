package gate

import (
	"context"
	"fmt"
)

// Result is one gate run: both reports on the same set and the decision.
type Result struct {
	// Set describes the evaluation set: its digest, size, parts and what was refused.
	Set SetSummary `json:"set"`
	// Candidate and Current are the reports; Current is nil for a first model.
	Candidate *Report `json:"candidate"`
	Current   *Report `json:"current,omitempty"`
	// Decision is the verdict.
	Decision Decision `json:"decision"`
}

// SetSummary is what gate.json records of a Set.
type SetSummary struct {
	Digest  string    `json:"digest"`
	Samples int       `json:"samples"`
	Shape   []int64   `json:"shape"`
	Classes []string  `json:"classes"`
	Parts   []Part    `json:"parts"`
	Refused []Refusal `json:"refused,omitempty"`
}

// Summarize returns the set's SetSummary.
func (s *Set) Summarize() SetSummary {
	return SetSummary{Digest: s.Digest, Samples: s.Len(), Shape: s.Spec.Shape, Classes: s.Spec.Classes, Parts: s.Parts, Refused: s.Refused}
}

// Options tune Run.
type Options struct {
	// Rules is the model's decision rule.
	Rules Rules
	// Calibrate fits a temperature for each version.
	Calibrate bool
}

// Run scores the candidate and the serving version (nil for a first model) with ev on set,
// measures both and decides. Scores that do not name the model file that was asked for (an
// evaluator that ran something else) are an error.
func Run(ctx context.Context, ev Evaluator, set *Set, candidate Model, current *Model, opts Options) (*Result, error) {
	models := []Model{candidate}
	if current != nil {
		models = append(models, *current)
	}
	scores, err := ev.Score(ctx, set, models)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	if len(scores) != len(models) {
		return nil, fmt.Errorf("gate: %s evaluator returned %d scores for %d models", ev.Name(), len(scores), len(models))
	}
	reports := make([]*Report, len(models))
	for i, m := range models {
		sc := scores[i]
		if sc == nil || sc.Role != m.Role || (m.SHA256 != "" && sc.ModelSHA256 != m.SHA256) {
			return nil, fmt.Errorf("gate: %s evaluator returned scores of another model than the %s (sha256 %s)", ev.Name(), m.Role, m.SHA256)
		}
		if reports[i], err = Measure(set, sc, MeasureOptions{TopK: opts.Rules.TopK, Calibrate: opts.Calibrate, Evaluator: ev.Name()}); err != nil {
			return nil, fmt.Errorf("gate: %s: %w", m.Role, err)
		}
	}
	res := &Result{Set: set.Summarize(), Candidate: reports[0]}
	if current != nil {
		res.Current = reports[1]
	}
	res.Decision = Decide(opts.Rules, res.Candidate, res.Current)
	return res, nil
}
