package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgeloop/edgeloop/exporter/capture"
	"github.com/edgeloop/edgeloop/exporter/gpu"
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/modelsync"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
	"github.com/edgeloop/edgeloop/internal/web"
)

// Exporter is one edge node's agent. Build it with New, then Run it.
type Exporter struct {
	cfg      Config
	logger   *slog.Logger // the exporter's own lines: component=exporter
	base     *slog.Logger // parts derive their component=... loggers from it
	tracing  *telemetry.Tracing
	registry *prometheus.Registry
	ready    *web.Readiness
	gpu      *gpu.Collector
	observe  *observe.Core
	metrics  *web.Server
	front    *infer.Server     // nil without models
	sync     *modelsync.Syncer // nil when no model is synced
	static   []*upstream.Client
	capture  *capture.Pipeline // nil when capture is off
}

// Options are what New takes besides the configuration: the same shape as collector.New's and
// retrain.New's.
type Options struct {
	// Logger is the base logger: each part adds its component attribute (exporter, gpu, infer,
	// modelsync). Nil discards.
	Logger *slog.Logger
	// Tracing traces inference requests; nil means off.
	Tracing *telemetry.Tracing
	// NVML is the library GPU metrics read: nil means nvml.New(), the driver's library, found
	// at run time; tests pass a go-nvml mock. Unused when GPU metrics are off.
	NVML nvml.Interface
}

// New builds an exporter from a validated configuration. It binds the metrics port, so a port
// conflict is reported here, before anything runs.
func New(cfg Config, opts Options) (*Exporter, error) {
	logger, tracing, lib := opts.Logger, opts.Tracing, opts.NVML
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if lib == nil && !cfg.GPU.Enabled.Off() {
		lib = nvml.New()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("exporter"),
	)
	e := &Exporter{cfg: cfg, logger: logger.With("component", "exporter"), base: logger, tracing: tracing, registry: reg, ready: web.NewReadiness()}
	if !cfg.GPU.Enabled.Off() {
		e.gpu = gpu.New(lib, cfg.GPU, cfg.Node, logger.With("component", "gpu"))
		if err := reg.Register(e.gpu); err != nil {
			return nil, fmt.Errorf("exporter: register gpu collector: %w", err)
		}
	} else {
		e.logger.Info("GPU metrics are off (gpu.enabled: false)")
	}
	core, err := observe.New(reg, cfg.Inference.Telemetry)
	if err != nil {
		return nil, fmt.Errorf("exporter: inference telemetry: %w", err)
	}
	e.observe = core
	if err := e.startModels(); err != nil {
		e.closeModels()
		return nil, err
	}
	mux := web.NewMux(reg, reg, e.ready, cfg.Metrics.Pprof, e.logger)
	e.metrics, err = web.Listen(cfg.Metrics, mux, e.logger)
	if err != nil {
		e.closeModels()
		return nil, fmt.Errorf("exporter: metrics server: %w", err)
	}
	return e, nil
}

// startModels builds the inference front and what feeds it models: the static upstream
// models, served at once, and the model sync for the rest. It binds the front's port.
func (e *Exporter) startModels() error {
	if len(e.cfg.Models) == 0 {
		e.logger.Info("no models configured: the inference front is off")
		return nil
	}
	names := make([]string, len(e.cfg.Models))
	for i, m := range e.cfg.Models {
		names[i] = m.Name
	}
	opts := infer.Options{Tracing: e.tracing, Logger: e.base.With("component", "infer"), Models: names}
	if e.cfg.Capture.Enabled() {
		p, err := capture.New(e.cfg.Capture, capture.Options{Node: e.cfg.Node, Registerer: e.registry,
			Logger: e.base.With("component", "capture"), Tracing: e.tracing})
		if err != nil {
			return fmt.Errorf("exporter: %w", err)
		}
		e.capture, opts.Capture = p, p
	}
	front, err := infer.NewServer(e.cfg.Inference.Front, opts)
	if err != nil {
		return fmt.Errorf("exporter: inference front: %w", err)
	}
	if err := front.Listen(); err != nil {
		return fmt.Errorf("exporter: inference front: %w", err)
	}
	e.front = front
	for _, m := range e.cfg.Models {
		if m.Static() {
			if err := e.serveStatic(m.WithDefaults()); err != nil {
				return fmt.Errorf("exporter: model %s: %w", m.Name, err)
			}
		}
	}
	for _, m := range e.cfg.Models {
		if m.Static() {
			continue
		}
		e.sync, err = modelsync.New(context.Background(), e.cfg.ModelSync, e.cfg.Models, modelsync.Options{
			Server: front, Observe: e.observe, Registerer: e.registry, Readiness: e.ready,
			Tracing: e.tracing, Logger: e.base.With("component", "modelsync"),
		})
		if err != nil {
			return fmt.Errorf("exporter: %w", err)
		}
		break
	}
	return nil
}

// StaticVersion is the version label of an upstream model whose server loads its models
// itself, unless its `version` pins a number: whatever the upstream serves by default.
const StaticVersion = "default"

// serveStatic fronts an upstream model that model sync does not manage.
func (e *Exporter) serveStatic(m infer.ModelConfig) error {
	version := StaticVersion
	if _, err := strconv.ParseInt(m.Version, 10, 64); err == nil {
		version = m.Version
	}
	client, err := upstream.New(*m.Upstream, m.Name, e.tracing)
	if err != nil {
		return err
	}
	e.static = append(e.static, client)
	h, err := e.observe.Model(observe.ModelSpec{Name: m.Name, Version: version, Classes: m.Classes, Output: m.Kind()})
	if err != nil {
		return err
	}
	b, err := infer.NewBackend(infer.BackendConfig{Version: version, Upstream: client, Observe: h,
		Output: m.Output, OutputKind: m.Kind(), Classes: m.Classes})
	if err != nil {
		h.Close()
		return err
	}
	e.front.Swap(m.Name, b)
	return nil
}

func (e *Exporter) closeModels() {
	if e.sync != nil {
		e.sync.Close()
	}
	if e.capture != nil {
		if err := e.capture.Close(); err != nil {
			e.logger.Error("closing the capture spool", "err", err)
		}
	}
	for _, c := range e.static {
		c.Close()
	}
}

// InferenceAddr is the address the inference front listens on; "" when it is off.
func (e *Exporter) InferenceAddr() string {
	if e.front == nil {
		return ""
	}
	return e.front.Addr()
}

// Observer is the inference telemetry core the inference front reports every request to.
func (e *Exporter) Observer() *observe.Core { return e.observe }

// Registry is the exporter's metrics registry.
func (e *Exporter) Registry() *prometheus.Registry { return e.registry }

// Readiness lets parts of the exporter hold /readyz at 503 until they are ready.
func (e *Exporter) Readiness() *web.Readiness { return e.ready }

// MetricsAddr is the address the metrics server listens on.
func (e *Exporter) MetricsAddr() string { return e.metrics.Addr() }

// Reload re-reads the credentials the exporter checks (the inference port's tokens_file), so
// that a leaked client token is revoked without a restart; SIGHUP calls it. A file that cannot
// be read keeps the tokens loaded before.
func (e *Exporter) Reload() error {
	if e.front == nil {
		return nil
	}
	return e.front.ReloadAuth()
}

// Run serves until ctx is done or a part fails, then stops every part and returns.
func (e *Exporter) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.logger.Info("exporter started", "node", e.cfg.Node, "metrics", e.metrics.Addr(), "gpu", e.cfg.GPU.Enabled, "gpu_naming", e.cfg.GPU.Naming)
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	if e.gpu != nil {
		wg.Go(func() { e.gpu.Run(ctx) })
	}
	if e.front != nil {
		e.logger.Info("inference front started", "listen", e.front.Addr(), "models", len(e.cfg.Models))
		wg.Go(func() {
			if err := e.front.Serve(ctx); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	if e.sync != nil {
		wg.Go(func() { e.sync.Run(ctx) })
	}
	if e.capture != nil {
		wg.Go(func() {
			if err := e.capture.Run(ctx); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	wg.Go(func() {
		if err := e.metrics.Serve(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Wait()
	e.closeModels()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	e.logger.Info("exporter stopped")
	return nil
}
