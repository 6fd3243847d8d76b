package retrain

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// TestJobTrace drives a job through its dataset and train phases (the backend fails it) with
// a span recorder: the job's span has one child per phase, and the dataset span names the
// dataset's shards.
func TestJobTrace(t *testing.T) {
	cfg, fc := testConfig(t)
	shards := []string{"samples/fashion/3/dt=2026-11-29/hour=10/c0-0a1b2c3d-00000000000000000001.tar",
		"samples/fashion/3/dt=2026-11-29/hour=10/c1-0a1b2c3e-00000000000000000007.tar"}
	for _, k := range shards {
		p := filepath.Join(fc.bucket, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 1024), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fc.mu.Lock()
	fc.shards = shards
	fc.mu.Unlock()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := newFakeBackend()
	ended := make(chan Job, 1)
	c, err := New(cfg, Options{Backend: b, Logger: slog.New(slog.DiscardHandler), Tracing: telemetry.TracingWith(tp),
		OnJobEnd: func(j Job) { ended <- j }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	e := &testEnv{url: "http://" + c.Addr()}
	if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, ManualRequest{Reason: "test"}); code != 202 {
		t.Fatalf("manual retrain: %d %s", code, body)
	}
	spec := waitStarted(t, b)
	b.finish(spec.ID, jobs.Status{State: jobs.Failed, Message: "exit status 1"})
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		t.Fatal("job did not end")
	}

	var job sdktrace.ReadOnlySpan
	phases := map[string]sdktrace.ReadOnlySpan{}
	for deadline := time.Now().Add(5 * time.Second); job == nil; time.Sleep(10 * time.Millisecond) {
		for _, s := range rec.Ended() {
			if s.Name() == "retrain.job" {
				job = s
			} else {
				phases[s.Name()] = s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retrain.job span ended; spans: %v", phases)
		}
	}
	a := map[string]any{}
	for _, kv := range job.Attributes() {
		a[string(kv.Key)] = kv.Value.AsInterface()
	}
	if a["edgeloop.job.id"] != spec.ID || a["edgeloop.model"] != "fashion" || a["edgeloop.job.result"] != string(PhaseFailed) {
		t.Errorf("job span attributes %v; want job %s, model fashion, result failed", a, spec.ID)
	}
	for _, name := range []string{"retrain.job.dataset", "retrain.job.train"} {
		s, ok := phases[name]
		if !ok {
			t.Errorf("no %s span; spans: %v", name, phases)
			continue
		}
		if s.Parent().SpanID() != job.SpanContext().SpanID() {
			t.Errorf("%s: parent %s; want the job's span %s", name, s.Parent().SpanID(), job.SpanContext().SpanID())
		}
	}
	if s, ok := phases["retrain.job.dataset"]; ok {
		var keys []string
		var count int64
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "edgeloop.dataset.shard_keys":
				keys = kv.Value.AsStringSlice()
			case "edgeloop.dataset.shards":
				count = kv.Value.AsInt64()
			}
		}
		if count != 2 || len(keys) != 2 || keys[0] != shards[0] || keys[1] != shards[1] {
			t.Errorf("dataset span: %d shards %v; want %v", count, keys, shards)
		}
	}
}
