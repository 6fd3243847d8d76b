// Package auth authenticates the collector's callers: edge nodes (bearer tokens or TLS client
// certificates, each bound to one node ID) and operators (bearer tokens for the catalog, labels
// and dataset endpoints). Token files hold SHA-256 hashes, never tokens, so a leaked file or
// backup does not let anyone send samples; Reload swaps them atomically (SIGHUP).
package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/token"
)

// NodeURIPrefix starts the URI SAN that names a node in a client certificate:
// "edgeloop-node:edge-0001". It is preferred over the subject's CommonName, which some PKIs
// fill with host names.
const NodeURIPrefix = "edgeloop-node:"

// NodeHeader is the header in which a node names itself; the credential decides, the header
// must agree (docs/wire-format.md).
const NodeHeader = "X-Edgeloop-Node"

// idRE is what a node or operator ID may look like: the sample format's name rule, so an
// ID is safe in a metric label, a URL path and an object key.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

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
		if _, err := LoadTokens(f.path); err != nil {
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

// Tokens are the credentials of one tokens file: SHA-256 hashes of tokens and the IDs they
// are bound to.
type Tokens struct{ entries []tokenEntry }

type tokenEntry struct {
	sum [sha256.Size]byte
	id  string
}

// Len is the number of tokens.
func (t Tokens) Len() int { return len(t.entries) }

// LoadTokens reads a tokens file: one "<id> sha256:<64 hex>" per line; blank lines and
// "#" comments are skipped. Every malformed line is an error naming its number, and so is a
// hash given twice (two IDs cannot share a credential). An empty file, or one holding a bare
// token instead of its hash, is refused with a message saying what the key expects
// (internal/token).
func LoadTokens(path string) (Tokens, error) {
	data, err := token.ReadHashList(path)
	if err != nil {
		return Tokens{}, fmt.Errorf("auth: tokens: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return Tokens{}, fmt.Errorf("auth: tokens %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses the content of a tokens file (see LoadTokens).
func ParseTokens(data []byte) (Tokens, error) {
	var t Tokens
	seen := map[[sha256.Size]byte]string{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			errs = append(errs, fmt.Errorf("line %d: want \"<id> sha256:<64 hex digits>\", got %d fields", n, len(fields)))
			continue
		}
		id, hash := fields[0], fields[1]
		if !idRE.MatchString(id) {
			errs = append(errs, fmt.Errorf("line %d: id %.64q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'", n, id))
			continue
		}
		hexHash, ok := strings.CutPrefix(hash, "sha256:")
		var sum [sha256.Size]byte
		if b, err := hex.DecodeString(hexHash); !ok || err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("line %d: the hash must be sha256: and 64 hex digits (sha256sum of the token)", n))
			continue
		} else {
			copy(sum[:], b)
		}
		if other, dup := seen[sum]; dup {
			errs = append(errs, fmt.Errorf("line %d: the same hash as %s's: every credential is bound to one id", n, other))
			continue
		}
		seen[sum] = id
		t.entries = append(t.entries, tokenEntry{sum: sum, id: id})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Tokens{}, err
	}
	return t, nil
}

// HashToken returns the line a tokens file holds for id and token.
func HashToken(id, token string) string {
	sum := sha256.Sum256([]byte(token))
	return id + " sha256:" + hex.EncodeToString(sum[:])
}

// Lookup returns the ID token is bound to. It compares the token's hash with every entry in
// constant time and does not stop at a match, so the time taken says nothing about which
// entry, or how much of one, matched (10,000 entries take some tens of microseconds).
func (t Tokens) Lookup(token string) (string, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], t.entries[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.entries[found].id, true
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
	nodes     Tokens
	operators Tokens
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
	var nodes, ops Tokens
	var cas *x509.CertPool
	var err error
	if a.cfg.TokensFile != "" {
		if nodes, err = LoadTokens(a.cfg.TokensFile); err != nil {
			return err
		}
	}
	if a.cfg.OperatorTokensFile != "" {
		if ops, err = LoadTokens(a.cfg.OperatorTokensFile); err != nil {
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

// Error writes a JSON error answer, the shape every collector endpoint uses.
func Error(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Write(append(b, '\n'))
}

// Bearer returns the request's bearer token.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Node returns the node the request's credential is bound to: its bearer token's, else its
// verified client certificate's. The error is the message of a 401.
func (a *Auth) Node(r *http.Request) (string, error) {
	a.mu.RLock()
	nodes, cas, deny, allow := a.nodes, a.cas, a.deny, a.allow
	a.mu.RUnlock()
	if tok, ok := Bearer(r); ok {
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
			if !idRE.MatchString(id) {
				return "", fmt.Errorf("client certificate: node id %.64q in its URI SAN is not a valid id", id)
			}
			return id, nil
		}
	}
	if id := leaf.Subject.CommonName; idRE.MatchString(id) {
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
			Error(w, http.StatusUnauthorized, err.Error())
			return
		}
		if h := r.Header.Get(NodeHeader); h != "" && h != id {
			Error(w, http.StatusForbidden, fmt.Sprintf("node mismatch: the credential is bound to %s, not to the %s header's node", id, NodeHeader))
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
		tok, ok := Bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop"`)
			Error(w, http.StatusUnauthorized, "no credential: send Authorization: Bearer <operator token>")
			return
		}
		id, ok := ops.Lookup(tok)
		if !ok {
			if _, isNode := nodes.Lookup(tok); isNode {
				Error(w, http.StatusForbidden, "a node's token cannot use operator endpoints")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeloop"`)
			Error(w, http.StatusUnauthorized, "unknown or revoked operator token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey, id)))
	})
}

func fieldError(field string, err error) error { return config.Errorf(field, "%v", err) }
