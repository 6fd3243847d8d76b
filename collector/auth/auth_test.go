package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/token"
)

func TestOperator(t *testing.T) {
	dir := t.TempDir()
	nodes, ops := filepath.Join(dir, "nodes"), filepath.Join(dir, "ops")
	os.WriteFile(nodes, []byte(token.HashLine("edge-1", "node-tok")+"\n"), 0o600)
	os.WriteFile(ops, []byte(token.HashLine("alice", "op-tok")+"\n"), 0o600)
	a, err := New(Config{TokensFile: nodes, OperatorTokensFile: ops}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := a.RequireOperator(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := OperatorFrom(r.Context())
		w.Write([]byte(id))
	}))
	for _, tc := range []struct {
		token string
		code  int
	}{{"", 401}, {"nope", 401}, {"node-tok", 403}, {"op-tok", 200}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/catalog", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("token %q: %d, want %d", tc.token, rec.Code, tc.code)
		}
		if tc.code == 200 && rec.Body.String() != "alice" {
			t.Errorf("operator %q", rec.Body.String())
		}
	}
}

// TestClientCertificate checks the node a certificate names: its URI SAN, else its CommonName,
// and only when a configured CA signed it.
func TestClientCertificate(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(cn string, uri string, signer *ecdsa.PrivateKey, parent *x509.Certificate) *x509.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		if parent == nil {
			parent, signer = tmpl, k
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, signer)
		c, _ := x509.ParseCertificate(der)
		return c
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	a := &Auth{cas: pool}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
		code int
	}{
		{"URI SAN wins", leaf("host.example", "edgeloop-node:edge-7", caKey, ca), "edge-7", 200},
		{"CommonName", leaf("edge-8", "", caKey, ca), "edge-8", 200},
		{"self-signed", leaf("edge-9", "", nil, nil), "", 401},
		{"no usable name", leaf("not a node id", "", caKey, ca), "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/samples", nil)
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}
			var got string
			a.RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, _ = NodeFrom(r.Context()) })).ServeHTTP(rec, req)
			if rec.Code != tc.code || got != tc.want {
				t.Fatalf("%d %q, want %d %q (%s)", rec.Code, got, tc.code, tc.want, rec.Body)
			}
		})
	}
}
