// Package web serves what every edgeloop server exposes besides its own API: /metrics (with
// OpenMetrics negotiated, so exemplars and native histograms reach Prometheus), /healthz,
// /readyz and, only when enabled, /debug/pprof. TLS and basic auth follow the Prometheus
// exporter-toolkit web configuration file, so operators reuse what they know from node_exporter.
package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
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
	// BodyMinBytesPerSecond is the slowest a request body may arrive: after BodyGracePeriod,
	// a body must have delivered this many bytes a second since its first read, or its next
	// read fails with ErrBodyTooSlow and the connection is closed. It keeps slow or stalled
	// uploads from holding a server's request slots for good. 0 means the default, 8192.
	BodyMinBytesPerSecond int64 `yaml:"body_min_bytes_per_second"`
	// BodyGracePeriod is how long a body may take before the rate applies (a slow start, a
	// retransmission). 0 means the default, 10s.
	BodyGracePeriod time.Duration `yaml:"body_grace_period"`
}

// Defaults of the body deadline (Config.BodyMinBytesPerSecond, Config.BodyGracePeriod).
const (
	DefaultBodyMinBytesPerSecond = 8192
	DefaultBodyGracePeriod       = 10 * time.Second
)

// ErrBodyTooSlow is the error of a request body read past its deadline (Config.
// BodyMinBytesPerSecond); handlers answer it with 408.
var ErrBodyTooSlow = errors.New("request body arrives too slowly")

// bodyRate returns the body deadline's rate and grace, defaults applied.
func (c Config) bodyRate() (int64, time.Duration) {
	rate, grace := c.BodyMinBytesPerSecond, c.BodyGracePeriod
	if rate == 0 {
		rate = DefaultBodyMinBytesPerSecond
	}
	if grace == 0 {
		grace = DefaultBodyGracePeriod
	}
	return rate, grace
}

// Validate checks the listen address and the web configuration file.
func (c Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, config.Errorf("listen", "must be host:port (like :9750 or 127.0.0.1:9750), got %q", c.Listen))
	}
	if c.BodyMinBytesPerSecond < 0 {
		errs = append(errs, config.Errorf("body_min_bytes_per_second", "must not be negative (0 means the default, %d), got %d", DefaultBodyMinBytesPerSecond, c.BodyMinBytesPerSecond))
	}
	if c.BodyGracePeriod < 0 {
		errs = append(errs, config.Errorf("body_grace_period", "must not be negative (0 means the default, %s), got %s", DefaultBodyGracePeriod, c.BodyGracePeriod))
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
	rate, grace := cfg.bodyRate()
	return &Server{
		cfg:      cfg,
		listener: l,
		logger:   logger,
		srv: &http.Server{
			Handler:           bodyDeadline(h, rate, grace),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
	}, nil
}

// bodyDeadline makes every request body arrive at rate bytes a second after grace: the
// connection's read deadline is moved on as bytes arrive (http.ResponseController), so a slow
// body fails its read instead of holding a handler — and whatever slot it took — for as long as
// the client likes. The http.Server's own timeouts cannot do it: ReadTimeout would bound every
// body by one duration, however large.
func bodyDeadline(h http.Handler, rate int64, grace time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &rateBody{ReadCloser: r.Body, rc: http.NewResponseController(w), rate: rate, grace: grace}
		}
		h.ServeHTTP(w, r)
	})
}

// rateBody is a request body read under bodyDeadline.
type rateBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	rate     int64
	grace    time.Duration
	start    time.Time
	n        int64
	deadline time.Time
	off      bool // the connection takes no deadlines (a test's recorder): no limit
	done     bool
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.done || b.off {
		return b.ReadCloser.Read(p)
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	// By n bytes read, the next byte is due at start + grace + n/rate. The deadline moves in
	// steps of at least 100ms, each a timer update: a stricter deadline by less than that
	// is within the grace.
	due := b.start.Add(b.grace + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)))
	if due.Sub(b.deadline) >= 100*time.Millisecond {
		if err := b.rc.SetReadDeadline(due); err != nil {
			b.off = true
			return b.ReadCloser.Read(p)
		}
		b.deadline = due
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.done = true
		return n, fmt.Errorf("%w: %d bytes in %s, under %d bytes a second after %s: %w", ErrBodyTooSlow, b.n, now.Sub(b.start).Round(time.Millisecond), b.rate, b.grace, err)
	case err != nil:
		// The whole body is in (or the read failed): a deadline left behind would cut the
		// connection while the handler works on its answer.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
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
