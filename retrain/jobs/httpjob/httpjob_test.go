package httpjob

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// kfpBody is a start body for Kubeflow Pipelines v2's POST /apis/v2beta1/runs, as in
// docs/job-backends.md.
const kfpBody = `{"display_name": {{json .ID}},
 "pipeline_version_reference": {"pipeline_id": "p-1", "pipeline_version_id": "v-1"},
 "runtime_config": {"parameters": {"model": {{json .Model}}, "base_version": {{.BaseVersion}},
   "dataset_manifest": {{json .DatasetManifest}}, "output": {{json .Output}}, "job_id": {{json .ID}}}}}`

// fakeKFP is a Kubeflow-Pipelines-like API: POST /apis/v2beta1/runs creates run-1, GET
// /apis/v2beta1/runs/run-1 answers the next of states (the last one repeats), POST
// /apis/v2beta1/runs/run-1:terminate cancels.
type fakeKFP struct {
	t      *testing.T
	mu     sync.Mutex
	states []string // status answers, in order: a state, or "503", "404", "drop"
	polls  int
	bodies []map[string]any
	auth   []string // Authorization of each request
	calls  []string // method and path of each request
}

func (f *fakeKFP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/apis/v2beta1/runs":
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			f.t.Errorf("start request content type %q", ct)
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.t.Errorf("start request body: %v", err)
		}
		f.bodies = append(f.bodies, body)
		io.WriteString(w, `{"run_id": "run-1", "display_name": "x", "state": "PENDING"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/apis/v2beta1/runs/run-1":
		s := f.states[min(f.polls, len(f.states)-1)]
		f.polls++
		switch s {
		case "503":
			http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
		case "404":
			http.Error(w, `{"error": "run not found"}`, http.StatusNotFound)
		case "drop":
			// A connection that breaks mid-answer, like a restarting proxy.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			json.NewEncoder(w).Encode(map[string]any{"run_id": "run-1", "state": s, "error": map[string]any{"message": "step train: OOMKilled"}})
		}
	case r.Method == http.MethodPost && r.URL.Path == "/apis/v2beta1/runs/run-1:terminate":
		io.WriteString(w, "{}")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeKFP) snapshot() (polls int, calls, auth []string, bodies []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls, slices.Clone(f.calls), slices.Clone(f.auth), slices.Clone(f.bodies)
}

// kfpConfig is the http backend configured for Kubeflow Pipelines v2 at base.
func kfpConfig(base string) Config {
	c := DefaultConfig()
	c.URL = base + "/apis/v2beta1/runs"
	c.Body = kfpBody
	c.RunID = "run_id"
	c.StatusURL = base + "/apis/v2beta1/runs/{{pathescape .RunID}}"
	c.StatusField = "state"
	c.MessageField = "error.message"
	c.CancelURL = base + "/apis/v2beta1/runs/{{.RunID}}:terminate"
	c.PollInterval = 10 * time.Millisecond
	c.Timeout = 5 * time.Second
	return c
}

// testContext bounds a test: a Wait that never ends fails the test instead of hanging it.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func newKFP(t *testing.T, states ...string) (*fakeKFP, *httptest.Server) {
	t.Helper()
	f := &fakeKFP{t: t, states: states}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func newTestBackend(t *testing.T, cfg Config, callbackBase string) *Backend {
	t.Helper()
	h, err := New(cfg, callbackBase, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testSpec(id string) jobs.Spec {
	return jobs.Spec{ID: id, Model: "fashion", BaseVersion: 3, DatasetManifest: "s3://edgeloop/datasets/ds-1.json", Output: "s3://edgeloop/jobs/" + id + "/"}
}

func TestKubeflowPipelines(t *testing.T) {
	f, srv := newKFP(t, "PENDING", "RUNNING", "RUNNING", "SUCCEEDED")
	h := newTestBackend(t, kfpConfig(srv.URL), "")
	spec := testSpec("job-kfp")
	ref, err := h.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Backend != "http" || ref.ID != "run-1" || ref.Data["status_url"] != srv.URL+"/apis/v2beta1/runs/run-1" ||
		ref.Data["cancel_url"] != srv.URL+"/apis/v2beta1/runs/run-1:terminate" || ref.Data["job_id"] != "job-kfp" {
		t.Errorf("ref = %+v", ref)
	}
	st, err := h.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Succeeded || st.Finished.IsZero() {
		t.Errorf("status = %+v", st)
	}
	polls, _, _, bodies := f.snapshot()
	if polls != 4 {
		t.Errorf("%d status requests, want 4", polls)
	}
	params := bodies[0]["runtime_config"].(map[string]any)["parameters"].(map[string]any)
	if params["model"] != "fashion" || params["base_version"] != 3.0 || params["dataset_manifest"] != spec.DatasetManifest ||
		params["output"] != spec.Output || params["job_id"] != "job-kfp" || bodies[0]["display_name"] != "job-kfp" {
		t.Errorf("start body = %v", bodies[0])
	}
	if err := h.Cancel(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	if _, calls, _, _ := f.snapshot(); calls[len(calls)-1] != "POST /apis/v2beta1/runs/run-1:terminate" {
		t.Errorf("calls = %q", calls)
	}
}

func TestRunFails(t *testing.T) {
	_, srv := newKFP(t, "RUNNING", "FAILED")
	h := newTestBackend(t, kfpConfig(srv.URL), "")
	ref, err := h.Start(t.Context(), testSpec("job-fail"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || st.Message != "FAILED: step train: OOMKilled" {
		t.Errorf("status = %+v", st)
	}
}

func TestTransientErrorsRetried(t *testing.T) {
	f, srv := newKFP(t, "503", "drop", "503", "RUNNING", "503", "SUCCEEDED")
	h := newTestBackend(t, kfpConfig(srv.URL), "")
	ref, err := h.Start(t.Context(), testSpec("job-flaky"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Wait(testContext(t, 10*time.Second), ref)
	if err != nil || st.State != jobs.Succeeded {
		t.Fatalf("wait = %+v, %v", st, err)
	}
	if polls, _, _, _ := f.snapshot(); polls != 6 {
		t.Errorf("%d status requests, want 6", polls)
	}
}

func TestRunGone(t *testing.T) {
	_, srv := newKFP(t, "RUNNING", "404")
	h := newTestBackend(t, kfpConfig(srv.URL), "")
	ref, err := h.Start(t.Context(), testSpec("job-gone"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || !strings.HasPrefix(st.Message, "run no longer exists") {
		t.Errorf("status = %+v", st)
	}
}

func TestWaitOnlyReturnsContextErrors(t *testing.T) {
	// A status endpoint that is down for good: Wait keeps asking until its context ends.
	_, srv := newKFP(t, "503")
	h := newTestBackend(t, kfpConfig(srv.URL), "")
	ref, err := h.Start(t.Context(), testSpec("job-down"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Wait(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}

func TestBearerTokenRotation(t *testing.T) {
	f, srv := newKFP(t, "RUNNING", "SUCCEEDED")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := kfpConfig(srv.URL)
	cfg.BearerTokenFile = tokenFile
	h := newTestBackend(t, cfg, "")
	ref, err := h.Start(t.Context(), testSpec("job-token"))
	if err != nil {
		t.Fatal(err)
	}
	// Rotated between the start and the status requests, as a projected token is.
	if err := os.WriteFile(tokenFile, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(testContext(t, 10*time.Second), ref); err != nil {
		t.Fatal(err)
	}
	if _, _, auth, _ := f.snapshot(); !slices.Equal(auth, []string{"Bearer token-1", "Bearer token-2", "Bearer token-2"}) {
		t.Errorf("Authorization headers = %q", auth)
	}
	if err := os.WriteFile(tokenFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Start(t.Context(), testSpec("job-token-2")); err == nil || !strings.Contains(err.Error(), "bearer_token_file: token file "+tokenFile+": empty token file") {
		t.Errorf("start with an empty token file: %v", err)
	}
}

func TestHeaderTemplates(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.Header.Get("X-Edgeloop-Job")+" "+r.Header.Get("X-Run"))
		mu.Unlock()
		io.WriteString(w, `{"id": 12345678901234567890, "status": {"phase": "Succeeded"}}`)
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/start"
	cfg.Headers = map[string]string{"X-Edgeloop-Job": "{{.ID}}/{{.Model}}", "x-run": "{{.RunID}}"}
	cfg.RunID = "id"
	cfg.StatusURL = srv.URL + "/runs/{{.RunID}}"
	cfg.StatusField = "status.phase"
	h := newTestBackend(t, cfg, "")
	ref, err := h.Start(t.Context(), testSpec("job-headers"))
	if err != nil {
		t.Fatal(err)
	}
	// A numeric run ID is kept exactly, not as a float.
	if ref.ID != "12345678901234567890" {
		t.Errorf("run id = %q", ref.ID)
	}
	// A new backend, as after a restart: the headers are rendered from the Ref alone.
	st, err := newTestBackend(t, cfg, "").Wait(testContext(t, 10*time.Second), ref)
	if err != nil || st.State != jobs.Succeeded {
		t.Fatalf("wait = %+v, %v", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST job-headers/fashion ", "GET job-headers/fashion 12345678901234567890"}
	if !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestBodyIsJSONEscaped(t *testing.T) {
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("body: %v", err)
		}
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Mode = ModeCallback
	cfg.StatusURL = ""
	h := newTestBackend(t, cfg, "https://retrain.example:9752/")
	spec := testSpec("job-quote")
	spec.Model = `fa"shion\ <b>`
	ref, err := h.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if ref.ID != spec.ID || ref.Data["status_url"] != "" {
		t.Errorf("ref = %+v", ref)
	}
	want := map[string]any{
		"id": spec.ID, "model": spec.Model, "base_version": 3.0, "dataset_manifest": spec.DatasetManifest, "output": spec.Output,
		"callback_url": "https://retrain.example:9752/v1/jobs/job-quote/complete",
		"env": map[string]any{
			jobenv.Model: spec.Model, jobenv.BaseVersion: "3", jobenv.DatasetManifest: spec.DatasetManifest, jobenv.Output: spec.Output, jobenv.JobID: spec.ID,
		},
	}
	if g, w := mustJSON(t, body), mustJSON(t, want); g != w {
		t.Errorf("body:\n got %s\nwant %s", g, w)
	}

	// With the controller's token for the job, the callback URL carries it.
	h.SetCallbackToken(func(id string) string { return "tok&" + id })
	if _, err := h.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if got := body["callback_url"]; got != "https://retrain.example:9752/v1/jobs/job-quote/complete?token=tok%26job-quote" {
		t.Errorf("callback_url = %v", got)
	}

	// A body that pastes the model in unescaped breaks on such a name: Start refuses to send it.
	cfg.Body = `{"model": "{{.Model}}"}`
	body = nil
	if _, err := newTestBackend(t, cfg, "https://retrain.example").Start(t.Context(), spec); err == nil ||
		!strings.HasPrefix(err.Error(), "http backend: start job-quote: body: renders invalid JSON: ") {
		t.Errorf("err = %v", err)
	}
	if body != nil {
		t.Error("the invalid body was sent")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStartErrors(t *testing.T) {
	long := strings.Repeat("x", 2000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/refuse":
			http.Error(w, "quota exceeded "+long, http.StatusInternalServerError)
		case "/no-id":
			io.WriteString(w, `{"name": "x"}`)
		case "/not-json":
			io.WriteString(w, `<html>login</html>`)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path, want string
	}{
		{"/refuse", "http backend: start job-err: POST " + srv.URL + "/refuse: 500 Internal Server Error: quota exceeded xxx"},
		{"/no-id", `http backend: start job-err: the run may have started, but its id cannot be read from the answer ({"name": "x"}): no "run_id" in the answer`},
		{"/not-json", "http backend: start job-err: the run may have started, but its id cannot be read from the answer (<html>login</html>): answer is not JSON: invalid character '<' looking for beginning of value"},
	} {
		cfg := kfpConfig(srv.URL)
		cfg.URL = srv.URL + tc.path + "?token=secret"
		_, err := newTestBackend(t, cfg, "").Start(t.Context(), testSpec("job-err"))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err = %v\nwant prefix %s", tc.path, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error shows the URL's query: %v", tc.path, err)
		}
		if tc.path == "/refuse" && (len(err.Error()) > 700 || !strings.HasSuffix(err.Error(), "...")) {
			t.Errorf("error body not cut at 512 bytes: %d bytes", len(err.Error()))
		}
	}
	// Nothing listening.
	cfg := kfpConfig("http://127.0.0.1:1")
	cfg.URL += "?token=secret"
	if _, err := newTestBackend(t, cfg, "").Start(t.Context(), testSpec("job-err")); err == nil ||
		!strings.HasPrefix(err.Error(), `http backend: start job-err: Post "http://127.0.0.1:1/apis/v2beta1/runs": `) || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %v", err)
	}
	if _, err := newTestBackend(t, cfg, "").Start(t.Context(), jobs.Spec{ID: "Bad ID"}); err == nil || !strings.HasPrefix(err.Error(), "http backend: start: invalid spec: ") {
		t.Errorf("err = %v", err)
	}
}

func TestCancel(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		switch {
		case r.URL.Path == "/start":
			io.WriteString(w, `{"run_id": "r1"}`)
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			w.WriteHeader(code)
			io.WriteString(w, `{"error": "run is not active"}`)
		default:
			io.WriteString(w, `{"state": "SUCCEEDED"}`)
		}
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/start"
	cfg.RunID = "run_id"
	cfg.StatusURL = srv.URL + "/runs/{{.RunID}}"
	cfg.StatusField = "state"
	cfg.CancelURL = srv.URL + "/runs/{{.RunID}}/cancel"
	cfg.CancelMethod = http.MethodPut
	h := newTestBackend(t, cfg, "")
	ref, err := h.Start(t.Context(), testSpec("job-cancel"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{http.StatusOK, http.StatusNotFound, http.StatusConflict, http.StatusBadRequest} {
		// 400 from a system that refuses to cancel a run that ended: the status shows it ended.
		mu.Lock()
		code = c
		mu.Unlock()
		if err := h.Cancel(t.Context(), ref); err != nil {
			t.Errorf("cancel answered %d: %v", c, err)
		}
	}
	mu.Lock()
	code = http.StatusInternalServerError
	mu.Unlock()
	if err := h.Cancel(t.Context(), ref); err == nil || !strings.HasPrefix(err.Error(), "http backend: cancel r1: PUT "+srv.URL+"/runs/r1/cancel: 500 Internal Server Error") {
		t.Errorf("cancel answered 500: %v", err)
	}
	mu.Lock()
	if calls[1] != "PUT /runs/r1/cancel" {
		t.Errorf("calls = %q", calls)
	}
	n := len(calls)
	mu.Unlock()

	// Without a cancel_url the remote run goes on; Cancel asks nothing.
	delete(ref.Data, "cancel_url")
	if err := h.Cancel(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != n {
		t.Errorf("cancel without cancel_url sent %q", calls[n:])
	}
}

func TestCallback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Mode = ModeCallback
	cfg.StatusURL = ""
	h := newTestBackend(t, cfg, "https://retrain.example:9752")

	ref, err := h.Start(t.Context(), testSpec("job-cb"))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  jobs.Status
		err error
	}
	waited := make(chan result, 1)
	go func() {
		st, err := h.Wait(testContext(t, 10*time.Second), ref)
		waited <- result{st, err}
	}()
	code := 3
	reported := jobs.Status{State: jobs.Failed, Message: "loss diverged", ExitCode: &code, LogTail: "epoch 3: nan\n"}
	if err := h.Complete(ref, reported); err != nil {
		t.Fatal(err)
	}
	r := <-waited
	if r.err != nil || r.st.State != jobs.Failed || r.st.Message != "loss diverged" || *r.st.ExitCode != 3 || r.st.LogTail != "epoch 3: nan\n" || r.st.Finished.IsZero() {
		t.Errorf("wait = %+v, %v", r.st, r.err)
	}
	// A second completion is ignored, and a second Wait gives the first status again.
	if err := h.Complete(ref, jobs.Status{State: jobs.Succeeded}); err != nil {
		t.Errorf("second completion: %v", err)
	}
	if st, err := h.Wait(t.Context(), ref); err != nil || st.State != jobs.Failed {
		t.Errorf("second wait = %+v, %v", st, err)
	}

	// A completion before the Wait, as when the controller restarted: Wait returns it at once.
	early := jobs.Ref{Backend: "http", ID: "job-early"}
	if err := h.Complete(early, jobs.Status{State: jobs.Succeeded, LogTail: strings.Repeat("y", 2*jobs.LogTailBytes)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if st, err := h.Wait(ctx, early); err != nil || st.State != jobs.Succeeded || len(st.LogTail) != jobs.LogTailBytes {
		t.Errorf("wait after an early completion = %v, %v", st.State, err)
	}

	if err := h.Complete(jobs.Ref{Backend: "http", ID: "job-x"}, jobs.Status{State: jobs.Running}); err == nil || err.Error() != `http backend: complete job-x: state "running" is not final` {
		t.Errorf("completion with state running: %v", err)
	}
	if err := h.Complete(jobs.Ref{Backend: "local", ID: "1"}, jobs.Status{State: jobs.Succeeded}); err == nil {
		t.Error("completion of a local job accepted")
	}

	// Waits that give up are not completions.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Wait(ctx, jobs.Ref{Backend: "http", ID: "job-never"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}

func TestCallbackPollsStatusToo(t *testing.T) {
	// A callback lost while the controller was down: the status URL still ends the Wait.
	_, srv := newKFP(t, "RUNNING", "SUCCEEDED")
	cfg := kfpConfig(srv.URL)
	cfg.Mode = ModeCallback
	h := newTestBackend(t, cfg, "https://retrain.example")
	ref, err := h.Start(t.Context(), testSpec("job-lost-callback"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := h.Wait(testContext(t, 10*time.Second), ref); err != nil || st.State != jobs.Succeeded {
		t.Errorf("wait = %+v, %v", st, err)
	}
}

func TestCompleteNeedsCallbackMode(t *testing.T) {
	_, srv := newKFP(t, "RUNNING")
	h := newTestBackend(t, kfpConfig(srv.URL), "https://retrain.example")
	var _ jobs.Completer = h
	if err := h.Complete(jobs.Ref{Backend: "http", ID: "run-1"}, jobs.Status{State: jobs.Succeeded}); err == nil || err.Error() != "http backend: complete run-1: callbacks are off (mode poll)" {
		t.Errorf("err = %v", err)
	}
}

func TestCompletionsPruned(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL, cfg.Mode, cfg.StatusURL = "http://127.0.0.1:1", ModeCallback, ""
	h := newTestBackend(t, cfg, "https://retrain.example")
	if err := h.Complete(jobs.Ref{Backend: "http", ID: "old"}, jobs.Status{State: jobs.Succeeded}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.completions["old"].completed = time.Now().Add(-completionRetention - time.Minute)
	h.mu.Unlock()
	if err := h.Complete(jobs.Ref{Backend: "http", ID: "new"}, jobs.Status{State: jobs.Succeeded}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.completions["old"]; ok || len(h.completions) != 1 {
		t.Errorf("completions = %v", h.completions)
	}
}

func TestNewCallbackNeedsURL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL, cfg.Mode, cfg.StatusURL = "https://argo.example:12000/retrain", ModeCallback, ""
	if _, err := New(cfg, "", nil); err == nil || err.Error() != "http backend: mode callback needs the controller's external URL, which jobs call back, and none is set" {
		t.Errorf("err = %v", err)
	}
	if _, err := New(cfg, "retrain:9752", nil); err == nil || !strings.HasPrefix(err.Error(), "http backend: controller's external URL: ") {
		t.Errorf("err = %v", err)
	}
	// Poll mode has no use for it.
	if _, err := New(kfpConfig("https://kfp.example"), "", nil); err != nil {
		t.Error(err)
	}
	cfg.TLS.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := New(cfg, "https://retrain.example", nil); err == nil || !strings.HasPrefix(err.Error(), "http backend: tls.ca_file: ") {
		t.Errorf("err = %v", err)
	}
}

func TestTLSCAFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"run_id": "r-tls"}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	cfg := kfpConfig(srv.URL)
	// Without the test server's CA the certificate is refused...
	if _, err := newTestBackend(t, cfg, "").Start(t.Context(), testSpec("job-tls")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("err = %v", err)
	}
	// ...with it, accepted.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.TLS.CAFile = ca
	if ref, err := newTestBackend(t, cfg, "").Start(t.Context(), testSpec("job-tls")); err != nil || ref.ID != "r-tls" {
		t.Errorf("start = %+v, %v", ref, err)
	}
}

func TestConfigParse(t *testing.T) {
	c := DefaultConfig()
	yaml := `url: https://kfp.example/apis/v2beta1/runs
headers: {X-Tenant: edge}
bearer_token_file: /var/run/secrets/token
run_id: run_id
status_url: "https://kfp.example/apis/v2beta1/runs/{{.RunID}}"
status_field: state
success_values: [DONE]
failure_values: [BROKEN]
poll_interval: 1m
timeout: 5s
tls: {ca_file: /etc/ssl/kfp.pem}
`
	if err := config.Parse([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	// Lists replace the defaults rather than extending them.
	if !slices.Equal(c.SuccessValues, []string{"DONE"}) || !slices.Equal(c.FailureValues, []string{"BROKEN"}) ||
		c.PollInterval != time.Minute || c.Timeout != 5*time.Second || c.Method != "POST" || c.Body != DefaultBody ||
		c.TLS.CAFile != "/etc/ssl/kfp.pem" || c.Headers["X-Tenant"] != "edge" {
		t.Errorf("parsed %+v", c)
	}
	if err := config.Parse([]byte("tls: {ca: x}\n"), &c); err == nil || !strings.Contains(err.Error(), "tls.ca: unknown field") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := kfpConfig("https://kfp.example")
	if err := valid.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url: must be set"},
		{"url not http", func(c *Config) { c.URL = "ftp://x/{{.ID}}" }, `url: must render an http:// or https:// URL, got "ftp://x/job-1"`},
		{"url template", func(c *Config) { c.URL = "https://x/{{.Nope}}" },
			`url: template: url:1:12: executing "url" at <.Nope>: can't evaluate field Nope in type httpjob.templateData`},
		{"method", func(c *Config) { c.Method = "post" }, `method: must be one of GET, POST, PUT, PATCH, DELETE, got "post"`},
		{"cancel method", func(c *Config) { c.CancelMethod = "TERMINATE" }, `cancel_method: must be one of GET, POST, PUT, PATCH, DELETE, got "TERMINATE"`},
		{"header name", func(c *Config) { c.Headers = map[string]string{"X Bad": "1"} }, `headers: "X Bad" is not a valid header name`},
		{"header template", func(c *Config) { c.Headers = map[string]string{"X-Job": "{{.ID"} }, "headers.X-Job: template: headers.X-Job:1: unclosed action"},
		{"header line break", func(c *Config) { c.Headers = map[string]string{"X-Job": "a\nb"} }, "headers.X-Job: must not render a line break or NUL"},
		{"token and authorization", func(c *Config) {
			c.BearerTokenFile = "/t"
			c.Headers = map[string]string{"authorization": "Basic eA=="}
		}, "bearer_token_file: must not be set together with an Authorization header"},
		{"body not JSON", func(c *Config) { c.Body = `{"model": {{.Model}}}` },
			"body: renders invalid JSON: invalid character 'm' looking for beginning of value"},
		{"body template", func(c *Config) { c.Body = `{{json .Model}` }, "body: template: body:1: bad character U+007D '}'"},
		{"run id path", func(c *Config) { c.RunID = "metadata..name" }, `run_id: must be a dot path such as run_id or metadata.name, got "metadata..name"`},
		{"mode", func(c *Config) { c.Mode = "push" }, `mode: must be poll or callback, got "push"`},
		{"poll without status url", func(c *Config) { c.StatusURL = "" }, "status_url: must be set when mode is poll"},
		{"poll without status field", func(c *Config) { c.StatusField = "" }, "status_field: must be set when mode is poll"},
		{"callback status url without field", func(c *Config) { c.Mode = ModeCallback; c.StatusField = "" },
			"status_field: must be set when status_url is"},
		{"status url template", func(c *Config) { c.StatusURL = "https://x/{{.RunId}}" },
			`status_url: template: status_url:1:12: executing "status_url" at <.RunId>: can't evaluate field RunId in type httpjob.templateData`},
		{"cancel url", func(c *Config) { c.CancelURL = "/runs/{{.RunID}}:terminate" }, `cancel_url: must render an http:// or https:// URL, got "/runs/run-1:terminate"`},
		{"message field", func(c *Config) { c.MessageField = "error. message" }, `message_field: must be a dot path such as run_id or metadata.name, got "error. message"`},
		{"no success values", func(c *Config) { c.SuccessValues = nil }, "success_values: must not be empty"},
		{"no failure values", func(c *Config) { c.FailureValues = []string{} }, "failure_values: must not be empty"},
		{"overlap", func(c *Config) { c.FailureValues = []string{"FAILED", "SUCCEEDED"} }, `failure_values: "SUCCEEDED" is also in success_values`},
		{"poll interval", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be positive, got 0s"},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout: must be positive, got -1s"},
		{"several", func(c *Config) { c.URL = ""; c.Mode = "push" }, "url: must be set\nmode: must be poll or callback, got \"push\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kfpConfig("https://kfp.example")
			tc.tweak(&c)
			err := c.Validate()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tc.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("%v is not a config.FieldError", err)
			}
			if _, err := New(c, "https://retrain.example", nil); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
