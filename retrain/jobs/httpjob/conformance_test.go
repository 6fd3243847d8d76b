package httpjob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/jobstest"
)

// platform is an HTTP job platform for the conformance suite: POST /runs starts a run of the
// default body's job, which does what the outcome at the end of its model says; GET
// /runs/{id} answers its state; POST /runs/{id}/cancel cancels it (404 for an unknown run, 409
// for one that has ended). With callbacks on, a run that ends calls the callback URL it was
// started with, as a job in callback mode does.
type platform struct {
	t        *testing.T
	callback bool

	mu      sync.Mutex
	runs    map[string]*platformRun // by run ID
	pending sync.WaitGroup          // callbacks under way
}

type platformRun struct {
	jobID, outcome, callbackURL string
	state, message              string // RUNNING, SUCCEEDED, FAILED, CANCELED
}

func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, action, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/runs/"), "/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/runs":
		var body struct {
			ID          string `json:"id"`
			Model       string `json:"model"`
			CallbackURL string `json:"callback_url"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if p.callback && body.CallbackURL == "" {
			p.t.Errorf("platform: start of %s without a callback URL", body.ID)
		}
		_, outcome, _ := strings.Cut(body.Model, "-")
		p.mu.Lock()
		id := fmt.Sprintf("run-%d", len(p.runs)+1)
		run := &platformRun{jobID: body.ID, outcome: outcome, callbackURL: body.CallbackURL, state: "RUNNING"}
		p.runs[id] = run
		p.mu.Unlock()
		if outcome != jobstest.Hold.String() {
			// The run goes on after the start request has been answered.
			p.pending.Add(1)
			go func() {
				defer p.pending.Done()
				time.Sleep(10 * time.Millisecond)
				if outcome == jobstest.Fail.String() {
					p.end(run, "FAILED", "it went wrong")
				} else {
					p.end(run, "SUCCEEDED", "")
				}
			}()
		}
		json.NewEncoder(w).Encode(map[string]string{"run_id": id})
	case r.Method == http.MethodGet && action == "":
		p.mu.Lock()
		run, ok := p.runs[id]
		var state, msg string
		if ok {
			state, msg = run.state, run.message
		}
		p.mu.Unlock()
		if !ok {
			http.Error(w, `{"error": "no such run"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"state": state, "message": msg})
	case r.Method == http.MethodPost && action == "cancel":
		p.mu.Lock()
		run, ok := p.runs[id]
		running := ok && run.state == "RUNNING"
		p.mu.Unlock()
		switch {
		case !ok:
			http.Error(w, `{"error": "no such run"}`, http.StatusNotFound)
		case !running:
			http.Error(w, `{"error": "run has ended"}`, http.StatusConflict)
		default:
			p.end(run, "CANCELED", "cancelled by the controller")
			w.Write([]byte("{}"))
		}
	default:
		http.NotFound(w, r)
	}
}

// end records the run's end, once, and calls back when callbacks are on.
func (p *platform) end(run *platformRun, state, msg string) {
	p.mu.Lock()
	if run.state != "RUNNING" {
		p.mu.Unlock()
		return
	}
	run.state, run.message = state, msg
	p.mu.Unlock()
	if !p.callback {
		return
	}
	body := map[string]any{"state": "succeeded", "exit_code": 0}
	switch state {
	case "FAILED":
		body = map[string]any{"state": "failed", "message": msg, "exit_code": jobstest.FailExitCode}
	case "CANCELED":
		body = map[string]any{"state": "failed", "message": msg}
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(run.callbackURL, "application/json", bytes.NewReader(b))
	if err != nil {
		p.t.Errorf("platform: callback of %s: %v", run.jobID, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		p.t.Errorf("platform: callback of %s: %s", run.jobID, resp.Status)
	}
}

// runOf returns the ID of job id's latest run.
func (p *platform) runOf(jobID string) (string, *platformRun) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var latest string
	for id, r := range p.runs {
		if r.jobID == jobID && (latest == "" || len(id) > len(latest) || len(id) == len(latest) && id > latest) {
			latest = id
		}
	}
	return latest, p.runs[latest]
}

// controller is the part of the retrain controller that callbacks reach: POST
// /v1/jobs/{id}/complete, decoded with jobs.DecodeCompletion and handed to every backend made so
// far (each stands for a controller process; the job reaches whichever runs).
type controller struct {
	p        *platform
	mu       sync.Mutex
	backends []*Backend
	answered int
}

func (c *controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	jobID, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/jobs/"), "/complete")
	if r.Method != http.MethodPost || !ok {
		http.NotFound(w, r)
		return
	}
	st, err := jobs.DecodeCompletion(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	runID, _ := c.p.runOf(jobID)
	c.mu.Lock()
	backends := append([]*Backend(nil), c.backends...)
	c.answered++
	c.mu.Unlock()
	for _, b := range backends {
		if err := b.Complete(jobs.Ref{Backend: "http", ID: runID}, st); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestConformance runs the conformance suite on an httptest job platform, in poll mode and in
// callback mode (without a status URL, so that only callbacks end a Wait).
func TestConformance(t *testing.T) {
	for _, mode := range []string{ModePoll, ModeCallback} {
		t.Run(mode, func(t *testing.T) {
			p := &platform{t: t, callback: mode == ModeCallback, runs: map[string]*platformRun{}}
			plat := httptest.NewServer(p)
			ctl := &controller{p: p}
			ctlSrv := httptest.NewServer(ctl)
			t.Cleanup(func() {
				p.pending.Wait()
				ctlSrv.Close()
				plat.Close()
			})
			cfg := DefaultConfig()
			cfg.Mode = mode
			cfg.URL, cfg.RunID = plat.URL+"/runs", "run_id"
			cfg.CancelURL = plat.URL + "/runs/{{.RunID}}/cancel"
			if mode == ModePoll {
				cfg.StatusURL, cfg.StatusField, cfg.MessageField = plat.URL+"/runs/{{.RunID}}", "state", "message"
			}
			cfg.PollInterval = 10 * time.Millisecond
			jobstest.Run(t, jobstest.Harness{
				New: func(t *testing.T) jobs.Backend {
					b, err := New(cfg, ctlSrv.URL, nil)
					if err != nil {
						t.Fatal(err)
					}
					ctl.mu.Lock()
					ctl.backends = append(ctl.backends, b)
					ctl.mu.Unlock()
					return b
				},
				Spec: func(t *testing.T, id string, o jobstest.Outcome) jobs.Spec {
					return jobs.Spec{
						ID:              id,
						Model:           "conformance-" + o.String(),
						BaseVersion:     1,
						DatasetManifest: "s3://edgeloop/jobs/conformance/" + id + "/dataset.json",
						Output:          "s3://edgeloop/jobs/conformance/" + id + "/output/",
					}
				},
				Release: func(t *testing.T, spec jobs.Spec) {
					_, run := p.runOf(spec.ID)
					if run == nil {
						t.Fatalf("platform: no run of %s to release", spec.ID)
					}
					p.end(run, "SUCCEEDED", "")
				},
				Starts: func(t *testing.T, spec jobs.Spec) int {
					p.mu.Lock()
					defer p.mu.Unlock()
					var n int
					for _, r := range p.runs {
						if r.jobID == spec.ID {
							n++
						}
					}
					return n
				},
				Unknown: func(t *testing.T) jobs.Ref {
					ref := jobs.Ref{Backend: "http", ID: "run-unknown", Data: map[string]string{
						"job_id": "conf-unknown", "cancel_url": plat.URL + "/runs/run-unknown/cancel",
					}}
					if mode == ModePoll {
						ref.Data["status_url"] = plat.URL + "/runs/run-unknown"
					}
					return ref
				},
				ExitCodes:    mode == ModeCallback,
				CallbackOnly: mode == ModeCallback,
			})
			p.mu.Lock()
			runs := len(p.runs)
			p.mu.Unlock()
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			t.Logf("the platform ran %d runs; the controller took %d callbacks", runs, ctl.answered)
			if runs < 8 || mode == ModeCallback && ctl.answered < 8 {
				t.Errorf("%d runs and %d callbacks; the suite should have made at least 8 of each", runs, ctl.answered)
			}
		})
	}
}
