package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
)

// The roles of the two versions the gate compares.
const (
	RoleCandidate = "candidate"
	RoleCurrent   = "current"
)

// DefaultBatchSize is how many samples the builtin evaluator runs through a model at once.
const DefaultBatchSize = 256

// Model is one version an Evaluator scores.
type Model struct {
	// Role is RoleCandidate or RoleCurrent.
	Role string `json:"role"`
	// Dir is a local directory holding the version's model.onnx (and, for a published
	// version, its edgeloop.json and other files).
	Dir string `json:"dir"`
	// Manifest describes the version: the published manifest, or for a candidate the draft
	// modelrepo.DraftManifest makes of Dir.
	Manifest *modelrepo.Manifest `json:"-"`
	// SHA256 is the hex SHA-256 of Dir's model.onnx: it ties the scores to the bytes that
	// get published.
	SHA256 string `json:"model_sha256"`
	// Output is the output tensor to score and Kind what it holds ("logits" or
	// "probabilities").
	Output string `json:"output"`
	Kind   string `json:"kind"`
	// Embedding is the embedding output (Manifest.EmbeddingOutput) to return beside the
	// scores, for the drift reference; empty for none. Evaluators that cannot return it
	// leave Scores.Embedding empty, and the reference goes without it.
	Embedding string `json:"embedding,omitempty"`
}

// NewModel describes the version in dir for an evaluator. m is its published manifest, or nil
// for a candidate (the draft manifest of dir is used). The output scored is the model's logits
// when it has one, which calibration and the loss need, else its probabilities: the top-1
// class and max_softmax confidence are the same either way, up to float32 rounding.
func NewModel(role, dir string, m *modelrepo.Manifest) (Model, error) {
	if m == nil {
		d, err := modelrepo.DraftManifest(dir)
		if err != nil {
			return Model{}, fmt.Errorf("%s: %w", role, err)
		}
		m = d
	}
	sum, err := fileSHA256(filepath.Join(dir, modelrepo.ModelFile))
	if err != nil {
		return Model{}, fmt.Errorf("%s: %w", role, err)
	}
	o := m.Output
	if s := m.SecondOutput; s != nil && s.Kind == modelrepo.OutputLogits && o.Kind != modelrepo.OutputLogits {
		o = *s
	}
	if o.Kind != modelrepo.OutputLogits && o.Kind != modelrepo.OutputProbabilities {
		return Model{}, fmt.Errorf("%s: output %q has kind %q: want logits or probabilities", role, o.Name, o.Kind)
	}
	mod := Model{Role: role, Dir: dir, Manifest: m, SHA256: sum, Output: o.Name, Kind: o.Kind}
	if e := m.EmbeddingOutput; e != nil {
		mod.Embedding = e.Name
	}
	return mod, nil
}

func fileSHA256(path string) (string, error) {
	d, err := modelrepo.DigestFile(path)
	if err != nil {
		return "", err
	}
	return d.SHA256, nil
}

// Scores is what an Evaluator returns for one model: the scored output for every sample.
type Scores struct {
	// Role and ModelSHA256 say which model; Output and Kind which output and what it holds.
	Role        string `json:"role"`
	ModelSHA256 string `json:"model_sha256"`
	Output      string `json:"output"`
	Kind        string `json:"kind"`
	// Values holds Set.Len() rows of len(Set.Spec.Classes) values.
	Values []float32 `json:"values"`
	// Embedding holds Set.Len() rows of EmbeddingWidth values of the model's embedding
	// output when Model.Embedding names one and the evaluator returns it; else empty.
	Embedding      []float32 `json:"embedding,omitempty"`
	EmbeddingWidth int       `json:"embedding_width,omitempty"`
}

// Evaluator runs the samples of a Set through models. Implementations differ in where the
// models run (in process, an inference server, a job); the gate measures the returned
// scores the same way whichever ran them. gatetest holds the conformance suite every
// implementation passes.
type Evaluator interface {
	// Name is the evaluator's name in the configuration.
	Name() string
	// Score returns one Scores per model, in the order of models. It refuses a model whose
	// input does not fit set.Spec or whose "classes" metadata differs from set.Spec.Classes.
	Score(ctx context.Context, set *Set, models []Model) ([]*Scores, error)
}

// Builtin is the in-process evaluator: internal/runtime/builtin, the runtime edge nodes
// serve with.
type Builtin struct {
	// BatchSize is the number of samples per Run; 0 means DefaultBatchSize.
	BatchSize int
}

// Name returns "builtin".
func (Builtin) Name() string { return EvaluatorBuiltin }

// Score runs every sample through each model in batches.
func (b Builtin) Score(ctx context.Context, set *Set, models []Model) ([]*Scores, error) {
	out := make([]*Scores, 0, len(models))
	for _, mod := range models {
		s, err := b.score(ctx, set, mod)
		if err != nil {
			return nil, fmt.Errorf("builtin evaluator: %s: %w", mod.Role, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (b Builtin) score(ctx context.Context, set *Set, mod Model) (*Scores, error) {
	if err := checkSet(set); err != nil {
		return nil, err
	}
	batch := b.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch size must be positive, got %d", batch)
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, modelrepo.ModelFile))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); mod.SHA256 != "" && got != mod.SHA256 {
		return nil, fmt.Errorf("model.onnx has sha256 %s, expected %s", got, mod.SHA256)
	}
	m, err := builtin.Load(data)
	if err != nil {
		return nil, err
	}
	if err := checkClasses(m.Metadata()[classify.MetadataClasses], set.Spec.Classes); err != nil {
		return nil, err
	}
	width, k := set.Width(), len(set.Spec.Classes)
	ins := m.Inputs()
	if len(ins) != 1 {
		return nil, fmt.Errorf("model has %d inputs, a classifier the gate can run has 1", len(ins))
	}
	shape, err := fitShape(ins[0].Name, ins[0].Shape, set.Spec.Shape)
	if err != nil {
		return nil, err
	}
	idx := slices.IndexFunc(m.Outputs(), func(t builtin.TensorInfo) bool { return t.Name == mod.Output })
	if idx < 0 {
		return nil, fmt.Errorf("model has no output %q", mod.Output)
	}
	embIdx := -1
	if mod.Embedding != "" {
		if embIdx = slices.IndexFunc(m.Outputs(), func(t builtin.TensorInfo) bool { return t.Name == mod.Embedding }); embIdx < 0 {
			return nil, fmt.Errorf("model has no embedding output %q", mod.Embedding)
		}
	}
	s := &Scores{Role: mod.Role, ModelSHA256: hex.EncodeToString(sum[:]), Output: mod.Output, Kind: mod.Kind, Values: make([]float32, 0, set.Len()*k)}
	for lo := 0; lo < set.Len(); lo += batch {
		// The runtime checks ctx only every few kernels, which a small model never reaches.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+batch, set.Len())
		shape[0] = int64(hi - lo)
		res, err := m.Run(ctx, []builtin.Tensor{{Shape: shape, Data: set.Inputs[lo*width : hi*width]}})
		if err != nil {
			return nil, fmt.Errorf("samples %d to %d: %w", lo, hi-1, err)
		}
		o := res.Outputs[idx].Data
		if len(o) != (hi-lo)*k {
			res.Release()
			return nil, fmt.Errorf("output %q has %d values for %d samples of %d classes", mod.Output, len(o), hi-lo, k)
		}
		s.Values = append(s.Values, o...)
		if embIdx >= 0 {
			if err := s.addEmbedding(res.Outputs[embIdx].Data, hi-lo); err != nil {
				res.Release()
				return nil, fmt.Errorf("samples %d to %d: output %q: %w", lo, hi-1, mod.Embedding, err)
			}
		}
		res.Release()
	}
	return s, nil
}

// addEmbedding appends the embedding output of a batch of rows samples.
func (s *Scores) addEmbedding(e []float32, rows int) error {
	if rows < 1 || len(e) == 0 || len(e)%rows != 0 {
		return fmt.Errorf("%d values for %d samples", len(e), rows)
	}
	w := len(e) / rows
	if s.EmbeddingWidth != 0 && w != s.EmbeddingWidth {
		return fmt.Errorf("%d values per sample, earlier batches had %d", w, s.EmbeddingWidth)
	}
	s.EmbeddingWidth = w
	s.Embedding = append(s.Embedding, e...)
	return nil
}

func checkSet(set *Set) error {
	switch {
	case set == nil || set.Len() == 0:
		return fmt.Errorf("the evaluation set is empty")
	case set.Width() < 1 || len(set.Inputs) != set.Len()*set.Width():
		return fmt.Errorf("evaluation set: %d values for %d samples of width %d", len(set.Inputs), set.Len(), set.Width())
	case len(set.Spec.Classes) < 2:
		return fmt.Errorf("evaluation set: %d classes, need at least 2", len(set.Spec.Classes))
	}
	for i, l := range set.Labels {
		if l < 0 || l >= len(set.Spec.Classes) {
			return fmt.Errorf("evaluation set: sample %d has label %d, there are %d classes", i, l, len(set.Spec.Classes))
		}
	}
	return nil
}

// fitShape is the shape of a batch for a model input called name of shape inShape, with the
// batch dimension (the first) to be filled in. The model's dimensions after the batch must be
// the sample shape, or (a flattening model, [-1, 192] for [3, 8, 8]) hold the same number
// of values with at most one variable dimension.
func fitShape(name string, inShape, sample []int64) ([]int64, error) {
	in := struct {
		Name  string
		Shape []int64
	}{name, inShape}
	if len(in.Shape) < 2 {
		return nil, fmt.Errorf("input %q has shape %v: want a batch dimension and a sample", in.Name, in.Shape)
	}
	width := int64(1)
	for _, d := range sample {
		width *= d
	}
	shape := slices.Clone(in.Shape)
	if len(shape)-1 == len(sample) {
		fits := true
		for i, d := range sample {
			if shape[i+1] >= 0 && shape[i+1] != d {
				fits = false
			}
		}
		if fits {
			copy(shape[1:], sample)
			return shape, nil
		}
	}
	fixed, free := int64(1), -1
	for d := 1; d < len(shape); d++ {
		if shape[d] >= 0 {
			fixed *= shape[d]
			continue
		}
		if free >= 0 {
			return nil, fmt.Errorf("input %q has shape %v, which samples of shape %v do not fit", in.Name, in.Shape, sample)
		}
		free = d
	}
	switch {
	case free < 0 && fixed != width:
		return nil, fmt.Errorf("input %q has shape %v, %d values per sample; the evaluation samples have shape %v", in.Name, in.Shape, fixed, sample)
	case free >= 0 && (fixed == 0 || width%fixed != 0):
		return nil, fmt.Errorf("input %q has shape %v, which samples of shape %v do not fit", in.Name, in.Shape, sample)
	case free >= 0:
		shape[free] = width / fixed
	}
	return shape, nil
}

// checkClasses compares a model's "classes" metadata, when it has one, with the set's.
func checkClasses(meta string, classes []string) error {
	got, err := classify.ParseClasses(meta)
	if err != nil {
		return fmt.Errorf("model metadata: %w", err)
	}
	if got != nil && !slices.Equal(got, classes) {
		return fmt.Errorf("model classes %q differ from the evaluation set's %q", got, classes)
	}
	return nil
}
