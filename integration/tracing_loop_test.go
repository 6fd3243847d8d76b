//go:build integration

package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// otlpReceiver is an OTLP/HTTP traces endpoint in the test: it decodes each export request
// (protobuf, gzip or not) and keeps the spans with their service name.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[*tracepb.Span]string
	requests int
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces, application/x-protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.requests++
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				o.spans = append(o.spans, s)
				o.services[s] = service
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// TestTracingOTLP runs the collector binary with tracing exported over OTLP/HTTP to a
// receiver in the test, and sends it a batch in a node's trace whose samples carry their
// capture traces: the receiver must get the ingest span in the node's trace and the shard's
// span linking to the capture traces (docs/tracing.md).
func TestTracingOTLP(t *testing.T) {
	recv := &otlpReceiver{services: map[*tracepb.Span]string{}}
	otlp := httptest.NewServer(recv)
	defer otlp.Close()
	m := testenv.StartMinIO(t)
	s3 := objstore.DefaultS3Config()
	s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, true, "edgeloop"
	if err := objstore.CreateS3Bucket(context.Background(), s3); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokens := collectortest.TokensFile(t, dir, "edge-t")
	addr := freeAddr(t)
	config := filepath.Join(dir, "collector.yaml")
	content := fmt.Sprintf(`instance: traced
listen: %q
log:
  format: json
auth:
  tokens_file: %s
bucket: s3://edgeloop?endpoint=%s&insecure=true
wal:
  dir: %s
shards:
  max_age: 500ms
tracing:
  endpoint: %s/v1/traces
  sample_ratio: 1
`, addr, tokens, m.Endpoint, filepath.Join(dir, "wal"), otlp.URL)
	if err := os.WriteFile(config, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEnv(t, []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}, "collector", "--config", config)
	p.waitFor(t, "collector started", 30*time.Second)

	const n = 20
	captures := map[string]bool{}
	var batch []*sample.Sample
	for i := range n {
		tid := fmt.Sprintf("%032x", 0x5eed000+i)
		captures[tid] = true
		batch = append(batch, collectortest.TracedSample(t, "edge-t", i, 800, tid))
	}
	const nodeTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/samples", bytes.NewReader(collectortest.Zstd(t, collectortest.Tar(t, batch...))))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-t"))
	req.Header.Set("Traceparent", "00-"+nodeTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("post: %d", resp.StatusCode)
	}
	(&collectorEnv{addr: addr}).waitDrained(t, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // the shard's span ends after the log is acked
	// SIGTERM flushes the batch span processor.
	if code := p.stop(t); code != 0 {
		t.Fatalf("collector exited %d", code)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	byName := map[string][]*tracepb.Span{}
	for _, s := range recv.spans {
		byName[s.Name] = append(byName[s.Name], s)
		if recv.services[s] != "edgeloop-collector" {
			t.Errorf("span %s from service %q; want edgeloop-collector", s.Name, recv.services[s])
		}
	}
	t.Logf("%d export requests, spans: %d ingest, %d wal.append, %d shard, %d shard.build, %d shard.upload, %d shard.publish",
		recv.requests, len(byName["collector.ingest"]), len(byName["collector.wal.append"]), len(byName["collector.shard"]),
		len(byName["collector.shard.build"]), len(byName["collector.shard.upload"]), len(byName["collector.shard.publish"]))
	ingest := byName["collector.ingest"]
	if len(ingest) != 1 || hex.EncodeToString(ingest[0].TraceId) != nodeTrace || hex.EncodeToString(ingest[0].ParentSpanId) != "00f067aa0ba902b7" {
		t.Fatalf("ingest spans %v; want one in the node's trace %s under its span 00f067aa0ba902b7", ingest, nodeTrace)
	}
	attrs := map[string]int64{}
	for _, kv := range ingest[0].Attributes {
		attrs[kv.Key] = kv.GetValue().GetIntValue()
	}
	if attrs["edgeloop.batch.samples"] != n || attrs["edgeloop.batch.accepted"] != n || attrs["edgeloop.batch.duplicates"] != 0 || attrs["edgeloop.batch.bytes"] == 0 {
		t.Errorf("ingest span attributes %v; want %d samples accepted, 0 duplicates, bytes", attrs, n)
	}
	if w := byName["collector.wal.append"]; len(w) != 1 || !bytes.Equal(w[0].ParentSpanId, ingest[0].SpanId) {
		t.Errorf("wal.append spans %v; want one under the ingest span", w)
	}
	shards := byName["collector.shard"]
	if len(shards) != 1 {
		t.Fatalf("%d shard spans; want 1", len(shards))
	}
	if got := len(shards[0].Links); got != 16 {
		t.Errorf("shard span has %d links; want 16 (the first samples' capture traces)", got)
	}
	for _, l := range shards[0].Links {
		if !captures[hex.EncodeToString(l.TraceId)] {
			t.Errorf("link to trace %x, not a capture trace of the batch", l.TraceId)
		}
	}
	for _, name := range []string{"collector.shard.build", "collector.shard.upload", "collector.shard.publish"} {
		if s := byName[name]; len(s) == 0 || !bytes.Equal(s[0].TraceId, shards[0].TraceId) {
			t.Errorf("%s spans %d; want one in the shard's trace", name, len(s))
		}
	}
}
