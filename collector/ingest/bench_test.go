package ingest_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// BenchmarkIngestBatch measures the handler's CPU per sample (the process's, from getrusage,
// so that time waiting for a shared fsync does not count) for batches of 3 samples of 4 KiB,
// a fleet's batch at one sample a second and batch_delay 2s, and of 500, the ingest
// benchmark's, from 16 concurrent clients, into a WAL on disk. Each batch is distinct, so no
// answer is a duplicate. It calls the handler directly: no network, no TLS, no body deadline.
func BenchmarkIngestBatch(b *testing.B) {
	for _, n := range []int{3, 500} {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) { benchIngestBatch(b, n) })
	}
}

func benchIngestBatch(b *testing.B, perBatch int) {
	dir := b.TempDir()
	const nodes = 16
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("edge-%02d", i)
	}
	a, err := auth.New(auth.Config{TokensFile: collectortest.TokensFile(b, dir, names...)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	wal, err := spool.Open(filepath.Join(dir, "wal"), spool.DefaultConfig(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer wal.Close()
	h, err := ingest.New(ingest.DefaultConfig(), ingest.Options{WAL: wal})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux, a)
	type batch struct {
		node string
		body []byte
	}
	batches := make([]batch, b.N)
	for i := range batches {
		node := names[i%nodes]
		ss := make([]*sample.Sample, 0, perBatch)
		for j := range perBatch {
			s, err := collectortest.NewSample(node, i*perBatch+j, 4096)
			if err != nil {
				b.Fatal(err)
			}
			ss = append(ss, s)
		}
		batches[i] = batch{node: node, body: collectortest.Zstd(b, collectortest.Tar(b, ss...))}
	}
	next := make(chan batch, len(batches))
	for _, bt := range batches {
		next <- bt
	}
	close(next)
	b.SetParallelism(nodes / 2) // 16 clients on 2 cores
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bt := <-next
			req := httptest.NewRequest(http.MethodPost, "/v1/samples", bytes.NewReader(bt.body))
			req.Header.Set("Content-Type", "application/x-tar")
			req.Header.Set("Content-Encoding", "zstd")
			req.Header.Set("Authorization", "Bearer "+collectortest.Token(bt.node))
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("answer %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N*perBatch), "cpu-µs/sample")
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
