package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/shard"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestTracing sends a batch in a node's trace, its samples captured in traces of their own,
// through a collector on MinIO (so that the shard is published under the hour's lock), then
// the batch again: the ingest spans continue the node's trace and count samples, bytes and
// duplicates; the WAL append is a child of the first; the shard's trace has its build, upload
// and publish spans and links to the first shard.MaxLinks capture traces.
func TestTracing(t *testing.T) {
	bucket := minioBucket(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := testConfig(t, "edge-a")
	srv, err := New(cfg, Options{Bucket: bucket, Tracing: telemetry.TracingWith(tp)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	const n = 40
	captures := map[string]string{} // sample key → its capture trace
	var batch []*sample.Sample
	for i := range n {
		tid := fmt.Sprintf("%032x", 0xabc000+i)
		s := collectortest.TracedSample(t, "edge-a", i, 600, tid)
		captures[s.Meta.Key] = tid
		batch = append(batch, s)
	}
	body := collectortest.Zstd(t, collectortest.Tar(t, batch...))
	const nodeTrace = "0af7651916cd43dd8448eb211c80319c"
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/v1/samples", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Content-Encoding", "zstd")
		req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-a"))
		req.Header.Set("Traceparent", "00-"+nodeTrace+"-b7ad6b7169203331-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r ingestResult
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
			t.Fatalf("post: status %d", resp.StatusCode)
		}
	}
	send()
	waitDrained(t, srv)
	send() // every sample a duplicate now

	var byName map[string][]sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		byName = map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			byName[s.Name()] = append(byName[s.Name()], s)
		}
		if len(byName["collector.shard"]) >= 1 && len(byName["collector.ingest"]) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans ended: %v", byName)
		}
	}

	ingests := byName["collector.ingest"]
	for i, want := range []struct{ accepted, duplicates int64 }{{n, 0}, {0, n}} {
		s := ingests[i]
		a := attrs(s)
		if s.SpanContext().TraceID().String() != nodeTrace || s.Parent().SpanID().String() != "b7ad6b7169203331" || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("ingest span %d: trace %s parent %s kind %s; want the node's trace %s, parent b7ad6b7169203331, server",
				i, s.SpanContext().TraceID(), s.Parent().SpanID(), s.SpanKind(), nodeTrace)
		}
		if a["edgeloop.batch.samples"].AsInt64() != n || a["edgeloop.batch.accepted"].AsInt64() != want.accepted ||
			a["edgeloop.batch.duplicates"].AsInt64() != want.duplicates || a["edgeloop.batch.bytes"].AsInt64() != int64(len(body)) ||
			a["edgeloop.node"].AsString() != "edge-a" || a["http.response.status_code"].AsInt64() != 200 {
			t.Errorf("ingest span %d attributes %v; want %d samples, %+v, %d bytes, node edge-a, status 200", i, a, n, want, len(body))
		}
	}
	appends := byName["collector.wal.append"]
	if len(appends) != 2 || appends[0].Parent().SpanID() != ingests[0].SpanContext().SpanID() || attrs(appends[0])["edgeloop.wal.records"].AsInt64() != n {
		t.Errorf("WAL append spans: %d, first %v under %s; want 2 (one per batch), the first of %d records under the first ingest span %s",
			len(appends), attrs(appends[0]), appends[0].Parent().SpanID(), n, ingests[0].SpanContext().SpanID())
	}

	sh := byName["collector.shard"][0]
	a := attrs(sh)
	if a["edgeloop.shard.samples"].AsInt64() != n || a["edgeloop.shard.kept"].AsInt64() != n || a["edgeloop.shard.links"].AsInt64() != shard.MaxLinks || sh.Parent().IsValid() {
		t.Errorf("shard span: attributes %v, parent %v; want %d samples kept, %d links, a root span", a, sh.Parent(), n, shard.MaxLinks)
	}
	if len(sh.Links()) != shard.MaxLinks {
		t.Fatalf("shard span has %d links; want %d (the first samples' capture traces)", len(sh.Links()), shard.MaxLinks)
	}
	seen := map[string]bool{}
	for _, l := range sh.Links() {
		var key string
		for _, kv := range l.Attributes {
			if kv.Key == "edgeloop.sample.key" {
				key = kv.Value.AsString()
			}
		}
		if tid := l.SpanContext.TraceID().String(); captures[key] != tid || seen[key] {
			t.Errorf("link to trace %s for sample %q (seen before: %v); want the sample's capture trace %s", tid, key, seen[key], captures[key])
		}
		seen[key] = true
	}
	for _, name := range []string{"collector.shard.build", "collector.shard.upload", "collector.shard.publish"} {
		spans := byName[name]
		if len(spans) == 0 {
			t.Errorf("no %s span", name)
			continue
		}
		if spans[0].SpanContext().TraceID() != sh.SpanContext().TraceID() {
			t.Errorf("%s span in trace %s; want the shard's %s", name, spans[0].SpanContext().TraceID(), sh.SpanContext().TraceID())
		}
	}
	if up, pub := byName["collector.shard.upload"], byName["collector.shard.publish"]; len(up) > 0 && len(pub) > 0 && pub[0].Parent().SpanID() != up[0].SpanContext().SpanID() {
		t.Errorf("publish span's parent %s; want the upload attempt %s", pub[0].Parent().SpanID(), up[0].SpanContext().SpanID())
	}
	if b := byName["collector.shard.build"]; len(b) > 0 && (b[0].EndTime().Before(b[0].StartTime()) || attrs(b[0])["edgeloop.shard.cut_by"].AsString() != "age") {
		t.Errorf("build span %v–%v, %v; want a span ending when the shard was cut by age", b[0].StartTime(), b[0].EndTime(), attrs(b[0]))
	}
}
