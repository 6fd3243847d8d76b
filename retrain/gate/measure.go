package gate

import (
	"fmt"
	"math"
	"slices"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// HistogramBins is the number of equal-width confidence bins of the reference histogram over
// [0, 1], as the trainers' metrics.json and the exporter's default drift.bins have them.
const HistogramBins = classify.HistogramBins

// minProbability bounds the probability of a class in the logs taken of a probabilities
// output, where float32 rounding can give exactly 0: the loss of one sample is at most
// −ln 1e−12 ≈ 27.6 instead of +Inf.
const minProbability = 1e-12

// ClassResult is one class's part of a Report.
type ClassResult struct {
	// Class is the class name.
	Class string `json:"class"`
	// Samples is the number of evaluation samples of the class; Correct were predicted right;
	// Predicted is how many samples of any class were predicted as it.
	Samples   int `json:"samples"`
	Correct   int `json:"correct"`
	Predicted int `json:"predicted"`
	// Recall is Correct/Samples (0 when Samples is 0); Precision is Correct/Predicted (0 when
	// nothing was predicted as the class); F1 their harmonic mean (0 when both are 0).
	Recall    float64 `json:"recall"`
	Precision float64 `json:"precision"`
	F1        float64 `json:"f1"`
}

// PartResult is a Report restricted to one Part of the Set.
type PartResult struct {
	// Name is the part's name (an evaluation set, or PartHeldOut).
	Name string `json:"name"`
	// Samples is the number of samples of the part; Correct were predicted right.
	Samples int `json:"samples"`
	Correct int `json:"correct"`
	// Accuracy is Correct/Samples, 0 when Samples is 0.
	Accuracy float64 `json:"accuracy"`
}

// Calibration is the softmax temperature fitted on the evaluation set (docs/gate.md,
// "Calibration").
type Calibration struct {
	// Temperature T is what the logits are divided by before the softmax.
	Temperature float64 `json:"temperature"`
	// NLLBefore and NLLAfter are the mean negative log-likelihood at T = 1 and at T.
	NLLBefore float64 `json:"nll_before"`
	NLLAfter  float64 `json:"nll_after"`
	// ECEAfter is the expected calibration error of softmax(logits/T).
	ECEAfter float64 `json:"ece_after"`
}

// Report is one model's measurement on a Set.
type Report struct {
	// Role is RoleCandidate or RoleCurrent; ModelSHA256 the model file's SHA-256.
	Role        string `json:"role"`
	ModelSHA256 string `json:"model_sha256"`
	// EvalDigest is the Set's Digest: reports compare only when theirs are equal.
	EvalDigest string `json:"eval_digest"`
	// Evaluator names what ran the model.
	Evaluator string `json:"evaluator"`
	// Output is the output tensor that was scored, and OutputKind what it holds.
	Output     string `json:"output"`
	OutputKind string `json:"output_kind"`
	// Samples is the number of samples; Correct were predicted right (top-1).
	Samples int `json:"samples"`
	Correct int `json:"correct"`
	// Accuracy is top-1 accuracy, Correct/Samples.
	Accuracy float64 `json:"accuracy"`
	// MacroF1 is the mean of the classes' F1.
	MacroF1 float64 `json:"macro_f1"`
	// TopK is k, and TopKAccuracy the share of samples whose label is among the k highest
	// scores (ties counted in the label's favour).
	TopK         int     `json:"top_k"`
	TopKAccuracy float64 `json:"top_k_accuracy"`
	// Loss is the mean softmax cross-entropy (negative log-likelihood of the label).
	Loss float64 `json:"loss"`
	// MeanConfidence is the mean top-1 probability.
	MeanConfidence float64 `json:"mean_confidence"`
	// ECE is the expected calibration error of the top-1 probability, in classify.ECEBins
	// equal-width bins.
	ECE float64 `json:"ece"`
	// Calibration is the fitted temperature, when calibration is on.
	Calibration *Calibration `json:"calibration,omitempty"`
	// DriftReference is the class mix and input statistics on the evaluation sets (not the
	// held-out captured samples), for the exporter's drift signals; nil when the set has no
	// evaluation-set samples.
	DriftReference *modelrepo.DriftReference `json:"drift_reference,omitempty"`
	// ConfidenceScorer names the scorer of ConfidenceHistogram: "max_softmax".
	ConfidenceScorer string `json:"confidence_scorer"`
	// ConfidenceHistogram is the share of samples per confidence bin: HistogramBins equal
	// bins over [0, 1], as the exporter's drift histogram counts them. It sums to 1.
	ConfidenceHistogram []float64 `json:"confidence_histogram"`
	// Classes names the classes, in label order; PerClass has one entry per class, in order.
	Classes  []string      `json:"classes"`
	PerClass []ClassResult `json:"per_class"`
	// Parts has one entry per Part of the Set, in order.
	Parts []PartResult `json:"parts"`
}

// Metric returns the named primary metric (MetricAccuracy, MetricMacroF1, MetricTopK).
func (r *Report) Metric(name string) float64 {
	switch name {
	case MetricMacroF1:
		return r.MacroF1
	case MetricTopK:
		return r.TopKAccuracy
	default:
		return r.Accuracy
	}
}

// MeasureOptions tune Measure.
type MeasureOptions struct {
	// TopK is the k of TopKAccuracy, capped at the number of classes; 0 means 5.
	TopK int
	// Calibrate fits a softmax temperature (Report.Calibration).
	Calibrate bool
	// Evaluator names what produced the scores, for the report.
	Evaluator string
}

// Measure computes a model's Report from its scores on set. Confidences and predicted
// classes are scored by internal/classify, exactly as the exporter scores live predictions.
func Measure(set *Set, sc *Scores, opts MeasureOptions) (*Report, error) {
	if err := checkSet(set); err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	n, k := set.Len(), len(set.Spec.Classes)
	if sc == nil || len(sc.Values) != n*k {
		got := 0
		if sc != nil {
			got = len(sc.Values)
		}
		return nil, fmt.Errorf("measure: %d score values for %d samples of %d classes", got, n, k)
	}
	var kind classify.OutputKind
	switch sc.Kind {
	case modelrepo.OutputLogits:
		kind = classify.Logits
	case modelrepo.OutputProbabilities:
		kind = classify.Probabilities
	default:
		return nil, fmt.Errorf("measure: output kind %q: want logits or probabilities", sc.Kind)
	}
	topK := opts.TopK
	if topK <= 0 {
		topK = 5
	}
	topK = min(topK, k)
	r := &Report{
		Role: sc.Role, ModelSHA256: sc.ModelSHA256, EvalDigest: set.Digest, Evaluator: opts.Evaluator,
		Output: sc.Output, OutputKind: kind.String(), Samples: n, TopK: topK,
		ConfidenceScorer: string(classify.MaxSoftmax), Classes: slices.Clone(set.Spec.Classes),
	}
	perClass, predicted, right := make([]int, k), make([]int, k), make([]int, k)
	conf := make([]float64, n)
	correct := make([]bool, n)
	hist := make([]int, HistogramBins)
	// Logits for the loss and the temperature fit: a probabilities output's logs are logits
	// up to a per-row constant, which the softmax ignores.
	z := make([]float32, n*k)
	var loss, confSum float64
	topRight := 0
	for i := range n {
		row := sc.Values[i*k : (i+1)*k]
		s, err := classify.Score(row, kind)
		if err != nil {
			return nil, fmt.Errorf("measure: sample %d: %w", i, err)
		}
		zr := z[i*k : (i+1)*k]
		if kind == classify.Logits {
			copy(zr, row)
		} else {
			for j, p := range row {
				zr[j] = float32(math.Log(max(float64(p), minProbability)))
			}
		}
		label := set.Labels[i]
		loss += classify.CrossEntropy(zr, label, 1)
		conf[i] = s.MaxSoftmax
		confSum += s.MaxSoftmax
		hist[classify.HistogramBin(s.MaxSoftmax, HistogramBins)]++
		perClass[label]++
		predicted[s.Class]++
		if s.Class == label {
			correct[i] = true
			r.Correct++
			right[label]++
		}
		above := 0
		for _, v := range row {
			if v > row[label] {
				above++
			}
		}
		if above < topK {
			topRight++
		}
	}
	r.Accuracy = ratio(r.Correct, n)
	r.TopKAccuracy = ratio(topRight, n)
	r.Loss = loss / float64(n)
	r.MeanConfidence = confSum / float64(n)
	r.ECE = classify.ExpectedCalibrationError(conf, correct, classify.ECEBins)
	r.ConfidenceHistogram = shares(hist, n)
	var f1Sum float64
	for c, name := range set.Spec.Classes {
		cr := ClassResult{Class: name, Samples: perClass[c], Correct: right[c], Predicted: predicted[c],
			Recall: ratio(right[c], perClass[c]), Precision: ratio(right[c], predicted[c])}
		if cr.Recall+cr.Precision > 0 {
			cr.F1 = 2 * cr.Recall * cr.Precision / (cr.Recall + cr.Precision)
		}
		f1Sum += cr.F1
		r.PerClass = append(r.PerClass, cr)
	}
	r.MacroF1 = f1Sum / float64(k)
	for _, p := range set.Parts {
		pr := PartResult{Name: p.Name, Samples: p.Samples}
		for i := p.Offset; i < p.Offset+p.Samples && i < n; i++ {
			if correct[i] {
				pr.Correct++
			}
		}
		pr.Accuracy = ratio(pr.Correct, pr.Samples)
		r.Parts = append(r.Parts, pr)
	}
	ref, err := driftReference(set, sc, kind)
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	r.DriftReference = ref
	if opts.Calibrate {
		c, err := calibrate(z, set.Labels, k, r.Loss)
		if err != nil {
			return nil, fmt.Errorf("measure: %w", err)
		}
		r.Calibration = c
	}
	return r, nil
}

// calibrate fits the temperature on the logits z and measures the ECE after it.
func calibrate(z []float32, labels []int, k int, nllBefore float64) (*Calibration, error) {
	t, nll, err := classify.FitTemperature(z, labels, k)
	if err != nil {
		return nil, err
	}
	n := len(labels)
	conf := make([]float64, n)
	correct := make([]bool, n)
	p := make([]float64, k)
	for i, l := range labels {
		classify.Softmax(z[i*k:(i+1)*k], t, p)
		best := 0
		for j := range p {
			if p[j] > p[best] {
				best = j
			}
		}
		conf[i], correct[i] = p[best], best == l
	}
	return &Calibration{Temperature: t, NLLBefore: nllBefore, NLLAfter: nll,
		ECEAfter: classify.ExpectedCalibrationError(conf, correct, classify.ECEBins)}, nil
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func shares(counts []int, n int) []float64 {
	h := make([]float64, len(counts))
	for i, c := range counts {
		h[i] = ratio(c, n)
	}
	return h
}
