// Package gatetest is the conformance suite of gate.Evaluator implementations, and the
// synthetic classifiers and evaluation sets it (and other tests) score: every evaluator must
// return the same scores for the same models on the same set, and refuse the same misfits.
package gatetest

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// Spec is the suite's default input: 3×8×8 images of 4 classes.
func Spec() dataset.Spec {
	return dataset.Spec{Shape: []int64{3, 8, 8}, Datatype: dataset.DatatypeFP32, Classes: []string{"circle", "square", "star", "blank"}}
}

// Prototypes returns one random prototype per class of spec, seeded.
func Prototypes(spec dataset.Spec, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := spec.Width()
	protos := make([][]float32, len(spec.Classes))
	for c := range protos {
		protos[c] = make([]float32, w)
		for i := range protos[c] {
			protos[c][i] = float32(rng.NormFloat64())
		}
	}
	return protos
}

// Samples returns n labelled samples of spec: each its class's prototype plus Gaussian noise
// of the given standard deviation, classes in turn.
func Samples(spec dataset.Spec, protos [][]float32, n int, noise float64, seed uint64) (inputs []float32, labels []int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	w := spec.Width()
	for i := range n {
		c := i % len(spec.Classes)
		labels = append(labels, c)
		for j := range w {
			inputs = append(inputs, protos[c][j]+float32(rng.NormFloat64()*noise))
		}
	}
	return inputs, labels
}

// ModelOptions shape the classifier WriteModel writes.
type ModelOptions struct {
	// WeightNoise perturbs the prototypes the classifier's weights are made of: 0 gives the
	// nearest-prototype classifier, larger values a worse one.
	WeightNoise float64
	// Scale multiplies the logits (a temperature of 1/Scale): small values make an
	// under-confident model.
	Scale float32
	// Classes are written as the "classes" metadata; nil writes spec's, empty writes none.
	Classes []string
	// Flatten makes the model's input [batch, width] instead of [batch, shape...].
	Flatten bool
	// LogitsOnly leaves the probabilities output out.
	LogitsOnly bool
	// Embedding adds the flattened input as the output "embedding", named by the
	// edgeloop.embedding_output metadata.
	Embedding bool
	// Seed seeds WeightNoise.
	Seed uint64
}

// WriteModel writes dir/model.onnx: a linear classifier of spec's samples (Flatten, Gemm with
// the prototypes as weights and −|p|²/2 as biases, so the top logit is the nearest
// prototype), with outputs "logits" and, unless LogitsOnly, "probabilities". It returns the
// file's path.
func WriteModel(t testing.TB, dir string, spec dataset.Spec, protos [][]float32, o ModelOptions) string {
	t.Helper()
	if o.Scale == 0 {
		o.Scale = 1
	}
	rng := rand.New(rand.NewPCG(o.Seed, 13))
	k, w := len(spec.Classes), spec.Width()
	weights := make([]float32, 0, k*w)
	bias := make([]float32, k)
	for c := range k {
		var sq float64
		for j := range w {
			v := protos[c][j] + float32(rng.NormFloat64()*o.WeightNoise)
			weights = append(weights, v*o.Scale)
			sq += float64(v) * float64(v)
		}
		bias[c] = -float32(sq/2) * o.Scale
	}
	batch := onnx.Dim{Value: -1, Param: "batch"}
	in := []onnx.Dim{batch}
	if o.Flatten {
		in = append(in, onnx.Dim{Value: int64(w)})
	} else {
		for _, d := range spec.Shape {
			in = append(in, onnx.Dim{Value: d})
		}
	}
	classes := o.Classes
	if classes == nil {
		classes = spec.Classes
	}
	meta := map[string]string{}
	if len(classes) > 0 {
		b, _ := json.Marshal(classes)
		meta[classify.MetadataClasses] = string(b)
	}
	outShape := []onnx.Dim{batch, {Value: int64(k)}}
	m := &onnx.Model{
		IRVersion: 8, ProducerName: "gatetest", Opsets: []onnx.Opset{{Version: 13}}, Metadata: meta,
		Graph: onnx.Graph{
			Name:   "gatetest_linear",
			Inputs: []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: in}},
			Initializers: []onnx.Tensor{
				{Name: "w", DataType: onnx.Float, Dims: []int64{int64(k), int64(w)}, Float32: weights},
				{Name: "b", DataType: onnx.Float, Dims: []int64{int64(k)}, Float32: bias},
			},
			Nodes: []onnx.Node{
				{Name: "flatten", OpType: "Flatten", Inputs: []string{"input"}, Outputs: []string{"flat"},
					Attrs: map[string]onnx.Attribute{"axis": {Type: onnx.AttrInt, Int: 1}}},
				{Name: "fc", OpType: "Gemm", Inputs: []string{"flat", "w", "b"}, Outputs: []string{classify.LogitsName},
					Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}}},
			},
			Outputs: []onnx.ValueInfo{{Name: classify.LogitsName, ElemType: onnx.Float, Shape: outShape}},
		},
	}
	if !o.LogitsOnly {
		m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{Name: "softmax", OpType: "Softmax", Inputs: []string{classify.LogitsName},
			Outputs: []string{classify.ProbabilitiesName}, Attrs: map[string]onnx.Attribute{"axis": {Type: onnx.AttrInt, Int: 1}}})
		m.Graph.Outputs = append(m.Graph.Outputs, onnx.ValueInfo{Name: classify.ProbabilitiesName, ElemType: onnx.Float, Shape: outShape})
	}
	if o.Embedding {
		m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{Name: "embed", OpType: "Identity", Inputs: []string{"flat"}, Outputs: []string{"embedding"}})
		m.Graph.Outputs = append(m.Graph.Outputs, onnx.ValueInfo{Name: "embedding", ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: int64(w)}}})
		meta[modelrepo.MetadataEmbeddingOutput] = "embedding"
	}
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, modelrepo.ModelFile)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// referenceLogits computes what WriteModel's classifier outputs, in float64.
func referenceLogits(spec dataset.Spec, protos [][]float32, o ModelOptions, inputs []float32) []float64 {
	if o.Scale == 0 {
		o.Scale = 1
	}
	rng := rand.New(rand.NewPCG(o.Seed, 13))
	k, w := len(spec.Classes), spec.Width()
	wts := make([][]float64, k)
	bias := make([]float64, k)
	for c := range k {
		wts[c] = make([]float64, w)
		var sq float64
		for j := range w {
			v := protos[c][j] + float32(rng.NormFloat64()*o.WeightNoise)
			wts[c][j] = float64(v * o.Scale)
			sq += float64(v) * float64(v)
		}
		bias[c] = float64(-float32(sq/2) * o.Scale)
	}
	n := len(inputs) / w
	out := make([]float64, n*k)
	for i := range n {
		for c := range k {
			s := bias[c]
			for j := range w {
				s += wts[c][j] * float64(inputs[i*w+j])
			}
			out[i*k+c] = s
		}
	}
	return out
}

// Factory makes the evaluator under test. It is called once per subtest.
type Factory func(t *testing.T) gate.Evaluator

// Run is the conformance suite: each evaluator must
//   - return, for a candidate and a current model of another input layout (flattened), the
//     logits the models compute, for every sample and in order, with the right roles and
//     model SHA-256s; and the candidate's embedding output (its metadata names one), which
//     the current model does not have;
//   - score a model of another shape and class count (1×5×5, 3 classes) as well;
//   - refuse a model whose "classes" metadata differs from the set's;
//   - refuse a model whose input does not fit the set's sample shape.
func Run(t *testing.T, newEvaluator Factory) {
	t.Run("ScoresBothModels", func(t *testing.T) {
		scoreCase(t, newEvaluator(t), Spec(), 37, []ModelOptions{{Seed: 1, WeightNoise: 0.3, Embedding: true}, {Seed: 2, WeightNoise: 0.8, Flatten: true, LogitsOnly: true}})
	})
	t.Run("OtherShape", func(t *testing.T) {
		spec := dataset.Spec{Shape: []int64{1, 5, 5}, Datatype: dataset.DatatypeFP32, Classes: []string{"a", "b", "c"}}
		scoreCase(t, newEvaluator(t), spec, 10, []ModelOptions{{Seed: 3}})
	})
	t.Run("RefusesOtherClasses", func(t *testing.T) {
		spec := Spec()
		protos := Prototypes(spec, 1)
		dir := t.TempDir()
		WriteModel(t, dir, spec, protos, ModelOptions{Classes: []string{"a", "b", "c", "d"}})
		refuseCase(t, newEvaluator(t), spec, protos, dir)
	})
	t.Run("RefusesOtherShape", func(t *testing.T) {
		spec := Spec()
		protos := Prototypes(spec, 1)
		other := dataset.Spec{Shape: []int64{3, 4, 4}, Datatype: dataset.DatatypeFP32, Classes: spec.Classes}
		dir := t.TempDir()
		WriteModel(t, dir, other, Prototypes(other, 1), ModelOptions{})
		refuseCase(t, newEvaluator(t), spec, protos, dir)
	})
}

func scoreCase(t *testing.T, ev gate.Evaluator, spec dataset.Spec, n int, opts []ModelOptions) {
	protos := Prototypes(spec, 1)
	inputs, labels := Samples(spec, protos, n, 0.5, 2)
	set, err := gate.NewSet(spec, "suite", inputs, labels)
	if err != nil {
		t.Fatal(err)
	}
	var models []gate.Model
	for i, o := range opts {
		dir := filepath.Join(t.TempDir(), "m"+strconv.Itoa(i))
		WriteModel(t, dir, spec, protos, o)
		role := gate.RoleCandidate
		if i == 1 {
			role = gate.RoleCurrent
		}
		m, err := gate.NewModel(role, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != modelrepo.OutputLogits || m.Output != classify.LogitsName {
			t.Fatalf("NewModel picked output %q (%s), want the logits", m.Output, m.Kind)
		}
		models = append(models, m)
	}
	scores, err := ev.Score(context.Background(), set, models)
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != len(models) {
		t.Fatalf("%d scores for %d models", len(scores), len(models))
	}
	k := len(spec.Classes)
	for i, s := range scores {
		m := models[i]
		if s.Role != m.Role || s.ModelSHA256 != m.SHA256 || s.Output != m.Output || s.Kind != m.Kind {
			t.Errorf("scores %d: role %q sha %q output %q kind %q, want %q %q %q %q", i, s.Role, s.ModelSHA256, s.Output, s.Kind, m.Role, m.SHA256, m.Output, m.Kind)
		}
		want := referenceLogits(spec, protos, opts[i], inputs)
		if len(s.Values) != n*k {
			t.Fatalf("scores %d: %d values, want %d", i, len(s.Values), n*k)
		}
		for j, v := range s.Values {
			if d := math.Abs(float64(v) - want[j]); d > 1e-3*(1+math.Abs(want[j])) {
				t.Fatalf("scores %d value %d (sample %d class %d) = %v, want %v", i, j, j/k, j%k, v, want[j])
			}
		}
		// WriteModel's embedding is the flattened input.
		if w := spec.Width(); opts[i].Embedding != (s.EmbeddingWidth != 0) || (opts[i].Embedding && (s.EmbeddingWidth != w || !slices.Equal(s.Embedding, inputs))) {
			t.Fatalf("scores %d: embedding of width %d (%d values), want the model's embedding %v of width %d", i, s.EmbeddingWidth, len(s.Embedding), opts[i].Embedding, w)
		}
		r, err := gate.Measure(set, s, gate.MeasureOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if (r.DriftReference.Embedding != nil) != opts[i].Embedding {
			t.Errorf("scores %d: embedding reference %v, want one: %v", i, r.DriftReference.Embedding != nil, opts[i].Embedding)
		}
		if r.Samples != n || r.EvalDigest != set.Digest {
			t.Errorf("report: %d samples digest %q", r.Samples, r.EvalDigest)
		}
	}
	t.Logf("%s: %d models × %d samples of %v scored", ev.Name(), len(models), n, spec.Shape)
}

func refuseCase(t *testing.T, ev gate.Evaluator, spec dataset.Spec, protos [][]float32, dir string) {
	inputs, labels := Samples(spec, protos, 8, 0.5, 2)
	set, err := gate.NewSet(spec, "suite", inputs, labels)
	if err != nil {
		t.Fatal(err)
	}
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Score(context.Background(), set, []gate.Model{m}); err == nil {
		t.Fatalf("%s scored a model that does not fit the set", ev.Name())
	} else {
		t.Logf("refused as it should: %v", err)
	}
}
