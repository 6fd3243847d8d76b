// Package httpjob is the http job backend: a job is a request to a system that runs it
// (Kubeflow Pipelines, an Argo Events webhook, an in-house service), followed by polling its
// status URL or by waiting for the job's callback (docs/job-backends.md, "http"). It
// implements the contract of package jobs, and jobs.Completer for callbacks, and passes
// jobstest's conformance suite in both modes.
package httpjob

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// The http backend's modes: how it learns that a run has ended.
const (
	// ModePoll asks status_url every poll_interval.
	ModePoll = "poll"
	// ModeCallback waits for the job to call the controller's
	// POST /v1/jobs/{id}/complete, which hands the status to (*Backend).Complete.
	ModeCallback = "callback"
)

// Config is the http backend's part of the retrain configuration (the `backend.http:`
// section): a job is a request to a system that runs it (Kubeflow Pipelines, an Argo Events
// webhook, an in-house service).
//
// URLs, header values and the body are text/templates over the job: {{.ID}}, {{.Model}},
// {{.BaseVersion}}, {{.DatasetManifest}}, {{.Output}}, {{.Env}} (the contract's variables, a
// map), {{.CallbackURL}} (callback mode only), and, in status_url and cancel_url, {{.RunID}}.
// The function json encodes a value as JSON, pathescape escapes a URL path segment.
type Config struct {
	// URL is where a job is started. Required.
	URL string `yaml:"url"`
	// Method is the start request's method. Default POST.
	Method string `yaml:"method"`
	// Headers are added to every request; values are templates.
	Headers map[string]string `yaml:"headers"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer <token>". It is read for
	// every request, so a rotated token (a projected service account token) takes effect at
	// once.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Body is the start request's body, a template that must render valid JSON. The default is
	// an object with the contract's fields (DefaultBody). Empty sends no body.
	Body string `yaml:"body"`
	// RunID is where the start response's JSON holds the run's ID: a dot path such as
	// "run_id" or "metadata.name" (a number indexes an array). Empty: the response carries
	// no ID and the job's ID stands for it.
	RunID string `yaml:"run_id"`
	// Mode is "poll" (ask status_url) or "callback" (the job calls the controller back).
	// Default poll.
	Mode string `yaml:"mode"`
	// StatusURL is where a run's status is read with GET. Required in poll mode; in callback
	// mode it is optional and, when set, polled too, so a callback lost while the controller
	// was down does not leave the job waiting for its timeout.
	StatusURL string `yaml:"status_url"`
	// StatusField is the dot path of the run's state in the status response (Kubeflow
	// Pipelines v2: "state"). Required with status_url.
	StatusField string `yaml:"status_field"`
	// SuccessValues and FailureValues are the states that end a run; any other value means it
	// still runs.
	SuccessValues []string `yaml:"success_values"`
	FailureValues []string `yaml:"failure_values"`
	// MessageField is the dot path of a message explaining the state (Kubeflow Pipelines v2:
	// "error.message"), copied into the status. Optional.
	MessageField string `yaml:"message_field"`
	// PollInterval is the time between two status requests. Default 10s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// CancelURL, when set, is called with CancelMethod to stop a run. Without it Cancel does
	// nothing and the remote system keeps running the job.
	CancelURL string `yaml:"cancel_url"`
	// CancelMethod is the cancel request's method. Default POST.
	CancelMethod string `yaml:"cancel_method"`
	// Timeout bounds each request, from connecting to reading the response. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// URLs.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig is the http backend's `tls:` section.
type TLSConfig struct {
	// CAFile holds the PEM certificates that sign the server's certificate, instead of the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// DefaultBody is the default start request body: the contract's fields, JSON-encoded.
const DefaultBody = `{"id": {{json .ID}}, "model": {{json .Model}}, "base_version": {{.BaseVersion}}, ` +
	`"dataset_manifest": {{json .DatasetManifest}}, "output": {{json .Output}}, "env": {{json .Env}}, ` +
	`"callback_url": {{json .CallbackURL}}}`

// Defaults of the http backend.
const (
	DefaultPollInterval = 10 * time.Second
	DefaultTimeout      = 30 * time.Second
)

// DefaultConfig returns the http backend's defaults: POST the contract's fields, poll
// every 10s, recognise the states of Kubeflow Pipelines, Argo and Kubernetes in their usual
// spellings.
func DefaultConfig() Config {
	return Config{
		Method:        http.MethodPost,
		Body:          DefaultBody,
		Mode:          ModePoll,
		SuccessValues: []string{"SUCCEEDED", "Succeeded", "succeeded"},
		FailureValues: []string{"FAILED", "Failed", "failed", "CANCELED", "CANCELLED", "Error", "error"},
		PollInterval:  DefaultPollInterval,
		CancelMethod:  http.MethodPost,
		Timeout:       DefaultTimeout,
	}
}

// methods are the methods a request may use.
var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// Validate reports every invalid setting, naming it by its YAML key. Templates are parsed and
// rendered over a sample job, so mistakes show at --config.check.
func (c Config) Validate() error {
	_, errs := c.compile()
	if !slices.Contains(methods, c.Method) {
		errs = append(errs, config.Errorf("method", "must be one of %s, got %q", strings.Join(methods, ", "), c.Method))
	}
	if !slices.Contains(methods, c.CancelMethod) {
		errs = append(errs, config.Errorf("cancel_method", "must be one of %s, got %q", strings.Join(methods, ", "), c.CancelMethod))
	}
	if c.BearerTokenFile != "" {
		for name := range c.Headers {
			if textproto.CanonicalMIMEHeaderKey(name) == "Authorization" {
				errs = append(errs, config.Errorf("bearer_token_file", "must not be set together with an Authorization header"))
			}
		}
	}
	switch c.Mode {
	case ModePoll:
		if c.StatusURL == "" {
			errs = append(errs, config.Errorf("status_url", "must be set when mode is poll"))
		}
		if c.StatusField == "" {
			errs = append(errs, config.Errorf("status_field", "must be set when mode is poll"))
		}
	case ModeCallback:
		if c.StatusURL != "" && c.StatusField == "" {
			errs = append(errs, config.Errorf("status_field", "must be set when status_url is"))
		}
	default:
		errs = append(errs, config.Errorf("mode", "must be poll or callback, got %q", c.Mode))
	}
	for _, p := range []struct{ key, path string }{{"run_id", c.RunID}, {"status_field", c.StatusField}, {"message_field", c.MessageField}} {
		if p.path != "" && !validPath(p.path) {
			errs = append(errs, config.Errorf(p.key, "must be a dot path such as run_id or metadata.name, got %q", p.path))
		}
	}
	if c.StatusURL != "" {
		if len(c.SuccessValues) == 0 {
			errs = append(errs, config.Errorf("success_values", "must not be empty"))
		}
		if len(c.FailureValues) == 0 {
			errs = append(errs, config.Errorf("failure_values", "must not be empty"))
		}
		for _, v := range c.FailureValues {
			if slices.Contains(c.SuccessValues, v) {
				errs = append(errs, config.Errorf("failure_values", "%q is also in success_values", v))
			}
		}
	}
	if c.PollInterval <= 0 {
		errs = append(errs, config.Errorf("poll_interval", "must be positive, got %s", c.PollInterval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// templates are an Config's parsed templates; nil where the setting is empty.
type templates struct {
	url, body, statusURL, cancelURL *template.Template
	headers                         map[string]*template.Template // by canonical name
}

// templateData is what the http backend's templates see.
type templateData struct {
	jobs.Spec
	// CallbackURL is where the job reports its end in callback mode; empty in poll mode.
	CallbackURL string
	// RunID is the run's ID from the start response, or the job's ID when run_id is unset;
	// empty while the start request is rendered.
	RunID string
}

// compile parses the templates and renders each over a sample job, returning every problem
// found as field errors.
func (c Config) compile() (templates, []error) {
	var (
		t    templates
		errs []error
	)
	sample := templateData{Spec: jobs.TemplateSample(), CallbackURL: "https://retrain.example:9752/v1/jobs/job-1/complete", RunID: "run-1"}
	parse := func(field, text string) *template.Template {
		tm, err := template.New(field).Funcs(jobs.TemplateFuncs()).Option("missingkey=error").Parse(text)
		if err == nil {
			err = tm.Execute(io.Discard, sample)
		}
		if err != nil {
			errs = append(errs, config.Errorf(field, "%v", err))
			return nil
		}
		return tm
	}
	parseURL := func(field, text string) *template.Template {
		tm := parse(field, text)
		if tm == nil {
			return nil
		}
		if u, _ := render(tm, sample); checkURL(u) != nil {
			errs = append(errs, config.Errorf(field, "must render an http:// or https:// URL, got %q", u))
			return nil
		}
		return tm
	}
	if c.URL == "" {
		errs = append(errs, config.Errorf("url", "must be set"))
	} else {
		t.url = parseURL("url", c.URL)
	}
	if c.StatusURL != "" {
		t.statusURL = parseURL("status_url", c.StatusURL)
	}
	if c.CancelURL != "" {
		t.cancelURL = parseURL("cancel_url", c.CancelURL)
	}
	if c.Body != "" {
		if t.body = parse("body", c.Body); t.body != nil {
			b, _ := render(t.body, sample)
			if err := checkJSON(b); err != nil {
				errs = append(errs, config.Errorf("body", "%v", err))
			}
		}
	}
	t.headers = map[string]*template.Template{}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		if !validHeaderName(name) {
			errs = append(errs, config.Errorf("headers", "%q is not a valid header name", name))
			continue
		}
		field := "headers." + name
		tm := parse(field, c.Headers[name])
		if tm == nil {
			continue
		}
		if v, _ := render(tm, sample); strings.ContainsAny(v, "\r\n\x00") {
			errs = append(errs, config.Errorf(field, "must not render a line break or NUL"))
			continue
		}
		t.headers[textproto.CanonicalMIMEHeaderKey(name)] = tm
	}
	return t, errs
}

func render(t *template.Template, data templateData) (string, error) {
	var b strings.Builder
	err := t.Execute(&b, data)
	return b.String(), err
}

// checkURL reports whether s is an absolute http:// or https:// URL.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

// checkJSON reports whether s is one valid JSON value, with the decoder's words if not.
func checkJSON(s string) error {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return fmt.Errorf("renders invalid JSON: %w", err)
	}
	return nil
}

func validPath(p string) bool {
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" || strings.ContainsAny(seg, " \t\r\n") {
			return false
		}
	}
	return true
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

// maxResponse bounds the response bodies the backend reads: a run's status is small, and a
// misconfigured URL may point at something that is not.
const maxResponse = 1 << 20

// completionRetention is how long a reported completion is kept for a Wait that has not come
// (or comes again), and a Wait's entry that nobody completed is kept after its Wait left.
const completionRetention = 24 * time.Hour

// Backend starts jobs with an HTTP request and learns their end by polling a status URL or from a
// callback (Complete).
type Backend struct {
	cfg         Config
	tmpl        templates
	callbackURL string // base of the controller's job API, callback mode only
	// callbackToken, when set, gives the token a job's callback URL carries (SetCallbackToken).
	callbackToken func(jobID string) string
	client        *http.Client
	logger        *slog.Logger

	mu          sync.Mutex
	completions map[string]*completion // by Ref.ID
}

var (
	_ jobs.Backend   = (*Backend)(nil)
	_ jobs.Completer = (*Backend)(nil)
)

// completion is one job's callback: reported, awaited, or both.
type completion struct {
	done      chan struct{} // closed when completed
	status    jobs.Status   // set before done is closed
	completed time.Time     // when Complete arrived; zero until then
	created   time.Time
	waiters   int
}

// New returns an http backend. callbackBase is the controller's external base URL (such as
// https://retrain.example:9752), which jobs call back under /v1/jobs/{id}/complete; it is
// required in callback mode and unused in poll mode.
func New(cfg Config, callbackBase string, logger *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http backend: %w", err)
	}
	tmpl, _ := cfg.compile() // valid: Validate compiled it
	h := &Backend{cfg: cfg, tmpl: tmpl, logger: logger, completions: map[string]*completion{}}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Mode == ModeCallback {
		if callbackBase == "" {
			return nil, errors.New("http backend: mode callback needs the controller's external URL, which jobs call back, and none is set")
		}
		if err := checkURL(callbackBase); err != nil {
			return nil, fmt.Errorf("http backend: controller's external URL: %w", err)
		}
		h.callbackURL = strings.TrimRight(callbackBase, "/")
	}
	tlsCfg := &tls.Config{InsecureSkipVerify: cfg.TLS.InsecureSkipVerify}
	if cfg.TLS.InsecureSkipVerify {
		h.logger.Warn("http backend: tls.insecure_skip_verify is on: the job system's certificate is not checked")
	}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http backend: tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http backend: tls.ca_file: %s holds no PEM certificate", cfg.TLS.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	h.client = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	return h, nil
}

// Name returns "http".
func (h *Backend) Name() string { return "http" }

// SetCallbackToken makes each job's callback URL carry token(job ID) as its `token` query
// parameter, the credential the controller's completion endpoint checks, so that a job can
// complete itself and no other. Call it before the first Start; it does nothing in poll mode.
func (h *Backend) SetCallbackToken(token func(jobID string) string) { h.callbackToken = token }

// callbackFor returns the callback URL of job id; empty in poll mode.
func (h *Backend) callbackFor(id string) string {
	if h.callbackURL == "" || id == "" {
		return ""
	}
	u := h.callbackURL + "/v1/jobs/" + url.PathEscape(id) + "/complete"
	if h.callbackToken != nil {
		u += "?token=" + url.QueryEscape(h.callbackToken(id))
	}
	return u
}

// Start sends the start request. It needs a 2xx answer, and, when run_id is set, the run's ID
// in it. The Ref carries the rendered status and cancel URLs and the spec, so that a later
// process can follow the run without the start response.
//
// An answer without the run's ID is an error although the remote system may have started the
// run: without the ID it could not be followed, so the error says so.
func (h *Backend) Start(ctx context.Context, spec jobs.Spec) (jobs.Ref, error) {
	if err := spec.Validate(); err != nil {
		return jobs.Ref{}, fmt.Errorf("http backend: start: invalid spec: %w", err)
	}
	data := templateData{Spec: spec, CallbackURL: h.callbackFor(spec.ID)}
	startURL, err := render(h.tmpl.url, data)
	if err == nil {
		err = checkURL(startURL)
	}
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("http backend: start %s: url: %w", spec.ID, err)
	}
	var body []byte
	if h.tmpl.body != nil {
		b, err := render(h.tmpl.body, data)
		if err == nil {
			err = checkJSON(b)
		}
		if err != nil {
			return jobs.Ref{}, fmt.Errorf("http backend: start %s: body: %w", spec.ID, err)
		}
		body = []byte(b)
	}
	code, resp, err := h.do(ctx, h.cfg.Method, startURL, body, data)
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("http backend: start %s: %w", spec.ID, err)
	}
	if code/100 != 2 {
		return jobs.Ref{}, fmt.Errorf("http backend: start %s: %s %s: %d %s: %s", spec.ID, h.cfg.Method, redactURL(startURL), code, http.StatusText(code), snippet(resp))
	}
	data.RunID = spec.ID
	if h.cfg.RunID != "" {
		id, err := readRunID(resp, h.cfg.RunID)
		if err != nil {
			return jobs.Ref{}, fmt.Errorf("http backend: start %s: the run may have started, but its id cannot be read from the answer (%s): %w", spec.ID, snippet(resp), err)
		}
		data.RunID = id
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("http backend: start %s: %w", spec.ID, err)
	}
	ref := jobs.Ref{Backend: "http", ID: data.RunID, Data: map[string]string{"job_id": spec.ID, "spec": string(specJSON)}}
	for key, t := range map[string]*template.Template{"status_url": h.tmpl.statusURL, "cancel_url": h.tmpl.cancelURL} {
		if t == nil {
			continue
		}
		u, err := render(t, data)
		if err == nil {
			err = checkURL(u)
		}
		if err != nil {
			return jobs.Ref{}, fmt.Errorf("http backend: start %s: the run has started, but its %s cannot be rendered: %w", spec.ID, key, err)
		}
		ref.Data[key] = u
	}
	h.logger.Info("http job started", "job", spec.ID, "run", data.RunID, "mode", h.cfg.Mode)
	return ref, nil
}

// readRunID reads the run's ID at path in a start response.
func readRunID(resp []byte, path string) (string, error) {
	v, err := decodeJSON(resp)
	if err != nil {
		return "", err
	}
	raw, ok := lookup(v, path)
	if !ok {
		return "", fmt.Errorf("no %q in the answer", path)
	}
	id, ok := scalar(raw)
	if !ok || id == "" {
		return "", fmt.Errorf("%q is not a non-empty string or number", path)
	}
	return id, nil
}

// do sends one request with the configured headers and token and returns the status code
// and the body (at most maxResponse bytes).
func (h *Backend) do(ctx context.Context, method, rawURL string, body []byte, data templateData) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for name, t := range h.tmpl.headers {
		v, err := render(t, data)
		if err != nil {
			return 0, nil, fmt.Errorf("headers.%s: %w", name, err)
		}
		if name == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(name, v)
	}
	if h.cfg.BearerTokenFile != "" {
		// Read every time: tokens such as projected service account tokens are rotated
		// under a running process.
		t, err := token.ReadSecret(h.cfg.BearerTokenFile)
		if err != nil {
			return 0, nil, fmt.Errorf("bearer_token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+t)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL) // it would show the query, where webhooks keep secrets
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the answer: %w", method, redactURL(rawURL), err)
	}
	if len(b) > maxResponse {
		return 0, nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, redactURL(rawURL), maxResponse)
	}
	return resp.StatusCode, b, nil
}

// refData rebuilds the template data of a Ref made by Start, for the headers of later
// requests.
func (h *Backend) refData(ref jobs.Ref) templateData {
	data := templateData{RunID: ref.ID}
	if s := ref.Data["spec"]; s != "" {
		if err := json.Unmarshal([]byte(s), &data.Spec); err != nil {
			h.logger.Debug("http job: ref's spec unreadable; headers see an empty job", "run", ref.ID, "err", err)
		}
	}
	data.CallbackURL = h.callbackFor(data.ID)
	return data
}

// Wait waits for the run to end. In poll mode it asks status_url at once and then every
// poll_interval: a success value is Succeeded, a failure value Failed (with message_field's
// words), any other value running. Network errors and answers other than 2xx and 404 are
// logged and asked again, never returned; a 404 is Failed ("run no longer exists"). In
// callback mode it returns the status given to Complete for ref.ID, at once if it came before
// Wait (after a controller restart), and polls status_url as well when one is configured.
func (h *Backend) Wait(ctx context.Context, ref jobs.Ref) (jobs.Status, error) {
	if ref.Backend != "http" {
		return jobs.Status{}, fmt.Errorf("http backend: ref is for backend %q", ref.Backend)
	}
	statusURL := ref.Data["status_url"]
	var c *completion
	if h.cfg.Mode == ModeCallback {
		c = h.await(ref.ID)
		defer h.leave(c)
		select {
		case <-c.done:
			return c.status, nil
		default:
		}
	}
	if statusURL == "" && c == nil {
		return jobs.Status{}, fmt.Errorf("http backend: wait %s: the ref has no status_url and mode is not callback", ref.ID)
	}
	var done <-chan struct{}
	if c != nil {
		done = c.done
	}
	p := &poller{h: h, ref: ref, url: statusURL, data: h.refData(ref), unknown: map[string]bool{}}
	timer := time.NewTimer(0) // the first status request at once: a re-attached run may be over
	defer timer.Stop()
	for {
		var poll <-chan time.Time
		if statusURL != "" {
			poll = timer.C
		}
		select {
		case <-ctx.Done():
			return jobs.Status{}, ctx.Err()
		case <-done:
			return c.status, nil
		case <-poll:
			if st, ok := p.poll(ctx); ok {
				return st, nil
			}
			timer.Reset(h.cfg.PollInterval)
		}
	}
}

// poller is one Wait's polling of a status URL.
type poller struct {
	h        *Backend
	ref      jobs.Ref
	url      string
	data     templateData
	failures int             // consecutive failed requests
	unknown  map[string]bool // state values seen that are neither success nor failure
	noField  bool            // the missing status field was reported
}

// poll asks once; ok reports a final status.
func (p *poller) poll(ctx context.Context) (st jobs.Status, ok bool) {
	cfg := &p.h.cfg
	code, body, err := p.h.do(ctx, http.MethodGet, p.url, nil, p.data)
	if ctx.Err() != nil {
		return jobs.Status{}, false
	}
	if err == nil && code == http.StatusNotFound {
		return jobs.Status{State: jobs.Failed, Message: "run no longer exists (status_url answered 404 Not Found)", Finished: time.Now().UTC()}, true
	}
	if err == nil && code/100 != 2 {
		err = fmt.Errorf("GET %s: %d %s: %s", redactURL(p.url), code, http.StatusText(code), snippet(body))
	}
	var v any
	if err == nil {
		if v, err = decodeJSON(body); err != nil {
			err = fmt.Errorf("GET %s: %w", redactURL(p.url), err)
		}
	}
	if err != nil {
		p.failures++
		// Warn on the first failure and now and then after: an outage of the remote system
		// must show, but not as a line every poll_interval.
		if p.failures == 1 || p.failures%30 == 0 {
			p.h.logger.Warn("http job: cannot read the run's status; asking again", "run", p.ref.ID, "failures", p.failures, "err", err)
		}
		return jobs.Status{}, false
	}
	if p.failures > 0 {
		p.h.logger.Info("http job: the run's status is readable again", "run", p.ref.ID, "after_failures", p.failures)
		p.failures = 0
	}
	raw, found := lookup(v, cfg.StatusField)
	state, isScalar := scalar(raw)
	if !found || !isScalar {
		if !p.noField {
			p.noField = true
			p.h.logger.Warn("http job: the status answer has no state at status_field; taking the run as running", "run", p.ref.ID, "status_field", cfg.StatusField, "answer", snippet(body))
		}
		return jobs.Status{}, false
	}
	var msg string
	if cfg.MessageField != "" {
		if m, ok := lookup(v, cfg.MessageField); ok {
			msg, _ = scalar(m)
		}
	}
	switch {
	case slices.Contains(cfg.SuccessValues, state):
		return jobs.Status{State: jobs.Succeeded, Message: msg, Finished: time.Now().UTC()}, true
	case slices.Contains(cfg.FailureValues, state):
		m := state
		if msg != "" {
			m += ": " + msg
		}
		return jobs.Status{State: jobs.Failed, Message: m, Finished: time.Now().UTC()}, true
	}
	if !p.unknown[state] {
		p.unknown[state] = true
		p.h.logger.Debug("http job: state is neither a success nor a failure value; still running", "run", p.ref.ID, "state", state)
	}
	return jobs.Status{}, false
}

// Complete hands the status a job reported through the controller's callback endpoint to the
// Wait for ref.ID. A completion that arrives before the Wait (a controller that restarted
// while the job ran) is kept for it; a second completion of the same job is ignored. It is an
// error outside callback mode, so that a stray callback cannot end a polled run.
func (h *Backend) Complete(ref jobs.Ref, st jobs.Status) error {
	if h.cfg.Mode != ModeCallback {
		return fmt.Errorf("http backend: complete %s: callbacks are off (mode %s)", ref.ID, h.cfg.Mode)
	}
	if ref.Backend != "http" || ref.ID == "" {
		return fmt.Errorf("http backend: complete: ref %q is not an http backend's", ref.Backend+"/"+ref.ID)
	}
	if !st.State.Done() {
		return fmt.Errorf("http backend: complete %s: state %q is not final", ref.ID, st.State)
	}
	now := time.Now()
	st.LogTail = jobs.Tail(st.LogTail)
	if st.Finished.IsZero() {
		st.Finished = now.UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pruneLocked(now)
	c := h.completionLocked(ref.ID, now)
	if !c.completed.IsZero() {
		h.logger.Debug("http job: second completion ignored", "run", ref.ID, "state", st.State)
		return nil
	}
	c.status, c.completed = st, now
	close(c.done)
	h.logger.Info("http job reported its end", "run", ref.ID, "state", st.State, "message", st.Message)
	return nil
}

// await registers a Wait for id and returns its entry.
func (h *Backend) await(id string) *completion {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pruneLocked(now)
	c := h.completionLocked(id, now)
	c.waiters++
	return c
}

// leave unregisters a Wait. The entry stays, so a Wait that is asked again finds the same
// status, until pruned.
func (h *Backend) leave(c *completion) {
	h.mu.Lock()
	c.waiters--
	h.mu.Unlock()
}

func (h *Backend) completionLocked(id string, now time.Time) *completion {
	c := h.completions[id]
	if c == nil {
		c = &completion{done: make(chan struct{}), created: now}
		h.completions[id] = c
	}
	return c
}

// pruneLocked forgets entries nobody waits on that are older than completionRetention, so that
// completions of jobs the controller no longer waits for do not accumulate.
func (h *Backend) pruneLocked(now time.Time) {
	for id, c := range h.completions {
		since := c.created
		if !c.completed.IsZero() {
			since = c.completed
		}
		if c.waiters == 0 && now.Sub(since) > completionRetention {
			delete(h.completions, id)
		}
	}
}

// Cancel calls cancel_url, when the Ref has one. A 404 or 409 answer (the run is unknown or
// already over) is not an error, and neither is any other refusal when status_url shows the
// run has ended. Without cancel_url Cancel does nothing: the remote system keeps running the
// job, and only the controller stops waiting for it.
func (h *Backend) Cancel(ctx context.Context, ref jobs.Ref) error {
	if ref.Backend != "http" {
		return fmt.Errorf("http backend: ref is for backend %q", ref.Backend)
	}
	cancelURL := ref.Data["cancel_url"]
	if cancelURL == "" {
		h.logger.Info("http job: no cancel_url; the remote system keeps running it", "run", ref.ID)
		return nil
	}
	data := h.refData(ref)
	code, body, err := h.do(ctx, h.cfg.CancelMethod, cancelURL, nil, data)
	if err != nil {
		return fmt.Errorf("http backend: cancel %s: %w", ref.ID, err)
	}
	switch {
	case code/100 == 2:
		h.logger.Info("http job cancelled", "run", ref.ID)
		return nil
	case code == http.StatusNotFound || code == http.StatusConflict:
		return nil
	}
	err = fmt.Errorf("http backend: cancel %s: %s %s: %d %s: %s", ref.ID, h.cfg.CancelMethod, redactURL(cancelURL), code, http.StatusText(code), snippet(body))
	if su := ref.Data["status_url"]; su != "" && code/100 == 4 {
		// Some systems refuse to cancel a run that has ended, with 400 or 412 rather than
		// 409: that is success here.
		p := &poller{h: h, ref: ref, url: su, data: data, unknown: map[string]bool{}}
		if _, ended := p.poll(ctx); ended {
			return nil
		}
	}
	return err
}

// decodeJSON decodes a JSON document, keeping numbers exact (a numeric run ID must not turn
// into 1.2e+07).
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("answer is not JSON: %w", err)
	}
	return v, nil
}

// lookup follows a dot path into decoded JSON; a segment indexes an object by key or an
// array by number.
func lookup(v any, path string) (any, bool) {
	for seg := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, v != nil
}

// scalar returns a JSON string, number or boolean as a string.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// redactURL returns u without its query and password, for errors and logs: query parameters
// and user info are where webhook URLs keep their secrets.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.RawQuery, u.ForceQuery, u.Fragment = "", false, ""
	return u.Redacted()
}

// snippet returns the start of an answer's body for an error message: at most 512 bytes.
func snippet(b []byte) string {
	const n = 512
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "\uFFFD")
	s = strings.TrimSpace(s)
	if len(b) > n {
		s += "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
