//go:build integration

package integration

import (
	"fmt"
	"net/http/httptest"
	"os"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// BenchmarkCollectorTracing runs BenchmarkCollectorIngest's 4 KiB case with tracing off and on
// (OTLP/HTTP to a receiver in the test, the default sample_ratio of 0.1), alternating, rounds
// times: the overhead of tracing is the ratio of the collector's CPU per sample, on against off
// (docs/benchmarks.md, "Tracing overhead"). COLLECTOR_BENCH=1, as for the ingest benchmark;
// COLLECTOR_BENCH_MIB sets each run's size.
//
//	COLLECTOR_BENCH=1 COLLECTOR_BENCH_MIB=512 MINIO=$(scripts/tools.sh path minio) go test -tags integration -run '^$' -bench CollectorTracing -benchtime 1x ./integration/
func BenchmarkCollectorTracing(b *testing.B) {
	if os.Getenv("COLLECTOR_BENCH") == "" {
		b.Skip("set COLLECTOR_BENCH=1 to run (a few minutes against a real MinIO)")
	}
	recv := &otlpReceiver{services: map[*tracepb.Span]string{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	const rounds = 2
	for round := range rounds {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("round=%d/tracing=%v", round, on), func(b *testing.B) {
				if on {
					b.Setenv("COLLECTOR_BENCH_CONFIG", "tracing:\n  endpoint: "+srv.URL+"/v1/traces\n")
				}
				recv.mu.Lock()
				before := len(recv.spans)
				recv.mu.Unlock()
				benchIngest(b, 4<<10)
				recv.mu.Lock()
				b.ReportMetric(float64(len(recv.spans)-before), "spans")
				recv.mu.Unlock()
			})
		}
	}
}
