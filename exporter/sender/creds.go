package sender

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edgeloop/edgeloop/internal/token"
)

// refreshEvery is how often the token file and client certificate are read again even
// without a 401 or 403, so that a rotation takes effect before the old credential expires.
const refreshEvery = time.Minute

// credentials are the node's token and client certificate, re-read from their files when due
// or after the collector refused them. The TLS handshake asks for the certificate from
// transport goroutines, hence the lock.
type credentials struct {
	tokenFile         string
	certFile, keyFile string
	now               func() time.Time

	mu        sync.Mutex
	token     string
	tokenRead time.Time
	cert      *tls.Certificate
	certRead  time.Time
	stale     bool // the collector refused them: read again before the next use
}

// newCredentials reads the configured credentials once, so that a missing or unreadable file
// fails at start.
func newCredentials(cfg Config, now func() time.Time) (*credentials, error) {
	c := &credentials{tokenFile: cfg.TokenFile, certFile: cfg.TLS.CertFile, keyFile: cfg.TLS.KeyFile, now: now}
	if c.tokenFile != "" {
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return nil, err
		}
		c.token, c.tokenRead = tok, now()
	}
	if c.certFile != "" {
		cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.cert, c.certRead = &cert, now()
	}
	return c, nil
}

// readToken reads the node's secret by internal/token's rules (one raw token; a hash list is
// the collector's side and refused).
func readToken(path string) (string, error) { return token.ReadSecret(path) }

// invalidate makes the next use read the files again: the collector refused the credential,
// and a rotated one may be waiting on disk.
func (c *credentials) invalidate() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
}

// refresh re-reads what is due. A file that cannot be read keeps the last good credential,
// which the collector may still accept; the error is returned for logging.
func (c *credentials) refresh() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	stale := c.stale
	c.stale = false
	var errs []error
	if c.tokenFile != "" && (stale || now.Sub(c.tokenRead) >= refreshEvery) {
		c.tokenRead = now
		if tok, err := readToken(c.tokenFile); err != nil {
			errs = append(errs, err)
		} else {
			c.token = tok
		}
	}
	if c.certFile != "" && (stale || now.Sub(c.certRead) >= refreshEvery) {
		c.certRead = now
		if cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile); err != nil {
			errs = append(errs, fmt.Errorf("client certificate: %w", err))
		} else {
			c.cert = &cert
		}
	}
	return errors.Join(errs...)
}

// bearer returns the token for the Authorization header, or "" when none is configured.
func (c *credentials) bearer() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// clientCertificate is tls.Config.GetClientCertificate: the current certificate, so a rotated
// one is used by the next handshake.
func (c *credentials) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		return &tls.Certificate{}, nil // no certificate configured: send none
	}
	return c.cert, nil
}

// tlsConfig builds the client TLS configuration from cfg.
func tlsConfig(cfg TLSConfig, creds *credentials) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate found", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" {
		t.GetClientCertificate = creds.clientCertificate
	}
	return t, nil
}
