package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgeloop/edgeloop/exporter/gpu"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
	"github.com/edgeloop/edgeloop/internal/web"
)

// Exporter is one edge node's agent. Build it with New, then Run it.
type Exporter struct {
	cfg      Config
	logger   *slog.Logger
	tracing  *telemetry.Tracing
	registry *prometheus.Registry
	ready    *web.Readiness
	gpu      *gpu.Collector
	observe  *observe.Core
	metrics  *web.Server
}

// New builds an exporter from a validated configuration. lib is the NVML library to read GPUs
// from (nvml.New() in production, a go-nvml mock in tests); it is ignored when GPU metrics are
// off. New binds the metrics port, so a port conflict is reported here, before anything runs.
func New(cfg Config, lib nvml.Interface, tracing *telemetry.Tracing, logger *slog.Logger) (*Exporter, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("exporter"),
	)
	e := &Exporter{cfg: cfg, logger: logger, tracing: tracing, registry: reg, ready: web.NewReadiness()}
	if cfg.GPU.Enabled {
		e.gpu = gpu.New(lib, cfg.GPU, cfg.Node, logger.With("component", "gpu"))
		if err := reg.Register(e.gpu); err != nil {
			return nil, fmt.Errorf("exporter: register gpu collector: %w", err)
		}
	} else {
		logger.Info("GPU metrics are off (gpu.enabled: false)")
	}
	core, err := observe.New(reg, cfg.Inference)
	if err != nil {
		return nil, fmt.Errorf("exporter: inference telemetry: %w", err)
	}
	e.observe = core
	mux := web.NewMux(reg, reg, e.ready, cfg.Metrics.Pprof, logger)
	e.metrics, err = web.Listen(cfg.Metrics, mux, logger)
	if err != nil {
		return nil, fmt.Errorf("exporter: metrics server: %w", err)
	}
	return e, nil
}

// Observer is the inference telemetry core the inference front reports every request to.
func (e *Exporter) Observer() *observe.Core { return e.observe }

// Registry is the exporter's metrics registry.
func (e *Exporter) Registry() *prometheus.Registry { return e.registry }

// Readiness lets parts of the exporter hold /readyz at 503 until they are ready.
func (e *Exporter) Readiness() *web.Readiness { return e.ready }

// MetricsAddr is the address the metrics server listens on.
func (e *Exporter) MetricsAddr() string { return e.metrics.Addr() }

// Run serves until ctx is done or a part fails, then stops every part and returns.
func (e *Exporter) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.logger.Info("exporter started", "node", e.cfg.Node, "metrics", e.metrics.Addr(), "gpu", e.cfg.GPU.Enabled, "gpu_naming", e.cfg.GPU.Naming)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if e.gpu != nil {
		wg.Go(func() { e.gpu.Run(ctx) })
	}
	wg.Go(func() {
		if err := e.metrics.Serve(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Wait()
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
