package dataset

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFetchManifest: the client side of GET /v1/datasets/{model}: the token is sent, a model
// the collector does not know is an empty manifest, errors name the status, and a key that is
// not a safe object key is refused.
func TestFetchManifest(t *testing.T) {
	answers := map[string]struct {
		code int
		body string
	}{
		"fashion": {200, `{"model":"fashion","shards":["samples/fashion/1/a.tar"],"labels":["labels/fashion/l.jsonl"]}`},
		"broken":  {503, "catalog not loaded"},
		"evil":    {200, `{"model":"evil","shards":["../../etc/passwd"]}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer op" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		a, ok := answers[strings.TrimPrefix(r.URL.Path, "/v1/datasets/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(a.code)
		_, _ = w.Write([]byte(a.body))
	}))
	defer srv.Close()
	ctx := context.Background()
	m, err := FetchManifest(ctx, srv.Client(), srv.URL+"/", "op", "fashion")
	if err != nil || len(m.Shards) != 1 || m.Labels[0] != "labels/fashion/l.jsonl" {
		t.Fatalf("fashion: %+v %v", m, err)
	}
	if m, err := FetchManifest(ctx, srv.Client(), srv.URL, "op", "unknown"); err != nil || m.Model != "unknown" || len(m.Shards)+len(m.Labels) != 0 {
		t.Fatalf("unknown model: %+v %v, want an empty manifest", m, err)
	}
	for _, tc := range []struct{ model, token, want string }{
		{"broken", "op", "collector answered 503 Service Unavailable: catalog not loaded"},
		{"fashion", "wrong", "collector answered 401 Unauthorized"},
		{"evil", "op", `path segment ".." is not allowed`},
	} {
		if _, err := FetchManifest(ctx, srv.Client(), srv.URL, tc.token, tc.model); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.model, err, tc.want)
		}
	}
}
