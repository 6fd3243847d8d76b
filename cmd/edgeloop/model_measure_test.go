package main

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// TestModelPublishEvalSet: `model publish --eval-set` scores the version on an evaluation set
// in the repository and signs the gate's measurements into its manifest: the accuracy worked
// out by hand, a fitted temperature, the predicted-class mix and input statistics of the drift
// reference, the reference histogram, and gate.json among its files; with an embedding output,
// the embedding reference too. A set that does not exist publishes nothing and says why.
func TestModelPublishEvalSet(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if code, _, stderr := runModelCmd(t, "keygen", "--out", keys); code != exitOK {
		t.Fatal(stderr)
	}
	root := t.TempDir()
	repo := "file://" + filepath.ToSlash(root)

	// 60 samples: the label is the larger of x0 and x1, one in six flipped, so that the model
	// is right on 50 and the temperature has something to fit.
	rng := rand.New(rand.NewPCG(1, 2))
	var samples [][]float32
	var labels []int
	correct, dogs := 0, 0
	for i := range 60 {
		x := []float32{rng.Float32(), rng.Float32(), rng.Float32()}
		label, predicted := 0, 0
		if x[1] > x[0] {
			label, predicted = 1, 1
			dogs++
		}
		if i%6 == 5 {
			label = 1 - label
		}
		if label == predicted {
			correct++
		}
		samples, labels = append(samples, x), append(labels, label)
	}
	dir, csv := testenv.EvalFiles(t, []int{3}, samples, labels)
	if code, stdout, stderr := runEvalsetCmd(t, "create", "--bucket", repo, "--model", "pets", "--name", "tiny",
		"--from-dir", dir, "--labels", csv, "--shape", "3", "--classes", "cat,dog"); code != exitOK {
		t.Fatalf("evalset create = %d\n%s\n%s", code, stdout, stderr)
	}

	// A set that is not there: refused, nothing published.
	model := linearModel(t, []float32{2, 0, 0, 0, 2, 0}) // logits (2·x0, 2·x1)
	code, stdout, stderr := runModelCmd(t, "publish", "--repo", repo, "--key", filepath.Join(keys, "edgeloop.key"), "--model", "pets", "--eval-set", "missing", model)
	if code == exitOK || !strings.Contains(stderr, "no evaluation set fits the model") || !strings.Contains(stderr, "missing") {
		t.Fatalf("publish with a missing set = %d\n%s\n%s", code, stdout, stderr)
	}
	ctx := context.Background()
	bucket, err := objstore.Open(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	r := modelrepo.New(bucket)
	if vs, err := r.Versions(ctx, "pets"); err == nil && len(vs) > 0 {
		t.Fatalf("a refused publish left versions %v", vs)
	}

	code, stdout, stderr = runModelCmd(t, "publish", "--repo", repo, "--key", filepath.Join(keys, "edgeloop.key"), "--model", "pets", "--eval-set", "tiny", model)
	if code != exitOK || !strings.Contains(stdout, "measured on tiny: accuracy") || !strings.Contains(stdout, "drift reference stored") {
		t.Fatalf("publish --eval-set = %d\n%s\n%s", code, stdout, stderr)
	}
	v, err := modelrepo.LoadVerifier(filepath.Join(keys, "edgeloop.pub"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Manifest(ctx, "pets", 1, v)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(correct) / 60; math.Abs(m.Metrics["accuracy"]-want) > 1e-9 || m.Metrics["eval_samples"] != 60 {
		t.Errorf("accuracy %v over %v samples, want %v over 60", m.Metrics["accuracy"], m.Metrics["eval_samples"], want)
	}
	if m.Calibration == nil || !(m.Calibration.Temperature > 0) || m.Calibration.Samples != 60 {
		t.Errorf("calibration %+v", m.Calibration)
	}
	ref := m.DriftReference
	if ref == nil || len(ref.ClassMix) != 2 || math.Abs(ref.ClassMix[1]-float64(dogs)/60) > 1e-9 || ref.Input == nil {
		t.Fatalf("drift reference %+v, want the class mix [%v %v] and input statistics", ref, float64(60-dogs)/60, float64(dogs)/60)
	}
	if len(m.ReferenceHistogram) == 0 || m.ReferenceScorer != "max_softmax" {
		t.Errorf("reference histogram %v (%q)", m.ReferenceHistogram, m.ReferenceScorer)
	}
	if _, ok := m.Files[publish.GateFile]; !ok {
		t.Errorf("files %v lack %s", m.Files, publish.GateFile)
	}
	if m.EmbeddingOutput != nil || ref.Embedding != nil {
		t.Errorf("a model without an embedding output has embedding %+v and reference %+v", m.EmbeddingOutput, ref.Embedding)
	}

	// The same model with its input as an embedding output, named in the metadata: version 2's
	// manifest names the output and its reference holds all 60 samples' embeddings.
	withEmbedding(t, model)
	code, stdout, stderr = runModelCmd(t, "publish", "--repo", repo, "--key", filepath.Join(keys, "edgeloop.key"), "--model", "pets", "--eval-set", "tiny", model)
	if code != exitOK {
		t.Fatalf("publish --eval-set of a model with an embedding = %d\n%s\n%s", code, stdout, stderr)
	}
	m2, err := r.Manifest(ctx, "pets", 2, v)
	if err != nil {
		t.Fatal(err)
	}
	e := m2.DriftReference.Embedding
	if m2.EmbeddingOutput == nil || m2.EmbeddingOutput.Name != "features" || e == nil || e.Width != 3 || e.Dims != 3 || len(e.Points) != 60*3 {
		t.Fatalf("embedding output %+v, reference %+v", m2.EmbeddingOutput, e)
	}
	if e.Points[0] != samples[0][0] || e.Points[59*3+2] != samples[59][2] {
		t.Errorf("the reference points are not the samples' embeddings (their inputs): %v…", e.Points[:3])
	}
}

// withEmbedding adds to the model in dir an output "features", the input itself, and names it
// the embedding output in the metadata.
func withEmbedding(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "model.onnx")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Nodes = append(m.Graph.Nodes, onnx.Node{OpType: "Identity", Inputs: []string{"input"}, Outputs: []string{"features"}})
	m.Graph.Outputs = append(m.Graph.Outputs, onnx.ValueInfo{Name: "features", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 3}}})
	m.Metadata[modelrepo.MetadataEmbeddingOutput] = "features"
	if data, err = onnx.Encode(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
