package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLogConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  LogConfig
		want string
	}{
		{DefaultLogConfig(), ""},
		{LogConfig{Level: "debug", Format: "json"}, ""},
		{LogConfig{Level: "loud", Format: "json"}, `level: must be debug, info, warn or error, got "loud"`},
		{LogConfig{Level: "info", Format: "xml"}, `format: must be logfmt or json, got "xml"`},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if got := errString(err); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNewLoggerHonoursLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, LogConfig{Level: "warn", Format: "json"})
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["msg"] != "shown" || line["k"] != float64(1) {
		t.Fatalf("got %v", line)
	}
}

func TestTracingOffIsNoop(t *testing.T) {
	tr, err := NewTracing(context.Background(), DefaultTracingConfig(), "svc", "v")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider.Tracer("t").Start(context.Background(), "x")
	if span.SpanContext().IsValid() {
		t.Fatal("tracing off produced a real span")
	}
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTracingExportsOverOTLPHTTP sends a span to an OTLP/HTTP endpoint and checks that the real
// exporter posts it, with the configured header, on shutdown.
func TestTracingExportsOverOTLPHTTP(t *testing.T) {
	var posts atomic.Int32
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-protobuf") {
			posts.Add(1)
			auth.Store(r.Header.Get("Authorization"))
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	cfg := DefaultTracingConfig()
	cfg.Endpoint = srv.URL + "/v1/traces"
	cfg.SampleRatio = 1
	cfg.Headers = map[string]string{"Authorization": "Bearer t0k"}
	tr, err := NewTracing(context.Background(), cfg, "edgeloop-test", "v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tr.Provider.Tracer("t").Start(context.Background(), "op")
	if id, sampled := TraceID(ctx); id == "" || !sampled {
		t.Fatalf("TraceID = %q, %v", id, sampled)
	}
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Fatal("no OTLP export received")
	}
	if got := auth.Load(); got != "Bearer t0k" {
		t.Fatalf("Authorization header = %v", got)
	}
}

func TestTraceContextRoundTrip(t *testing.T) {
	cfg := DefaultTracingConfig()
	cfg.Endpoint = "http://127.0.0.1:1/v1/traces" // never reached: the span is not exported
	cfg.SampleRatio = 1
	tr, err := NewTracing(context.Background(), cfg, "svc", "v")
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tr.Provider.Tracer("t").Start(context.Background(), "client")
	h := http.Header{}
	tr.Inject(ctx, h)
	if !strings.HasPrefix(h.Get("traceparent"), "00-") {
		t.Fatalf("no traceparent injected: %v", h)
	}
	remote := tr.Extract(context.Background(), h)
	got, _ := TraceID(remote)
	want, _ := TraceID(ctx)
	if got != want || got == "" {
		t.Fatalf("extracted trace id %q, want %q", got, want)
	}
	span.End()
	if id, _ := TraceID(context.Background()); id != "" {
		t.Fatalf("TraceID without span = %q", id)
	}
}

func TestTracingConfigValidate(t *testing.T) {
	c := DefaultTracingConfig()
	c.Endpoint = "ftp://x"
	c.SampleRatio = -0.1
	err := c.Validate()
	for _, want := range []string{`endpoint: must be an http:// or https:// URL, got "ftp://x"`, "sample_ratio: must be between 0 and 1, got -0.1"} {
		if !strings.Contains(errString(err), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
