package gate

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/builtin"
	"github.com/edgeloop/edgeloop/exporter/runtime/builtin/builtintest"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// tinySet is n seeded inputs for builtintest.Tiny with labels from label(i, predicted class),
// the first captured of them marked as captured samples.
func tinySet(n, captured int, label func(i, predicted int) int) *EvalSet {
	x := builtintest.Input(7, n, 4)
	for i := range x {
		x[i] = x[i]*4 - 2 // both signs, so the Relu matters
	}
	s := &EvalSet{Images: x, Width: 4, Classes: builtintest.TinyClasses(), Captured: captured}
	for i := range n {
		z := builtintest.TinyLogits(x[i*4 : (i+1)*4])
		s.Labels = append(s.Labels, uint8(label(i, argmax(z))))
	}
	s.Digest = s.ComputeDigest()
	return s
}

func argmax(z []float32) int {
	best := 0
	for i, v := range z {
		if v > z[best] {
			best = i
		}
	}
	return best
}

func compile(t *testing.T, m *onnx.Model) *builtin.Model {
	t.Helper()
	c, err := builtin.Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEvaluateTiny(t *testing.T) {
	ctx := context.Background()
	m := compile(t, builtintest.Tiny())
	// Every fourth label wrong (shifted by one class), the rest the model's prediction.
	set := tinySet(1000, 100, func(i, p int) int {
		if i%4 == 0 {
			return (p + 1) % 3
		}
		return p
	})
	r, err := Evaluate(ctx, m, set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Expected values computed directly from TinyLogits.
	var loss, conf float64
	hist := make([]float64, HistogramBins)
	perClass := make([]int, 3)
	for i := range set.Len() {
		z := builtintest.TinyLogits(set.Images[i*4 : (i+1)*4])
		p := builtintest.Softmax(z)
		loss -= math.Log(float64(p[set.Labels[i]]))
		top := float64(slices.Max(p))
		conf += top
		hist[min(int(top*HistogramBins), HistogramBins-1)] += 1.0 / float64(set.Len())
		perClass[set.Labels[i]]++
	}
	if r.Samples != 1000 || r.Correct != 750 || r.Accuracy != 0.75 {
		t.Errorf("%d of %d right (accuracy %v), want 750 of 1000", r.Correct, r.Samples, r.Accuracy)
	}
	if math.Abs(r.Loss-loss/1000) > 1e-5 || math.Abs(r.MeanConfidence-conf/1000) > 1e-5 {
		t.Errorf("loss %v, mean confidence %v; want %v, %v", r.Loss, r.MeanConfidence, loss/1000, conf/1000)
	}
	for b := range hist {
		if math.Abs(r.ConfidenceHistogram[b]-hist[b]) > 1e-9 {
			t.Fatalf("histogram %v, want %v", r.ConfidenceHistogram, hist)
		}
	}
	for c, pc := range r.PerClass {
		if pc.Class != set.Classes[c] || pc.Samples != perClass[c] || pc.Accuracy != float64(pc.Correct)/float64(pc.Samples) {
			t.Errorf("class %d: %+v, want %d images", c, pc, perClass[c])
		}
	}
	if r.Captured.Samples != 100 || r.Reference.Samples != 900 || r.Captured.Correct != 75 || r.Captured.Accuracy != 0.75 {
		t.Errorf("parts %+v, %+v", r.Captured, r.Reference)
	}
	if r.Output != "probabilities" || r.OutputKind != "probabilities" || r.ConfidenceScorer != "max_softmax" || r.EvalDigest != set.Digest || r.ModelSHA256 != "" {
		t.Errorf("report header %+v", r)
	}

	// Batch size does not change anything; nor does scoring the logits instead (up to the
	// float32 rounding of the softmax).
	for _, opts := range []Options{{BatchSize: 1}, {BatchSize: 7}, {BatchSize: 5000}} {
		r2, err := Evaluate(ctx, m, set, opts)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Correct != r.Correct || r2.Loss != r.Loss || !slices.Equal(r2.ConfidenceHistogram, r.ConfidenceHistogram) {
			t.Errorf("batch %d: %+v", opts.BatchSize, r2)
		}
	}
	rl, err := Evaluate(ctx, m, set, Options{Output: "logits", Kind: observe.Logits})
	if err != nil {
		t.Fatal(err)
	}
	if rl.Correct != r.Correct || rl.Loss != r.Loss || math.Abs(rl.MeanConfidence-r.MeanConfidence) > 1e-6 || rl.Output != "logits" {
		t.Errorf("scoring the logits: %+v", rl)
	}
	opts := OptionsFromManifest(&modelrepo.Manifest{
		Output:       modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
		SecondOutput: &modelrepo.Output{Name: "probabilities", Kind: modelrepo.OutputProbabilities},
	})
	if opts != (Options{Output: "probabilities", Kind: observe.Probabilities}) {
		t.Errorf("OptionsFromManifest = %+v", opts)
	}
}

// TestEvaluateProbabilitiesOnly checks a model without a logits output: the loss comes from
// the probabilities.
func TestEvaluateProbabilitiesOnly(t *testing.T) {
	tm := builtintest.Tiny()
	tm.Graph.Outputs = tm.Graph.Outputs[1:]
	set := tinySet(50, 0, func(_, p int) int { return p })
	r, err := Evaluate(context.Background(), compile(t, tm), set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := Evaluate(context.Background(), compile(t, builtintest.Tiny()), set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accuracy != 1 || math.Abs(r.Loss-full.Loss) > 1e-5 {
		t.Errorf("accuracy %v, loss %v; want 1 and %v", r.Accuracy, r.Loss, full.Loss)
	}
}

func TestEvaluateErrors(t *testing.T) {
	ctx := context.Background()
	tiny := compile(t, builtintest.Tiny())
	good := tinySet(10, 0, func(_, p int) int { return p })
	renamed := builtintest.Tiny()
	renamed.Graph.Outputs[0].Name, renamed.Graph.Outputs[1].Name = "a", "b"
	renamed.Graph.Nodes[2].Outputs[0], renamed.Graph.Nodes[3].Inputs[0], renamed.Graph.Nodes[3].Outputs[0] = "a", "a", "b"
	tests := []struct {
		name  string
		model *builtin.Model
		set   *EvalSet
		opts  Options
		want  string
	}{
		{"empty set", tiny, &EvalSet{Width: 4, Classes: builtintest.TinyClasses()}, Options{}, "the held-out set is empty"},
		{"ragged set", tiny, &EvalSet{Images: make([]float32, 7), Labels: []uint8{0, 1}, Width: 4, Classes: builtintest.TinyClasses()}, Options{}, "7 values for 2 images of width 4"},
		{"label out of range", tiny, &EvalSet{Images: make([]float32, 4), Labels: []uint8{3}, Width: 4, Classes: builtintest.TinyClasses()}, Options{}, "image 0 has label 3"},
		{"wrong width", tiny, &EvalSet{Images: make([]float32, 5), Labels: []uint8{0}, Width: 5, Classes: builtintest.TinyClasses()}, Options{}, "4 values per image; the held-out images have 5"},
		{"other classes", tiny, &EvalSet{Images: make([]float32, 4), Labels: []uint8{0}, Width: 4, Classes: []string{"zero", "two", "one"}}, Options{}, "differ from the held-out set's"},
		{"output without kind", tiny, good, Options{Output: "logits"}, "say whether it holds logits or probabilities"},
		{"unknown output", tiny, good, Options{Output: "scores", Kind: observe.Logits}, `model has no output "scores"`},
		{"unnamed outputs", compile(t, renamed), good, Options{}, "name the output to score"},
		{"negative batch", tiny, good, Options{BatchSize: -1}, "batch size must be positive"},
	}
	for _, tt := range tests {
		_, err := Evaluate(ctx, tt.model, tt.set, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "evaluate: ") {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Evaluate(ctxDone, tiny, good, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Evaluate with a cancelled context: %v", err)
	}
}
