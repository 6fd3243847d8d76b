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
	"strings"
	"testing"
	"time"
)

func TestParseTokens(t *testing.T) {
	good := HashToken("edge-1", "s3cret")
	for _, tc := range []struct {
		name, content, wantErr string
		n                      int
	}{
		{"valid with comments", "# fleet\n\n" + good + "  # the first\n" + HashToken("edge-2", "other") + "\n", "", 2},
		{"three fields", good + " extra\n", "line 1: want", 0},
		{"not sha256", "edge-1 md5:abcd\n", "line 1: the hash must be", 0},
		{"short hash", "edge-1 sha256:abcd\n", "line 1: the hash must be", 0},
		{"bad id", strings.Replace(good, "edge-1", "../x", 1) + "\n", "line 1: id", 0},
		{"shared hash", good + "\n" + strings.Replace(good, "edge-1", "edge-2", 1) + "\n", "line 2: the same hash as edge-1's", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseTokens([]byte(tc.content))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || tok.Len() != tc.n {
				t.Fatalf("%d tokens, %v; want %d", tok.Len(), err, tc.n)
			}
			if id, ok := tok.Lookup("s3cret"); !ok || id != "edge-1" {
				t.Fatalf("lookup = %q, %v", id, ok)
			}
			if _, ok := tok.Lookup("s3cre"); ok {
				t.Fatal("a prefix of the token matched")
			}
		})
	}
}

func TestOperator(t *testing.T) {
	dir := t.TempDir()
	nodes, ops := filepath.Join(dir, "nodes"), filepath.Join(dir, "ops")
	os.WriteFile(nodes, []byte(HashToken("edge-1", "node-tok")+"\n"), 0o600)
	os.WriteFile(ops, []byte(HashToken("alice", "op-tok")+"\n"), 0o600)
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
