package observe

import "github.com/edgeloop/edgeloop/internal/classify"

// The confidence scorers are internal/classify's, shared with the retrain gate and the
// trainers so that all of them score a prediction exactly as the exporter does. These names
// let the exporter's packages keep speaking of observe.Scorer, observe.Logits and so on in
// their configurations and model specs; they are aliases, not copies.
type (
	// Scorer is classify.Scorer: the `scorer` config key's value.
	Scorer = classify.Scorer
	// OutputKind is classify.OutputKind: whether a model's output holds logits or probabilities.
	OutputKind = classify.OutputKind
	// Scores is classify.Scores: what the scorers derive from one output row.
	Scores = classify.Scores
	// Reason is classify.Reason: why an output could not be scored, the `reason` label of
	// edgeloop_confidence_errors_total.
	Reason = classify.Reason
)

// The scorers (classify's).
const (
	MaxSoftmax = classify.MaxSoftmax
	Margin     = classify.Margin
	Entropy    = classify.Entropy
)

// The output kinds (classify's).
const (
	Logits        = classify.Logits
	Probabilities = classify.Probabilities
)

// Score is classify.Score: it scores one classification output row by every scorer.
func Score(row []float32, kind OutputKind) (Scores, error) { return classify.Score(row, kind) }
