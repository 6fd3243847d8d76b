package objstore_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// The HTTP backend's conformance run (every read through a real server) is in
// collector/models, which holds the server side; these tests cover the client alone.

func TestParseHTTPURL(t *testing.T) {
	env := map[string]string{objstore.EnvTokenFile: "/etc/edgeloop/token"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct {
		url  string
		want objstore.HTTPConfig
	}{
		{"https://collector:9751/v1/repo", objstore.HTTPConfig{URL: "https://collector:9751/v1/repo", TokenFile: "/etc/edgeloop/token"}},
		{"https://collector:9751/v1/repo/", objstore.HTTPConfig{URL: "https://collector:9751/v1/repo", TokenFile: "/etc/edgeloop/token"}},
		{"http://10.0.0.1/v1/repo?ca_file=/etc/ca.pem", objstore.HTTPConfig{URL: "http://10.0.0.1/v1/repo", TokenFile: "/etc/edgeloop/token", CAFile: "/etc/ca.pem"}},
	} {
		got, err := objstore.ParseURL(c.url, lookup)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		if got.HTTP == nil || got.S3 != nil || got.Dir != "" || *got.HTTP != c.want {
			t.Errorf("ParseURL(%q) = %+v (http %+v), want http %+v", c.url, got, got.HTTP, c.want)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"https://node:secret@collector/v1/repo", "credentials in the URL are not accepted; set EDGELOOP_TOKEN_FILE"},
		{"https://collector/v1/repo?token=abc", `unknown parameter "token"`},
		{"https:///v1/repo", "no host"},
		{"https://collector/v1/repo#x", "no fragment"},
	} {
		_, err := objstore.ParseURL(c.url, lookup)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURL(%q) = %v, want an error containing %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error reveals the password: %v", c.url, err)
		}
	}
	if got, err := objstore.ParseURL("https://collector/v1/repo", nil); err != nil || got.HTTP.TokenFile != "" {
		t.Errorf("ParseURL without an environment = %+v, %v; want no token file", got.HTTP, err)
	}
}

// fakeRepo answers like collector/models for a fixed set of objects, recording the tokens.
type fakeRepo struct {
	mu      sync.Mutex
	tokens  []string
	listing string
	body    string
	length  string
}

func (f *fakeRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/repo/":
		io.WriteString(w, f.listing)
	case r.URL.Path == "/v1/repo/forbidden":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"a node's token cannot do that"}`)
	case r.URL.Path == "/v1/repo/a b/c?d":
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2026 15:04:05 GMT")
		if f.length != "" {
			// Announce more than is sent: a cut connection.
			w.Header().Set("Content-Length", f.length)
		}
		io.WriteString(w, f.body)
	default:
		http.NotFound(w, r)
	}
}

func TestHTTPBucketClient(t *testing.T) {
	ctx := context.Background()
	repo := &fakeRepo{listing: `{"keys":["b","a"]}`, body: "content"}
	srv := httptest.NewServer(repo)
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewHTTP(objstore.HTTPConfig{URL: srv.URL + "/v1/repo/", TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// A key with characters that mean something in a URL reaches the server as the path.
	data, attrs, err := objstore.ReadAll(ctx, b, "a b/c?d", 0)
	if err != nil || string(data) != "content" || attrs.ETag != "e1" || attrs.Size != 7 || attrs.LastModified.Year() != 2026 {
		t.Fatalf("ReadAll = %q, %+v, %v", data, attrs, err)
	}
	// A rotated token is used from the next request on.
	if err := os.WriteFile(tokenFile, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Exists(ctx, "missing"); err != nil || ok {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	if got := repo.tokens; len(got) != 2 || got[0] != "Bearer first" || got[1] != "Bearer second" {
		t.Fatalf("tokens sent = %q", got)
	}

	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"put", b.Put(ctx, "k", strings.NewReader("x"), 1), `objstore: put "k": read-only bucket`},
		{"delete", b.Delete(ctx, "k"), `objstore: delete "k": read-only bucket`},
		{"forbidden", func() error { _, _, err := b.Get(ctx, "forbidden"); return err }(), "403 Forbidden: a node's token cannot do that"},
		{"not found", func() error { _, _, err := b.Get(ctx, "nothing"); return err }(), "object not found"},
		{"bad listing order", func() error { _, err := objstore.List(ctx, b, "", true); return err }(), "out of order or outside the prefix"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
	if err := b.Put(ctx, "k", strings.NewReader("x"), 1); !errors.Is(err, objstore.ErrReadOnly) {
		t.Errorf("Put error %v does not wrap ErrReadOnly", err)
	}

	repo.listing, repo.length = `{"keys":["a/b"]}`, "100"
	if keys, err := objstore.List(ctx, b, "a/", true); err != nil || len(keys) != 1 {
		t.Errorf("List = %q, %v", keys, err)
	}
	if _, _, err := objstore.ReadAll(ctx, b, "a b/c?d", 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAll of a cut body = %v, want unexpected EOF", err)
	}

	if err := os.WriteFile(tokenFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exists(ctx, "k"); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Errorf("Exists with an empty token file = %v, want a token file error", err)
	}
}
