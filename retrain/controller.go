package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/internal/version"
	"github.com/edgeloop/edgeloop/internal/web"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
	"github.com/edgeloop/edgeloop/retrain/jobs/localjob"
)

// TracerName is the instrumentation scope of the controller's spans (docs/tracing.md).
const TracerName = "github.com/edgeloop/edgeloop/retrain"

// Options are the controller's dependencies that are not configuration; tests replace them.
type Options struct {
	// Logger is the base logger (default: discard).
	Logger *slog.Logger
	// Tracing continues callers' traces (optional).
	Tracing *telemetry.Tracing
	// Backend replaces the configured backend.
	Backend jobs.Backend
	// EvalBackend replaces the backend of a remote gate.job.backend (kubernetes, http): the
	// evaluation jobs' files are staged in the bucket as for the configured one.
	EvalBackend jobs.Backend
	// Now replaces the clock (policy times: cooldown, budget day, soak).
	Now func() time.Time
	// OnJobEnd is called with a copy of every job that reaches a final phase.
	OnJobEnd func(Job)
}

// Controller is `edgeloop retrain`.
type Controller struct {
	cfg      Config
	opts     Options
	logger   *slog.Logger
	registry *prometheus.Registry
	ready    *web.Readiness
	web      *web.Server
	mux      *http.ServeMux
	m        *metrics
	now      func() time.Time
	models   map[string]ModelConfig
	tracer   trace.Tracer // a job's spans (docs/tracing.md); no-op without Options.Tracing

	backend  jobs.Backend
	repo     *modelrepo.Repository
	signer   *modelrepo.Signer
	verifier *modelrepo.Verifier
	data     *dataset
	out      objstore.Bucket // remote jobs' outputs (nil for the local backend)
	outURL   string
	dataURL  string // the dataset bucket's URL (c.data's bucket)
	buckets  []objstore.Bucket

	tokensMu       sync.RWMutex
	webhookTokens  token.List
	operatorTokens token.List
	callbackKey    []byte

	// admitMu serializes admissions, so that two triggers for one model cannot both pass the
	// checks before either records its job (the storm case); mu guards st.
	admitMu   sync.Mutex
	mu        sync.Mutex
	st        *State
	cancelled map[string]bool // jobs an operator cancelled
	aliasMu   sync.Mutex      // serializes alias moves through the API (alias.go)

	runCtx context.Context
	wg     sync.WaitGroup
}

// New builds the controller from cfg (assumed valid): it loads the state, opens the buckets,
// the signing key and the backend, and binds the listener. Run starts it.
func New(cfg Config, opts Options) (*Controller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{
		cfg: cfg, opts: opts, logger: opts.Logger.With("component", "retrain"), now: opts.Now,
		registry: prometheus.NewRegistry(), ready: web.NewReadiness(), models: map[string]ModelConfig{},
		cancelled: map[string]bool{},
		tracer:    noop.NewTracerProvider().Tracer(""),
	}
	if opts.Tracing != nil {
		c.tracer = opts.Tracing.Provider.Tracer(TracerName)
	}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	names := make([]string, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		c.models[m.Name] = m
		names = append(names, m.Name)
	}
	c.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("retrain"),
	)
	c.m = newMetrics(c.registry, names)
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("retrain: state_dir: %w", err)
	}
	var err error
	if c.st, err = loadState(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("retrain: %w", err)
	}
	if c.callbackKey, err = loadOrCreateKey(filepath.Join(cfg.StateDir, "callback.key")); err != nil {
		return nil, fmt.Errorf("retrain: %w", err)
	}
	if err := c.loadTokens(); err != nil {
		return nil, fmt.Errorf("retrain: %w", err)
	}
	repoBucket, err := c.open(cfg.Repository.Bucket)
	if err != nil {
		return nil, fmt.Errorf("retrain: repository.bucket: %w", err)
	}
	c.repo = modelrepo.New(repoBucket)
	if c.signer, err = modelrepo.LoadSigner(cfg.Repository.SigningKeyFile); err != nil {
		return nil, fmt.Errorf("retrain: repository.signing_key_file: %w", err)
	}
	if len(cfg.Repository.PublicKeyFiles) > 0 {
		if c.verifier, err = modelrepo.LoadVerifier(cfg.Repository.PublicKeyFiles...); err != nil {
			return nil, fmt.Errorf("retrain: repository.public_key_files: %w", err)
		}
	} else {
		c.verifier = modelrepo.NewVerifier(c.signer.Public())
	}
	dataBucket := repoBucket
	dataURL := cfg.Repository.Bucket
	if cfg.Dataset.Bucket != "" && cfg.Dataset.Bucket != cfg.Repository.Bucket {
		if dataBucket, err = c.open(cfg.Dataset.Bucket); err != nil {
			return nil, fmt.Errorf("retrain: dataset.bucket: %w", err)
		}
		dataURL = cfg.Dataset.Bucket
	}
	c.data, c.dataURL = newDataset(cfg.Dataset, dataBucket, c.logger.With("part", "dataset")), dataURL
	if cfg.Backend.Type != "local" {
		c.out, c.outURL = dataBucket, dataURL
		if cfg.Backend.Output != "" && cfg.Backend.Output != dataURL {
			if c.out, err = c.open(cfg.Backend.Output); err != nil {
				return nil, fmt.Errorf("retrain: backend.output: %w", err)
			}
			c.outURL = cfg.Backend.Output
		}
	}
	c.mux = web.NewMux(c.registry, c.registry, c.ready, cfg.Web.Pprof, c.logger)
	c.routes()
	var h http.Handler = c.mux
	if opts.Tracing != nil {
		t := opts.Tracing
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(t.Extract(r.Context(), r.Header)))
		})
	}
	if c.web, err = web.Listen(cfg.Web, h, c.logger); err != nil {
		return nil, fmt.Errorf("retrain: %w", err)
	}
	// After Listen: the http backend's callback URL needs the port actually bound.
	if c.backend, err = c.newBackend(); err != nil {
		c.web.Close()
		return nil, fmt.Errorf("retrain: backend: %w", err)
	}
	c.mu.Lock()
	for _, j := range c.st.Jobs {
		if !j.Phase.Done() {
			c.m.active.WithLabelValues(j.Model).Set(1)
		}
	}
	for name, ms := range c.st.Models {
		if _, ok := c.models[name]; ok && ms.Version > 0 {
			c.m.published.WithLabelValues(name).Set(float64(ms.Version))
			c.m.lastSuccess.WithLabelValues(name).Set(float64(ms.LastSuccess.Unix()))
		}
	}
	c.mu.Unlock()
	ok = true
	return c, nil
}

func (c *Controller) open(rawURL string) (objstore.Bucket, error) {
	b, err := objstore.Open(context.Background(), rawURL)
	if err != nil {
		return nil, err
	}
	c.buckets = append(c.buckets, b)
	return b, nil
}

func (c *Controller) newBackend() (jobs.Backend, error) {
	if c.opts.Backend != nil {
		return c.opts.Backend, nil
	}
	logger := c.logger.With("part", "backend")
	switch c.cfg.Backend.Type {
	case "local":
		return localjob.New(c.cfg.Backend.Local, filepath.Join(c.cfg.StateDir, "jobs"), logger)
	case "kubernetes":
		client, err := kubejob.Client(c.cfg.Backend.Kubernetes)
		if err != nil {
			return nil, err
		}
		return kubejob.New(c.cfg.Backend.Kubernetes, client, logger)
	case "http":
		h, err := httpjob.New(c.cfg.Backend.HTTP, c.externalURL(), logger)
		if err != nil {
			return nil, err
		}
		// Callbacks carry the job's token, which serveComplete checks.
		h.SetCallbackToken(c.CallbackToken)
		return h, nil
	}
	return nil, fmt.Errorf("unknown type %q", c.cfg.Backend.Type)
}

// externalURL is the controller's address as jobs reach it.
func (c *Controller) externalURL() string {
	if c.cfg.ExternalURL != "" {
		return c.cfg.ExternalURL
	}
	_, port, _ := net.SplitHostPort(c.web.Addr())
	return "http://127.0.0.1:" + port
}

// loadTokens (re)reads the token files.
func (c *Controller) loadTokens() error {
	wh, err := token.LoadList(c.cfg.Auth.WebhookTokensFile)
	if err != nil {
		return fmt.Errorf("auth.webhook_tokens_file: %w", err)
	}
	var ops token.List
	if f := c.cfg.Auth.OperatorTokensFile; f != "" {
		if ops, err = token.LoadList(f); err != nil {
			return fmt.Errorf("auth.operator_tokens_file: %w", err)
		}
	}
	c.tokensMu.Lock()
	c.webhookTokens, c.operatorTokens = wh, ops
	c.tokensMu.Unlock()
	return nil
}

// Reload re-reads the token files (SIGHUP); on error the old ones stay.
func (c *Controller) Reload() error {
	if err := c.loadTokens(); err != nil {
		c.logger.Error("reload failed; the old credentials stay", "err", err)
		return err
	}
	c.logger.Info("credentials reloaded")
	return nil
}

// Addr is the address the controller listens on.
func (c *Controller) Addr() string { return c.web.Addr() }

// Registry is the controller's metrics registry.
func (c *Controller) Registry() *prometheus.Registry { return c.registry }

// Run resumes the jobs the state lists as active, starts the policy loops and serves until
// ctx ends. Jobs in progress are not cancelled at shutdown: the next start re-attaches.
func (c *Controller) Run(ctx context.Context) error {
	defer c.close()
	c.runCtx = ctx
	c.mu.Lock()
	var resume []*Job
	for _, j := range c.st.Jobs {
		if !j.Phase.Done() {
			resume = append(resume, j)
		}
	}
	c.mu.Unlock()
	for _, j := range resume {
		c.logger.Info("resuming job", "job", j.ID, "model", j.Model, "phase", j.Phase)
		c.startDriver(j)
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.policyLoop(ctx) }()
	if len(c.cfg.Drift.Targets) > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.driftLoop(ctx) }()
	}
	c.logger.Info("retrain controller started", "addr", c.Addr(), "backend", c.backend.Name(),
		"models", len(c.models), "resumed_jobs", len(resume))
	err := c.web.Serve(ctx)
	c.wg.Wait()
	return err
}

func (c *Controller) close() {
	for _, b := range c.buckets {
		b.Close()
	}
	c.buckets = nil
}

// save persists the state; the caller holds mu. A state that cannot be written is logged
// and marks the controller unready: decisions keep being made in memory.
func (c *Controller) save() {
	for _, id := range c.st.prune(c.cfg.Policy.KeepJobs, c.cfg.Policy.DedupeWindow, c.now()) {
		os.RemoveAll(c.jobDir(id)) // a forgotten job's files go with it
	}
	if err := c.st.save(c.cfg.StateDir); err != nil {
		c.logger.Error("cannot save state", "err", err)
		c.ready.NotReady("state", "state not saved: "+err.Error())
		return
	}
	c.ready.Ready("state")
}

// Jobs returns copies of the jobs, oldest first.
func (c *Controller) Jobs() []Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Job, len(c.st.Jobs))
	for i, j := range c.st.Jobs {
		out[i] = *j
	}
	return out
}

// Decisions returns copies of the recorded decisions, oldest first.
func (c *Controller) Decisions() []Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Decision(nil), c.st.Decisions...)
}

var errUnavailable = errors.New("unavailable")
