//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/serverconfig"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// fmnistSamples makes captured samples of Fashion-MNIST training images [from, to) as node
// would capture them for a model whose input has the given shape (batch dimension of 1
// included: [1, 784] for the MLP, [1, 1, 28, 28] for a CNN), with their true labels.
func fmnistSamples(t *testing.T, ds *fmnist.Dataset, node string, from, to int, shape []int64) ([]*sample.Sample, []labels.Label) {
	t.Helper()
	var out []*sample.Sample
	var ls []labels.Label
	base := time.Now().UTC().Add(-time.Hour)
	for i := from; i < to; i++ {
		var b bytes.Buffer
		img := ds.Images[i*fmnist.Pixels : (i+1)*fmnist.Pixels]
		dims := make([]int, len(shape))
		for i, d := range shape {
			dims[i] = int(d)
		}
		if err := npy.WriteFloat32(&b, dims, img); err != nil {
			t.Fatal(err)
		}
		s, err := sample.New(sample.Meta{
			Model: "fashion", Version: "1", Node: node, Time: base.Add(time.Duration(i) * time.Millisecond),
			RequestID: fmt.Sprintf("req-%d", i), Prediction: 0, Scores: make([]float32, fmnist.NumClasses),
			ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.4},
			Reason: "threshold", Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: shape, File: sample.NPYFile},
		}, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
		ls = append(ls, labels.Label{Key: s.Meta.Key, Label: json.RawMessage(fmt.Sprint(ds.Labels[i])), Source: "human", Annotator: "it"})
	}
	return out, ls
}

// mlpSampleShape is the input of a captured sample of the MLP `edgeloop train` makes, whose
// input is [batch, 784].
var mlpSampleShape = []int64{1, fmnist.Pixels}

// operatorDo sends an operator request and returns the status and body.
func operatorDo(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestRetrainEndToEnd runs the loop's data-center half with real parts: a weak version 1 is
// serving on an exporter; labelled Fashion-MNIST samples reach MinIO through the collector;
// an Alertmanager webhook (sent twice, as Alertmanager re-sends) makes the controller run
// `edgeloop train` once with the local backend on those shards; the gate compares candidate
// and version 1 on the same set (an evaluation set made with `edgeloop evalset create` from
// Fashion-MNIST test images, plus the held-out captured samples); version 2 is published signed
// with parent 1, and the exporter hot-swaps to it. The gate runs the models in process
// (builtin), and, in the oip variant, through the Open Inference Protocol front of a second
// edgeloop exporter that follows the gate's scratch repository (poll mode), and, in the
// job-http variant, in `edgeloop evaluate` processes that an HTTP job platform starts on the
// request, set and models the controller staged in MinIO (the http backend, poll mode).
func TestRetrainEndToEnd(t *testing.T) {
	for _, evaluator := range []string{"builtin", "oip", "job-http"} {
		t.Run(evaluator, func(t *testing.T) { retrainEndToEnd(t, evaluator) })
	}
}

func retrainEndToEnd(t *testing.T, evaluator string) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	train, err := fmnist.Load(dataDir, fmnist.Train)
	if err != nil {
		t.Fatal(err)
	}
	test, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, _ := referenceModel(t)
	e := newCollectorEnv(t, testShards, "edge-1")
	e.start(t)
	repoURL := "s3://edgeloop?endpoint=" + e.minio.Endpoint + "&insecure=true"
	work := t.TempDir()

	// Version 1: deliberately weak (1,000 images, one epoch).
	weak := filepath.Join(work, "weak")
	run(t, nil, "train", "--out", weak, "--data", dataDir, "--train-limit", "1000", "--epochs", "1", "--log.format", "json")
	run(t, e.env, "model", "publish", "--repo", repoURL, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), weak)

	p, _ := startExporterEnv(t, e.env, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: 1s
`, repoURL, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache")))
	p.waitForVersion(t, "1", 30*time.Second)

	// 1,200 captured samples reach the bucket through the collector, then their labels.
	samples, ls := fmnistSamples(t, train, "edge-1", 50000, 51200, mlpSampleShape)
	for i := 0; i < len(samples); i += 200 {
		if code := e.postBatch(t, "edge-1", samples[i:i+200]); code != 200 {
			t.Fatalf("ingest: %d", code)
		}
	}
	e.waitDrained(t, 30*time.Second)
	if code, body := operatorDo(t, http.MethodPost, "http://"+e.addr+"/v1/labels", operatorToken, labels.Request{Model: "fashion", Labels: ls}); code != http.StatusCreated {
		t.Fatalf("labels: %d %s", code, body)
	}

	// The evaluation set: 2,000 Fashion-MNIST test images (the captured samples are training
	// images), as the MLP takes them ([784] per sample).
	images, classes := fmnistImages(test, 0, 2000, nil)
	t.Log(createEvalSet(t, e.env, repoURL, "fashion", "fmnist-test-2000", []int{fmnist.Pixels}, fmnist.ClassNames(), images, classes))
	gateCfg := "" // the gate's evaluator, beside its evaluation set
	if evaluator == "oip" {
		scratch := "s3://edgeloop/gate-scratch?endpoint=" + e.minio.Endpoint + "&insecure=true"
		front := startOIPExporter(t, e.env, scratch, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "oip-cache"))
		gateCfg = fmt.Sprintf("  evaluator: oip\n  oip:\n    mode: poll\n    url: http://%s\n    scratch_bucket: %s\n    ready_timeout: 1m\n", front, scratch)
	}
	var platform *evalPlatform
	if evaluator == "job-http" {
		platform = startEvalPlatform(t, e.env)
		gateCfg = fmt.Sprintf(`  evaluator: job
  job:
    backend: http
    http:
      url: %s/runs
      run_id: run_id
      status_url: %s/runs/{{.RunID}}
      status_field: state
      message_field: message
      poll_interval: 250ms
`, platform.url, platform.url)
	}

	// The controller, with the local backend running `edgeloop train` on a budget.
	c, addr := baseController(t, e, repoURL, keys, work)
	c.Policy = serverconfig.Policy{MinNewLabels: 1000, Cooldown: time.Hour}
	c.Command = []string{"{{.Edgeloop}}", "train", "--out", "{{.Output}}", "--dataset-manifest", "{{.DatasetManifest}}",
		"--model", "{{.Model}}", "--base-version", "{{.BaseVersion}}", "--data", dataDir,
		"--train-limit", "20000", "--epochs", "3", "--log.format", "json"}
	c.EvalSets, c.PublishStable = []string{"fmnist-test-2000"}, true
	if gateCfg != "" {
		c.Tuning = "gate:\n" + gateCfg
	}
	cfgFile := writeController(t, c)
	ctrl := startEnv(t, e.env, "retrain", "--config", cfgFile)
	ctrl.waitFor(t, "retrain controller started", 30*time.Second)

	alert := retrain.Webhook{Version: "4", GroupKey: `{}:{alertname="EdgeloopConfidenceDrift"}`, Status: "firing",
		Alerts: []retrain.Alert{{Status: "firing", Fingerprint: "0123456789abcdef", StartsAt: time.Now().Add(-5 * time.Minute),
			Labels: map[string]string{"alertname": "EdgeloopConfidenceDrift", "model": "fashion", "version": "1", "node": "edge-1"}}}}
	var jobID string
	for i := range 2 {
		code, body := operatorDo(t, http.MethodPost, "http://"+addr+"/v1/alertmanager", "am-token", alert)
		var res struct{ Decisions []retrain.Decision }
		if code != 200 || json.Unmarshal(body, &res) != nil || len(res.Decisions) != 1 {
			t.Fatalf("webhook: %d %s", code, body)
		}
		d := res.Decisions[0]
		if i == 0 {
			if jobID = d.Started; jobID == "" {
				t.Fatalf("first webhook started nothing: %+v", d)
			}
		} else if d.Skipped != retrain.SkipDuplicate {
			t.Fatalf("the re-sent webhook: %+v, want a duplicate", d)
		}
	}

	// Wait for the job's end.
	var job retrain.Job
	deadline := time.Now().Add(4 * time.Minute)
	for {
		code, body := operatorDo(t, http.MethodGet, "http://"+addr+"/v1/jobs/"+jobID, "op-token", nil)
		if code != 200 || json.Unmarshal(body, &job) != nil {
			t.Fatalf("job: %d %s", code, body)
		}
		if job.Phase.Done() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s after 4 minutes:\n%s", job.Phase, ctrl.log())
		}
		time.Sleep(time.Second)
	}
	if job.Phase != retrain.PhasePromoted || job.Version != 2 || job.BaseVersion != 1 {
		t.Fatalf("job ended %s (version %d, base %d): %s\n%s", job.Phase, job.Version, job.BaseVersion, job.Error, ctrl.log())
	}
	g := job.Gate
	if g == nil || !g.Promote || g.Current == nil || g.Candidate.Accuracy <= g.Current.Accuracy {
		t.Fatalf("gate decision: %+v", g)
	}
	if job.Dataset.Labels != 1200 || job.Dataset.Shards == 0 || job.Dataset.EvalSamples < 2000 {
		t.Errorf("dataset: %+v", job.Dataset)
	}
	t.Logf("job %s: gate %s (candidate %.4f, serving %.4f on %d images); took %s", job.ID, g.Reason,
		g.Candidate.Accuracy, g.Current.Accuracy, job.Dataset.EvalSamples, job.Finished.Sub(job.Created).Round(time.Second))

	// Version 2 is signed, names its parent and its data, and stable points at it.
	repo := modelrepo.New(e.bucket)
	v, err := modelrepo.LoadVerifier(filepath.Join(keys, "edgeloop.pub"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Manifest(context.Background(), "fashion", 2, v)
	if err != nil {
		t.Fatal(err)
	}
	if m.ParentVersion != 1 || len(m.Datasets) == 0 || !strings.Contains(strings.Join(m.Datasets, " "), "samples/fashion/") {
		t.Errorf("manifest of version 2: parent %d, datasets %v", m.ParentVersion, m.Datasets)
	}
	// Scored on the evaluation set and the held-out tenth of the captured samples, refusing
	// nothing.
	rec := readGateRecord(t, e.bucket, "fashion", 2)
	wantEvaluator := strings.TrimSuffix(evaluator, "-http")
	if rec.Report.Evaluator != wantEvaluator || rec.Report.Samples != job.Dataset.EvalSamples {
		t.Errorf("gate.json of version 2: evaluator %q on %d samples, want %q on %d", rec.Report.Evaluator, rec.Report.Samples, wantEvaluator, job.Dataset.EvalSamples)
	}
	if platform != nil {
		// The evaluation ran on the platform, from what the controller staged in the bucket.
		if n := platform.succeeded(); n != 1 {
			t.Errorf("the job platform ran %d successful evaluations, want 1", n)
		}
		staged, err := objstore.List(context.Background(), e.bucket, "jobs/fashion/"+jobID+"/eval/", true)
		if err != nil || len(staged) < 4 {
			t.Errorf("staged evaluation files: %v (%v), want the request, inputs, two models and the report", staged, err)
		}
	}
	if p := rec.Set.Parts; len(p) != 2 || p[0].Name != "fmnist-test-2000" || p[0].Samples != 2000 || p[1].Name != "held_out" || p[1].Samples < 60 || len(rec.Set.Refused) != 0 {
		t.Errorf("gate.json's set: parts %+v, refused %+v; want fmnist-test-2000's 2000 and about 120 held out", p, rec.Set.Refused)
	}
	if evaluator == "oip" {
		// Both versions went through the scratch repository the gate's exporter follows.
		def := gate.DefaultConfig().OIP
		for _, name := range []string{def.CandidateName, def.CurrentName} {
			key := "gate-scratch/models/" + name + "/1/edgeloop.json"
			if ok, err := e.bucket.Exists(context.Background(), key); err != nil || !ok {
				t.Errorf("scratch repository: no %s (%v)", key, err)
			}
		}
	}
	if a, err := repo.Alias(context.Background(), "fashion", "stable"); err != nil || a.Version != 2 {
		t.Errorf("stable alias: %+v %v", a, err)
	}
	p.waitForVersion(t, "2", 30*time.Second)

	// One job, and the metrics say so.
	_, metrics := get(t, newRequest(t, "http://"+addr+"/metrics"))
	for _, want := range []string{
		`edgeloop_retrain_jobs_total{model="fashion",result="promoted"} 1`,
		`edgeloop_retrain_gate_decisions_total{decision="promote",model="fashion"} 1`,
		`edgeloop_retrain_triggers_skipped_total{model="fashion",reason="duplicate"} 1`,
		`edgeloop_retrain_published_version{model="fashion"} 2`,
		`edgeloop_retrain_active_jobs{model="fashion"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("retrain metrics lack %s", want)
		}
	}
	var list struct{ Jobs []retrain.Job }
	if _, body := operatorDo(t, http.MethodGet, "http://"+addr+"/v1/jobs", "op-token", nil); json.Unmarshal(body, &list) != nil || len(list.Jobs) != 1 {
		t.Errorf("jobs: %s, want exactly one", body)
	}
	if versions, err := repo.Versions(context.Background(), "fashion"); err != nil || len(versions) != 2 {
		t.Errorf("versions: %v %v", versions, err)
	}
}

// TestTrainRemote runs `edgeloop train` as a remote job (Kubernetes, HTTP backends) runs it:
// the dataset manifest and the output prefix are s3:// URLs; the trainer fetches the shards and
// labels the manifest lists, trains on them, and uploads model.onnx and metrics.json.
func TestTrainRemote(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	train, err := fmnist.Load(dataDir, fmnist.Train)
	if err != nil {
		t.Fatal(err)
	}
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	s3 := objstore.S3Config{Endpoint: endpoint, Bucket: "remote", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, s3); err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewS3(s3)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		if err := bucket.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	samples, ls := fmnistSamples(t, train, "edge-1", 0, 300, mlpSampleShape)
	var shard, lines bytes.Buffer
	if err := sample.WriteTar(&shard, samples); err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		fmt.Fprintf(&lines, `{"key":%q,"label":%s}`+"\n", l.Key, l.Label)
	}
	put("samples/fashion/1/dt=2026-11-29/hour=05/it-1.tar", shard.Bytes())
	put("labels/fashion/dt=2026-11-29/it-1-1-00000000.jsonl", lines.Bytes())
	bucketURL := "s3://remote?endpoint=" + endpoint + "&insecure=true"
	manifest, _ := json.Marshal(dataset.Manifest{Model: "fashion", Bucket: bucketURL,
		Shards: []string{"samples/fashion/1/dt=2026-11-29/hour=05/it-1.tar"}, Labels: []string{"labels/fashion/dt=2026-11-29/it-1-1-00000000.jsonl"}})
	put("jobs/fashion/job-fashion-1/dataset.json", manifest)
	env := []string{objstore.EnvAccessKey + "=" + access, objstore.EnvSecretKey + "=" + secret,
		"EDGELOOP_DATASET_MANIFEST=s3://remote/jobs/fashion/job-fashion-1/dataset.json?endpoint=" + endpoint + "&insecure=true",
		"EDGELOOP_OUTPUT=s3://remote/jobs/fashion/job-fashion-1/output/?endpoint=" + endpoint + "&insecure=true"}
	out := run(t, env, "train", "--data", dataDir, "--train-limit", "2000", "--epochs", "1", "--log.format", "json")
	if !strings.Contains(out, "s3://remote/jobs/fashion/job-fashion-1/output/") {
		t.Errorf("summary does not name the output prefix: %s", out)
	}
	data, _, err := objstore.ReadAll(ctx, bucket, "jobs/fashion/job-fashion-1/output/metrics.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Samples struct {
			Labelled int `json:"labelled"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Samples.Labelled != 300 {
		t.Errorf("metrics.json: %s (labelled %d, want 300)", data, m.Samples.Labelled)
	}
	if ok, err := bucket.Exists(ctx, "jobs/fashion/job-fashion-1/output/model.onnx"); err != nil || !ok {
		t.Errorf("model.onnx not uploaded: %v", err)
	}
}

// startOIPExporter starts an edgeloop exporter for the gate's oip evaluator in poll mode: it
// serves the evaluator's two model names (gate.DefaultConfig's) from the scratch repository
// at scratchURL, trusting pubKey, and it returns its inference front's address.
func startOIPExporter(t *testing.T, env []string, scratchURL, pubKey, cacheDir string) string {
	t.Helper()
	def := gate.DefaultConfig().OIP
	p, _ := startExporterEnv(t, env, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: %s
  - name: %s
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: 1s
`, def.CandidateName, def.CurrentName, scratchURL, pubKey, cacheDir))
	front, _ := p.waitFor(t, "inference front started", 30*time.Second)["listen"].(string)
	if front == "" {
		t.Fatalf("the gate's exporter logged no inference address:\n%s", p.log())
	}
	return front
}

// evalPlatform is an HTTP job platform for the gate's job evaluator on the http backend (poll
// mode): POST /runs starts `edgeloop evaluate` as a process with the contract's variables from
// the request body (s3:// URLs of the staged request and the output prefix), GET /runs/{id}
// answers its state.
type evalPlatform struct {
	url  string
	env  []string
	mu   sync.Mutex
	runs map[string]string
	msgs map[string]string
}

func startEvalPlatform(t *testing.T, env []string) *evalPlatform {
	t.Helper()
	p := &evalPlatform{env: env, runs: map[string]string{}, msgs: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *evalPlatform) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/runs":
		var body struct {
			Env map[string]string `json:"env"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		id := fmt.Sprintf("run-%d", len(p.runs)+1)
		p.runs[id] = "RUNNING"
		p.mu.Unlock()
		cmd := exec.Command(binary, "evaluate", "--log.format", "json")
		cmd.Env = append(os.Environ(), p.env...)
		for k, v := range body.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		go func() {
			out, err := cmd.CombinedOutput()
			state, msg := "SUCCEEDED", ""
			if err != nil {
				state, msg = "FAILED", fmt.Sprintf("%v: %s", err, out)
			}
			p.mu.Lock()
			p.runs[id], p.msgs[id] = state, msg
			p.mu.Unlock()
		}()
		json.NewEncoder(w).Encode(map[string]string{"run_id": id})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/runs/"):
		p.mu.Lock()
		state, ok := p.runs[strings.TrimPrefix(r.URL.Path, "/runs/")]
		msg := p.msgs[strings.TrimPrefix(r.URL.Path, "/runs/")]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"state": state, "message": msg})
	default:
		http.NotFound(w, r)
	}
}

// succeeded counts the runs that ended well.
func (p *evalPlatform) succeeded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.runs {
		if s == "SUCCEEDED" {
			n++
		}
	}
	return n
}
