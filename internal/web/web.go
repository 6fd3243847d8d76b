// Package web serves what every edgeloop server exposes besides its own API: /metrics (with
// OpenMetrics negotiated, so exemplars and native histograms reach Prometheus), /healthz,
// /readyz and, only when enabled, /debug/pprof. TLS and basic auth follow the Prometheus
// exporter-toolkit web configuration file, so operators reuse what they know from node_exporter.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Config is the `web:` (or `metrics:`) section of a server component's configuration.
type Config struct {
	// Listen is the host:port to listen on.
	Listen string `yaml:"listen"`
	// WebConfigFile is an exporter-toolkit web configuration file enabling TLS and/or basic auth
	// (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).
	WebConfigFile string `yaml:"web_config_file"`
	// Pprof serves Go's profiling endpoints under /debug/pprof/. Off by default: they reveal
	// internals and cost CPU, and edge nodes are physically insecure.
	Pprof bool `yaml:"pprof"`
}

// Validate checks the listen address and the web configuration file.
func (c Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, config.Errorf("listen", "must be host:port (like :9750 or 127.0.0.1:9750), got %q", c.Listen))
	}
	if c.WebConfigFile != "" {
		if err := toolkit.Validate(c.WebConfigFile); err != nil {
			errs = append(errs, config.Errorf("web_config_file", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Readiness collects the named conditions a component waits on before it is ready, such as
// "model: no version loaded yet". /readyz answers 503 listing every unmet one.
type Readiness struct {
	mu      sync.Mutex
	waiting map[string]string
}

// NewReadiness returns a Readiness with no unmet condition.
func NewReadiness() *Readiness { return &Readiness{waiting: map[string]string{}} }

// NotReady records that the component named by key is not ready, and why.
func (r *Readiness) NotReady(key, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting[key] = reason
}

// Ready clears the condition of key.
func (r *Readiness) Ready(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, key)
}

// Reasons lists the unmet conditions as "key: reason", sorted; empty when ready.
func (r *Readiness) Reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.waiting))
	for k, v := range r.waiting {
		out = append(out, k+": "+v)
	}
	sort.Strings(out)
	return out
}

// NewMux returns a mux serving /metrics from g, /healthz, /readyz from ready and, when pprof is
// true, /debug/pprof/. Callers add their own routes to it.
func NewMux(g prometheus.Gatherer, reg prometheus.Registerer, ready *Readiness, pprofOn bool, logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// One broken collector must not empty the scrape: serve what could be gathered.
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
	if reg != nil {
		metrics = promhttp.InstrumentMetricHandler(reg, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		reasons := ready.Reasons()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready:\n%s\n", strings.Join(reasons, "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is one listening HTTP server with the exporter-toolkit's TLS and auth in front.
type Server struct {
	cfg      Config
	listener net.Listener
	srv      *http.Server
	logger   *slog.Logger
}

// Listen binds the configured address, so a port conflict fails at start-up with a clear error
// and tests can listen on :0 and ask Addr which port they got.
func Listen(cfg Config, h http.Handler, logger *slog.Logger) (*Server, error) {
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("web: listen on %s: %w", cfg.Listen, err)
	}
	return &Server{
		cfg:      cfg,
		listener: l,
		logger:   logger,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Close releases the listener of a server that will not Serve (a start-up that failed after
// Listen).
func (s *Server) Close() error { return s.listener.Close() }

// Serve serves until ctx is done, then shuts down gracefully, giving requests in flight up to
// ten seconds.
func (s *Server) Serve(ctx context.Context) error {
	webConfig := s.cfg.WebConfigFile
	flags := &toolkit.FlagConfig{WebConfigFile: &webConfig}
	errc := make(chan error, 1)
	go func() { errc <- toolkit.Serve(s.listener, s.srv, flags, s.logger) }()
	select {
	case err := <-errc:
		return fmt.Errorf("web: serve %s: %w", s.cfg.Listen, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("web: shutdown %s: %w", s.cfg.Listen, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: serve %s: %w", s.cfg.Listen, err)
	}
	return nil
}
