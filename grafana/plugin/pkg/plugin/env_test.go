package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// The credentials of the test's servers. Tests check that none of them reaches an answer
// or a log line.
const (
	collectorOpToken  = "collector-operator-secret-7f3a"
	controllerOpToken = "controller-operator-secret-9b1c"
	edgeNode          = "edge-1"
)

// secrets are the strings no answer or log may contain.
var secrets = []string{collectorOpToken, controllerOpToken, collectortest.Token(edgeNode)}

// imageCase is a captured sample whose input is image-shaped, and the picture it must make.
type imageCase struct {
	model  string
	shape  []int
	w, h   int
	rgb    bool
	reason string
	score  float64
	key    string
}

// env is a real collector and a real retrain controller (its job backend a fake that runs
// nothing), started in process over one bucket, with samples captured, shards stored, and
// two versions of "fashion" published in the model repository.
type env struct {
	bucketURL   string
	bucket      objstore.Bucket
	collector   *collector.Server
	controller  *retrain.Controller
	backend     *holdBackend
	samples     []imageCase
	collURL     string
	ctlURL      string
	signer      *modelrepo.Signer
	publishedAt time.Time
}

// startEnv starts the servers on bucketURL (file:// or s3:// with AWS_* set) and fills them.
func startEnv(t *testing.T, bucketURL string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := &env{bucketURL: bucketURL}
	var err error
	if e.bucket, err = objstore.Open(ctx, bucketURL); err != nil {
		t.Fatal(err)
	}

	ccfg := collector.DefaultConfig()
	ccfg.Instance = "it"
	ccfg.Web.Listen = "127.0.0.1:0"
	ccfg.Bucket = bucketURL
	ccfg.Auth.TokensFile = collectortest.TokensFile(t, dir, edgeNode)
	ccfg.Auth.OperatorTokensFile = write("collector-operators.sha256", token.HashLine("grafana", collectorOpToken)+"\n")
	ccfg.WAL.Dir = filepath.Join(dir, "wal")
	ccfg.Shards.MaxAge = 200 * time.Millisecond
	ccfg.Catalog.RebuildInterval = time.Second
	if err := ccfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.collector, err = collector.New(ccfg, collector.Options{}); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.collector.Run)
	e.collURL = "http://" + e.collector.Addr()

	keys, err := modelrepo.GenerateKey(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = modelrepo.LoadSigner(keys.Private); err != nil {
		t.Fatal(err)
	}
	rcfg := retrain.DefaultConfig()
	rcfg.Web.Listen = "127.0.0.1:0"
	rcfg.StateDir = filepath.Join(dir, "state")
	rcfg.Auth.WebhookTokensFile = write("webhook.sha256", token.HashLine("alertmanager", "am-secret")+"\n")
	rcfg.Auth.OperatorTokensFile = write("retrain-operators.sha256", token.HashLine("grafana", controllerOpToken)+"\n")
	rcfg.Repository.Bucket = bucketURL
	rcfg.Repository.SigningKeyFile = keys.Private
	rcfg.Dataset.CollectorURL = e.collURL
	rcfg.Dataset.TokenFile = write("collector-operator.token", collectorOpToken+"\n")
	rcfg.Models = []retrain.ModelConfig{{Name: "fashion"}}
	rcfg.Policy.MinNewLabels = 0
	if err := rcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.backend = &holdBackend{done: map[string]chan struct{}{}}
	if e.controller, err = retrain.New(rcfg, retrain.Options{Backend: e.backend, Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, e.controller.Run)
	e.ctlURL = "http://" + e.controller.Addr()

	e.publishVersions(t)
	e.sendSamples(t)
	return e
}

// runUntilCleanup runs a server until the test ends.
func runUntilCleanup(t *testing.T, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// publishVersions publishes fashion versions 1 and 2 (2 retrained from 1), canary and stable
// on 2, as retrain would.
func (e *env) publishVersions(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	repo := modelrepo.New(e.bucket)
	e.publishedAt = time.Now().UTC().Truncate(time.Second)
	for v, acc := range map[int64]float64{1: 0.81, 2: 0.89} {
		draft := modelrepo.Manifest{
			Classes: []string{"T-shirt/top", "Trouser", "Pullover"},
			Input:   modelrepo.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{-1, 1, 28, 28}},
			Output:  modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
			Metrics: map[string]float64{"accuracy": acc},
			Created: e.publishedAt.Add(time.Duration(v-3) * time.Minute),
		}
		if v == 2 {
			draft.ParentVersion = 1
			draft.Datasets = []string{"s3://edgeloop/samples/fashion/1/"}
		}
		if _, err := repo.Publish(ctx, "fashion", draft, []modelrepo.File{modelrepo.BytesFile("model.onnx", []byte("not a real model"))},
			e.signer, modelrepo.PublishOptions{Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	for _, alias := range []string{"canary", "stable"} {
		if err := repo.SetSignedAlias(ctx, "fashion", alias, 2, e.signer); err != nil {
			t.Fatal(err)
		}
	}
}

// sendSamples posts image-shaped samples as an exporter's sender does, of three layouts
// (grey NCHW, RGB NCHW, RGB NHWC), and waits until the catalog holds them all.
func (e *env) sendSamples(t *testing.T) {
	t.Helper()
	base := time.Now().UTC().Add(-30 * time.Minute)
	var batch []*sample.Sample
	add := func(c imageCase, n int) {
		vals := 1
		for _, d := range c.shape {
			vals *= d
		}
		data := make([]float32, vals)
		for i := range data {
			data[i] = float32((i*7+n*13)%256) / 255
		}
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, c.shape, data); err != nil {
			t.Fatal(err)
		}
		shape := make([]int64, len(c.shape))
		for i, d := range c.shape {
			shape[i] = int64(d)
		}
		s, err := sample.New(sample.Meta{
			Model: c.model, Version: "2", Node: edgeNode, Time: base.Add(time.Duration(n) * time.Second),
			RequestID: fmt.Sprintf("req-%s-%d", c.model, n), Prediction: n % 3, Scores: []float32{float32(c.score), float32(1 - c.score), 0},
			ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": c.score},
			Reason: c.reason, Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: shape, File: sample.NPYFile},
		}, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		c.key = s.Meta.Key
		e.samples = append(e.samples, c)
		batch = append(batch, s)
	}
	for i := range 6 {
		reason, score := "low_confidence", 0.3+0.05*float64(i)
		if i%2 == 1 {
			reason, score = "random", 0.9
		}
		add(imageCase{model: "fashion", shape: []int{1, 1, 28, 28}, w: 28, h: 28, reason: reason, score: score}, i)
	}
	add(imageCase{model: "camera", shape: []int{1, 3, 6, 8}, w: 8, h: 6, rgb: true, reason: "low_confidence", score: 0.4}, 10)
	add(imageCase{model: "camera", shape: []int{1, 6, 8, 3}, w: 8, h: 6, rgb: true, reason: "low_confidence", score: 0.45}, 11)
	// An input with no image reading: [2, 3, 5] has no channel dimension of 1, 3 or 4.
	add(imageCase{model: "camera", shape: []int{1, 2, 3, 5}, reason: "random", score: 0.5}, 12)

	req, _ := http.NewRequest(http.MethodPost, e.collURL+"/v1/samples", bytes.NewReader(collectortest.Zstd(t, collectortest.Tar(t, batch...))))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+collectortest.Token(edgeNode))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d %s", resp.StatusCode, body)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var cat struct {
			Models []struct {
				Samples int `json:"samples"`
			} `json:"models"`
		}
		n := 0
		if getOperator(t, e.collURL+"/v1/catalog", collectorOpToken, &cat) == http.StatusOK {
			for _, m := range cat.Models {
				n += m.Samples
			}
		}
		if n == len(batch) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the catalog holds %d of %d samples after 20s", n, len(batch))
		}
	}
}

func getOperator(t *testing.T, url, tok string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// settings returns a data source's settings over the env, with the repository read from
// repoURL ("" for none) and extra secrets.
func (e *env) settings(t *testing.T, repoURL string, jsonData map[string]any, secure map[string]string) backend.DataSourceInstanceSettings {
	t.Helper()
	jd := map[string]any{"collectorUrl": e.collURL, "controllerUrl": e.ctlURL}
	if repoURL != "" {
		jd["repositoryUrl"] = repoURL
	}
	for k, v := range jsonData {
		jd[k] = v
	}
	raw, err := json.Marshal(jd)
	if err != nil {
		t.Fatal(err)
	}
	sec := map[string]string{SecretCollectorToken: collectorOpToken, SecretControllerToken: controllerOpToken}
	for k, v := range secure {
		sec[k] = v
	}
	return backend.DataSourceInstanceSettings{ID: 1, UID: "edgeloop-ds", Name: "edgeloop", JSONData: raw, DecryptedSecureJSONData: sec, Updated: time.Now()}
}

// holdBackend starts nothing: its jobs run until cancelled, so a test sees them running.
type holdBackend struct {
	mu      sync.Mutex
	started []jobs.Spec
	done    map[string]chan struct{}
}

func (b *holdBackend) Name() string { return "hold" }

func (b *holdBackend) Start(_ context.Context, s jobs.Spec) (jobs.Ref, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = append(b.started, s)
	b.done[s.ID] = make(chan struct{})
	return jobs.Ref{Backend: "hold", ID: s.ID}, nil
}

func (b *holdBackend) Wait(ctx context.Context, ref jobs.Ref) (jobs.Status, error) {
	b.mu.Lock()
	ch := b.done[ref.ID]
	b.mu.Unlock()
	if ch == nil {
		return jobs.Status{State: jobs.Failed, Message: "unknown job"}, nil
	}
	select {
	case <-ch:
		return jobs.Status{State: jobs.Failed, Message: "cancelled"}, nil
	case <-ctx.Done():
		return jobs.Status{}, ctx.Err()
	}
}

func (b *holdBackend) Cancel(_ context.Context, ref jobs.Ref) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch := b.done[ref.ID]; ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	return nil
}

func (b *holdBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.started)
}

// waitJob waits until the controller reports job id in phase.
func (e *env) waitJob(t *testing.T, id, phase string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var j struct {
			Phase string `json:"phase"`
		}
		if getOperator(t, e.ctlURL+"/v1/jobs/"+id, controllerOpToken, &j) == http.StatusOK && j.Phase == phase {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s after 15s (last: %q)", id, phase, j.Phase)
		}
	}
}
