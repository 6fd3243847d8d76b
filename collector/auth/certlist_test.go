package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCertList(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, content, wantErr string
		n                      int
	}{
		{"serials and fingerprints", "# stolen 2026-12\nserial:0a1b  # edge-7\nSERIAL:00:0A:1C\nsha256:" + fp + "\n\n", "", 3},
		{"openssl colons", "sha256:" + strings.ToUpper(strings.Join(splitPairs(fp), ":")) + "\n", "", 1},
		{"unknown kind", "md5:abcd\n", "line 1: want serial:", 0},
		{"short fingerprint", "sha256:abcd\n", "line 1: a sha256 fingerprint", 0},
		{"serial not hex", "serial:xyz\n", "line 1: a serial", 0},
		{"serial too long", "serial:" + strings.Repeat("01", 21) + "\n", "line 1: a serial", 0},
		{"two fields", "serial:01 serial:02\n", "line 1: want one entry", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseCertList([]byte(tc.content))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || l.Len() != tc.n {
				t.Fatalf("%d entries, %v; want %d", l.Len(), err, tc.n)
			}
		})
	}
}

func splitPairs(s string) []string {
	var out []string
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

// testPKI is a CA and node certificates it signs, written where Config can name them.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// node issues a certificate for node id with the given serial.
func (p *testPKI) node(t *testing.T, id string, serial int64) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestCertRevocationByReload revokes one node's certificate by serial, then another's by
// fingerprint, each taking effect at Reload (SIGHUP) while the other nodes stay accepted; a
// malformed list keeps the one loaded before; an allow list accepts only what it names.
func TestCertRevocationByReload(t *testing.T) {
	p := newTestPKI(t)
	edge1, edge2, edge3 := p.node(t, "edge-1", 0x1001), p.node(t, "edge-2", 0x1002), p.node(t, "edge-3", 0x1003)
	deny := filepath.Join(p.dir, "deny")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(deny, "# nothing revoked yet\n")
	cfg := Config{ClientCAFile: p.caFile, CertDenyFile: deny}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := a.RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := NodeFrom(r.Context())
		w.Write([]byte(id))
	}))
	expect := func(step string, want map[*x509.Certificate]int) {
		t.Helper()
		for cert, code := range want {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/samples", nil)
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
			h.ServeHTTP(rec, req)
			if rec.Code != code {
				t.Errorf("%s: %s answered %d, want %d (%s)", step, cert.Subject.CommonName, rec.Code, code, rec.Body)
			}
			if code == 200 && rec.Body.String() != cert.Subject.CommonName {
				t.Errorf("%s: node %q, want %s", step, rec.Body, cert.Subject.CommonName)
			}
		}
	}
	expect("before", map[*x509.Certificate]int{edge1: 200, edge2: 200, edge3: 200})

	write(deny, "serial:10:01  # edge-1, stolen\n")
	expect("written, not reloaded", map[*x509.Certificate]int{edge1: 200, edge2: 200, edge3: 200})
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	expect("edge-1 revoked by serial", map[*x509.Certificate]int{edge1: 401, edge2: 200, edge3: 200})

	write(deny, "serial:1001\n"+CertFingerprint(edge2)+"\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	expect("edge-2 revoked by fingerprint", map[*x509.Certificate]int{edge1: 401, edge2: 401, edge3: 200})

	write(deny, "serial:nothex\n")
	if err := a.Reload(); err == nil {
		t.Fatal("a malformed deny list reloaded")
	}
	expect("malformed list keeps the old one", map[*x509.Certificate]int{edge1: 401, edge2: 401, edge3: 200})

	allow := filepath.Join(p.dir, "allow")
	write(allow, CertFingerprint(edge3)+"\nserial:1001\n")
	write(deny, "serial:1001\n")
	a2, err := New(Config{ClientCAFile: p.caFile, CertAllowFile: allow, CertDenyFile: deny}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h = a2.RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := NodeFrom(r.Context())
		w.Write([]byte(id))
	}))
	expect("allow list; deny wins", map[*x509.Certificate]int{edge1: 401, edge2: 401, edge3: 200})
}

func TestCertListConfig(t *testing.T) {
	p := newTestPKI(t)
	bad := filepath.Join(p.dir, "bad")
	os.WriteFile(bad, []byte("serial:zz\n"), 0o600)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"deny without CA", Config{TokensFile: "", CertDenyFile: bad}, "cert_deny_file: needs client_ca_file"},
		{"malformed deny", Config{ClientCAFile: p.caFile, CertDenyFile: bad}, "cert_deny_file: auth: certificate list"},
		{"malformed allow", Config{ClientCAFile: p.caFile, CertAllowFile: bad}, "cert_allow_file: auth: certificate list"},
		{"missing allow", Config{ClientCAFile: p.caFile, CertAllowFile: filepath.Join(p.dir, "nope")}, "cert_allow_file: auth: certificate list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// nodeTLS issues a client certificate for node id and returns it as a TLS certificate.
func (p *testPKI) nodeTLS(t *testing.T, id string, serial int64) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}

// TestCertRevocationOverTLS revokes a node over real TLS handshakes: the listener requests
// client certificates as the collector's web configuration does (VerifyClientCertIfGiven with
// the node CA); after the stolen node's fingerprint is added to the deny list and Reload runs
// (what SIGHUP calls), its requests get 401 while another node's keep getting 200.
func TestCertRevocationOverTLS(t *testing.T) {
	p := newTestPKI(t)
	deny := filepath.Join(p.dir, "deny")
	os.WriteFile(deny, nil, 0o600)
	a, err := New(Config{ClientCAFile: p.caFile, CertDenyFile: deny}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(a.RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := NodeFrom(r.Context())
		w.Write([]byte(id))
	})))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	ts.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	client := func(cert tls.Certificate) *http.Client {
		tr := ts.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
		tr.DisableKeepAlives = true // every request a new handshake, as a rebooted node's
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	stolen, other := client(p.nodeTLS(t, "edge-7", 0x77)), client(p.nodeTLS(t, "edge-8", 0x78))
	get := func(c *http.Client) (int, string) {
		t.Helper()
		resp, err := c.Post(ts.URL+"/v1/samples", "application/x-tar", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(bytes.Buffer)
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, id := get(stolen); code != 200 || id != "edge-7" {
		t.Fatalf("before revocation: %d %q", code, id)
	}
	leaf := stolen.Transport.(*http.Transport).TLSClientConfig.Certificates[0].Leaf
	os.WriteFile(deny, []byte(CertFingerprint(leaf)+"  # edge-7, stolen\n"), 0o600)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, body := get(stolen); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked node: %d %s, want 401", code, body)
	}
	if code, id := get(other); code != 200 || id != "edge-8" {
		t.Fatalf("other node after the revocation: %d %q", code, id)
	}
}
