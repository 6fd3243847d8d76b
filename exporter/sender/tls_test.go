package sender

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeloop test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn: a server certificate for 127.0.0.1 when
// server, else a client certificate.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestClientCertificateRotation authenticates with a client certificate instead of a token.
// The collector refuses the first certificate with 403 once the second is on disk; the sender
// re-reads the files and presents the new one on a new connection.
func TestClientCertificateRotation(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "collector", true)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"), filepath.Join(dir, "ca.crt")
	write := func(cn string) {
		c, k := ca.issue(t, cn, false)
		for name, data := range map[string][]byte{certFile: c, keyFile: k} {
			if err := os.WriteFile(name, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("edge-1-v1")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	h := newHarness(t, setup{
		tls: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		configure: func(c *Config) {
			c.TokenFile = ""
			c.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}
		},
		decide: func(r *request) verdict {
			cn := r.tls.PeerCertificates[0].Subject.CommonName
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, cn)
			if cn == "edge-1-v1" {
				write("edge-1-v2") // rotated after the first request
				return verdict{status: http.StatusForbidden, msg: "certificate revoked"}
			}
			return verdict{}
		},
	})
	samples, last := fill(t, h.q, 0, 3, t0)
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	if !slices.Equal(seen, []string{"edge-1-v1", "edge-1-v2"}) {
		t.Errorf("certificates presented %v, want [edge-1-v1 edge-1-v2]", seen)
	}
	for _, r := range h.col.Requests() {
		if r.header.Get("Authorization") != "" {
			t.Error("an Authorization header without a token file")
		}
	}
	assertStored(t, h.col.Stored(), samples)
}

// TestServerCertificateChecked: without the collector's CA the handshake fails, which is a
// network error retried with backoff, never a send in the clear.
func TestServerCertificateChecked(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "collector", true)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, setup{tls: &tls.Config{Certificates: []tls.Certificate{pair}}})
	h.clock.onSleep = func(time.Duration) { h.cancel() }
	fill(t, h.q, 0, 1, t0)
	h.start()
	h.waitDone()
	if len(h.col.Requests()) != 0 || h.q.Acked() != 0 {
		t.Fatal("sent to a collector whose certificate is not trusted")
	}
	if got := h.countLogs("WARN", "certificate signed by unknown authority"); got != 1 {
		t.Errorf("the TLS failure is not logged:\n%s", h.logs)
	}
}
