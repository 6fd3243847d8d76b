package modelrepo_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// gaussianRows returns n rows of width values drawn from N(shift, scale²) per value.
func gaussianRows(r *rand.Rand, n, width int, shift, scale float64) []float32 {
	v := make([]float32, n*width)
	for i := range v {
		v[i] = float32(shift + scale*r.NormFloat64())
	}
	return v
}

func TestComputeEmbeddingReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		width, rows, points, wantPoints, wantDims int
		projected                                 bool
	}{
		{width: 8, rows: 1000, points: 256, wantPoints: 256, wantDims: 8},
		{width: 100, rows: 300, points: 256, wantPoints: 256, wantDims: modelrepo.MaxEmbeddingDims, projected: true},
		{width: 16, rows: 40, points: 256, wantPoints: 40, wantDims: 16},
		{width: 16, rows: 5000, points: 5000, wantPoints: modelrepo.MaxEmbeddingPoints, wantDims: 16},
	} {
		emb := gaussianRows(r, c.rows, c.width, 0, 1)
		ref, err := modelrepo.ComputeEmbeddingReference(emb, c.width, 7, c.points)
		if err != nil {
			t.Fatalf("width %d: %v", c.width, err)
		}
		if ref.Width != c.width || ref.Dims != c.wantDims || len(ref.Points) != c.wantPoints*c.wantDims {
			t.Fatalf("width %d: got width %d, dims %d, %d values; want %d points of %d", c.width, ref.Width, ref.Dims, len(ref.Points), c.wantPoints, c.wantDims)
		}
		if (ref.Projection() != nil) != c.projected || (ref.Seed != 0) != c.projected {
			t.Fatalf("width %d: projected = %v, seed %d; want projected %v", c.width, ref.Projection() != nil, ref.Seed, c.projected)
		}
		// Unprojected, the first point is the first row. The distance between two standard
		// normal points of d dimensions is about √(2d), so the median heuristic lands near it.
		if !c.projected && ref.Points[0] != emb[0] {
			t.Fatalf("width %d: first point %v, first row starts with %v", c.width, ref.Points[0], emb[0])
		}
		// Projected, each of the dims values has unit variance too (entries ±1/√width).
		want := math.Sqrt(2 * float64(c.wantDims))
		if ref.Bandwidth < 0.8*want || ref.Bandwidth > 1.2*want {
			t.Fatalf("width %d: bandwidth %v, want about %v", c.width, ref.Bandwidth, want)
		}
		m := sampleManifest()
		m.EmbeddingOutput = &modelrepo.Tensor{Name: "embedding", Datatype: "FP32", Shape: []int64{-1, int64(c.width)}}
		m.DriftReference = sampleDriftReference()
		m.DriftReference.Embedding = ref
		if err := m.Validate(); err != nil {
			t.Fatalf("width %d: the computed reference does not validate: %v", c.width, err)
		}
	}
	if _, err := modelrepo.ComputeEmbeddingReference(make([]float32, 9*4), 4, 0, 256); err == nil || !strings.Contains(err.Error(), "9 embeddings, at least 10") {
		t.Fatalf("9 embeddings: %v", err)
	}
	bad := gaussianRows(r, 20, 4, 0, 1)
	bad[4*6+2] = float32(math.NaN())
	if _, err := modelrepo.ComputeEmbeddingReference(bad, 4, 0, 256); err == nil || !strings.Contains(err.Error(), "embedding 6 is not finite") {
		t.Fatalf("NaN embedding: %v", err)
	}
	if _, err := modelrepo.ComputeEmbeddingReference(make([]float32, 41), 4, 0, 256); err == nil {
		t.Fatal("41 values of width 4 accepted")
	}
	// A dead embedding (all zero) still gets a usable kernel.
	dead, err := modelrepo.ComputeEmbeddingReference(make([]float32, 400), 4, 0, 256)
	if err != nil || dead.Bandwidth != 1 {
		t.Fatalf("dead embedding: bandwidth %v, err %v; want 1", dead.Bandwidth, err)
	}
}

// TestMMD2 checks the estimate's two ends: about 0 for two samples of one distribution, and
// clearly positive, growing with the shift, for a shifted one.
func TestMMD2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const width, n = 64, 256
	ref, err := modelrepo.ComputeEmbeddingReference(gaussianRows(r, n, width, 0, 1), width, 11, n)
	if err != nil {
		t.Fatal(err)
	}
	proj := ref.Projection()
	points := func(emb []float32) []float32 {
		out := make([]float32, n*ref.Dims)
		for i := range n {
			modelrepo.ProjectEmbedding(out[i*ref.Dims:(i+1)*ref.Dims], emb[i*width:(i+1)*width], proj)
		}
		return out
	}
	refTerm := modelrepo.MeanKernel(ref.Points, ref.Points, ref.Dims, ref.Gamma(), true)
	same := ref.MMD2(points(gaussianRows(r, n, width, 0, 1)), refTerm)
	small := ref.MMD2(points(gaussianRows(r, n, width, 0.3, 1)), refTerm)
	large := ref.MMD2(points(gaussianRows(r, n, width, 1, 1)), refTerm)
	wide := ref.MMD2(points(gaussianRows(r, n, width, 0, 2)), refTerm)
	t.Logf("MMD² same %.4f, shift 0.3 %.4f, shift 1 %.4f, scale 2 %.4f", same, small, large, wide)
	if math.Abs(same) > 0.005 {
		t.Errorf("same distribution: MMD² %v, want about 0", same)
	}
	if !(small > 0.01 && large > small && large < 2) || !(wide > 0.01) {
		t.Errorf("shifted: MMD² %v (0.3), %v (1), %v (scale 2); want positive, growing with the shift, below 2", small, large, wide)
	}
}

func TestEmbeddingValidate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	good := func() *modelrepo.Manifest {
		m := sampleManifest()
		m.EmbeddingOutput = &modelrepo.Tensor{Name: "embedding", Datatype: "FP32", Shape: []int64{-1, 8}}
		m.DriftReference = sampleDriftReference()
		ref, err := modelrepo.ComputeEmbeddingReference(gaussianRows(r, 50, 8, 0, 1), 8, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		m.DriftReference.Embedding = ref
		return &m
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*modelrepo.Manifest)
		want string
	}{
		{"reference without output", func(m *modelrepo.Manifest) { m.EmbeddingOutput = nil }, "drift_reference.embedding: set without embedding_output"},
		{"datatype", func(m *modelrepo.Manifest) { m.EmbeddingOutput.Datatype = "INT8" }, "embedding_output.datatype: must be FP32"},
		{"variable width", func(m *modelrepo.Manifest) { m.EmbeddingOutput.Shape = []int64{-1, -1} }, "embedding_output.shape [-1 -1]: the width (last dimension) must be fixed"},
		{"rank", func(m *modelrepo.Manifest) { m.EmbeddingOutput.Shape = []int64{-1, 2, 4} }, "want [batch, width] or [width]"},
		{"name clash", func(m *modelrepo.Manifest) { m.EmbeddingOutput.Name = m.Output.Name }, "is also a class-score output"},
		{"width mismatch", func(m *modelrepo.Manifest) { m.EmbeddingOutput.Shape = []int64{-1, 9} }, "drift_reference.embedding.width: 8, the embedding output is 9 wide"},
		{"dims", func(m *modelrepo.Manifest) { m.DriftReference.Embedding.Dims = 4 }, "drift_reference.embedding.dims: must be min(width, 32) = 8, got 4"},
		{"bandwidth", func(m *modelrepo.Manifest) { m.DriftReference.Embedding.Bandwidth = 0 }, "drift_reference.embedding.bandwidth: must be positive"},
		{"few points", func(m *modelrepo.Manifest) {
			m.DriftReference.Embedding.Points = m.DriftReference.Embedding.Points[:72]
		},
			"drift_reference.embedding.points: 72 values are not 10 to 512 points of 8"},
		{"NaN point", func(m *modelrepo.Manifest) { m.DriftReference.Embedding.Points[3] = float32(math.Inf(1)) }, "drift_reference.embedding.points: must be finite"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := good()
			c.edit(m)
			err := m.Validate()
			if !errors.Is(err, modelrepo.ErrInvalidManifest) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidManifest mentioning %q", err, c.want)
			}
		})
	}
}

// TestDraftManifestEmbedding: the metadata key names the embedding output, which is then not
// taken for a class-score output, and the Triton config lists it.
func TestDraftManifestEmbedding(t *testing.T) {
	m, err := onnx.Decode(tinyONNX(t, `["zero","one","two"]`))
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{Name: "id", OpType: "Identity", Inputs: []string{"pixels"}, Outputs: []string{"features"}})
	m.Graph.Outputs = append([]onnx.ValueInfo{{Name: "features", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 4}}}}, m.Graph.Outputs...)
	write := func(meta string) string {
		t.Helper()
		m.Metadata[modelrepo.MetadataEmbeddingOutput] = meta
		data, err := onnx.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, modelrepo.ModelFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	d, err := modelrepo.DraftManifest(write("features"))
	if err != nil {
		t.Fatal(err)
	}
	if e := d.EmbeddingOutput; e == nil || e.Name != "features" || e.Datatype != "FP32" || len(e.Shape) != 2 || e.Shape[1] != 4 {
		t.Fatalf("embedding output %+v", d.EmbeddingOutput)
	}
	if d.Output.Name != "logits" || d.SecondOutput == nil || d.SecondOutput.Name != "probs" {
		t.Fatalf("class-score outputs %q and %+v, want logits and probs", d.Output.Name, d.SecondOutput)
	}
	if cfg := string(modelrepo.TritonConfig(d, 0)); !strings.Contains(cfg, `name: "features"`) {
		t.Fatalf("config.pbtxt does not list the embedding output:\n%s", cfg)
	}
	if _, err := modelrepo.DraftManifest(write("nope")); err == nil || !strings.Contains(err.Error(), `names "nope", which is not an output`) {
		t.Fatalf("metadata naming no output: %v", err)
	}
	delete(m.Metadata, modelrepo.MetadataEmbeddingOutput)
	data, _ := onnx.Encode(m)
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, modelrepo.ModelFile), data, 0o644)
	if _, err := modelrepo.DraftManifest(dir); err == nil || !strings.Contains(err.Error(), "has 3 class-score outputs") {
		t.Fatalf("three outputs without the metadata: %v", err)
	}
}
