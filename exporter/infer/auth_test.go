package infer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/token"
)

// TestTokenAuth checks tokens_file: 401 without a token and with a wrong one, 200 with a
// listed one; the health endpoints stay open; a reload revokes a token and a malformed file
// keeps the tokens loaded before.
func TestTokenAuth(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(token.HashLine("camera-app", "good-token")+"\n"+token.HashLine("kiosk", "other-token")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.TokensFile = tokens
	s, ts := serve(t, cfg, Options{})
	s.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "1"))
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	check := func(step string, header http.Header, want int) {
		t.Helper()
		r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, header)
		if r.status != want {
			t.Errorf("%s: %d, want %d (%s)", step, r.status, want, r.body)
		}
		if want == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: no Bearer challenge: %q", step, r.header.Get("WWW-Authenticate"))
		}
	}
	check("no token", nil, http.StatusUnauthorized)
	check("wrong token", bearer("bad-token"), http.StatusUnauthorized)
	check("basic auth instead", http.Header{"Authorization": {"Basic Z29vZC10b2tlbjo="}}, http.StatusUnauthorized)
	check("right token", bearer("good-token"), http.StatusOK)
	check("other client's token", bearer("other-token"), http.StatusOK)
	if r := do(t, "GET", ts.URL+"/v2/models/tiny", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("metadata without a token: %d, want 401", r.status)
	}
	for _, p := range []string{"/v2/health/live", "/v2/health/ready"} {
		if r := do(t, "GET", ts.URL+p, "", nil); r.status != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", p, r.status)
		}
	}

	if err := os.WriteFile(tokens, []byte(token.HashLine("kiosk", "other-token")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAuth(); err != nil {
		t.Fatal(err)
	}
	check("revoked by reload", bearer("good-token"), http.StatusUnauthorized)
	check("kept by reload", bearer("other-token"), http.StatusOK)
	if err := os.WriteFile(tokens, []byte("kiosk md5:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAuth(); err == nil {
		t.Fatal("a malformed tokens file reloaded")
	}
	check("malformed reload keeps the old tokens", bearer("other-token"), http.StatusOK)
}

// TestAuthOffUnchanged checks that with neither key set the front's handler is the bare mux:
// no wrapper, so nothing is added to a request's path.
func TestAuthOffUnchanged(t *testing.T) {
	s, err := NewServer(testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Handler().(*http.ServeMux); !ok || s.auth != nil {
		t.Fatalf("handler %T, auth %v: want the bare mux", s.Handler(), s.auth)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("x md5:00\n"), 0o600)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"tokens file missing", func(c *Config) { c.TokensFile = filepath.Join(dir, "nope") }, "tokens_file: tokens"},
		{"tokens file malformed", func(c *Config) { c.TokensFile = bad }, "tokens_file: tokens"},
		{"web config missing", func(c *Config) { c.WebConfigFile = filepath.Join(dir, "nope.yml") }, "web_config_file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// TestTLS serves the front with a web configuration file (a server certificate signed by a
// test CA) and token auth: a client trusting the CA completes the handshake and infers with its
// token; one that does not trust it, and a plain http client, do not get an answer.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPool, certFile, keyFile := testServerCert(t, dir)
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(token.HashLine("app", "good-token")+"\n"), 0o600)
	cfg := testConfig()
	cfg.WebConfigFile, cfg.TokensFile = webCfg, tokens
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "1"))
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	_, port, _ := net.SplitHostPort(s.Addr())
	url := "https://localhost:" + port + "/v2/models/tiny/infer"

	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}, Timeout: 10 * time.Second}
	post := func(c *http.Client, url, tok string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(tinyRequest))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return c.Do(req)
	}
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; { // Serve starts in its goroutine
		if resp, err = post(trusting, url, "good-token"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.HandshakeComplete != true {
		t.Fatalf("over TLS with the token: %d (tls %v): %s", resp.StatusCode, resp.TLS != nil, body)
	}
	if resp, err := post(trusting, url, "bad-token"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("over TLS with a wrong token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	untrusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}, Timeout: 10 * time.Second}
	if _, err := post(untrusting, url, "good-token"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client not trusting the CA: %v, want a certificate error", err)
	}
	if resp, err := post(http.DefaultClient, "http://localhost:"+port+"/v2/models/tiny/infer", "good-token"); err == nil {
		// The TLS listener answers plain http with 400 "client sent an HTTP request to an HTTPS server".
		if resp.StatusCode == http.StatusOK {
			t.Error("plain http was served on the TLS port")
		}
		resp.Body.Close()
	}
}

// testServerCert writes a CA-signed server certificate for localhost and returns the CA pool
// and the certificate's and key's files.
func testServerCert(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}
