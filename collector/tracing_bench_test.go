package collector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// BenchmarkIngestTracing measures the collector's CPU per 4 KiB sample, in process, with
// tracing off and on (docs/benchmarks.md, "Tracing overhead"): batches of 200 samples posted
// by 8 clients, into a WAL on disk and shards in a directory bucket, until every sample is in
// an uploaded shard. "on" exports over OTLP/HTTP to a receiver in the benchmark at the default
// sample_ratio (0.1) with batches that carry no trace; "on-traced" sends every batch in a
// sampled trace, as nodes whose own tracing samples everything would, so every batch has its
// spans. cpu-µs/sample is the process's user and system time over the timed part. Run it
// with a fixed count, alternating the modes:
//
//	go test -run '^$' -bench IngestTracing -benchtime 150x -count 6 ./collector/
func BenchmarkIngestTracing(b *testing.B) {
	for _, mode := range []string{"off", "on", "on-traced"} {
		b.Run("tracing="+mode, func(b *testing.B) { benchIngestTracing(b, mode) })
	}
}

func benchIngestTracing(b *testing.B, mode string) {
	const perBatch, size, clients = 200, 4 << 10, 8
	dir := b.TempDir()
	cfg := DefaultConfig()
	cfg.Instance = "bench"
	cfg.Web.Listen = "127.0.0.1:0"
	cfg.Auth.TokensFile = collectortest.TokensFile(b, dir, "edge-a")
	cfg.WAL.Dir = dir + "/wal"
	cfg.Shards.MaxAge = 200 * time.Millisecond
	bucket, err := objstore.Open(context.Background(), "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Bucket: bucket}
	if mode != "off" {
		otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		}))
		defer otlp.Close()
		tc := telemetry.DefaultTracingConfig()
		tc.Endpoint = otlp.URL + "/v1/traces"
		tr, err := telemetry.NewTracing(context.Background(), tc, "edgeloop-collector", "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Shutdown(context.Background())
		opts.Tracing = tr
	}
	srv, err := New(cfg, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	bodies := make([][]byte, b.N)
	for i := range bodies {
		batch := make([]*sample.Sample, perBatch)
		for j := range batch {
			batch[j] = collectortest.Sample(b, "edge-a", i*perBatch+j, size)
		}
		bodies[i] = collectortest.Zstd(b, collectortest.Tar(b, batch...))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	post := func(i int) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/v1/samples", bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Content-Encoding", "zstd")
		req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-a"))
		if mode == "on-traced" {
			req.Header.Set("Traceparent", fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))
		}
		for {
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			time.Sleep(10 * time.Millisecond)
			req.Body = io.NopCloser(bytes.NewReader(bodies[i]))
		}
	}
	work := make(chan int)
	b.ResetTimer()
	cpu0 := processCPU()
	finished := make(chan struct{})
	for range clients {
		go func() {
			defer func() { finished <- struct{}{} }()
			for i := range work {
				post(i)
			}
		}()
	}
	for i := range b.N {
		work <- i
	}
	close(work)
	for range clients {
		<-finished
	}
	for srv.WALStats().Records > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cpu := processCPU() - cpu0
	b.StopTimer()
	samples := float64(b.N * perBatch)
	b.ReportMetric(float64(cpu.Microseconds())/samples, "cpu-µs/sample")
	b.ReportMetric(samples/b.Elapsed().Seconds(), "samples/s")
}

// processCPU is the process's user and system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
