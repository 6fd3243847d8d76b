//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// BenchmarkCollectorIngest measures the real collector process ingesting into MinIO on
// loopback from 100 concurrent nodes, until every sample is in an uploaded shard, against two
// floors measured on the same MinIO: PutObject of the same bytes as 64 MiB objects (what the
// shards cost at least), and one PutObject per sample (what the collector saves). It reports
// the collector's peak RSS (VmHWM) and the cores each process kept busy. It runs only with
// COLLECTOR_BENCH=1 (about two minutes):
//
//	COLLECTOR_BENCH=1 MINIO=$(scripts/tools.sh path minio) go test -tags integration -run '^$' -bench CollectorIngest -benchtime 1x ./integration/
//
// COLLECTOR_BENCH_GOMEMLIMIT sets the collector's GOMEMLIMIT (such as 450MiB).
func BenchmarkCollectorIngest(b *testing.B) {
	if os.Getenv("COLLECTOR_BENCH") == "" {
		b.Skip("set COLLECTOR_BENCH=1 to run (about a minute against a real MinIO)")
	}
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("sample=%dKiB", size>>10), func(b *testing.B) { benchIngest(b, size) })
	}
}

func benchIngest(b *testing.B, size int) {
	const nodes = 100
	totalBytes := benchBytes()
	perBatch := min(500, (2<<20)/size)
	batches := totalBytes / (perBatch * size)
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("edge-%03d", i)
	}
	tuning := benchTuning
	profile := os.Getenv("COLLECTOR_BENCH_PROFILE") // a file: the collector's CPU and heap profiles during ingest
	if profile != "" {
		tuning += "pprof: true\n"
	}
	tuning += os.Getenv("COLLECTOR_BENCH_CONFIG") // more of the collector's YAML (tracing_bench_test.go)
	e := newCollectorEnv(b, tuning, names...)
	// Build the batches before timing: the nodes' work is not the collector's.
	type batch struct {
		node string
		body []byte
		raw  [][]byte // each sample's bytes, for the per-object floor
	}
	all := make([]batch, batches)
	var sampleBytes int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < batches; i += 2 {
				node := names[i%nodes]
				ss := make([]*sample.Sample, perBatch)
				raw := make([][]byte, perBatch)
				for j := range ss {
					s, err := collectortest.NewSample(node, i*perBatch+j, size)
					if err != nil {
						panic(err)
					}
					ss[j] = s
					rec, _ := s.MarshalRecord()
					raw[j] = rec
					atomic.AddInt64(&sampleBytes, int64(len(rec)))
				}
				all[i] = batch{node: node, body: collectortest.Zstd(b, collectortest.Tar(b, ss...)), raw: raw}
			}
		})
	}
	wg.Wait()
	env := e.env
	if v := os.Getenv("COLLECTOR_BENCH_GOMEMLIMIT"); v != "" { // the collector's soft memory limit, not the benchmark's
		env = append(env[:len(env):len(env)], "GOMEMLIMIT="+v)
	}
	p := startEnv(b, env, "collector", "--config", e.config)
	p.waitFor(b, "collector started", 30*time.Second)

	b.ResetTimer()
	start := time.Now()
	cpu := startCPU(p.cmd.Process.Pid, e.minio.Pid())
	if profile != "" {
		go fetchProfile(b, "http://"+e.addr+"/debug/pprof/profile?seconds=3", fmt.Sprintf("%s.%d", profile, size))
		// Heap profiles during ingest too: what the peak RSS holds (after a GC, so in use).
		go func() {
			for i := range 3 {
				time.Sleep(2 * time.Second)
				fetchProfile(b, "http://"+e.addr+"/debug/pprof/heap?gc=1", fmt.Sprintf("%s.%d.heap%d", profile, size, i))
			}
		}()
	}
	var next atomic.Int64
	var failures atomic.Int64
	for range nodes {
		wg.Go(func() {
			client := &http.Client{}
			for {
				i := int(next.Add(1)) - 1
				if i >= batches {
					return
				}
				for {
					req, _ := http.NewRequest(http.MethodPost, "http://"+e.addr+"/v1/samples", bytes.NewReader(all[i].body))
					req.Header.Set("Content-Type", "application/x-tar")
					req.Header.Set("Content-Encoding", "zstd")
					req.Header.Set("Authorization", "Bearer "+collectortest.Token(all[i].node))
					resp, err := client.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
					}
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	ingested := time.Since(start)
	for e.metric("edgeloop_collector_wal_records") != 0 {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	ingestCPU := cpu.stop()
	b.StopTimer()
	uploadSeconds, uploads := e.metric("edgeloop_collector_shard_upload_duration_seconds_sum"), e.metric("edgeloop_collector_shard_upload_duration_seconds_count")
	b.Logf("%d shards uploaded, %.2f s each on average, %.0f MB/s per upload", int(uploads), uploadSeconds/uploads, float64(sampleBytes)/uploadSeconds/1e6)
	rss := vmHWM(p.cmd.Process.Pid)
	p.stop(b)

	// Floor 1: the same bytes as 64 MiB objects, two at a time (the uploader's concurrency).
	ctx := context.Background()
	obj := make([]byte, 64<<20)
	n := int((sampleBytes + int64(len(obj)) - 1) / int64(len(obj)))
	var next2 atomic.Int64
	fstart := time.Now()
	cpu = startCPU(e.minio.Pid())
	for range 2 {
		wg.Go(func() {
			for {
				i := next2.Add(1) - 1
				if int(i) >= n {
					return
				}
				if err := e.bucket.Put(ctx, "floor/large/"+strconv.FormatInt(i, 10), bytes.NewReader(obj), int64(len(obj))); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	largeRate := float64(n*len(obj)) / time.Since(fstart).Seconds()
	floorCPU := cpu.stop()
	// Floor 2: one object per sample, 100 at a time, for a subset of the samples.
	var objs [][]byte
	for _, bt := range all {
		objs = append(objs, bt.raw...)
		if len(objs) >= 4000 {
			break
		}
	}
	var next3 atomic.Int64
	ostart := time.Now()
	for range nodes {
		wg.Go(func() {
			for {
				i := next3.Add(1) - 1
				if int(i) >= len(objs) {
					return
				}
				if err := e.bucket.Put(ctx, "floor/each/"+strconv.FormatInt(i, 10), bytes.NewReader(objs[i]), int64(len(objs[i]))); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	perObjectRate := float64(len(objs)) / time.Since(ostart).Seconds()

	samples := float64(batches * perBatch)
	rate := float64(sampleBytes) / elapsed.Seconds()
	b.ReportMetric(samples/elapsed.Seconds(), "samples/s")
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(float64(sampleBytes)/ingested.Seconds()/1e6, "ingest-MB/s")
	b.ReportMetric(largeRate/1e6, "floor-large-MB/s")
	b.ReportMetric(rate/largeRate, "x-large-floor")
	b.ReportMetric(perObjectRate, "floor-objects/s")
	b.ReportMetric(samples/elapsed.Seconds()/perObjectRate, "x-per-object")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(failures.Load()), "retries")
	// Where the two cores went, in cores busy on average: the CPU is what the collector has to
	// share with MinIO on one machine.
	b.ReportMetric(ingestCPU[0], "collector-cores")
	b.ReportMetric(ingestCPU[1], "minio-cores")
	b.ReportMetric(ingestCPU[2], "nodes-cores")
	b.ReportMetric(floorCPU[0], "floor-minio-cores")
	b.ReportMetric(floorCPU[1], "floor-client-cores")
}

// cpuMeter measures the CPU time of processes and of this one over an interval.
type cpuMeter struct {
	pids  []int
	start []time.Duration // per pid, then this process
	at    time.Time
}

// startCPU starts measuring pids and this process.
func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, at: time.Now()}
	m.start = m.read()
	return m
}

// stop returns each process's average number of busy cores since startCPU, pids first, this
// process last.
func (m *cpuMeter) stop() []float64 {
	end, wall := m.read(), time.Since(m.at)
	cores := make([]float64, len(end))
	for i := range end {
		cores[i] = float64(end[i]-m.start[i]) / float64(wall)
	}
	return cores
}

func (m *cpuMeter) read() []time.Duration {
	var out []time.Duration
	for _, pid := range m.pids {
		out = append(out, procCPU(pid))
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return append(out, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
}

// procCPU is the user and system time process pid has used, from /proc (-1 when unreadable).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after it are space-separated,
	// utime and stime being the 14th and 15th of the line, in clock ticks (100 per second on
	// Linux, USER_HZ).
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return -1
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}

// vmHWM is the peak resident set of process pid in bytes, from /proc.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// benchTuning is the production shard size with a short max_age: the run ends when the last,
// partial shard is uploaded, which waits max_age after its first record, a latency that
// says nothing of throughput (at 1s it was a third of the 64 KiB run).
const benchTuning = `wal:
  segment_bytes: 67108864
shards:
  target_bytes: 67108864
  max_age: 200ms
`

// fetchProfile saves one of the collector's profiles (pprof on) to file.
func fetchProfile(b *testing.B, url, file string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Logf("profile: %v", err)
	}
}

// benchBytes is how many bytes of samples the benchmark sends: COLLECTOR_BENCH_MIB, default
// 1 GiB. Less is a burst that MinIO absorbs faster than it sustains (384 MiB measured floors
// of 370-460 MB/s, 1 GiB 285-345) and that the pipeline's fill and drain (the first shard
// filling, the last one waiting max_age and uploading alone) take a large part of.
func benchBytes() int {
	if v, err := strconv.Atoi(os.Getenv("COLLECTOR_BENCH_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 1 << 30
}
