package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	ds "github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// trainingBackend is a fakeBackend whose jobs write a real (small) model into the spec's
// output directory when they start: a linear classifier of gatetest's 3×8×8, 4-class images,
// worse or better by weight noise, with a checkpoint.pt beside it, as a fine-tuning job writes.
type trainingBackend struct {
	*fakeBackend
	mu     sync.Mutex
	noise  []float64 // weight noise of each job's model, in start order
	specs  []jobs.Spec
	protos [][]float32
}

func (b *trainingBackend) Start(ctx context.Context, s jobs.Spec) (jobs.Ref, error) {
	b.mu.Lock()
	n := len(b.specs)
	b.specs = append(b.specs, s)
	noise := b.noise[min(n, len(b.noise)-1)]
	b.mu.Unlock()
	gatetest.WriteModel(testingTB{}, s.Output, gatetest.Spec(), b.protos, gatetest.ModelOptions{WeightNoise: noise, Seed: uint64(n + 1), Scale: 0.01})
	if err := os.WriteFile(filepath.Join(s.Output, "checkpoint.pt"), []byte("checkpoint of job "+s.ID), 0o644); err != nil {
		return jobs.Ref{}, err
	}
	ref, err := b.fakeBackend.Start(ctx, s)
	b.fakeBackend.finish(s.ID, jobs.Status{State: jobs.Succeeded})
	return ref, err
}

// testingTB lets WriteModel run inside a backend: its failures panic, which fails the test.
type testingTB struct{ testing.TB }

func (testingTB) Helper()           {}
func (testingTB) Fatal(args ...any) { panic(args) }

// writeGolden stores an evaluation set "golden" of n gatetest samples for model in the
// repository bucket.
func writeGolden(t *testing.T, cfg Config, model string, protos [][]float32, n int) *evalset.Manifest {
	t.Helper()
	b, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec := gatetest.Spec()
	in, labels := gatetest.Samples(spec, protos, n, 8, 21)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = ds.ContentKey(in[i*spec.Width() : (i+1)*spec.Width()])
	}
	m, err := evalset.Write(context.Background(), b, &evalset.Set{
		Manifest: evalset.Manifest{Model: model, Name: "golden", Classes: spec.Classes, Input: evalset.Input{Shape: spec.Shape, Datatype: spec.Datatype}, Source: "test"},
		Keys:     keys, Inputs: in, Labels: labels,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFirstModelCanarySoak runs a job to its end with the real gate and publish: a first
// model of another shape than Fashion-MNIST (3×8×8, 4 classes, classes from its ONNX
// metadata) is judged by first_model_min on an evaluation set from the bucket, published as
// version 1 to canary with its checkpoint and calibration, soaks, and stable follows when the
// soak is over.
func TestFirstModelCanarySoak(t *testing.T) {
	cfg, _ := testConfig(t)
	protos := gatetest.Prototypes(gatetest.Spec(), 1)
	golden := writeGolden(t, cfg, "fashion", protos, 400)
	cfg.Gate.EvalSets = []string{"golden", "absent"}
	cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMin = 400, 0.5
	cfg.Publish = PublishConfig{Canary: true, Stable: true, Soak: time.Hour}
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := &trainingBackend{fakeBackend: newFakeBackend(), noise: []float64{0.2}, protos: protos}
	e := start(t, cfg, b, clk)
	if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
		t.Fatalf("manual: %d %s", code, body)
	}
	bucket, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	repo := modelrepo.New(bucket)
	// Published to canary, soaking: stable does not exist yet.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if j := e.c.Jobs(); len(j) == 1 && j[0].Phase == PhaseSoaking {
			if j[0].Version != 1 || j[0].Gate == nil || !j[0].Gate.Promote || j[0].Gate.Current != nil || j[0].Dataset.EvalSamples != 400 {
				t.Fatalf("soaking job: %+v", j[0])
			}
			break
		} else if len(j) == 1 && j[0].Phase.Done() {
			t.Fatalf("job ended %s: %s", j[0].Phase, j[0].Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not soaking: %+v", e.c.Jobs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, err := repo.Alias(context.Background(), "fashion", publish.AliasCanary); err != nil || a.Version != 1 {
		t.Fatalf("canary: %+v %v", a, err)
	}
	if _, err := repo.Alias(context.Background(), "fashion", publish.AliasStable); err == nil {
		t.Fatal("stable moved before the soak ended")
	}
	v, err := modelrepo.LoadVerifier(filepath.Join(filepath.Dir(cfg.Repository.SigningKeyFile), modelrepo.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Manifest(context.Background(), "fashion", 1, v)
	if err != nil || m.ParentVersion != 0 || len(m.ReferenceHistogram) == 0 {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	if _, ok := m.Files["checkpoint.pt"]; !ok || m.Calibration == nil || m.Task != modelrepo.TaskClassification {
		t.Errorf("manifest files %v calibration %+v task %q: want checkpoint.pt, a temperature and the task", m.Files, m.Calibration, m.Task)
	}
	clk.Add(time.Hour + time.Second)
	j := waitEnded(t, e)
	if j.Phase != PhasePromoted || j.Error != "" {
		t.Fatalf("after the soak: %+v", j)
	}
	if a, err := repo.Alias(context.Background(), "fashion", publish.AliasStable); err != nil || a.Version != 1 {
		t.Fatalf("stable after the soak: %+v %v", a, err)
	}
	// The dataset copy is gone with the job's end; the gate's record stays, naming the set
	// and what it refused.
	if _, err := os.Stat(filepath.Join(e.c.jobDir(j.ID), dataDir)); !os.IsNotExist(err) {
		t.Errorf("data dir still there: %v", err)
	}
	var rec gate.Result
	if err := readJSON(filepath.Join(e.c.jobDir(j.ID), gateFile), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Set.Parts) != 1 || rec.Set.Parts[0].Digest != golden.Digest || len(rec.Set.Refused) != 1 ||
		rec.Set.Refused[0].Source != "absent" || rec.Candidate.EvalDigest != rec.Set.Digest || m.Calibration.EvalDigest != rec.Set.Digest {
		t.Errorf("gate.json set %+v, candidate digest %s, manifest calibration %+v", rec.Set, rec.Candidate.EvalDigest, m.Calibration)
	}
}

// TestRetrainFromServingVersion: the second job fine-tunes from version 1 (the local
// backend gets the verified version's directory as BaseModel), both versions are scored on
// the same set with the serving version's spec, and the per-model rule decides: a worse
// candidate is refused naming the broken rules, a better one published.
func TestRetrainFromServingVersion(t *testing.T) {
	cfg, _ := testConfig(t)
	protos := gatetest.Prototypes(gatetest.Spec(), 1)
	writeGolden(t, cfg, "fashion", protos, 400)
	cfg.Models[0].EvalSets = []string{"golden"}
	minImp := 0.01
	cfg.Models[0].Gate.MinImprovement = &minImp
	cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMin = 400, 0.3
	cfg.Policy.Cooldown = 0
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	// Version 1 middling, then a worse candidate, then a better one.
	b := &trainingBackend{fakeBackend: newFakeBackend(), noise: []float64{1.2, 3, 0.1}, protos: protos}
	e := start(t, cfg, b, clk)
	run := func() Job {
		t.Helper()
		if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
			t.Fatalf("manual: %d %s", code, body)
		}
		return waitEnded(t, e)
	}
	if j := run(); j.Phase != PhasePromoted {
		t.Fatalf("first model: %s %s", j.Phase, j.Error)
	}
	worse := run()
	if worse.Phase != PhaseRejected || worse.Gate == nil || !strings.Contains(worse.Gate.Reason, "+ margin 0.0100") {
		t.Fatalf("worse candidate: %s %q %+v", worse.Phase, worse.Error, worse.Gate)
	}
	better := run()
	if better.Phase != PhasePromoted || better.Version != 2 || better.Gate.Current == nil || better.Gate.Candidate.Accuracy <= better.Gate.Current.Accuracy {
		t.Fatalf("better candidate: %s %q %+v", better.Phase, better.Error, better.Gate)
	}
	t.Logf("worse: %s", worse.Gate.Reason)
	t.Logf("better: %s", better.Gate.Reason)
	b.mu.Lock()
	specs := append([]jobs.Spec(nil), b.specs...)
	b.mu.Unlock()
	if specs[0].BaseModel != "" || specs[1].BaseModel == "" || specs[1].BaseVersion != 1 {
		t.Errorf("base model of job 1 %q, of job 2 %q (base version %d)", specs[0].BaseModel, specs[1].BaseModel, specs[1].BaseVersion)
	}
	var rec gate.Result
	if err := readJSON(filepath.Join(e.c.jobDir(better.ID), gateFile), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Current == nil || rec.Current.EvalDigest != rec.Candidate.EvalDigest || rec.Current.Evaluator != gate.EvaluatorBuiltin {
		t.Errorf("gate.json reports: %+v / %+v", rec.Candidate, rec.Current)
	}
	data, _ := json.Marshal(rec.Decision)
	t.Logf("decision: %s", data)
}

// remoteTrainingBackend is a trainingBackend for a remote backend: its jobs write their
// outputs under the output URL (a file:// bucket prefix), with extra files, as a Kubernetes
// job writes to S3.
type remoteTrainingBackend struct{ *trainingBackend }

func (b remoteTrainingBackend) Start(ctx context.Context, s jobs.Spec) (jobs.Ref, error) {
	out := strings.TrimPrefix(s.Output, "file://")
	local := s
	local.Output = out
	ref, err := b.trainingBackend.Start(ctx, local)
	if err != nil {
		return ref, err
	}
	// A subdirectory is not part of the contract's outputs and is not fetched.
	if err := os.MkdirAll(filepath.Join(out, "logs"), 0o755); err != nil {
		return ref, err
	}
	return ref, os.WriteFile(filepath.Join(out, "logs", "train.log"), []byte("log\n"), 0o644)
}

// TestRemoteJobOutputsAndBaseModel: a remote job's every output file (checkpoint.pt included)
// is fetched and published with the version, and the next job is pointed at the serving
// version's object prefix in the repository bucket as its base model.
func TestRemoteJobOutputsAndBaseModel(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Backend.Type = "kubernetes"
	cfg.Backend.Kubernetes.Image = "registry.example.com/trainer:1"
	protos := gatetest.Prototypes(gatetest.Spec(), 1)
	writeGolden(t, cfg, "fashion", protos, 400)
	cfg.Gate.EvalSets = []string{"golden"}
	cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMin = 400, 0.3
	cfg.Policy.Cooldown = 0
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := remoteTrainingBackend{&trainingBackend{fakeBackend: newFakeBackend(), noise: []float64{1, 0.1}, protos: protos}}
	e := start(t, cfg, b, clk)
	for i := range 2 {
		if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
			t.Fatalf("manual: %d %s", code, body)
		}
		if j := waitEnded(t, e); j.Phase != PhasePromoted || j.Version != int64(i+1) {
			t.Fatalf("job %d: %s %q version %d", i, j.Phase, j.Error, j.Version)
		}
	}
	bucket, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	m, err := modelrepo.New(bucket).UnverifiedManifest(context.Background(), "fashion", 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.onnx", "checkpoint.pt", "gate.json", "config.pbtxt"} {
		if _, ok := m.Files[name]; !ok {
			t.Errorf("version 2 lacks %s: %v", name, m.Files)
		}
	}
	if _, ok := m.Files["train.log"]; ok {
		t.Errorf("a file of an output subdirectory was published: %v", m.Files)
	}
	b.mu.Lock()
	specs := append([]jobs.Spec(nil), b.specs...)
	b.mu.Unlock()
	want := strings.TrimPrefix(cfg.Repository.Bucket, "file://") + "/models/fashion/1"
	if specs[0].BaseModel != "" || specs[1].BaseModel != "file://"+want {
		t.Errorf("base models %q and %q, want none and %q", specs[0].BaseModel, specs[1].BaseModel, "file://"+want)
	}
	if _, err := os.Stat(filepath.Join(want, "checkpoint.pt")); err != nil {
		t.Errorf("the base model prefix holds no checkpoint.pt: %v", err)
	}
}

// writeCapturedShard stores n captured samples of gatetest's images (all labelled in their
// JSON) and bad more of another shape in a shard under samples/ in the bucket at dir, and
// returns its key: what the collector's dataset manifest lists.
func writeCapturedShard(t *testing.T, dir string, protos [][]float32, n, bad int) string {
	t.Helper()
	spec := gatetest.Spec()
	in, labels := gatetest.Samples(spec, protos, n, 8, 77)
	var samples []*sample.Sample
	for i := range n + bad {
		shape := []int{3, 8, 8}
		values := in[(i%n)*spec.Width() : (i%n+1)*spec.Width()]
		if i >= n {
			shape = []int{3, 4, 16} // as many values in another layout: refused, not reshaped
			values = append([]float32{float32(i)}, values[1:]...)
		}
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, shape, values); err != nil {
			t.Fatal(err)
		}
		meta := sample.Meta{
			Model: "fashion", Version: "1", Node: "edge-1", Time: time.Date(2026, 11, 29, 3, 0, 0, i, time.UTC),
			Prediction: 0, Scores: make([]float32, 4), ScoresKind: sample.ScoresLogits,
			Confidence: map[string]float64{"max_softmax": 0.3}, Reason: "low_confidence",
			Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, int64(shape[0]), int64(shape[1]), int64(shape[2])}, File: sample.NPYFile},
			Label: sample.IndexLabel(labels[i%n]),
		}
		s, err := sample.New(meta, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
	}
	var tarball bytes.Buffer
	if err := sample.WriteTar(&tarball, samples); err != nil {
		t.Fatal(err)
	}
	key := "samples/fashion/1/dt=2026-11-29/hour=03/000001.tar"
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, tarball.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestHeldOutCapturedSamples: the job's labelled captured samples are read against the
// model's spec, the held-out tenth joins the evaluation set as its own part, and samples of
// another shape are refused and counted in gate.json.
func TestHeldOutCapturedSamples(t *testing.T) {
	cfg, fc := testConfig(t)
	protos := gatetest.Prototypes(gatetest.Spec(), 1)
	writeGolden(t, cfg, "fashion", protos, 400)
	fc.mu.Lock()
	fc.shards = []string{writeCapturedShard(t, fc.bucket, protos, 600, 7)}
	fc.mu.Unlock()
	cfg.Gate.EvalSets = []string{"golden"}
	cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMin = 400, 0.3
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := &trainingBackend{fakeBackend: newFakeBackend(), noise: []float64{0.5}, protos: protos}
	e := start(t, cfg, b, clk)
	if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
		t.Fatalf("manual: %d %s", code, body)
	}
	j := waitEnded(t, e)
	if j.Phase != PhasePromoted {
		t.Fatalf("job: %s %q", j.Phase, j.Error)
	}
	var rec gate.Result
	if err := readJSON(filepath.Join(e.c.jobDir(j.ID), gateFile), &rec); err != nil {
		t.Fatal(err)
	}
	parts := rec.Set.Parts
	if len(parts) != 2 || parts[1].Name != gate.PartHeldOut || parts[1].Samples < 30 || parts[1].Samples > 100 {
		t.Fatalf("parts %+v: want golden and about 60 of 600 held out", parts)
	}
	if len(rec.Set.Refused) != 1 || rec.Set.Refused[0].Samples != 7 || !strings.Contains(rec.Set.Refused[0].Reason, "shape") {
		t.Errorf("refused %+v, want the 7 samples of another shape", rec.Set.Refused)
	}
	// The same refusals, counted by source for alerting (set names and reasons are not labels).
	if got, none := testutil.ToFloat64(e.c.m.refused.WithLabelValues("fashion", gate.PartHeldOut)),
		testutil.ToFloat64(e.c.m.refused.WithLabelValues("fashion", refusedEvalSet)); got != 7 || none != 0 {
		t.Errorf("edgeloop_retrain_gate_refused_samples_total: held_out %v, eval_set %v; want 7 and 0", got, none)
	}
	if rec.Candidate.Samples != 400+parts[1].Samples || len(rec.Candidate.Parts) != 2 {
		t.Errorf("candidate report: %d samples, parts %+v", rec.Candidate.Samples, rec.Candidate.Parts)
	}
	t.Logf("held out %d of 600 captured samples; refused %+v; held-out accuracy %.3f", parts[1].Samples, rec.Set.Refused, rec.Candidate.Parts[1].Accuracy)
}
