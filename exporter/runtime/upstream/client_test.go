package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recorder is a fake V2 server that records the requests it gets and answers as told.
type recorder struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	status int
	body   string
	header http.Header
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, r)
	rec.bodies = append(rec.bodies, string(data))
	status, body, header := rec.status, rec.body, rec.header
	rec.mu.Unlock()
	for k, vs := range header {
		w.Header()[k] = vs
	}
	if status == 0 {
		status = 200
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (rec *recorder) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	return rec.reqs[len(rec.reqs)-1], rec.bodies[len(rec.bodies)-1]
}

func newClient(t *testing.T, rec *recorder, cfg Config) *Client {
	t.Helper()
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	cfg.URL = ts.URL + "/"
	c, err := New(cfg, "fashion", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestInferForwardsRequest(t *testing.T) {
	rec := &recorder{body: `{"outputs":[]}`, header: http.Header{"X-Triton": {"1"}, "Connection": {"X-Secret"}, "X-Secret": {"s"}}}
	c := newClient(t, rec, Config{Model: "fashion_onnx"})
	h := http.Header{
		"Content-Type":                    {"application/octet-stream"},
		"Inference-Header-Content-Length": {"12"},
		"Accept-Encoding":                 {"gzip"},
		"Connection":                      {"keep-alive, X-Hop"},
		"X-Hop":                           {"1"},
		"Keep-Alive":                      {"timeout=5"},
		"Traceparent":                     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"Authorization":                   {"Bearer t"},
	}
	body := `{"inputs":[]}xxxx`
	resp, err := c.Infer(context.Background(), "3", "a=b", strings.NewReader(body), int64(len(body)), h)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || string(resp.Body) != `{"outputs":[]}` {
		t.Fatalf("response %d %s", resp.StatusCode, resp.Body)
	}
	r, got := rec.last(t)
	if r.Method != "POST" || r.URL.Path != "/v2/models/fashion_onnx/versions/3/infer" || r.URL.RawQuery != "a=b" || got != body {
		t.Fatalf("upstream got %s %s?%s %q", r.Method, r.URL.Path, r.URL.RawQuery, got)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "12",
		"Traceparent": h.Get("Traceparent"), "Authorization": "Bearer t",
		"X-Hop": "", "Keep-Alive": "", "Accept-Encoding": "",
	} {
		if r.Header.Get(name) != want {
			t.Errorf("upstream header %s = %q, want %q", name, r.Header.Get(name), want)
		}
	}
	out := http.Header{}
	CopyResponseHeader(out, resp.Header)
	if out.Get("X-Triton") != "1" || out.Get("X-Secret") != "" || out.Get("Connection") != "" || out.Get("Content-Length") != "" {
		t.Fatalf("copied response headers %v", out)
	}
}

func TestResponseTooLarge(t *testing.T) {
	rec := &recorder{body: strings.Repeat("x", 2048)}
	c := newClient(t, rec, Config{MaxResponseBytes: 1024})
	_, err := c.Infer(context.Background(), "", "", strings.NewReader("{}"), 2, nil)
	var ue *Error
	if !errors.As(err, &ue) || ue.Status != http.StatusBadGateway || !strings.Contains(err.Error(), "larger than max_response_bytes (1024)") {
		t.Fatalf("error = %v", err)
	}
}

func TestRedirectIsPassedOn(t *testing.T) {
	rec := &recorder{status: http.StatusTemporaryRedirect, header: http.Header{"Location": {"/elsewhere"}}}
	c := newClient(t, rec, Config{})
	resp, err := c.Infer(context.Background(), "", "", strings.NewReader("{}"), 2, nil)
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("response %v, %v", resp, err)
	}
}

// TestRequestBodyError checks that a failing client body is reported as the body's fault,
// not the upstream's.
func TestRequestBodyError(t *testing.T) {
	c := newClient(t, &recorder{}, Config{})
	boom := errors.New("client vanished")
	_, err := c.Infer(context.Background(), "", "", io.MultiReader(strings.NewReader("{"), errReader{boom}), -1, nil)
	if !errors.Is(err, ErrRequestBody) || !errors.Is(err, boom) {
		t.Fatalf("error = %v, want ErrRequestBody wrapping the body's error", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestModelRepository(t *testing.T) {
	rec := &recorder{body: "{}"}
	c := newClient(t, rec, Config{Model: "fashion_onnx"})
	if err := c.LoadModel(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, body := rec.last(t)
	if r.Method != "POST" || r.URL.Path != "/v2/repository/models/fashion_onnx/load" || body != "{}" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("load request %s %s %q", r.Method, r.URL.Path, body)
	}
	if err := c.UnloadModel(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, _ := rec.last(t); r.URL.Path != "/v2/repository/models/fashion_onnx/unload" {
		t.Fatalf("unload path %s", r.URL.Path)
	}
	rec.mu.Lock()
	rec.status, rec.body = 400, `{"error":"failed to load 'fashion_onnx', failed to poll from model repository"}`
	rec.mu.Unlock()
	err := c.LoadModel(context.Background())
	want := "upstream: load model fashion_onnx: 400 Bad Request: failed to load 'fashion_onnx', failed to poll from model repository"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	d := Config{URL: "http://x:1"}.WithDefaults()
	if d.Timeout != DefaultTimeout || d.ConnectTimeout != DefaultConnectTimeout || d.MaxIdleConns != DefaultMaxIdleConns || d.MaxResponseBytes != DefaultMaxResponseBytes {
		t.Fatalf("defaults %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{URL: "ftp://x"}, "m", nil); err == nil || err.Error() != `upstream: url: must be an http:// or https:// base URL without query, got "ftp://x"` {
		t.Fatalf("New with a bad URL: %v", err)
	}
}
