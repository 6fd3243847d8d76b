package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadyz(t *testing.T) {
	ready := NewReadiness()
	reg := prometheus.NewRegistry()
	mux := NewMux(reg, reg, ready, false, slog.New(slog.DiscardHandler))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("ready: %d %q", code, body)
	}
	ready.NotReady("model", "no version loaded yet")
	ready.NotReady("cache", "empty")
	if code, body := get("/readyz"); code != 503 || body != "not ready:\ncache: empty\nmodel: no version loaded yet\n" {
		t.Fatalf("not ready: %d %q", code, body)
	}
	ready.Ready("model")
	ready.Ready("cache")
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("ready again: %d", code)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Fatalf("pprof off but served: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "promhttp_metric_handler_requests_total") {
		t.Fatalf("/metrics: %d", code)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	reg := prometheus.NewRegistry()
	mux := NewMux(reg, nil, NewReadiness(), true, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	if rec.Code != 200 {
		t.Fatalf("pprof on: %d", rec.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: ":9750"}, ""},
		{Config{Listen: "127.0.0.1:0"}, ""},
		{Config{Listen: "localhost"}, `listen: must be host:port (like :9750 or 127.0.0.1:9750), got "localhost"`},
		{Config{Listen: ":1", WebConfigFile: "/nonexistent/web.yml"}, "web_config_file: open /nonexistent/web.yml: no such file or directory"},
	}
	for _, tt := range tests {
		got := ""
		if err := tt.cfg.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

func TestServeAndShutdown(t *testing.T) {
	s, err := Listen(Config{Listen: "127.0.0.1:0"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hi")
	}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Config{Listen: s.Addr()}, http.NotFoundHandler(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "web: listen on "+s.Addr()) {
		t.Fatalf("second listener on a taken port: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, err := http.Get("http://" + s.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi" {
		t.Fatalf("body %q", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
