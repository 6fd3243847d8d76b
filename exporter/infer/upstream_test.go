package infer

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// fakeUpstream is an httptest V2 server whose answer the test scripts.
func fakeUpstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func frontFor(t *testing.T, upURL string, ucfg upstream.Config, opts Options) (fixture, *Backend) {
	core, reg := newCore(t)
	s, ts := serve(t, testConfig(), opts)
	b := upstreamBackend(t, upURL, ucfg, core, "1", opts)
	s.Swap("tiny", b)
	return fixture{url: ts.URL, reg: reg, server: s}, b
}

func requests(t *testing.T, reg prometheus.Gatherer, outcome string) float64 {
	t.Helper()
	v, _ := testenv.MetricValue(t, reg, "edgeloop_inference_requests_total", map[string]string{"model": "tiny", "version": "1", "outcome": outcome})
	return v
}

// TestUpstreamPassesResponsesThrough checks that the upstream's answers, good or bad, reach the
// client byte for byte with their status and headers, and are counted by outcome.
func TestUpstreamPassesResponsesThrough(t *testing.T) {
	const okBody = `{"model_name":"tiny_at_triton","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]}]}`
	tests := []struct {
		name    string
		status  int
		body    string
		outcome string
	}{
		{"success", 200, okBody, "success"},
		{"server error", 500, "boom: CUDA out of memory\n", "upstream_error"},
		{"unavailable", 503, `{"error":"model not ready"}`, "upstream_error"},
		{"bad request", 400, `{"error":"unexpected shape for input 'input'"}`, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/models/tiny/infer" || r.Method != "POST" {
					http.Error(w, "wrong path "+r.URL.Path, http.StatusTeapot)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Upstream", "triton")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			f, _ := frontFor(t, up.URL, upstream.Config{}, Options{})
			r := do(t, "POST", f.url+"/v2/models/tiny/infer", tinyRequest, http.Header{"Content-Type": {"application/json"}})
			if r.status != tt.status || string(r.body) != tt.body || r.header.Get("X-Upstream") != "triton" {
				t.Fatalf("got %d %q (X-Upstream %q), want %d %q", r.status, r.body, r.header.Get("X-Upstream"), tt.status, tt.body)
			}
			if got := requests(t, f.reg, tt.outcome); got != 1 {
				t.Fatalf("requests_total{outcome=%q} = %g, want 1", tt.outcome, got)
			}
			conf, _ := testenv.MetricValue(t, f.reg, "edgeloop_inference_confidence", map[string]string{"model": "tiny"})
			if want := map[bool]float64{true: 1, false: 0}[tt.outcome == "success"]; conf != want {
				t.Fatalf("confidence histogram count = %g, want %g", conf, want)
			}
		})
	}
}

// TestUpstreamByteForByte compares a response through the front with the same request sent to
// the upstream front directly.
func TestUpstreamByteForByte(t *testing.T) {
	up, upTS := serve(t, testConfig(), Options{})
	up.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "1"))
	f, _ := frontFor(t, upTS.URL, upstream.Config{}, Options{})
	h := http.Header{"Content-Type": {"application/json"}}
	direct := do(t, "POST", upTS.URL+"/v2/models/tiny/infer", tinyRequest, h)
	via := do(t, "POST", f.url+"/v2/models/tiny/infer", tinyRequest, h)
	if direct.status != 200 || via.status != 200 || string(direct.body) != string(via.body) {
		t.Fatalf("direct %d %s\nvia front %d %s", direct.status, direct.body, via.status, via.body)
	}
	if n, _ := testenv.MetricValue(t, f.reg, "edgeloop_inference_confidence", map[string]string{"model": "tiny"}); n != 2 {
		t.Fatalf("confidence count = %g, want 2 (two rows scored from the upstream response)", n)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	f, _ := frontFor(t, up.URL, upstream.Config{Timeout: 100 * time.Millisecond}, Options{})
	r := do(t, "POST", f.url+"/v2/models/tiny/infer", tinyRequest, nil)
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", r.status, r.body)
	}
	if msg := errorOf(t, r); !strings.Contains(msg, "did not answer within 100ms") {
		t.Fatalf("error %q", msg)
	}
	if got := requests(t, f.reg, "upstream_error"); got != 1 {
		t.Fatalf("upstream_error = %g", got)
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	f, _ := frontFor(t, "http://"+addr, upstream.Config{}, Options{})
	for _, path := range []string{"/v2/models/tiny/infer", "/v2/models/tiny"} {
		method := map[bool]string{true: "POST", false: "GET"}[strings.HasSuffix(path, "infer")]
		r := do(t, method, f.url+path, tinyRequest, nil)
		if r.status != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502: %s", path, r.status, r.body)
		}
		if msg := errorOf(t, r); !strings.Contains(msg, "connection refused") {
			t.Fatalf("%s: error %q", path, msg)
		}
	}
}

// TestUpstreamClientCancel checks that a client that gives up is counted as canceled, not as
// an upstream error.
func TestUpstreamClientCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// Read the body: a server notices its client going away only after that.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	})
	f, _ := frontFor(t, up.URL, upstream.Config{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", f.url+"/v2/models/tiny/infer", strings.NewReader(tinyRequest))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("request succeeded after cancel")
	}
	// The front finishes the request after the client has gone: wait for it to be observed.
	deadline := time.Now().Add(10 * time.Second)
	for requests(t, f.reg, "canceled") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("canceled = %g, upstream_error = %g", requests(t, f.reg, "canceled"), requests(t, f.reg, "upstream_error"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpstreamTraceContext checks W3C trace context propagation: without tracing the client's
// traceparent passes through; with tracing the upstream sees the front's span, a child in
// the client's trace, and the latency observation carries its exemplar.
func TestUpstreamTraceContext(t *testing.T) {
	const clientParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var mu sync.Mutex
	var seen string
	up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Get("Traceparent")
		mu.Unlock()
		_, _ = w.Write([]byte(`{"outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]}]}`))
	})
	last := func() string { mu.Lock(); defer mu.Unlock(); return seen }
	h := http.Header{"Traceparent": {clientParent}}

	t.Run("pass through", func(t *testing.T) {
		f, _ := frontFor(t, up.URL, upstream.Config{}, Options{})
		if r := do(t, "POST", f.url+"/v2/models/tiny/infer", tinyRequest, h); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		if last() != clientParent {
			t.Fatalf("upstream saw traceparent %q, want the client's %q", last(), clientParent)
		}
	})
	t.Run("front span", func(t *testing.T) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		tracing := &telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}
		f, _ := frontFor(t, up.URL, upstream.Config{}, Options{Tracing: tracing})
		if r := do(t, "POST", f.url+"/v2/models/tiny/infer", tinyRequest, h); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		spans := rec.Ended()
		if len(spans) != 1 {
			t.Fatalf("%d spans ended, want 1", len(spans))
		}
		sc := spans[0].SpanContext()
		want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || last() != want {
			t.Fatalf("upstream saw %q, want the front's span %q in the client's trace", last(), want)
		}
		mfs, err := f.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() != "edgeloop_inference_duration_seconds" {
				continue
			}
			h := mf.GetMetric()[0].GetHistogram()
			exemplars := h.GetExemplars() // native histograms keep them here
			for _, b := range h.GetBucket() {
				exemplars = append(exemplars, b.GetExemplar())
			}
			for _, ex := range exemplars {
				if ex != nil && pairValue(ex.GetLabel(), "trace_id") == sc.TraceID().String() {
					found = true
				}
			}
		}
		if !found {
			t.Fatal("no latency exemplar carries the request's trace id")
		}
	})
}
