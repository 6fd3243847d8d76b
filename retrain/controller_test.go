package retrain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	ds "github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
)

// fakeBackend runs no process: a test ends its jobs with finish. Its jobs outlive the
// controllers that use it, like a Kubernetes Job outlives a controller restart.
type fakeBackend struct {
	mu      sync.Mutex
	started []jobs.Spec
	waits   []jobs.Ref
	cancels []jobs.Ref
	done    map[string]chan struct{}
	final   map[string]jobs.Status
	startCh chan jobs.Spec
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{done: map[string]chan struct{}{}, final: map[string]jobs.Status{}, startCh: make(chan jobs.Spec, 100)}
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Start(_ context.Context, s jobs.Spec) (jobs.Ref, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, s)
	f.done[s.ID] = make(chan struct{})
	f.startCh <- s
	return jobs.Ref{Backend: "fake", ID: s.ID}, nil
}

func (f *fakeBackend) Wait(ctx context.Context, ref jobs.Ref) (jobs.Status, error) {
	f.mu.Lock()
	f.waits = append(f.waits, ref)
	ch := f.done[ref.ID]
	f.mu.Unlock()
	if ch == nil {
		return jobs.Status{State: jobs.Failed, Message: "unknown job"}, nil
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return jobs.Status{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.final[ref.ID], nil
}

func (f *fakeBackend) Cancel(_ context.Context, ref jobs.Ref) error {
	f.mu.Lock()
	f.cancels = append(f.cancels, ref)
	f.mu.Unlock()
	f.finish(ref.ID, jobs.Status{State: jobs.Failed, Message: "killed by signal 15"})
	return nil
}

// finish ends a job (once).
func (f *fakeBackend) finish(id string, st jobs.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.final[id]; ok {
		return
	}
	f.final[id] = st
	if ch := f.done[id]; ch != nil {
		close(ch)
	}
}

func (f *fakeBackend) counts() (started, waits, cancels int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started), len(f.waits), len(f.cancels)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeCollector serves dataset manifests whose label files are in a file bucket.
type fakeCollector struct {
	mu     sync.Mutex
	labels []string
	shards []string
	bucket string
	srv    *httptest.Server
	fail   bool
}

func newFakeCollector(t *testing.T, bucketDir string) *fakeCollector {
	fc := &fakeCollector{bucket: bucketDir}
	fc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if fc.fail {
			http.Error(w, "catalog not loaded", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "Bearer collector-op" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		model := strings.TrimPrefix(r.URL.Path, "/v1/datasets/")
		_ = json.NewEncoder(w).Encode(ds.Manifest{Model: model, Shards: append([]string{}, fc.shards...), Labels: fc.labels})
	}))
	t.Cleanup(fc.srv.Close)
	return fc
}

var labelSeq int64 = 1_780_000_000_000_000_000

// addLabels writes a label file of n labels.
func (fc *fakeCollector) addLabels(t *testing.T, model string, n int) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	labelSeq += 1e9
	key := fmt.Sprintf("labels/%s/dt=2026-11-29/c0-%d-0a1b2c3d.jsonl", model, labelSeq)
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"key":"k%d","label":"Bag","source":"human"}`+"\n", i)
	}
	p := filepath.Join(fc.bucket, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fc.labels = append(fc.labels, key)
}

const (
	webhookToken  = "am-secret"
	operatorToken = "op-secret"
)

// testEnv is a controller under test with its fakes.
type testEnv struct {
	cfg     Config
	backend *fakeBackend
	clock   *clock
	c       *Controller
	url     string
	stop    func()
	ended   chan Job
}

func testConfig(t *testing.T) (Config, *fakeCollector) {
	t.Helper()
	dir := t.TempDir()
	bucket := filepath.Join(dir, "bucket")
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		t.Fatal(err)
	}
	keys, err := modelrepo.GenerateKey(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fc := newFakeCollector(t, bucket)
	cfg := DefaultConfig()
	cfg.Web.Listen = "127.0.0.1:0"
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Auth.WebhookTokensFile = write("webhook.tokens", token.HashLine("alertmanager", webhookToken)+"\n")
	cfg.Auth.OperatorTokensFile = write("operator.tokens", token.HashLine("alice", operatorToken)+"\n")
	cfg.Repository.Bucket = "file://" + bucket
	cfg.Repository.SigningKeyFile = keys.Private
	cfg.Dataset.CollectorURL = fc.srv.URL
	cfg.Dataset.TokenFile = write("collector.token", "collector-op\n")
	cfg.Models = []ModelConfig{{Name: "fashion"}, {Name: "digits"}}
	cfg.Policy.MinNewLabels = 0
	cfg.Policy.Cooldown = time.Hour
	return cfg, fc
}

// start runs a controller on cfg with the backend until the test ends or stop is called.
func start(t *testing.T, cfg Config, backend jobs.Backend, clk *clock) *testEnv {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	env := &testEnv{cfg: cfg, clock: clk, ended: make(chan Job, 100)}
	env.backend, _ = backend.(*fakeBackend)
	logger := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(cfg, Options{Backend: backend, Now: clk.Now, Logger: logger, OnJobEnd: func(j Job) { env.ended <- j }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	env.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(env.stop)
	env.c, env.url = c, "http://"+c.Addr()
	return env
}

// tWriter sends the controller's log to the test's.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (e *testEnv) post(t *testing.T, path, token string, body any) (int, []byte) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.url+path, bytes.NewReader(data))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// webhook returns a firing payload of one alert.
func webhook(alert, model, groupKey, fingerprint string, startsAt time.Time) Webhook {
	return Webhook{
		Version: "4", GroupKey: groupKey, Status: "firing", Receiver: "edgeloop-retrain",
		Alerts: []Alert{{Status: "firing", Fingerprint: fingerprint, StartsAt: startsAt,
			Labels: map[string]string{"alertname": alert, "model": model, "version": "3", "node": "edge-1"}}},
	}
}

func waitStarted(t *testing.T, b *fakeBackend) jobs.Spec {
	t.Helper()
	select {
	case s := <-b.startCh:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no job started")
		return jobs.Spec{}
	}
}

// waitRunning waits until the controller records job id as running: the backend learns of a
// job (waitStarted) before the controller records that it started.
func waitRunning(t *testing.T, e *testEnv, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for _, j := range e.c.Jobs() {
			if j.ID == id && j.Phase == PhaseRunning {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not running: %+v", id, e.c.Jobs())
		}
	}
}

func waitEnded(t *testing.T, e *testEnv) Job {
	t.Helper()
	select {
	case j := <-e.ended:
		return j
	case <-time.After(15 * time.Second):
		t.Fatal("no job ended")
		return Job{}
	}
}

// TestWebhookStorm sends 100 copies of one alert and 20 distinct alerts, all at once, for two
// models: exactly one job per model starts, and every other trigger is recorded as skipped
// with its reason.
func TestWebhookStorm(t *testing.T) {
	cfg, _ := testConfig(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	e := start(t, cfg, newFakeBackend(), clk)
	at := clk.Now().Add(-10 * time.Minute)
	var payloads []Webhook
	for range 100 {
		payloads = append(payloads, webhook("EdgeloopConfidenceDrift", "fashion", `{}:{alertname="EdgeloopConfidenceDrift"}`, "aaaa", at))
	}
	for i := range 20 {
		model := []string{"fashion", "digits"}[i%2]
		payloads = append(payloads, webhook("EdgeloopEstimatedAccuracyDrop", model, fmt.Sprintf("{}:{model=%q}", model), fmt.Sprintf("f%03d", i), at))
	}
	var wg sync.WaitGroup
	codes := make(chan int, len(payloads))
	for _, p := range payloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := e.post(t, "/v1/alertmanager", webhookToken, p)
			if code != http.StatusOK {
				t.Errorf("webhook: %d %s", code, body)
			}
			codes <- code
		}()
	}
	wg.Wait()
	started := map[string]int{}
	for range 2 {
		s := waitStarted(t, e.backend)
		started[s.Model]++
	}
	select {
	case s := <-e.backend.startCh:
		t.Fatalf("a second job started: %+v", s)
	case <-time.After(200 * time.Millisecond):
	}
	if started["fashion"] != 1 || started["digits"] != 1 {
		t.Fatalf("jobs started per model: %v, want one each", started)
	}
	ds := e.c.Decisions()
	if len(ds) != 120 {
		t.Fatalf("%d decisions recorded, want 120", len(ds))
	}
	reasons := map[string]int{}
	for _, d := range ds {
		if d.Started != "" {
			reasons["started"]++
		} else {
			reasons[d.Skipped]++
		}
	}
	if reasons["started"] != 2 || reasons[SkipDuplicate]+reasons[SkipActiveJob] != 118 {
		t.Errorf("decisions: %v, want 2 started and 118 duplicate or active_job", reasons)
	}
	if got := testutil.ToFloat64(e.c.m.triggers.WithLabelValues("fashion", SourceAlertmanager)); got != 110 {
		t.Errorf("fashion triggers = %v, want 110", got)
	}
	skipped := testutil.ToFloat64(e.c.m.skipped.WithLabelValues("fashion", SkipDuplicate)) +
		testutil.ToFloat64(e.c.m.skipped.WithLabelValues("fashion", SkipActiveJob))
	if skipped != 109 {
		t.Errorf("fashion skipped = %v, want 109", skipped)
	}
	if got := testutil.ToFloat64(e.c.m.active.WithLabelValues("digits")); got != 1 {
		t.Errorf("digits active jobs = %v, want 1", got)
	}
}

// TestRestartReattaches stops the controller while its job runs and starts another on the
// same state: the new one waits on the same backend job and starts no second one, and a
// re-sent alert is still a duplicate.
func TestRestartReattaches(t *testing.T) {
	cfg, _ := testConfig(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	e1 := start(t, cfg, b, clk)
	alert := webhook("EdgeloopConfidenceDrift", "fashion", "g1", "f1", clk.Now())
	if code, body := e1.post(t, "/v1/alertmanager", webhookToken, alert); code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	spec := waitStarted(t, b)
	e1.stop()
	_, waitsBefore, _ := b.counts()
	if j := e1.c.Jobs(); len(j) != 1 || j[0].Phase != PhaseRunning {
		t.Fatalf("after stop: jobs %+v, want one running", j)
	}

	e2 := start(t, cfg, b, clk)
	if code, body := e2.post(t, "/v1/alertmanager", webhookToken, alert); code != 200 || !strings.Contains(string(body), SkipDuplicate) {
		t.Fatalf("re-sent webhook after restart: %d %s, want a duplicate", code, body)
	}
	// The resumed driver re-attaches: wait until it waits on the job, then end the job.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, waits, _ := b.counts()
		if waits > waitsBefore {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted controller did not re-attach to the job")
		}
		time.Sleep(10 * time.Millisecond)
	}
	exit := 2
	b.finish(spec.ID, jobs.Status{State: jobs.Failed, Message: "exit status 2", ExitCode: &exit, LogTail: "Traceback..."})
	j := waitEnded(t, e2)
	if j.ID != spec.ID || j.Phase != PhaseFailed || j.Status == nil || *j.Status.ExitCode != 2 {
		t.Fatalf("ended job: %+v", j)
	}
	if started, _, _ := b.counts(); started != 1 {
		t.Fatalf("%d jobs started, want 1", started)
	}
	if got := testutil.ToFloat64(e2.c.m.jobs.WithLabelValues("fashion", string(PhaseFailed))); got != 1 {
		t.Errorf("jobs_total{failed} = %v", got)
	}
}

// TestFailureTimeoutCooldown: a failed job and a timed-out job are recorded with their
// reasons and metrics, and each starts the cooldown.
func TestFailureTimeoutCooldown(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Policy.JobTimeout = time.Second
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	e := start(t, cfg, b, clk)

	manual := func() (int, Decision) {
		code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, ManualRequest{Reason: "test"})
		var d Decision
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatalf("manual: %d %s", code, body)
		}
		return code, d
	}
	code, d := manual()
	if code != http.StatusAccepted || d.Started == "" {
		t.Fatalf("manual: %d %+v", code, d)
	}
	spec := waitStarted(t, b)
	if spec.ID != d.Started || spec.Model != "fashion" || spec.BaseVersion != 0 || spec.DatasetManifest == "" || spec.Output == "" {
		t.Fatalf("spec: %+v", spec)
	}
	b.finish(spec.ID, jobs.Status{State: jobs.Failed, Message: "exit status 1"})
	j := waitEnded(t, e)
	if j.Phase != PhaseFailed || j.Error != "exit status 1" {
		t.Fatalf("failed job: %+v", j)
	}
	// Within the cooldown: refused, with the reason.
	clk.Add(30 * time.Minute)
	if code, d := manual(); code != http.StatusConflict || d.Skipped != SkipCooldown {
		t.Fatalf("during cooldown: %d %+v", code, d)
	}
	// An operator may force it.
	code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, ManualRequest{Force: true})
	if code != http.StatusAccepted {
		t.Fatalf("forced: %d %s", code, body)
	}
	spec = waitStarted(t, b) // never finished by the test: times out after 1s
	j = waitEnded(t, e)
	if j.Phase != PhaseTimedOut || !strings.Contains(j.Error, "job_timeout") {
		t.Fatalf("timed-out job: %+v", j)
	}
	if _, _, cancels := b.counts(); cancels != 1 {
		t.Errorf("%d cancels, want 1", cancels)
	}
	if j.Status == nil || j.Status.Message != "killed by signal 15" {
		t.Errorf("timed-out job status: %+v", j.Status)
	}
	if code, d := manual(); code != http.StatusConflict || d.Skipped != SkipCooldown {
		t.Fatalf("cooldown after the timeout: %d %+v", code, d)
	}
	clk.Add(time.Hour + time.Second)
	if code, d := manual(); code != http.StatusAccepted {
		t.Fatalf("after the cooldown: %d %+v", code, d)
	}
	for _, r := range []Phase{PhaseFailed, PhaseTimedOut} {
		if got := testutil.ToFloat64(e.c.m.jobs.WithLabelValues("fashion", string(r))); got != 1 {
			t.Errorf("jobs_total{%s} = %v, want 1", r, got)
		}
	}
	if got := testutil.ToFloat64(e.c.m.skipped.WithLabelValues("fashion", SkipCooldown)); got != 2 {
		t.Errorf("skipped{cooldown} = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(e.c.m.duration); n != 2 {
		t.Errorf("duration histograms: %d, want 2 (one per model)", n)
	}
}

// TestPolicyLabelsAndBudget: the label minimum counts labels written since the last training,
// and the daily budget caps forced and unforced starts alike except operators' forced ones.
func TestPolicyLabelsAndBudget(t *testing.T) {
	cfg, fc := testConfig(t)
	cfg.Policy.MinNewLabels = 5
	cfg.Policy.Cooldown = 0
	cfg.Policy.DailyBudget = 2
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	e := start(t, cfg, b, clk)
	send := func(fp string) Decision {
		code, body := e.post(t, "/v1/alertmanager", webhookToken, webhook("EdgeloopConfidenceDrift", "fashion", "g", fp, clk.Now()))
		var out struct{ Decisions []Decision }
		if err := json.Unmarshal(body, &out); err != nil || code != 200 || len(out.Decisions) != 1 {
			t.Fatalf("webhook: %d %s", code, body)
		}
		return out.Decisions[0]
	}
	fc.addLabels(t, "fashion", 3)
	if d := send("a"); d.Skipped != SkipNotEnoughLabels || !strings.Contains(d.Detail, "3 new labelled samples") {
		t.Fatalf("3 labels: %+v", d)
	}
	fc.addLabels(t, "fashion", 3)
	if d := send("b"); d.Started == "" {
		t.Fatalf("6 labels: %+v", d)
	}
	spec := waitStarted(t, b)
	// The job's own dataset lists the label files.
	var man struct{ Labels []string }
	data, err := os.ReadFile(spec.DatasetManifest)
	if err != nil || json.Unmarshal(data, &man) != nil || len(man.Labels) != 2 {
		t.Fatalf("job manifest %s: %s %v", spec.DatasetManifest, data, err)
	}
	b.finish(spec.ID, jobs.Status{State: jobs.Failed, Message: "exit status 1"})
	waitEnded(t, e)
	// A failed job consumed nothing: the same labels still count.
	if d := send("c"); d.Started == "" {
		t.Fatalf("after a failed job: %+v", d)
	}
	spec = waitStarted(t, b)
	b.finish(spec.ID, jobs.Status{State: jobs.Failed})
	waitEnded(t, e)
	if d := send("d"); d.Skipped != SkipBudget {
		t.Fatalf("third job of the day: %+v", d)
	}
	clk.Add(24 * time.Hour)
	if d := send("e"); d.Started == "" {
		t.Fatalf("next day: %+v", d)
	}
	waitStarted(t, b)

	// The collector down: 503 so that Alertmanager retries, and nothing recorded.
	fc.mu.Lock()
	fc.fail = true
	fc.mu.Unlock()
	n := len(e.c.Decisions())
	code, body := e.post(t, "/v1/alertmanager", webhookToken, webhook("EdgeloopConfidenceDrift", "digits", "g", "z", clk.Now()))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "503") {
		t.Fatalf("collector down: %d %s", code, body)
	}
	if len(e.c.Decisions()) != n {
		t.Fatalf("a decision was recorded while the collector was down")
	}
}

// TestWebhookRefusals: authentication, malformed payloads and alerts that cannot retrain.
func TestWebhookRefusals(t *testing.T) {
	cfg, _ := testConfig(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	e := start(t, cfg, newFakeBackend(), clk)
	ok := webhook("EdgeloopConfidenceDrift", "fashion", "g", "f", clk.Now())
	ok.Alerts[0].Status = "resolved"
	for _, tc := range []struct {
		name  string
		token string
		basic [2]string
		body  string
		code  int
		want  string
	}{
		{"no credential", "", [2]string{}, "{}", 401, "no valid credential"},
		{"operator token is not the webhook's", operatorToken, [2]string{}, "{}", 401, "no valid credential"},
		{"basic auth with the wrong user", "", [2]string{"mallory", webhookToken}, "{}", 401, "no valid credential"},
		{"basic auth", "", [2]string{"alertmanager", webhookToken}, mustJSON(ok), 200, SkipResolved},
		{"not JSON", webhookToken, [2]string{}, "{", 400, "not an Alertmanager webhook payload"},
		{"version 3", webhookToken, [2]string{}, `{"version":"3","groupKey":"g","alerts":[]}`, 400, `only Alertmanager's webhook version`},
		{"no alertname", webhookToken, [2]string{}, `{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{}}]}`, 400, "alerts[0].labels has no alertname"},
		{"bad status", webhookToken, [2]string{}, `{"version":"4","groupKey":"g","alerts":[{"status":"pending","labels":{"alertname":"A"}}]}`, 400, `want firing or resolved`},
		{"too large", webhookToken, [2]string{}, `{"version":"4","groupKey":"` + strings.Repeat("x", maxWebhookBody) + `"}`, 413, "body larger than"},
		{"alert not configured", webhookToken, [2]string{}, mustJSON(webhook("EdgeloopGPUHot", "fashion", "g", "f", clk.Now())), 200, SkipNotConfigured},
		{"no model label", webhookToken, [2]string{}, mustJSON(webhook("EdgeloopConfidenceDrift", "", "g", "f", clk.Now())), 200, SkipNoModelLabel},
		{"unknown model", webhookToken, [2]string{}, mustJSON(webhook("EdgeloopConfidenceDrift", "nope", "g", "f", clk.Now())), 200, SkipUnknownModel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/alertmanager", strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.want) {
				t.Fatalf("got %d %s, want %d containing %q", resp.StatusCode, b.String(), tc.code, tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(e.c.m.skipped.WithLabelValues("", SkipUnknownModel)); got != 1 {
		t.Errorf("unknown model skips = %v (model label must be empty for models not configured)", got)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestJobsAPI: listing, one job, cancel, and the operator credential.
func TestJobsAPI(t *testing.T) {
	cfg, _ := testConfig(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	e := start(t, cfg, b, clk)
	code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil)
	if code != http.StatusAccepted {
		t.Fatalf("manual: %d %s", code, body)
	}
	spec := waitStarted(t, b)
	waitRunning(t, e, spec.ID)
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/v1/jobs", ""); code != 401 {
		t.Errorf("jobs without a token: %d", code)
	}
	if code, body := get("/v1/jobs?model=fashion", operatorToken); code != 200 || !strings.Contains(body, spec.ID) || !strings.Contains(body, `"phase": "running"`) {
		t.Errorf("jobs: %d %s", code, body)
	}
	if code, body := get("/v1/jobs?model=digits", operatorToken); code != 200 || strings.Contains(body, spec.ID) {
		t.Errorf("jobs of digits: %d %s", code, body)
	}
	if code, body := get("/v1/jobs/"+spec.ID, operatorToken); code != 200 || !strings.Contains(body, `"backend": "fake"`) {
		t.Errorf("job: %d %s", code, body)
	}
	if code, _ := get("/v1/jobs/job-nope-1", operatorToken); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
	if code, body := e.post(t, "/v1/models/nope/retrain", operatorToken, nil); code != 404 || !strings.Contains(string(body), "not in the controller's models") {
		t.Errorf("unknown model: %d %s", code, body)
	}
	if code, body := e.post(t, "/v1/jobs/"+spec.ID+"/cancel", operatorToken, nil); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, body)
	}
	j := waitEnded(t, e)
	if j.Phase != PhaseCancelled {
		t.Fatalf("cancelled job: %+v", j)
	}
	if code, _ := e.post(t, "/v1/jobs/"+spec.ID+"/cancel", operatorToken, nil); code != http.StatusConflict {
		t.Errorf("cancel twice: %d", code)
	}
	if code, body := get("/v1/decisions?model=fashion", operatorToken); code != 200 || !strings.Contains(body, `"by": "alice"`) {
		t.Errorf("decisions: %d %s", code, body)
	}
	// Completion callbacks need the job's token, and a backend that takes them.
	if code, _ := e.post(t, "/v1/jobs/"+spec.ID+"/complete", "", map[string]string{"state": "succeeded"}); code != 401 {
		t.Errorf("callback without token: %d", code)
	}
	if code, body := e.post(t, "/v1/jobs/"+spec.ID+"/complete?token="+e.c.CallbackToken(spec.ID), "", map[string]string{"state": "succeeded"}); code != 409 {
		t.Errorf("callback to the fake backend: %d %s", code, body)
	}
}

// TestStateSurvivesRestart: jobs, decisions and the policy's memory are read back.
func TestStateSurvivesRestart(t *testing.T) {
	cfg, _ := testConfig(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	e := start(t, cfg, b, clk)
	e.post(t, "/v1/models/digits/retrain", operatorToken, nil)
	spec := waitStarted(t, b)
	b.finish(spec.ID, jobs.Status{State: jobs.Failed})
	waitEnded(t, e)
	e.stop()
	e2 := start(t, cfg, b, clk)
	if j := e2.c.Jobs(); len(j) != 1 || j[0].Phase != PhaseFailed {
		t.Fatalf("jobs after restart: %+v", j)
	}
	if d := e2.c.Decisions(); len(d) != 1 || d[0].Started != spec.ID {
		t.Fatalf("decisions after restart: %+v", d)
	}
	code, body := e2.post(t, "/v1/models/digits/retrain", operatorToken, nil)
	if code != http.StatusConflict || !strings.Contains(string(body), SkipCooldown) {
		t.Fatalf("cooldown after restart: %d %s", code, body)
	}
}

// TestHTTPCallback runs the http backend in callback mode: the start request carries a
// callback URL with the job's token, the dataset manifest and output prefix are bucket URLs,
// and the callback ends the job.
func TestHTTPCallback(t *testing.T) {
	cfg, _ := testConfig(t)
	started := make(chan map[string]any, 1)
	jobSystem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		started <- body
		_, _ = w.Write([]byte(`{"run_id":"run-42"}`))
	}))
	defer jobSystem.Close()
	cfg.Backend.Type = "http"
	cfg.Backend.HTTP.URL = jobSystem.URL + "/runs"
	cfg.Backend.HTTP.Mode = httpjob.ModeCallback
	cfg.Backend.HTTP.RunID = "run_id"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web.Listen = l.Addr().String()
	cfg.ExternalURL = "http://" + cfg.Web.Listen
	l.Close()
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{ended: make(chan Job, 10)}
	c, err := New(cfg, Options{Now: clk.Now, OnJobEnd: func(j Job) { env.ended <- j }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	env.c, env.url = c, "http://"+c.Addr()

	if code, body := env.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != http.StatusAccepted {
		t.Fatalf("manual: %d %s", code, body)
	}
	var body map[string]any
	select {
	case body = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the job system was not called")
	}
	id := body["id"].(string)
	cb, _ := body["callback_url"].(string)
	if !strings.HasPrefix(cb, "http://127.0.0.1:") || !strings.Contains(cb, "/v1/jobs/"+id+"/complete?token="+c.CallbackToken(id)) {
		t.Fatalf("callback_url %q", cb)
	}
	manifest, _ := body["dataset_manifest"].(string)
	if want := cfg.Repository.Bucket + "/jobs/fashion/" + id + "/dataset.json"; manifest != want {
		t.Errorf("dataset_manifest %q, want %q", manifest, want)
	}
	if _, err := os.Stat(strings.TrimPrefix(manifest, "file://")); err != nil {
		t.Errorf("dataset manifest not in the bucket: %v", err)
	}
	if out, _ := body["output"].(string); !strings.HasSuffix(out, "/jobs/fashion/"+id+"/output") {
		t.Errorf("output %q", out)
	}
	// Wrong token: refused. Right token: the job ends as the callback says.
	if code, _ := env.post(t, "/v1/jobs/"+id+"/complete?token=00", "", map[string]any{"state": "failed"}); code != 401 {
		t.Errorf("callback with a wrong token: %d", code)
	}
	resp, err := http.Post(cb, "application/json", strings.NewReader(`{"state":"failed","message":"OOMKilled","exit_code":137}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	j := waitEnded(t, env)
	if j.Phase != PhaseFailed || j.Error != "OOMKilled" || j.Ref == nil || j.Ref.ID != "run-42" {
		t.Fatalf("job: %+v", j)
	}
}
