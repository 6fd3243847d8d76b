package publish

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// fixture is a repository in a temporary directory and a signing key.
type fixture struct {
	bucket objstore.Bucket
	repo   *modelrepo.Repository
	signer *modelrepo.Signer
	verify *modelrepo.Verifier
	set    *gate.Set
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := modelrepo.NewSigner(priv)
	// An evaluation set for 4-input, 3-class models: seeded inputs and labels, the last 60
	// as the held-out captured part.
	rng := rand.New(rand.NewPCG(3, 4))
	var labels []int
	for range 600 {
		labels = append(labels, rng.IntN(3))
	}
	spec := dataset.Spec{Shape: []int64{4}, Datatype: dataset.DatatypeFP32, Classes: []string{"cat", "dog", "bird"}}
	inputs := builtintest.Input(5, 600, 4)
	set, err := gate.NewSet(spec, "golden", inputs[:540*4], labels[:540])
	if err != nil {
		t.Fatal(err)
	}
	held, err := gate.NewSet(spec, gate.PartHeldOut, inputs[540*4:], labels[540:])
	if err != nil {
		t.Fatal(err)
	}
	set.Parts = append(set.Parts, gate.Part{Name: gate.PartHeldOut, Offset: 540, Samples: 60, Digest: held.Parts[0].Digest})
	set.Inputs, set.Labels = inputs, labels
	set.Digest = set.ComputeDigest()
	return &fixture{bucket: b, repo: modelrepo.New(b), signer: s, verify: modelrepo.NewVerifier(s.Public()), set: set}
}

// candidate writes a job's output directory: an MLP as `edgeloop train` exports it (with the
// classes in its metadata) and a metrics.json, and returns the directory and the gate's
// report on it.
func (f *fixture) candidate(t *testing.T, seed uint64) (string, *gate.Report) {
	t.Helper()
	m := builtintest.MLP(builtintest.MLPLayers(seed, 4, 8, 3))
	m.Metadata = map[string]string{"classes": `["cat","dog","bird"]`}
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	metrics := `{"model": "pets", "base_version": "9", "accuracy": 0.97, "loss": 0.1,
		"per_class_accuracy": {"cat": 0.9, "dog": 1, "bird": 1}, "confidence_scorer": "max_softmax",
		"confidence_histogram": [0, 0, 0, 0, 0, 0, 0, 0, 0, 1], "datasets": ["file:///data/fashion"]}`
	if err := os.WriteFile(filepath.Join(dir, "metrics.json"), []byte(metrics), 0o644); err != nil {
		t.Fatal(err)
	}
	// An extra file, as the PyTorch job writes for fine-tuning: published with the version.
	if err := os.WriteFile(filepath.Join(dir, "checkpoint.pt"), []byte("weights\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Generated files and subdirectories in the output are not published.
	if err := os.WriteFile(filepath.Join(dir, "config.pbtxt"), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	m2, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := gate.Run(context.Background(), gate.Builtin{}, f.set, m2, nil, gate.Options{Rules: gate.DefaultRules(), Calibrate: true})
	if err != nil {
		t.Fatal(err)
	}
	return dir, res.Candidate
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir, report := f.candidate(t, 1)
	datasets := []string{"s3://edgeloop/samples/pets/1/dt=2026-11-29/hour=03/000001.tar", "s3://edgeloop/labels/pets/2026-11-29.jsonl"}
	decision := gate.Decide(gate.DefaultRules(), report, nil)

	// A first model: no parent, straight to stable.
	m1, err := Publish(ctx, f.repo, f.signer, Input{Model: "pets", CandidateDir: dir, Datasets: datasets, Report: report, Decision: &decision, Stable: true})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Version != 1 || m1.ParentVersion != 0 {
		t.Errorf("first publish: version %d, parent %d", m1.Version, m1.ParentVersion)
	}

	// The retrained version: parent 1, canary only.
	dir2, report2 := f.candidate(t, 2)
	m2, err := Publish(ctx, f.repo, f.signer, Input{Model: "pets", CandidateDir: dir2, ParentVersion: 1, Datasets: datasets, Report: report2, Canary: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.repo.Manifest(ctx, "pets", 2, f.verify) // verifies the signature
	if err != nil {
		t.Fatal(err)
	}
	if got.Signature == nil || got.Signature.KeyID != f.signer.KeyID() || got.Version != m2.Version {
		t.Errorf("manifest signature %+v", got.Signature)
	}
	if got.Model != "pets" || got.Version != 2 || got.ParentVersion != 1 || !slices.Equal(got.Datasets, datasets) {
		t.Errorf("model %s version %d parent %d datasets %q", got.Model, got.Version, got.ParentVersion, got.Datasets)
	}
	if !slices.Equal(got.Classes, []string{"cat", "dog", "bird"}) || got.Output.Name != "logits" || got.SecondOutput == nil || got.SecondOutput.Kind != "probabilities" {
		t.Errorf("classes %q, outputs %+v %+v", got.Classes, got.Output, got.SecondOutput)
	}
	if !slices.Equal(got.ReferenceHistogram, report2.ConfidenceHistogram) || got.ReferenceScorer != "max_softmax" {
		t.Errorf("reference histogram %v (%s), want the gate's %v", got.ReferenceHistogram, got.ReferenceScorer, report2.ConfidenceHistogram)
	}
	wantMetrics := map[string]float64{
		"accuracy": report2.Accuracy, "loss": report2.Loss, "mean_confidence": report2.MeanConfidence,
		"macro_f1": report2.MacroF1, "top_k_accuracy": report2.TopKAccuracy, "top_k": 3, "ece": report2.ECE,
		"ece_calibrated": report2.Calibration.ECEAfter,
		"eval_samples":   600, "eval_captured_samples": 60, "trainer_accuracy": 0.97, "trainer_loss": 0.1,
	}
	if fmt.Sprint(got.Metrics) != fmt.Sprint(wantMetrics) {
		t.Errorf("metrics %v\nwant %v", got.Metrics, wantMetrics)
	}
	var acc, counts []float64
	for _, c := range report2.PerClass {
		acc, counts = append(acc, c.Recall), append(counts, float64(c.Samples))
	}
	if !slices.Equal(got.PerClassMetrics["accuracy"], acc) || !slices.Equal(got.PerClassMetrics["eval_samples"], counts) || len(got.PerClassMetrics["f1"]) != 3 {
		t.Errorf("per-class metrics %v, want accuracy %v and eval_samples %v", got.PerClassMetrics, acc, counts)
	}
	if got.Task != modelrepo.TaskClassification || got.Calibration == nil ||
		got.Calibration.Temperature != report2.Calibration.Temperature || got.Calibration.EvalDigest != f.set.Digest || got.Calibration.Samples != 600 {
		t.Errorf("task %q calibration %+v, want the gate's temperature %v on %s", got.Task, got.Calibration, report2.Calibration.Temperature, f.set.Digest)
	}
	var names []string
	for n := range got.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"checkpoint.pt", "config.pbtxt", "gate.json", "metrics.json", "model.onnx"}; !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}

	// Download checks every file against the signed manifest; gate.json holds the report;
	// the extra file is the job's, the config.pbtxt the generated one.
	dl := filepath.Join(t.TempDir(), "v1")
	if _, err := f.repo.Download(ctx, "pets", 1, dl, f.verify); err != nil {
		t.Fatal(err)
	}
	if ck := mustRead(t, filepath.Join(dl, "checkpoint.pt")); string(ck) != "weights\n" {
		t.Errorf("checkpoint.pt: %q", ck)
	}
	if cfg := mustRead(t, filepath.Join(dl, "config.pbtxt")); strings.Contains(string(cfg), "stale") {
		t.Errorf("the job's config.pbtxt was published instead of the generated one")
	}
	var rec struct {
		Report   gate.Report    `json:"report"`
		Decision *gate.Decision `json:"decision"`
	}
	data, err := os.ReadFile(filepath.Join(dl, GateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Report.ModelSHA256 != report.ModelSHA256 || rec.Report.Accuracy != report.Accuracy || rec.Decision == nil || rec.Decision.Reason != decision.Reason {
		t.Errorf("gate.json: %s", data)
	}

	aliases, err := f.repo.Aliases(ctx, "pets")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"stable": 1, "canary": 2}; fmt.Sprint(aliases) != fmt.Sprint(want) {
		t.Errorf("aliases %v, want %v", aliases, want)
	}

	// After the soak, stable follows canary; promoting a version canary left is refused.
	if err := PromoteAfterSoak(ctx, f.repo, f.verify, f.signer, "pets", 1); !errors.Is(err, ErrCanaryMoved) {
		t.Errorf("promoting version 1 while canary is 2: %v", err)
	}
	if err := PromoteAfterSoak(ctx, f.repo, modelrepo.NewVerifier(otherKey(t)), f.signer, "pets", 2); !errors.Is(err, modelrepo.ErrUnknownKey) {
		t.Errorf("promoting with a verifier that does not trust the signer: %v", err)
	}
	if err := PromoteAfterSoak(ctx, f.repo, f.verify, f.signer, "pets", 2); err != nil {
		t.Fatal(err)
	}
	if aliases, _ := f.repo.Aliases(ctx, "pets"); aliases["stable"] != 2 || aliases["canary"] != 2 {
		t.Errorf("after promotion: aliases %v", aliases)
	}
	// Both aliases are signed pointers, so exporters can refuse an older one written back.
	for _, name := range []string{"stable", "canary"} {
		a, err := f.repo.Alias(ctx, "pets", name)
		if err != nil {
			t.Fatal(err)
		}
		if err := modelrepo.VerifyPointer(&a, f.verify, "pets", name); err != nil {
			t.Errorf("alias %s: %v", name, err)
		}
	}
	if err := PromoteAfterSoak(ctx, f.repo, f.verify, f.signer, "other", 1); !errors.Is(err, modelrepo.ErrAliasNotFound) {
		t.Errorf("promoting a model without canary: %v", err)
	}
}

func otherKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// failingBucket fails Put for keys with a given suffix, as a store that dies mid-publish.
type failingBucket struct {
	objstore.Bucket
	suffix string
}

func (b failingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasSuffix(key, b.suffix) {
		io.CopyN(io.Discard, r, size/2) // fail part-way, as a dropped connection does
		return fmt.Errorf("injected failure writing %s", key)
	}
	return b.Bucket.Put(ctx, key, r, size)
}

func TestPublishFailuresLeaveNoVersion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir, report := f.candidate(t, 1)
	if _, err := Publish(ctx, f.repo, f.signer, Input{Model: "pets", CandidateDir: dir, Report: report, Stable: true}); err != nil {
		t.Fatal(err)
	}
	before, err := objstore.List(ctx, f.bucket, "", true)
	if err != nil {
		t.Fatal(err)
	}
	dir2, report2 := f.candidate(t, 2)
	good := Input{Model: "pets", CandidateDir: dir2, ParentVersion: 1, Report: report2, Canary: true, Stable: true}
	changed := t.TempDir()
	for _, name := range []string{"model.onnx", "metrics.json", "checkpoint.pt"} {
		data, _ := os.ReadFile(filepath.Join(dir2, name))
		if name == "model.onnx" {
			data[len(data)-1] ^= 1 // not what the gate evaluated
		}
		os.WriteFile(filepath.Join(changed, name), data, 0o644)
	}
	otherClasses := *report2
	otherClasses.Classes = []string{"cat", "bird", "dog"}
	tests := []struct {
		name   string
		bucket objstore.Bucket
		edit   func(in *Input)
		want   string
	}{
		{"manifest write fails", failingBucket{f.bucket, "/2/edgeloop.json"}, nil, "injected failure"},
		{"model upload fails", failingBucket{f.bucket, "/2/model.onnx"}, nil, "injected failure"},
		{"no report", f.bucket, func(in *Input) { in.Report = nil }, "no gate report"},
		{"model changed since the gate", f.bucket, func(in *Input) { in.CandidateDir = changed }, "the gate evaluated a model with sha256"},
		{"report of another class order", f.bucket, func(in *Input) { in.Report = &otherClasses }, "differ from those of the gate report"},
		{"unknown parent", f.bucket, func(in *Input) { in.ParentVersion = 7 }, "parent version 7 of pets"},
		{"bad dataset URI", f.bucket, func(in *Input) { in.Datasets = []string{"no-scheme/shard.tar"} }, "datasets[0]: must be a URI"},
		{"bad model name", f.bucket, func(in *Input) { in.Model = "../pets" }, "model name"},
	}
	for _, tt := range tests {
		in := good
		if tt.edit != nil {
			tt.edit(&in)
		}
		m, err := Publish(ctx, modelrepo.New(tt.bucket), f.signer, in)
		if err == nil || m != nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Publish = %v, %v; want an error containing %q", tt.name, m, err, tt.want)
		}
		if versions, err := f.repo.Versions(ctx, "pets"); err != nil || !slices.Equal(versions, []int64{1}) {
			t.Errorf("%s: versions %v, %v; want only 1", tt.name, versions, err)
		}
		after, _ := objstore.List(ctx, f.bucket, "", true)
		if !slices.Equal(after, before) {
			t.Errorf("%s: objects %q\nwant %q as before", tt.name, after, before)
		}
	}
	// The file changing between the digest check and the upload fails the upload.
	r := checkedFile(filepath.Join(changed, "model.onnx"), "model.onnx", modelrepo.FileDigest{SHA256: report2.ModelSHA256, Size: int64(len(mustRead(t, filepath.Join(changed, "model.onnx"))))})
	rc, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), "changed after the gate evaluated it") {
		t.Errorf("reading a changed model: %v", err)
	}
	if _, err := Publish(ctx, f.repo, f.signer, good); err != nil {
		t.Fatalf("the same publish on a working bucket: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
