package infer

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/edgeloop/edgeloop/internal/token"
)

// tokenAuth checks the bearer tokens of the front's clients against a hash list
// (internal/token: SHA-256 hashes, never tokens, so the file on a stolen node gives nobody a
// token). It is built only when tokens_file is set: with auth off the
// request path is the same as before, without a wrapper or an allocation.
type tokenAuth struct {
	path   string
	tokens atomic.Pointer[token.List]
}

func newTokenAuth(path string) (*tokenAuth, error) {
	a := &tokenAuth{path: path}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *tokenAuth) reload() error {
	t, err := token.LoadList(a.path)
	if err != nil {
		return err
	}
	a.tokens.Store(&t)
	return nil
}

// openPaths answer without a token: they say only whether the process is up and ready, and
// probes (kubelet, systemd, load balancers) seldom carry credentials.
func openPath(p string) bool { return p == "/v2/health/live" || p == "/v2/health/ready" }

// wrap lets through requests with a token the file lists; 401 otherwise, with the V2 error
// shape and a WWW-Authenticate challenge.
func (a *tokenAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !openPath(r.URL.Path) {
			tok, ok := token.Bearer(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop-inference"`)
				writeError(w, http.StatusUnauthorized, "no credential: send Authorization: Bearer <token>")
				return
			}
			if _, ok := a.tokens.Load().Lookup(tok); !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop-inference", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "unknown or revoked token")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ReloadAuth re-reads tokens_file (the exporter calls it on SIGHUP where it handles one). A
// malformed or missing file keeps the tokens loaded before: a typo must not lock every
// client out. Without tokens_file it does nothing.
func (s *Server) ReloadAuth() error {
	if s.auth == nil {
		return nil
	}
	if err := s.auth.reload(); err != nil {
		s.logger.Error("infer: tokens reload failed; keeping the tokens loaded before", "err", err)
		return fmt.Errorf("infer: reload tokens: %w", err)
	}
	s.logger.Info("infer: tokens reloaded", "tokens", s.auth.tokens.Load().Len())
	return nil
}
