// Package infer is the exporter's inference front: the Open Inference Protocol (KServe V2,
// Triton) REST API on :8000. Each model is served by a Backend (one model version on the
// built-in runtime or an upstream server) that Server.Swap replaces atomically, and every
// request is measured by the telemetry core (exporter/observe): latency with a trace exemplar,
// stage durations, outcome and the confidence of every prediction.
//
// docs/inference.md describes the API, the errors and limits, and the hot swap semantics.
package infer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	toolkit "github.com/prometheus/exporter-toolkit/web"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	// Tracing starts a server span for every request, joined to the client's traceparent, so
	// latency observations carry trace exemplars and upstream requests carry the span. Nil
	// turns spans off; upstream requests then pass the client's traceparent through.
	Tracing *telemetry.Tracing
	// Logger receives the front's logs; nil discards them.
	Logger *slog.Logger
	// Models are the names that must have a version loaded before /v2/health/ready answers
	// 200. Requests for them answer 503 until then, and for other names 404. With none, the
	// server is ready once any model is loaded.
	Models []string
	// Capture, when set, is offered every successful request of the models it wants.
	Capture Capturer
}

// Server is the V2 REST front. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	tracing *telemetry.Tracing
	tracer  trace.Tracer // nil when tracing is off
	handler http.Handler
	scratch sync.Pool // *scratch

	mu      sync.Mutex                       // serialises changes to the model table
	models  atomic.Pointer[map[string]*slot] // copy on write: requests read it without a lock
	expect  []string
	capture Capturer

	auth *tokenAuth // nil: no token needed

	listener net.Listener
	srv      *http.Server
}

// slot holds a model's serving Backend. The pointer is swapped atomically.
type slot struct {
	backend atomic.Pointer[Backend]
}

// NewServer validates cfg and returns a front with no model loaded.
func NewServer(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, logger: logger, tracing: opts.Tracing, expect: slices.Clone(opts.Models), capture: opts.Capture}
	if opts.Tracing != nil {
		s.tracer = opts.Tracing.Provider.Tracer("github.com/edgeloop/edgeloop/exporter/infer")
	}
	table := make(map[string]*slot, len(opts.Models))
	for _, name := range opts.Models {
		table[name] = &slot{}
	}
	s.models.Store(&table)
	s.handler = s.routes()
	if cfg.TokensFile != "" {
		a, err := newTokenAuth(cfg.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("infer: tokens_file: %w", err)
		}
		s.auth = a
		s.handler = a.wrap(s.handler)
	}
	return s, nil
}

// Swap makes b the serving version of model name and returns the Backend it replaces (nil if
// none). Requests that started on the old Backend finish on it; it is then retired, which
// closes its telemetry handle, and its Done channel is closed. A nil b unloads the model:
// requests answer 503 until the next Swap. A Backend serves one stint: once swapped out it
// cannot be swapped in again (requests would answer 503); build a new one.
func (s *Server) Swap(name string, b *Backend) (old *Backend) {
	sl := s.slot(name)
	if sl == nil {
		s.mu.Lock()
		cur := *s.models.Load()
		if sl = cur[name]; sl == nil {
			next := maps.Clone(cur)
			sl = &slot{}
			next[name] = sl
			s.models.Store(&next)
		}
		s.mu.Unlock()
	}
	old = sl.backend.Swap(b)
	if old != nil && old != b {
		old.retire()
	}
	if b != nil {
		s.logger.Info("model version serving", "model", name, "version", b.Version(), "previous", versionOf(old))
	}
	return old
}

func versionOf(b *Backend) string {
	if b == nil {
		return ""
	}
	return b.Version()
}

// Serving returns the version model name is served at, and false when it has none.
func (s *Server) Serving(name string) (string, bool) {
	sl := s.slot(name)
	if sl == nil {
		return "", false
	}
	b := sl.backend.Load()
	if b == nil {
		return "", false
	}
	return b.Version(), true
}

// Ready reports whether every expected model (Options.Models) has a version loaded, or, with
// none expected, whether any model has. It is /v2/health/ready's answer.
func (s *Server) Ready() bool {
	table := *s.models.Load()
	if len(s.expect) == 0 {
		for _, sl := range table {
			if sl.backend.Load() != nil {
				return true
			}
		}
		return false
	}
	for _, name := range s.expect {
		if sl := table[name]; sl == nil || sl.backend.Load() == nil {
			return false
		}
	}
	return true
}

func (s *Server) slot(name string) *slot { return (*s.models.Load())[name] }

// Handler returns the V2 REST API as an http.Handler (what Serve serves).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the configured address, so that a port conflict fails at start-up and tests can
// listen on :0 and ask Addr which port they got.
func (s *Server) Listen() error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("infer: listen on %s: %w", s.cfg.Listen, err)
	}
	s.listener = l
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: min(10*time.Second, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	return nil
}

// Addr is the address the server listens on, after Listen.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Serve serves on the listener bound by Listen until ctx is done, then shuts down gracefully,
// giving requests in flight up to ten seconds. With web_config_file set, the exporter-toolkit
// serves it (TLS, client certificates, basic auth), as on the metrics port.
func (s *Server) Serve(ctx context.Context) error {
	if s.listener == nil {
		return errors.New("infer: Serve called before Listen")
	}
	s.logger.Info("inference front listening", "address", s.Addr())
	errc := make(chan error, 1)
	if s.cfg.WebConfigFile != "" {
		webConfig := s.cfg.WebConfigFile
		flags := &toolkit.FlagConfig{WebConfigFile: &webConfig}
		go func() { errc <- toolkit.Serve(s.listener, s.srv, flags, s.logger) }()
	} else {
		go func() { errc <- s.srv.Serve(s.listener) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("infer: serve %s: %w", s.cfg.Listen, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("infer: shutdown %s: %w", s.cfg.Listen, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("infer: serve %s: %w", s.cfg.Listen, err)
	}
	return nil
}
