package retrain

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// Request size limits: Alertmanager groups may be large (truncated at max_alerts), a manual
// request and a completion are small.
const (
	maxWebhookBody    = 4 << 20
	maxManualBody     = 16 << 10
	maxCompletionBody = 64 << 10
)

// routes mounts the API (docs/retrain.md, "API").
func (c *Controller) routes() {
	c.mux.Handle("POST /v1/alertmanager", c.requireWebhook(http.HandlerFunc(c.serveWebhook)))
	c.mux.Handle("POST /v1/models/{model}/retrain", c.requireOperator(http.HandlerFunc(c.serveManual)))
	c.mux.Handle("GET /v1/jobs", c.requireOperator(http.HandlerFunc(c.serveJobs)))
	c.mux.Handle("GET /v1/jobs/{id}", c.requireOperator(http.HandlerFunc(c.serveJob)))
	c.mux.Handle("POST /v1/jobs/{id}/cancel", c.requireOperator(http.HandlerFunc(c.serveCancel)))
	c.mux.HandleFunc("POST /v1/jobs/{id}/complete", c.serveComplete) // authenticated by the job's token
	c.mux.Handle("GET /v1/decisions", c.requireOperator(http.HandlerFunc(c.serveDecisions)))
	c.aliasRoutes() // alias.go
}

// requireWebhook lets through Alertmanager: a bearer token or basic auth (user = the token's
// id, password = the token) from auth.webhook_tokens_file.
func (c *Controller) requireWebhook(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.tokensMu.RLock()
		tokens := c.webhookTokens
		c.tokensMu.RUnlock()
		if tok, ok := token.Bearer(r); ok {
			if _, ok := tokens.Lookup(tok); ok {
				next.ServeHTTP(w, r)
				return
			}
		} else if user, pass, ok := r.BasicAuth(); ok {
			if id, ok := tokens.Lookup(pass); ok && subtle.ConstantTimeCompare([]byte(id), []byte(user)) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop-retrain"`)
		httpjson.Error(w, http.StatusUnauthorized, "no valid credential: send the webhook token as Authorization: Bearer, or basic auth with its id as the user")
	})
}

// requireOperator lets through operators (auth.operator_tokens_file).
func (c *Controller) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.tokensMu.RLock()
		tokens := c.operatorTokens
		c.tokensMu.RUnlock()
		tok, ok := token.Bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop-retrain"`)
			httpjson.Error(w, http.StatusUnauthorized, "no credential: send Authorization: Bearer <operator token>")
			return
		}
		id, ok := tokens.Lookup(tok)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop-retrain"`)
			httpjson.Error(w, http.StatusUnauthorized, "unknown or revoked operator token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, id)))
	})
}

type operatorKey struct{}

// Webhook is Alertmanager's webhook payload, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type Webhook struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a Webhook.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// maxWebhookAlerts bounds the alerts of one webhook that are decided on.
const maxWebhookAlerts = 1000

// maxWebhookProblems bounds the problems a refused payload's 400 lists.
const maxWebhookProblems = 20

// decodeWebhook reads and checks a payload; the error is a 400's message.
func decodeWebhook(data []byte) (*Webhook, error) {
	var wh Webhook
	// Not strict: Alertmanager may add fields within version 4.
	if err := json.Unmarshal(data, &wh); err != nil {
		return nil, fmt.Errorf("body is not an Alertmanager webhook payload: %v", err)
	}
	// The payload is untrusted and its strings go back in the 400 and into logs: each is
	// quoted and cut to 64 bytes, and only the first maxWebhookProblems problems are listed.
	var errs []string
	add := func(format string, args ...any) {
		if len(errs) < maxWebhookProblems {
			errs = append(errs, fmt.Sprintf(format, args...))
		} else if len(errs) == maxWebhookProblems {
			errs = append(errs, "...")
		}
	}
	if wh.Version != "4" {
		add("version is %.64q: only Alertmanager's webhook version \"4\" is understood", wh.Version)
	}
	if wh.GroupKey == "" {
		add("groupKey is empty")
	}
	if len(wh.Alerts) > maxWebhookAlerts {
		add("%d alerts: at most %d per webhook (set max_alerts in the webhook_config)", len(wh.Alerts), maxWebhookAlerts)
	}
	for i, a := range wh.Alerts {
		if a.Status != "firing" && a.Status != "resolved" {
			add("alerts[%d].status is %.64q: want firing or resolved", i, a.Status)
		}
		if a.Labels["alertname"] == "" {
			add("alerts[%d].labels has no alertname", i)
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return &wh, nil
}

func (c *Controller) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, code, err := readBody(w, r, maxWebhookBody)
	if err != nil {
		httpjson.Error(w, code, err.Error())
		return
	}
	wh, err := decodeWebhook(body)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	decisions := make([]Decision, 0, len(wh.Alerts))
	for _, a := range wh.Alerts {
		name := a.Labels["alertname"]
		t := Trigger{Source: SourceAlertmanager, Model: a.Labels["model"], Version: a.Labels["version"], Alert: name,
			GroupKey: wh.GroupKey, Fingerprint: a.Fingerprint, By: a.Labels["node"]}
		switch {
		case a.Status == "resolved":
			c.m.triggers.WithLabelValues(c.modelLabel(t.Model), t.Source).Inc()
			decisions = append(decisions, c.skip(t, SkipResolved, "the alert resolved"))
			continue
		case !c.alertConfigured(name):
			c.m.triggers.WithLabelValues(c.modelLabel(t.Model), t.Source).Inc()
			decisions = append(decisions, c.skip(t, SkipNotConfigured, fmt.Sprintf("alert %q is not in the controller's alerts", name)))
			continue
		case t.Model == "":
			c.m.triggers.WithLabelValues("", t.Source).Inc()
			decisions = append(decisions, c.skip(t, SkipNoModelLabel, "the alert has no model label: the rule must keep it"))
			continue
		}
		key := wh.GroupKey + "\x00" + a.Fingerprint + "\x00" + a.StartsAt.UTC().Format(time.RFC3339Nano)
		d, err := c.admit(r.Context(), admission{Trigger: t, DedupeKey: key})
		if err != nil {
			// Alertmanager retries a 5xx; the decisions made so far are recorded, and the
			// retry finds them as duplicates or active jobs.
			w.Header().Set("Retry-After", "30")
			httpjson.Error(w, http.StatusServiceUnavailable, "cannot decide now: "+err.Error())
			return
		}
		decisions = append(decisions, d)
	}
	writeJSON200(w, map[string]any{"decisions": decisions})
}

func (c *Controller) alertConfigured(name string) bool {
	for _, a := range c.cfg.Alerts {
		if a == name {
			return true
		}
	}
	return false
}

// ManualRequest is the optional body of POST /v1/models/{model}/retrain.
type ManualRequest struct {
	// Reason is recorded with the decision.
	Reason string `json:"reason"`
	// Force skips the cooldown, the label minimum and the daily budget.
	Force bool `json:"force"`
}

func (c *Controller) serveManual(w http.ResponseWriter, r *http.Request) {
	body, code, err := readBody(w, r, maxManualBody)
	if err != nil {
		httpjson.Error(w, code, err.Error())
		return
	}
	var req ManualRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpjson.Error(w, http.StatusBadRequest, "body: "+err.Error()+` (want {"reason": "...", "force": false} or nothing)`)
			return
		}
	}
	if len(req.Reason) > 1024 {
		httpjson.Error(w, http.StatusBadRequest, "reason: at most 1024 bytes")
		return
	}
	model := r.PathValue("model")
	if _, ok := c.models[model]; !ok {
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("model %q is not in the controller's models", model))
		return
	}
	op, _ := r.Context().Value(operatorKey{}).(string)
	d, err := c.admit(r.Context(), admission{Trigger: Trigger{Source: SourceManual, Model: model, By: op, Reason: req.Reason}, Force: req.Force})
	if err != nil {
		w.Header().Set("Retry-After", "30")
		httpjson.Error(w, http.StatusServiceUnavailable, "cannot decide now: "+err.Error())
		return
	}
	if d.Started == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(d)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+d.Started)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(d)
}

func (c *Controller) serveJobs(w http.ResponseWriter, r *http.Request) {
	model, phase := r.URL.Query().Get("model"), r.URL.Query().Get("phase")
	out := []Job{}
	for _, j := range c.Jobs() {
		if (model == "" || j.Model == model) && (phase == "" || string(j.Phase) == phase) {
			out = append(out, j)
		}
	}
	writeJSON200(w, map[string]any{"jobs": out})
}

func (c *Controller) serveJob(w http.ResponseWriter, r *http.Request) {
	j := c.snapshot(r.PathValue("id"))
	if j == nil {
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("no job %q (finished jobs beyond policy.keep_jobs are forgotten)", r.PathValue("id")))
		return
	}
	writeJSON200(w, j)
}

func (c *Controller) serveDecisions(w http.ResponseWriter, r *http.Request) {
	model := r.URL.Query().Get("model")
	out := []Decision{}
	for _, d := range c.Decisions() {
		if model == "" || d.Trigger.Model == model {
			out = append(out, d)
		}
	}
	writeJSON200(w, map[string]any{"decisions": out})
}

func (c *Controller) serveCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	j := c.st.job(id)
	var ref *jobs.Ref
	var phase Phase
	if j != nil {
		phase, ref = j.Phase, j.Ref
		if !phase.Done() {
			c.cancelled[id] = true
		}
	}
	c.mu.Unlock()
	switch {
	case j == nil:
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("no job %q", id))
		return
	case phase.Done():
		httpjson.Error(w, http.StatusConflict, fmt.Sprintf("job %s already ended: %s", id, phase))
		return
	case phase == PhasePublishing || phase == PhaseSoaking:
		httpjson.Error(w, http.StatusConflict, fmt.Sprintf("job %s is %s: a published version is rolled back with edgeloop model alias, not cancelled", id, phase))
		return
	}
	if ref != nil && phase == PhaseRunning {
		if err := c.backend.Cancel(r.Context(), *ref); err != nil {
			httpjson.Error(w, http.StatusBadGateway, "cancel: "+err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	writeJSONBody(w, map[string]string{"job": id, "status": "cancelling"})
}

// CallbackToken is the token a job presents to POST /v1/jobs/{id}/complete (the http
// backend's callback mode puts it in the callback URL): an HMAC of the job ID under a key
// kept in state_dir, so it needs no storage and cannot be guessed for another job.
func (c *Controller) CallbackToken(id string) string {
	mac := hmac.New(sha256.New, c.callbackKey)
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil))
}

func (c *Controller) serveComplete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tok := r.URL.Query().Get("token")
	if t, ok := token.Bearer(r); ok {
		tok = t
	}
	if !hmac.Equal([]byte(tok), []byte(c.CallbackToken(id))) {
		httpjson.Error(w, http.StatusUnauthorized, "wrong or missing job token: use the callback URL the job was given")
		return
	}
	completer, ok := c.backend.(jobs.Completer)
	if !ok {
		httpjson.Error(w, http.StatusConflict, fmt.Sprintf("the %s backend does not take completion callbacks", c.backend.Name()))
		return
	}
	body, code, err := readBody(w, r, maxCompletionBody)
	if err != nil {
		httpjson.Error(w, code, err.Error())
		return
	}
	st, err := jobs.DecodeCompletion(bytes.NewReader(body))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	// A job that fails at once may call back before Start has returned its reference: give
	// the controller a moment to record it.
	j := c.snapshot(id)
	for wait := 0; j != nil && j.Ref == nil && j.Phase == PhasePreparing && wait < 50; wait++ {
		time.Sleep(100 * time.Millisecond)
		j = c.snapshot(id)
	}
	switch {
	case j == nil:
		httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("no job %q", id))
		return
	case j.Ref == nil && j.Phase == PhasePreparing:
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("job %s is still starting: retry", id))
		return
	case j.Ref == nil:
		httpjson.Error(w, http.StatusConflict, fmt.Sprintf("job %s never started: %s", id, j.Phase))
		return
	case j.Phase != PhaseRunning:
		writeJSON200(w, map[string]string{"job": id, "status": "already " + string(j.Phase)})
		return
	}
	if err := completer.Complete(*j.Ref, st); err != nil {
		httpjson.Error(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON200(w, map[string]string{"job": id, "status": "recorded"})
}

// readBody reads a body within limit; the error is a 4xx message.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", limit)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("body: %v", err)
	}
	return data, 0, nil
}

func writeJSON200(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	writeJSONBody(w, v)
}

func writeJSONBody(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(v)
}

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", " ") }

// writeJSON writes v to a file atomically.
func writeJSON(path string, v any) error {
	data, err := jsonIndent(v)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o600)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// loadOrCreateKey returns the 32-byte key in path, creating it.
func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %s: want 32 bytes (delete it to make a new one): %v", path, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := fsutil.WriteNew(path, key, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}
