package gate_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeSet stores an evaluation set of model in b.
func writeSet(t *testing.T, b objstore.Bucket, model, name string, spec dataset.Spec, inputs []float32, labels []int) *evalset.Manifest {
	t.Helper()
	keys := make([]string, len(labels))
	w := spec.Width()
	for i := range keys {
		keys[i] = dataset.ContentKey(inputs[i*w : (i+1)*w])
	}
	s := &evalset.Set{
		Manifest: evalset.Manifest{Model: model, Name: name, Classes: spec.Classes,
			Input: evalset.Input{Shape: spec.Shape, Datatype: spec.Datatype}, Source: "test"},
		Keys: keys, Inputs: inputs, Labels: labels,
	}
	m, err := evalset.Write(context.Background(), b, s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSecondModelThroughTheGate takes a model of 3×8×8 inputs and 4 classes through the whole
// gate: evaluation sets from a bucket (one fitting, one of another shape, one of other
// classes, one missing), held-out samples, both versions scored by the builtin evaluator,
// measured, calibrated and decided.
func TestSecondModelThroughTheGate(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 400, 8, 5)
	good := writeSet(t, b, "shapes", "golden", spec, in, labels)
	wide := dataset.Spec{Shape: []int64{3, 16, 16}, Datatype: spec.Datatype, Classes: spec.Classes}
	win, wl := gatetest.Samples(wide, gatetest.Prototypes(wide, 1), 8, 1, 5)
	writeSet(t, b, "shapes", "wide", wide, win, wl)
	other := dataset.Spec{Shape: spec.Shape, Datatype: spec.Datatype, Classes: []string{"circle", "square", "triangle", "blank"}}
	oin, ol := gatetest.Samples(other, protos, 8, 1, 5)
	writeSet(t, b, "shapes", "other-classes", other, oin, ol)
	hin, hl := gatetest.Samples(spec, protos, 100, 8, 9)
	held := &dataset.Labelled{Inputs: hin, Labels: hl, Stats: dataset.Stats{Rejected: map[string]int{dataset.ReasonShape: 3}}}

	set, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: b, Model: "shapes", EvalSets: []string{"golden", "wide", "other-classes", "missing"}, HeldOut: held}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 500 || len(set.Parts) != 2 || set.Parts[0].Digest != good.Digest || set.Parts[1].Name != gate.PartHeldOut {
		t.Fatalf("set: %d samples, parts %+v", set.Len(), set.Parts)
	}
	reasons := map[string]string{}
	for _, r := range set.Refused {
		reasons[r.Source] += r.Reason
		t.Logf("refused %s (%d samples): %s", r.Source, r.Samples, r.Reason)
	}
	for src, want := range map[string]string{
		"wide":           "shape [3 16 16], the model takes [3 8 8]",
		"other-classes":  "triangle",
		"missing":        "not found",
		gate.PartHeldOut: "captured samples refused (shape): the input's shape does not fit [3 8 8]",
	} {
		if !strings.Contains(reasons[src], want) {
			t.Errorf("refusal of %s: %q, want it to say %q", src, reasons[src], want)
		}
	}
	if set.RefusedSamples() != 8+8+3 {
		t.Errorf("refused samples %d, want 19", set.RefusedSamples())
	}

	candDir, curDir := t.TempDir(), t.TempDir()
	gatetest.WriteModel(t, candDir, spec, protos, gatetest.ModelOptions{WeightNoise: 0.2, Seed: 1, Scale: 0.004})
	gatetest.WriteModel(t, curDir, spec, protos, gatetest.ModelOptions{WeightNoise: 3, Seed: 2, Scale: 0.015, LogitsOnly: true})
	cand, err := gate.NewModel(gate.RoleCandidate, candDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := gate.NewModel(gate.RoleCurrent, curDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := gate.DefaultRules()
	rules.MinClassSamples = 50
	res, err := gate.Run(ctx, gate.Builtin{}, set, cand, &cur, gate.Options{Rules: rules, Calibrate: true})
	if err != nil {
		t.Fatal(err)
	}
	c, p := res.Candidate, res.Current
	t.Logf("candidate: acc %.3f macro-F1 %.3f top-%d %.3f loss %.3f ECE %.3f → T %.3f ECE %.3f", c.Accuracy, c.MacroF1, c.TopK, c.TopKAccuracy, c.Loss, c.ECE, c.Calibration.Temperature, c.Calibration.ECEAfter)
	t.Logf("current:   acc %.3f macro-F1 %.3f ECE %.3f → T %.3f ECE %.3f", p.Accuracy, p.MacroF1, p.ECE, p.Calibration.Temperature, p.Calibration.ECEAfter)
	t.Logf("decision: %s", res.Decision.Reason)
	if !res.Decision.Promote || c.Accuracy <= p.Accuracy {
		t.Errorf("a better candidate was refused: %s", res.Decision.Reason)
	}
	if c.TopK != 4 || c.TopKAccuracy != 1 {
		t.Errorf("top-k: k %d accuracy %v, want k capped at 4 classes and accuracy 1", c.TopK, c.TopKAccuracy)
	}
	// The candidate's logits are scaled to a quarter of what the noise warrants (1/8²): an
	// under-confident model, which the fit
	// corrects with a temperature below 1 and a lower ECE.
	if c.Calibration.Temperature > 0.6 || c.Calibration.ECEAfter >= c.ECE || c.Calibration.NLLAfter > c.Calibration.NLLBefore {
		t.Errorf("calibration %+v with ECE before %v: want T well below 1 and better ECE and NLL", c.Calibration, c.ECE)
	}
	if res.Set.Digest != set.Digest || c.EvalDigest != set.Digest || p.EvalDigest != set.Digest || len(res.Set.Refused) != 4 {
		t.Errorf("digests: set %s, reports %s %s; refused %d", set.Digest, c.EvalDigest, p.EvalDigest, len(res.Set.Refused))
	}
	if len(c.Parts) != 2 || c.Parts[0].Samples+c.Parts[1].Samples != 500 {
		t.Errorf("parts %+v", c.Parts)
	}
	var sum float64
	for _, h := range c.ConfidenceHistogram {
		sum += h
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("histogram sums to %v", sum)
	}

	// The same set built again has the same digest; another held-out part does not.
	again, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: b, Model: "shapes", EvalSets: []string{"golden"}, HeldOut: held}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest == set.Digest {
		// Same parts, fewer refusals: refusals are not content, so the digest is the same.
	} else {
		t.Errorf("same parts gave digest %s, then %s", set.Digest, again.Digest)
	}
	held2 := &dataset.Labelled{Inputs: hin[:len(hin)-spec.Width()], Labels: hl[:len(hl)-1]}
	third, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: b, Model: "shapes", EvalSets: []string{"golden"}, HeldOut: held2}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if third.Digest == set.Digest {
		t.Error("a different held-out part kept the digest")
	}
}

func TestRunRefusesScoresOfAnotherModel(t *testing.T) {
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 20, 1, 5)
	set, err := gate.NewSet(spec, "t", in, labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gatetest.WriteModel(t, dir, spec, protos, gatetest.ModelOptions{})
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.SHA256 = strings.Repeat("0", 64)
	if _, err := gate.Run(context.Background(), gate.Builtin{}, set, m, nil, gate.Options{Rules: gate.DefaultRules()}); err == nil {
		t.Fatal("scores of a model with another sha256 were accepted")
	}
}

func TestMeasureByHand(t *testing.T) {
	spec := dataset.Spec{Shape: []int64{1}, Datatype: dataset.DatatypeFP32, Classes: []string{"a", "b", "c"}}
	set, err := gate.NewSet(spec, "hand", []float32{0, 0, 0, 0}, []int{0, 1, 2, 0})
	if err != nil {
		t.Fatal(err)
	}
	// Probabilities: predictions a (right), a (wrong: b), c (right), b (wrong: a).
	sc := &gate.Scores{Kind: "probabilities", Values: []float32{
		0.7, 0.2, 0.1,
		0.5, 0.4, 0.1,
		0.1, 0.1, 0.8,
		0.3, 0.6, 0.1,
	}}
	r, err := gate.Measure(set, sc, gate.MeasureOptions{TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	// Recall: a 1/2, b 0/1, c 1/1. Precision: a 1/2 (predicted twice), b 0/1, c 1/1.
	wantRecall := []float64{0.5, 0, 1}
	wantPrec := []float64{0.5, 0, 1}
	for i, c := range r.PerClass {
		if !near(c.Recall, wantRecall[i]) || !near(c.Precision, wantPrec[i]) {
			t.Errorf("class %s: recall %v precision %v", c.Class, c.Recall, c.Precision)
		}
	}
	// F1: a 0.5, b 0, c 1 → macro 0.5. Top-2: a yes, b yes (0.4 second), c yes, a yes (0.3 second).
	if !near(r.Accuracy, 0.5) || !near(r.MacroF1, 0.5) || !near(r.TopKAccuracy, 1) {
		t.Errorf("accuracy %v macro-F1 %v top-2 %v", r.Accuracy, r.MacroF1, r.TopKAccuracy)
	}
	// ECE, 15 bins: 0.7 → bin 10 (right), 0.5 → bin 7 (wrong), 0.8 → bin 12 (right), 0.6 →
	// bin 9 (wrong): (|1−0.7| + |0−0.5| + |1−0.8| + |0−0.6|)/4 = 0.4.
	if !near(r.ECE, 0.4) {
		t.Errorf("ECE %v, want 0.4", r.ECE)
	}
	wantLoss := -(math.Log(0.7) + math.Log(0.4) + math.Log(0.8) + math.Log(0.3)) / 4
	if !near(r.Loss, wantLoss) || !near(r.MeanConfidence, (0.7+0.5+0.8+0.6)/4) {
		t.Errorf("loss %v (want %v), mean confidence %v", r.Loss, wantLoss, r.MeanConfidence)
	}
}

// TestSpecForFirstModel: a first model's spec is its own ONNX input shape and classes
// metadata; declared classes stand in for missing metadata and must agree with present ones.
func TestSpecForFirstModel(t *testing.T) {
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	withClasses, without := t.TempDir(), t.TempDir()
	gatetest.WriteModel(t, withClasses, spec, protos, gatetest.ModelOptions{})
	gatetest.WriteModel(t, without, spec, protos, gatetest.ModelOptions{Classes: []string{}})
	declared := []string{"w", "x", "y", "z"}
	for _, tc := range []struct {
		name     string
		dir      string
		declared []string
		classes  []string
		err      string
	}{
		{"from metadata", withClasses, nil, spec.Classes, ""},
		{"metadata and the same declared", withClasses, spec.Classes, spec.Classes, ""},
		{"metadata and other declared", withClasses, declared, nil, "differ from the configured"},
		{"declared only", without, declared, declared, ""},
		{"neither", without, nil, nil, "names no classes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gate.SpecForFirstModel(tc.dir, tc.declared)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Shape) != "[3 8 8]" || got.Datatype != "FP32" || fmt.Sprint(got.Classes) != fmt.Sprint(tc.classes) {
				t.Errorf("spec %+v, want shape [3 8 8], FP32, classes %q", got, tc.classes)
			}
		})
	}
}

// TestMeasureEmbeddingReference: a model whose metadata names an embedding output has its
// embeddings returned by the builtin evaluator beside its scores, and its drift reference
// holds a projected sample of them, taken from the evaluation set only.
func TestMeasureEmbeddingReference(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 300, 8, 5)
	writeSet(t, b, "shapes", "golden", spec, in, labels)
	hin, hl := gatetest.Samples(spec, protos, 50, 8, 9)
	set, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: b, Model: "shapes", EvalSets: []string{"golden"},
		HeldOut: &dataset.Labelled{Inputs: hin, Labels: hl}}, discard())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gatetest.WriteModel(t, dir, spec, protos, gatetest.ModelOptions{Seed: 1, Embedding: true})
	mod, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mod.Embedding != "embedding" || mod.Manifest.EmbeddingOutput == nil {
		t.Fatalf("model embedding %q, manifest %+v", mod.Embedding, mod.Manifest.EmbeddingOutput)
	}
	scores, err := gate.Builtin{BatchSize: 64}.Score(ctx, set, []gate.Model{mod})
	if err != nil {
		t.Fatal(err)
	}
	w := spec.Width()
	sc := scores[0]
	if sc.EmbeddingWidth != w || len(sc.Embedding) != set.Len()*w {
		t.Fatalf("embedding width %d, %d values; want %d values of width %d", sc.EmbeddingWidth, len(sc.Embedding), set.Len()*w, w)
	}
	// The model's embedding is its flattened input.
	for i, v := range sc.Embedding {
		if v != set.Inputs[i] {
			t.Fatalf("embedding value %d is %v, the input's %v", i, v, set.Inputs[i])
		}
	}
	r, err := gate.Measure(set, sc, gate.MeasureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := r.DriftReference.Embedding
	if e == nil || e.Width != w || e.Dims != modelrepo.MaxEmbeddingDims || len(e.Points) != gate.ReferenceEmbeddingPoints*e.Dims || !(e.Bandwidth > 0) || e.Seed != gate.ReferenceSeed {
		t.Fatalf("embedding reference %+v", e)
	}
	// The points are spread over the 300 evaluation-set samples, none of the held-out ones: the
	// first is sample 0's projection, the last sample 255·300/256 = 298's.
	p := make([]float32, e.Dims)
	proj := e.Projection()
	for _, c := range []struct{ point, sample int }{{0, 0}, {255, 298}} {
		modelrepo.ProjectEmbedding(p, set.Inputs[c.sample*w:(c.sample+1)*w], proj)
		if got := e.Points[c.point*e.Dims : (c.point+1)*e.Dims]; !slices.Equal(got, p) {
			t.Errorf("point %d is not sample %d's projection", c.point, c.sample)
		}
	}
	// Scores without embeddings (another evaluator) give a reference without one.
	r2, err := gate.Measure(set, &gate.Scores{Role: sc.Role, Kind: sc.Kind, Output: sc.Output, Values: sc.Values}, gate.MeasureOptions{})
	if err != nil || r2.DriftReference.Embedding != nil {
		t.Fatalf("reference without embeddings: %+v, %v", r2.DriftReference.Embedding, err)
	}
	// Embeddings that do not cover the set are refused.
	bad := *sc
	bad.Embedding = bad.Embedding[:len(bad.Embedding)-w]
	if _, err := gate.Measure(set, &bad, gate.MeasureOptions{}); err == nil || !strings.Contains(err.Error(), "embedding values for 350 samples") {
		t.Fatalf("short embeddings: %v", err)
	}
}
