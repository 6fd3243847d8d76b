package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/trainers/go"
)

// DefaultBatchSize is how many images Evaluate runs through the model at once: large enough
// that the matrix products dominate, small enough that a 784→256→128→10 model's activations
// stay in the cache.
const DefaultBatchSize = 256

// HistogramBins is the number of equal-width confidence bins over [0, 1], as the trainer's
// metrics.json and the exporter's default drift.bins have them.
const HistogramBins = trainer.HistogramBins

// minProbability bounds the probability of the true class in the loss of a model evaluated
// through a probabilities output, where float32 rounding can give exactly 0: the loss of one
// image is at most −ln 1e−12 ≈ 27.6 instead of +Inf.
const minProbability = 1e-12

// Options tune Evaluate.
type Options struct {
	// BatchSize is the number of images per Run; 0 means DefaultBatchSize.
	BatchSize int
	// Output names the output tensor to score, and Kind says what it holds. Empty means the
	// output named "probabilities" if the model has one, else the one named "logits": the
	// outputs `edgeloop train` writes. A model with other output names (a version from the
	// repository) needs them from its manifest: see OptionsFromManifest.
	Output string
	Kind   observe.OutputKind
}

// OptionsFromManifest returns the Options that score a published version as its manifest
// describes it: its probabilities output when it declares one, else its first output.
func OptionsFromManifest(m *modelrepo.Manifest) Options {
	o := m.Output
	if s := m.SecondOutput; s != nil && s.Kind == modelrepo.OutputProbabilities && o.Kind != modelrepo.OutputProbabilities {
		o = *s
	}
	kind := observe.Logits
	if o.Kind == modelrepo.OutputProbabilities {
		kind = observe.Probabilities
	}
	return Options{Output: o.Name, Kind: kind}
}

// ClassResult is one class's part of a Report.
type ClassResult struct {
	// Class is the class name.
	Class string `json:"class"`
	// Samples is the number of held-out images of the class; Correct were predicted right.
	Samples int `json:"samples"`
	Correct int `json:"correct"`
	// Accuracy is Correct/Samples (the class's recall), 0 when Samples is 0.
	Accuracy float64 `json:"accuracy"`
}

// PartResult is a Report restricted to the captured samples or to the reference images.
type PartResult struct {
	// Samples is the number of images of the part; Correct were predicted right.
	Samples int `json:"samples"`
	Correct int `json:"correct"`
	// Accuracy is Correct/Samples, 0 when Samples is 0.
	Accuracy float64 `json:"accuracy"`
	// ConfidenceHistogram is the part's share of images per max_softmax bin (all zero when
	// Samples is 0).
	ConfidenceHistogram []float64 `json:"confidence_histogram"`
}

// Report is one model's evaluation on an EvalSet.
type Report struct {
	// ModelSHA256 is the hex SHA-256 of the model file evaluated, when Evaluate was given a
	// file (EvaluateFile): it ties the report to the bytes that get published.
	ModelSHA256 string `json:"model_sha256,omitempty"`
	// EvalDigest is the EvalSet's Digest: reports compare only when theirs are equal.
	EvalDigest string `json:"eval_digest"`
	// Output is the output tensor that was scored, and OutputKind what it holds.
	Output     string `json:"output"`
	OutputKind string `json:"output_kind"`
	// Samples is the number of images; Correct were predicted right.
	Samples int `json:"samples"`
	Correct int `json:"correct"`
	// Accuracy is top-1 accuracy, Correct/Samples.
	Accuracy float64 `json:"accuracy"`
	// Loss is the mean softmax cross-entropy, from the logits when the model has a "logits"
	// output (or Output holds logits), else from the probabilities.
	Loss float64 `json:"loss"`
	// MeanConfidence is the mean top-1 probability.
	MeanConfidence float64 `json:"mean_confidence"`
	// ConfidenceScorer names the scorer of ConfidenceHistogram: "max_softmax".
	ConfidenceScorer string `json:"confidence_scorer"`
	// ConfidenceHistogram is the share of images per confidence bin: HistogramBins equal bins
	// over [0, 1], bin ⌊c·bins⌋ with c = 1 in the last, as the trainer's metrics.json and the
	// exporter's drift histogram count them. It sums to 1.
	ConfidenceHistogram []float64 `json:"confidence_histogram"`
	// Classes names the classes, in label order; PerClass has one entry per class, in order.
	Classes  []string      `json:"classes"`
	PerClass []ClassResult `json:"per_class"`
	// Captured and Reference are the results on the held-out captured samples and on the
	// Fashion-MNIST reference images.
	Captured  PartResult `json:"captured"`
	Reference PartResult `json:"reference"`
}

// EvaluateFile loads the ONNX model at path with the built-in runtime and evaluates it (see
// Evaluate), recording the file's SHA-256 in the report.
func EvaluateFile(ctx context.Context, path string, set *EvalSet, opts Options) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	m, err := builtin.Load(data)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", path, err)
	}
	r, err := Evaluate(ctx, m, set, opts)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	r.ModelSHA256 = hex.EncodeToString(sum[:])
	return r, nil
}

// Evaluate runs every image of set through m in batches and measures accuracy overall, per
// class and per part, the loss and the max_softmax confidence histogram. Confidences are
// scored by exporter/observe, exactly as the exporter scores live predictions. A model whose
// "classes" metadata disagrees with set.Classes is refused: its scores would be compared
// against the wrong labels.
func Evaluate(ctx context.Context, m *builtin.Model, set *EvalSet, opts Options) (*Report, error) {
	if err := checkSet(set); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	batch := opts.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	if batch < 1 {
		return nil, fmt.Errorf("evaluate: batch size must be positive, got %d", batch)
	}
	shape, err := inputShape(m, set.Width)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	scored, kind, logits, err := pickOutputs(m, opts)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	if err := checkClasses(m, set.Classes); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	k := len(set.Classes)
	t := newTally(set)
	for lo := 0; lo < set.Len(); lo += batch {
		// The runtime checks ctx only every few kernels, which a small model never reaches.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		hi := min(lo+batch, set.Len())
		shape[0] = int64(hi - lo)
		res, err := m.Run(ctx, []builtin.Tensor{{Shape: shape, Data: set.Images[lo*set.Width : hi*set.Width]}})
		if err != nil {
			return nil, fmt.Errorf("evaluate: images %d to %d: %w", lo, hi-1, err)
		}
		err = t.add(res, lo, hi, k, scored, kind, logits)
		res.Release()
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
	}
	r := t.report()
	r.Output, r.OutputKind = m.Outputs()[scored].Name, kind.String()
	return r, nil
}

func checkSet(set *EvalSet) error {
	switch {
	case set == nil || set.Len() == 0:
		return errors.New("the held-out set is empty")
	case set.Width < 1 || len(set.Images) != set.Len()*set.Width:
		return fmt.Errorf("held-out set: %d values for %d images of width %d", len(set.Images), set.Len(), set.Width)
	case set.Captured < 0 || set.Captured > set.Len():
		return fmt.Errorf("held-out set: %d captured of %d images", set.Captured, set.Len())
	case len(set.Classes) < 2:
		return fmt.Errorf("held-out set: %d classes, need at least 2", len(set.Classes))
	}
	for i, l := range set.Labels {
		if int(l) >= len(set.Classes) {
			return fmt.Errorf("held-out set: image %d has label %d, there are %d classes", i, l, len(set.Classes))
		}
	}
	return nil
}

// inputShape is the shape of a batch for m's one input, with the batch dimension (the first)
// to be filled in: the model's fixed dimensions, and a variable one other than the batch set
// so that an image has width values (a [-1, 784] and a [-1, 1, 28, 28] model both work).
func inputShape(m *builtin.Model, width int) ([]int64, error) {
	ins := m.Inputs()
	if len(ins) != 1 {
		return nil, fmt.Errorf("model has %d inputs, a classifier the gate can run has 1", len(ins))
	}
	in := ins[0]
	if len(in.Shape) < 2 {
		return nil, fmt.Errorf("input %q has shape %v: want a batch dimension and an image", in.Name, in.Shape)
	}
	shape := slices.Clone(in.Shape)
	fixed, free := int64(1), -1
	for d := 1; d < len(shape); d++ {
		if shape[d] >= 0 {
			fixed *= shape[d]
			continue
		}
		if free >= 0 {
			return nil, fmt.Errorf("input %q has shape %v: more than one variable dimension besides the batch", in.Name, in.Shape)
		}
		free = d
	}
	switch {
	case free < 0 && fixed != int64(width):
		return nil, fmt.Errorf("input %q has shape %v, %d values per image; the held-out images have %d", in.Name, in.Shape, fixed, width)
	case free >= 0 && (fixed == 0 || int64(width)%fixed != 0):
		return nil, fmt.Errorf("input %q has shape %v, which no image of %d values fits", in.Name, in.Shape, width)
	case free >= 0:
		shape[free] = int64(width) / fixed
	}
	return shape, nil
}

// pickOutputs returns the index of the output to score and its kind, and the index of a
// logits output for the loss (-1 for none).
func pickOutputs(m *builtin.Model, opts Options) (scored int, kind observe.OutputKind, logits int, err error) {
	index := func(name string) int {
		return slices.IndexFunc(m.Outputs(), func(t builtin.TensorInfo) bool { return t.Name == name })
	}
	logits = index(trainer.LogitsName)
	if opts.Output != "" {
		if opts.Kind != observe.Logits && opts.Kind != observe.Probabilities {
			return 0, 0, 0, fmt.Errorf("output %q: say whether it holds logits or probabilities", opts.Output)
		}
		if scored = index(opts.Output); scored < 0 {
			return 0, 0, 0, fmt.Errorf("model has no output %q", opts.Output)
		}
		if opts.Kind == observe.Logits {
			logits = scored
		}
		return scored, opts.Kind, logits, nil
	}
	if p := index(trainer.ProbabilitiesName); p >= 0 {
		return p, observe.Probabilities, logits, nil
	}
	if logits >= 0 {
		return logits, observe.Logits, logits, nil
	}
	return 0, 0, 0, fmt.Errorf("model has no %q or %q output; name the output to score", trainer.ProbabilitiesName, trainer.LogitsName)
}

// checkClasses compares the model's "classes" metadata (a JSON list or comma-separated, as
// modelrepo reads it), when it has one, with the held-out set's.
func checkClasses(m *builtin.Model, classes []string) error {
	s := strings.TrimSpace(m.Metadata()[trainer.MetadataClasses])
	if s == "" {
		return nil
	}
	var got []string
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &got); err != nil {
			return fmt.Errorf("model metadata %q: %w", trainer.MetadataClasses, err)
		}
	} else {
		for c := range strings.SplitSeq(s, ",") {
			got = append(got, strings.TrimSpace(c))
		}
	}
	if !slices.Equal(got, classes) {
		return fmt.Errorf("model classes %q differ from the held-out set's %q", got, classes)
	}
	return nil
}

// tally accumulates a Report as batches come out of the model.
type tally struct {
	set           *EvalSet
	perClass      []int
	perClassRight []int
	parts         [2]struct {
		n, right int
		hist     [HistogramBins]int
	} // captured, reference
	loss, confSum float64
	hist          [HistogramBins]int
	right         int
}

func newTally(set *EvalSet) *tally {
	return &tally{set: set, perClass: make([]int, len(set.Classes)), perClassRight: make([]int, len(set.Classes))}
}

// add scores the rows of images lo to hi−1 in res.
func (t *tally) add(res *builtin.Result, lo, hi, k, scored int, kind observe.OutputKind, logits int) error {
	rows := hi - lo
	out := res.Outputs[scored].Data
	if len(out) != rows*k {
		return fmt.Errorf("output %d has %d values for %d images of %d classes", scored, len(out), rows, k)
	}
	var z []float32
	if logits >= 0 {
		if z = res.Outputs[logits].Data; len(z) != rows*k {
			return fmt.Errorf("logits output has %d values for %d images of %d classes", len(z), rows, k)
		}
	}
	for r := range rows {
		i := lo + r
		row := out[r*k : (r+1)*k]
		s, err := observe.Score(row, kind)
		if err != nil {
			return fmt.Errorf("image %d: %w", i, err)
		}
		label := int(t.set.Labels[i])
		if z != nil {
			t.loss += trainer.CrossEntropy(z[r*k:(r+1)*k], label)
		} else {
			t.loss += -math.Log(max(float64(row[label])/sum(row), minProbability))
		}
		b := trainer.HistogramBin(s.MaxSoftmax)
		part := &t.parts[1]
		if i < t.set.Captured {
			part = &t.parts[0]
		}
		t.perClass[label]++
		part.n++
		t.hist[b]++
		part.hist[b]++
		t.confSum += s.MaxSoftmax
		if s.Class == label {
			t.right++
			t.perClassRight[label]++
			part.right++
		}
	}
	return nil
}

func (t *tally) report() *Report {
	n := t.set.Len()
	r := &Report{
		EvalDigest:          t.set.Digest,
		Samples:             n,
		Correct:             t.right,
		Accuracy:            ratio(t.right, n),
		Loss:                t.loss / float64(n),
		MeanConfidence:      t.confSum / float64(n),
		ConfidenceScorer:    string(observe.MaxSoftmax),
		ConfidenceHistogram: shares(t.hist[:], n),
		Classes:             slices.Clone(t.set.Classes),
	}
	for c, name := range t.set.Classes {
		r.PerClass = append(r.PerClass, ClassResult{Class: name, Samples: t.perClass[c], Correct: t.perClassRight[c], Accuracy: ratio(t.perClassRight[c], t.perClass[c])})
	}
	for i, p := range []*PartResult{&r.Captured, &r.Reference} {
		tp := &t.parts[i]
		*p = PartResult{Samples: tp.n, Correct: tp.right, Accuracy: ratio(tp.right, tp.n), ConfidenceHistogram: shares(tp.hist[:], tp.n)}
	}
	return r
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

func sum(row []float32) float64 {
	var s float64
	for _, v := range row {
		s += float64(v)
	}
	return s
}
