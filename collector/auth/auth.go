// Package auth authenticates the collector's callers: edge nodes (bearer tokens or TLS client
// certificates, each bound to one node ID) and operators (bearer tokens for the catalog, labels
// and dataset endpoints). Token files hold SHA-256 hashes, never tokens, so a leaked file or
// backup does not let anyone send samples; Reload swaps them atomically (SIGHUP). The files'
// format, their checks and the lookup by hash are internal/token's, shared with the
// exporter and the retrain controller; this package keeps what only the collector has: node
// identities (tokens or client certificates), operators, and the certificate lists.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/token"
)

// NodeURIPrefix starts the URI SAN that names a node in a client certificate:
// "edgeloop-node:edge-0001". It is preferred over the subject's CommonName, which some PKIs
// fill with host names.
const NodeURIPrefix = "edgeloop-node:"

// NodeHeader is the header in which a node names itself; the credential decides, the header
// must agree (docs/wire-format.md).
const NodeHeader = "X-Edgeloop-Node"

// Config is the collector's `auth:` section.
type Config struct {
	// TokensFile lists the edge nodes' tokens: lines "<node-id> sha256:<64 hex digits>", "#"
	// starting a comment. Reloaded on SIGHUP.
	TokensFile string `yaml:"tokens_file"`
	// ClientCAFile enables client-certificate authentication of nodes: a PEM bundle of the CAs
	// that sign node certificates. The listener must request client certificates (the web
	// configuration file's tls_server_config with client_auth_type RequestClientCert or
	// VerifyClientCertIfGiven); the node ID is the certificate's "edgeloop-node:<id>" URI SAN,
	// else its subject CommonName.
	ClientCAFile string `yaml:"client_ca_file"`
	// CertDenyFile lists revoked node certificates, one "serial:<hex>" or
	// "sha256:<fingerprint>" per line: a listed certificate is refused even though its CA
	// signed it, so one stolen node's certificate is revoked without re-issuing the fleet's.
	// Reloaded on SIGHUP.
	CertDenyFile string `yaml:"cert_deny_file"`
	// CertAllowFile, when set, lists the only node certificates accepted, in the same format:
	// for fleets that enroll every certificate explicitly. Reloaded on SIGHUP.
	CertAllowFile string `yaml:"cert_allow_file"`
	// OperatorTokensFile lists the operators' tokens, in the same format, for the catalog,
	// labels and dataset endpoints. Reloaded on SIGHUP.
	OperatorTokensFile string `yaml:"operator_tokens_file"`
}

// Validate checks that the files exist and parse, naming the field of the first that does not.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ field, path string }{{"tokens_file", c.TokensFile}, {"operator_tokens_file", c.OperatorTokensFile}} {
		if f.path == "" {
			continue
		}
		if _, err := loadTokens(f.path); err != nil {
			errs = append(errs, fieldError(f.field, err))
		}
	}
	if c.ClientCAFile != "" {
		if _, err := loadCAs(c.ClientCAFile); err != nil {
			errs = append(errs, fieldError("client_ca_file", err))
		}
	}
	for _, f := range []struct{ field, path string }{{"cert_deny_file", c.CertDenyFile}, {"cert_allow_file", c.CertAllowFile}} {
		if f.path == "" {
			continue
		}
		if c.ClientCAFile == "" {
			errs = append(errs, fieldError(f.field, errors.New("needs client_ca_file: it filters the client certificates that CA signed")))
			continue
		}
		if _, err := LoadCertList(f.path); err != nil {
			errs = append(errs, fieldError(f.field, err))
		}
	}
	if c.TokensFile == "" && c.ClientCAFile == "" {
		errs = append(errs, fieldError("tokens_file", errors.New("must be set (or client_ca_file): every node needs a credential")))
	}
	return errors.Join(errs...)
}

// loadTokens reads a tokens file (internal/token's hash list), its errors prefixed as the
// collector's others are.
func loadTokens(path string) (token.List, error) {
	l, err := token.LoadList(path)
	if err != nil {
		return token.List{}, fmt.Errorf("auth: %w", err)
	}
	return l, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("auth: client CA %s: no PEM certificate found", path)
	}
	return pool, nil
}

// Auth checks credentials against the loaded token sets and client CA. It is safe for
// concurrent use; Reload swaps the sets while requests are served.
type Auth struct {
	cfg    Config
	logger *slog.Logger

	mu        sync.RWMutex
	nodes     token.List
	operators token.List
	cas       *x509.CertPool
	deny      CertList
	allow     *CertList // nil: every certificate the CAs signed and deny does not list
}

// New loads the files cfg names.
func New(cfg Config, logger *slog.Logger) (*Auth, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Auth{cfg: cfg, logger: logger}
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Auth) load() error {
	var nodes, ops token.List
	var cas *x509.CertPool
	var err error
	if a.cfg.TokensFile != "" {
		if nodes, err = loadTokens(a.cfg.TokensFile); err != nil {
			return err
		}
	}
	if a.cfg.OperatorTokensFile != "" {
		if ops, err = loadTokens(a.cfg.OperatorTokensFile); err != nil {
			return err
		}
	}
	if a.cfg.ClientCAFile != "" {
		if cas, err = loadCAs(a.cfg.ClientCAFile); err != nil {
			return err
		}
	}
	var deny CertList
	var allow *CertList
	if a.cfg.CertDenyFile != "" {
		if deny, err = LoadCertList(a.cfg.CertDenyFile); err != nil {
			return err
		}
	}
	if a.cfg.CertAllowFile != "" {
		l, err := LoadCertList(a.cfg.CertAllowFile)
		if err != nil {
			return err
		}
		allow = &l
	}
	a.mu.Lock()
	a.nodes, a.operators, a.cas, a.deny, a.allow = nodes, ops, cas, deny, allow
	a.mu.Unlock()
	return nil
}

// log returns the logger, also for an Auth built without New (tests).
func (a *Auth) log() *slog.Logger {
	if a.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.logger
}

// Reload re-reads every file. When one is malformed or missing the old sets stay in force
// (a typo must not lock the whole fleet out) and the error is returned and logged at ERROR.
func (a *Auth) Reload() error {
	if err := a.load(); err != nil {
		a.logger.Error("auth: reload failed; keeping the credentials loaded before", "err", err)
		return fmt.Errorf("auth: reload: %w", err)
	}
	a.mu.RLock()
	n, o, d := a.nodes.Len(), a.operators.Len(), a.deny.Len()
	allowed := -1
	if a.allow != nil {
		allowed = a.allow.Len()
	}
	a.mu.RUnlock()
	a.logger.Info("auth: credentials reloaded", "node_tokens", n, "operator_tokens", o, "denied_certs", d, "allowed_certs", allowed)
	return nil
}

type ctxKey int

const (
	nodeKey ctxKey = iota
	operatorKey
)

// NodeFrom returns the node that RequireNode authenticated for the request of ctx.
func NodeFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(nodeKey).(string)
	return id, ok
}

// OperatorFrom returns the operator that RequireOperator authenticated for the request of ctx.
func OperatorFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(operatorKey).(string)
	return id, ok
}

// Node returns the node the request's credential is bound to: its bearer token's, else its
// verified client certificate's. The error is the message of a 401.
func (a *Auth) Node(r *http.Request) (string, error) {
	a.mu.RLock()
	nodes, cas, deny, allow := a.nodes, a.cas, a.deny, a.allow
	a.mu.RUnlock()
	if tok, ok := token.Bearer(r); ok {
		if id, ok := nodes.Lookup(tok); ok {
			return id, nil
		}
		return "", errors.New("unknown or revoked token")
	}
	if cas != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := certNode(r.TLS.PeerCertificates, cas)
		if err != nil {
			return "", err
		}
		// Checked after the chain, so that only a certificate that would otherwise be
		// accepted is reported (and logged) as revoked.
		leaf := r.TLS.PeerCertificates[0]
		if deny.Contains(leaf) || (allow != nil && !allow.Contains(leaf)) {
			a.log().Warn("auth: refused a revoked or unlisted node certificate", "node", id, "serial", leaf.SerialNumber.Text(16), "fingerprint", CertFingerprint(leaf))
			return "", errors.New("client certificate revoked or not on the allow list")
		}
		return id, nil
	}
	return "", errors.New("no credential: send Authorization: Bearer <token> or a client certificate")
}

// certNode verifies the client certificate chain against cas and returns its node ID.
func certNode(chain []*x509.Certificate, cas *x509.CertPool) (string, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("client certificate not accepted: %v", err)
	}
	for _, u := range leaf.URIs {
		if u.Scheme+":" == NodeURIPrefix {
			id := u.Opaque
			if !sample.ValidName(id) {
				return "", fmt.Errorf("client certificate: node id %.64q in its URI SAN is not a valid id", id)
			}
			return id, nil
		}
	}
	if id := leaf.Subject.CommonName; sample.ValidName(id) {
		return id, nil
	}
	return "", errors.New("client certificate names no node: want a URI SAN edgeloop-node:<id> or a CommonName that is a valid id")
}

// RequireNode lets through requests whose credential is a node's, with the node in the
// request's context (NodeFrom): 401 without a valid credential, 403 when X-Edgeloop-Node
// names another node than the credential's.
func (a *Auth) RequireNode(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Node(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop"`)
			httpjson.Error(w, http.StatusUnauthorized, err.Error())
			return
		}
		if h := r.Header.Get(NodeHeader); h != "" && h != id {
			httpjson.Error(w, http.StatusForbidden, fmt.Sprintf("node mismatch: the credential is bound to %s, not to the %s header's node", id, NodeHeader))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nodeKey, id)))
	})
}

// RequireOperator lets through requests bearing an operator token, with the operator in the
// request's context (OperatorFrom); 401 otherwise. A node's token is not an operator's: 403.
func (a *Auth) RequireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.RLock()
		ops, nodes := a.operators, a.nodes
		a.mu.RUnlock()
		tok, ok := token.Bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop"`)
			httpjson.Error(w, http.StatusUnauthorized, "no credential: send Authorization: Bearer <operator token>")
			return
		}
		id, ok := ops.Lookup(tok)
		if !ok {
			if _, isNode := nodes.Lookup(tok); isNode {
				httpjson.Error(w, http.StatusForbidden, "a node's token cannot use operator endpoints")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop"`)
			httpjson.Error(w, http.StatusUnauthorized, "unknown or revoked operator token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey, id)))
	})
}

func fieldError(field string, err error) error { return config.Errorf(field, "%v", err) }
