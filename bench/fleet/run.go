package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/exporter/sender"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
	"github.com/edgeloop/edgeloop/internal/token"
)

// Summary is the run's result, printed and written as JSON (-out).
type Summary struct {
	Started string `json:"started"`
	Host    Host   `json:"host"`
	// Nodes, Rate (samples/s per node), SampleBytes and the sender's batching, as run.
	Nodes           int     `json:"nodes"`
	Rate            float64 `json:"rate_per_node"`
	SampleBytes     int     `json:"sample_bytes"`
	BatchDelay      string  `json:"batch_delay"`
	MaxBatchSamples int     `json:"max_batch_samples"`
	Queue           string  `json:"queue"`  // memory or spool
	Sender          string  `json:"sender"` // real (exporter/sender) or lite
	Network         string  `json:"network"`
	// MeasuredSeconds is the window after the ramp in which the rates, latencies and CPU
	// below are measured.
	MeasuredSeconds float64 `json:"measured_seconds"`
	// Offered and Acknowledged count samples generated and acknowledged in the window;
	// AckedPerSecond is the latter's rate.
	Offered        int64   `json:"offered"`
	Acknowledged   int64   `json:"acknowledged"`
	AckedPerSecond float64 `json:"acked_per_second"`
	// SampleLatency is from a sample's append to its acknowledgement: it includes the
	// sender's batch_delay. BatchLatency is from the sender taking a batch (its last Peek)
	// to its acknowledgement: encoding, the request, the collector's answer and any retries.
	SampleLatency Latency `json:"sample_latency_s"`
	BatchLatency  Latency `json:"batch_latency_s"`
	// Batches and Retries are the senders' requests: answered 200, and failed (then retried);
	// Errors the failures by reason (edgeloop_sender_errors_total). Whole run.
	Batches   float64            `json:"batches"`
	Retries   float64            `json:"retries"`
	Errors    map[string]float64 `json:"errors,omitempty"`
	Collector ProcSummary        `json:"collector"`
	MinIO     ProcSummary        `json:"minio"`
	Simulator ProcSummary        `json:"simulator"`
	// DrainSeconds is how long after the arrivals stopped the senders' queues took to empty;
	// CollectorDrainSeconds then the collector's WAL and pending shards.
	DrainSeconds          float64 `json:"drain_seconds"`
	CollectorDrainSeconds float64 `json:"collector_drain_seconds"`
	// Undrained says what was left when a drain timed out; empty when everything drained.
	Undrained string `json:"undrained,omitempty"`
	// Shed are samples not queued because the fleet's queues held -max-queued-bytes: an edge
	// spool that is full drops samples too. Whole run.
	Shed         int64        `json:"shed"`
	Conservation Conservation `json:"conservation"`
	// Progress are the progress lines' numbers.
	Progress []Tick `json:"progress"`
}

// Host is the machine the run shared.
type Host struct {
	CPUs      int     `json:"cpus"`
	FDLimit   uint64  `json:"fd_limit"`
	PortRange string  `json:"ephemeral_ports"`
	LoadStart float64 `json:"load1_start"`
	LoadMax   float64 `json:"load1_max"`
	LoadEnd   float64 `json:"load1_end"`
}

// ProcSummary is a process's cost: CPU in the measured window, memory and descriptors.
type ProcSummary struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	Cores      float64 `json:"cores"` // CPUSeconds over the window: average busy cores
	// RSSPeakMiB is VmHWM at the end (the process's peak); RSSMaxMiB the largest VmRSS the
	// progress lines saw.
	RSSPeakMiB float64 `json:"rss_peak_mib"`
	RSSMaxMiB  float64 `json:"rss_max_mib"`
	FDsMax     int     `json:"fds_max,omitempty"`
	// RunqueueWaitSeconds is the time its threads spent runnable but waiting for a CPU in
	// the window (schedstat; threads that exited in it are not counted): against
	// CPUSeconds, how much the machine's other load held it back.
	RunqueueWaitSeconds float64 `json:"runqueue_wait_seconds"`
	SocketsMax          int     `json:"sockets_max,omitempty"`
}

// Tick is one progress line.
type Tick struct {
	Seconds        float64 `json:"t"`
	AckedPerSecond float64 `json:"acked_per_second"`
	BatchP50       float64 `json:"batch_p50"`
	BatchP99       float64 `json:"batch_p99"`
	SampleP99      float64 `json:"sample_p99"`
	Retries        float64 `json:"retries"`
	Backlog        int     `json:"backlog"`
	CollectorCores float64 `json:"collector_cores"`
	CollectorRSS   float64 `json:"collector_rss_mib"`
	Sockets        int     `json:"collector_sockets"`
	SimCores       float64 `json:"simulator_cores"`
	Load1          float64 `json:"load1"`
	// CPUPressure is /proc/pressure/cpu's "some avg10": the share of time some runnable task
	// waited for a CPU, the machine's contention.
	CPUPressure float64 `json:"cpu_pressure"`
	// The collector's own gauges: ingest requests being served and waiting for a slot, and its
	// WAL's mean fsync time over the interval.
	Inflight  float64 `json:"collector_inflight"`
	Queued    float64 `json:"collector_queued"`
	WALFsyncS float64 `json:"collector_wal_fsync_mean_s"`
}

// env is what run started or was pointed at.
type env struct {
	url        string // the collector's base URL
	pid        int    // its process id, 0 unknown
	minioPID   int
	bucket     objstore.Bucket
	stop       []func()
	proxyAddrs []string
}

func (e *env) close() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// runner is a node's sender: exporter/sender's or the lite stand-in.
type runner interface {
	Run(ctx context.Context) error
	Close()
}

func nodeName(i int) string { return fmt.Sprintf("node-%05d", i) }

// run starts (or finds) MinIO and the collector, runs the fleet, drains it and checks
// conservation. Progress goes to w.
func run(ctx context.Context, o options, w io.Writer) (*Summary, error) {
	// The progress lines and the log come from two goroutines.
	w = &lockedWriter{w: w}
	logf := func(format string, args ...any) {
		fmt.Fprintf(w, "%s fleet: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
	sum := &Summary{Started: time.Now().UTC().Format(time.RFC3339), Nodes: o.Nodes, Rate: o.Rate, SampleBytes: o.SampleBytes,
		BatchDelay: o.BatchDelay.String(), MaxBatchSamples: o.MaxBatchSamples, Queue: "memory", Network: "loopback", Sender: o.Sender}
	if o.Spool {
		sum.Queue = "spool"
	}
	sum.Host.CPUs = runtime.NumCPU()
	sum.Host.LoadStart = loadAvg()
	lo, hi := portRange()
	sum.Host.PortRange = fmt.Sprintf("%d-%d", lo, hi)
	// A connection per node on each side, besides MinIO's and the files.
	limit, err := raiseFDLimit(uint64(max(65536, 4*o.Nodes+4096)))
	if err != nil {
		return nil, err
	}
	sum.Host.FDLimit = limit
	if need := uint64(o.Nodes + 1024); limit < need {
		logf("warning: RLIMIT_NOFILE is %d, below the %d a connection per node needs; raise it (ulimit -n) or run as root", limit, need)
	}
	if hi-lo+1 < o.Nodes+1024 {
		logf("warning: %d ephemeral ports (%s) for %d nodes: widen net.ipv4.ip_local_port_range", hi-lo+1, sum.Host.PortRange, o.Nodes)
	}

	work := o.Work
	if work == "" {
		if work, err = os.MkdirTemp("", "edgeloop-fleet-"); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		if !o.Keep {
			defer os.RemoveAll(work)
		}
	}
	if work, err = filepath.Abs(work); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	logf("working directory %s", work)
	names := make([]string, o.Nodes)
	for i := range names {
		names[i] = nodeName(i)
	}
	e, err := setUp(ctx, o, work, names, logf)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return nil, err
	}
	if e.minioPID != 0 {
		sum.MinIO.PID = e.minioPID
	}
	sum.Collector.PID = e.pid
	if o.NetFraction > 0 {
		sum.Network = fmt.Sprintf("toxiproxy: %.0f%% of nodes over %d proxies, latency %s±%s, bandwidth %d KB/s, reset %.3g",
			o.NetFraction*100, o.NetGroups, o.NetLatency, o.NetJitter, o.NetBandwidth, o.NetReset)
	}

	// The nodes: a token file each, a queue, the real sender.
	rec := newRecorder()
	reg := &sumRegisterer{}
	tokDir := filepath.Join(work, "tokens")
	if err := os.MkdirAll(tokDir, 0o700); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	nodes := make([]*node, o.Nodes)
	senders := make([]runner, o.Nodes)
	var enc *zstd.Encoder
	if o.Sender == "lite" {
		// One encoder for the fleet, the real sender's; EncodeAll needs none of its goroutines.
		if enc, err = sample.NewBatchEncoder(runtime.GOMAXPROCS(0)); err != nil {
			return nil, fmt.Errorf("fleet: zstd: %w", err)
		}
		defer enc.Close()
	}
	defer func() {
		for _, s := range senders {
			if s != nil {
				s.Close()
			}
		}
	}()
	var spools []*spool.Spool
	defer func() {
		for _, s := range spools {
			_ = s.Close()
		}
	}()
	began := time.Now()
	for i, name := range names {
		tf := filepath.Join(tokDir, name)
		if err := os.WriteFile(tf, []byte(collectortest.Token(name)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		var sp *spool.Spool
		if o.Spool {
			if sp, err = spool.Open(filepath.Join(work, "spools", name), spool.DefaultConfig(), spool.Options{}); err != nil {
				return nil, fmt.Errorf("fleet: spool of %s: %w", name, err)
			}
			spools = append(spools, sp)
		}
		nodes[i] = newNode(name, rec, sp, o.MaxQueuedBytes)
		cfg := sender.DefaultConfig()
		cfg.URL = e.url
		if o.NetFraction > 0 && float64(i%1000) < o.NetFraction*1000 {
			cfg.URL = "http://" + e.proxyAddrs[i%len(e.proxyAddrs)]
		}
		cfg.TokenFile = tf
		cfg.BatchDelay, cfg.MaxBatchSamples, cfg.Timeout = o.BatchDelay, o.MaxBatchSamples, o.Timeout
		cfg.InitialBackoff, cfg.MaxBackoff, cfg.MaxRate = o.InitialBackoff, o.MaxBackoff, o.MaxRate
		cfg.DeadLetterDir, cfg.DeadLetterMaxBytes = filepath.Join(work, "deadletter"), 0
		if o.Sender == "lite" {
			senders[i] = newLiteSender(cfg, nodes[i], name, collectortest.Token(name), enc, rec, o.Seed+uint64(i))
		} else {
			s, err := sender.New(cfg, nodes[i], sender.Options{Node: name, Registerer: reg})
			if err != nil {
				return nil, fmt.Errorf("fleet: %s: %w", name, err)
			}
			senders[i] = s
		}
	}
	logf("%d nodes ready in %s; ramp %s, then %s measured", o.Nodes, time.Since(began).Round(time.Millisecond), o.Ramp, o.Duration)

	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	arriveCtx, stopArrive := context.WithCancel(ctx)
	defer stopArrive()
	var sendWG, arriveWG sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	start := time.Now()
	for i, n := range nodes {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			if err := senders[i].Run(sendCtx); err != nil {
				fail(fmt.Errorf("fleet: %s: %w", n.name, err))
			}
		}()
		arriveWG.Add(1)
		go func() {
			defer arriveWG.Done()
			// Spread the starts over the ramp, so the fleet does not send in lockstep.
			delay := time.Duration(float64(o.Ramp) * float64(i) / float64(o.Nodes))
			select {
			case <-arriveCtx.Done():
				return
			case <-time.After(delay):
			}
			rng := rand.New(rand.NewPCG(o.Seed, uint64(i)))
			if err := n.arrive(arriveCtx, rng, o.Rate, o.SampleBytes); err != nil {
				fail(fmt.Errorf("fleet: %s: %w", n.name, err))
			}
		}()
	}

	// Progress lines until the drain ends.
	backlog := func() int {
		b := 0
		for _, n := range nodes {
			b += n.backlog()
		}
		return b
	}
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	var progMu sync.Mutex
	go func() {
		defer close(progDone)
		t := time.NewTicker(o.Progress)
		defer t.Stop()
		lastT, lastAcked := time.Now(), rec.acked.Load()
		lastCol, _ := readProc(e.pid, false)
		lastSelf, _ := readProc(os.Getpid(), false)
		var lastFsyncSum, lastFsyncN float64
		for {
			select {
			case <-progStop:
				return
			case <-t.C:
			}
			now := time.Now()
			dt := now.Sub(lastT).Seconds()
			acked := rec.acked.Load()
			hs, hb := rec.tick()
			tk := Tick{Seconds: now.Sub(start).Seconds(), AckedPerSecond: float64(acked-lastAcked) / dt,
				BatchP50: hb.quantile(0.5), BatchP99: hb.quantile(0.99), SampleP99: hs.quantile(0.99), Backlog: backlog(), Load1: loadAvg()}
			tk.CPUPressure = cpuPressure()
			if m, err := scrape(ctx, e.url+"/metrics"); err == nil {
				tk.Inflight, tk.Queued = m["edgeloop_collector_inflight_requests"], m["edgeloop_collector_queued_requests"]
				fs, fn := m["edgeloop_collector_wal_fsync_duration_seconds_sum"], m["edgeloop_collector_wal_fsync_duration_seconds_count"]
				if fn > lastFsyncN {
					tk.WALFsyncS = (fs - lastFsyncSum) / (fn - lastFsyncN)
				}
				lastFsyncSum, lastFsyncN = fs, fn
			}
			if o.Sender == "lite" {
				tk.Retries = float64(rec.retries.Load())
			} else {
				tk.Retries = reg.sums()["edgeloop_sender_batches_total{outcome=failed}"]
			}
			if e.pid != 0 {
				if st, err := readProc(e.pid, true); err == nil {
					tk.CollectorCores = (st.CPUSeconds - lastCol.CPUSeconds) / dt
					tk.CollectorRSS, tk.Sockets = st.RSSMiB, st.Sockets
					lastCol = st
					progMu.Lock()
					sum.Collector.RSSMaxMiB = max(sum.Collector.RSSMaxMiB, st.RSSMiB)
					sum.Collector.FDsMax = max(sum.Collector.FDsMax, st.FDs)
					sum.Collector.SocketsMax = max(sum.Collector.SocketsMax, st.Sockets)
					progMu.Unlock()
				}
			}
			if st, err := readProc(os.Getpid(), false); err == nil {
				tk.SimCores = (st.CPUSeconds - lastSelf.CPUSeconds) / dt
				lastSelf = st
				progMu.Lock()
				sum.Simulator.RSSMaxMiB = max(sum.Simulator.RSSMaxMiB, st.RSSMiB)
				progMu.Unlock()
			}
			if e.minioPID != 0 {
				if st, err := readProc(e.minioPID, false); err == nil {
					progMu.Lock()
					sum.MinIO.RSSMaxMiB = max(sum.MinIO.RSSMaxMiB, st.RSSMiB)
					progMu.Unlock()
				}
			}
			lastT, lastAcked = now, acked
			progMu.Lock()
			sum.Progress = append(sum.Progress, tk)
			sum.Host.LoadMax = max(sum.Host.LoadMax, tk.Load1)
			progMu.Unlock()
			fmt.Fprintf(w, "%s fleet: t=%4.0fs acked/s=%8.0f batch p50=%6.3fs p99=%6.3fs sample p99=%6.3fs retries=%6.0f backlog=%7d | collector %.2f cores %4.0f MiB %5d sockets %3.0f in flight %4.0f queued fsync %.3fs | sim %.2f cores | load %.2f cpu pressure %.0f%%\n",
				now.UTC().Format("15:04:05"), tk.Seconds, tk.AckedPerSecond, tk.BatchP50, tk.BatchP99, tk.SampleP99, tk.Retries, tk.Backlog,
				tk.CollectorCores, tk.CollectorRSS, tk.Sockets, tk.Inflight, tk.Queued, tk.WALFsyncS, tk.SimCores, tk.Load1, tk.CPUPressure)
		}
	}()

	// The measured window.
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	cpu := func() (col, mio, self float64) {
		if st, err := readProc(e.pid, false); err == nil && e.pid != 0 {
			col = st.CPUSeconds
		}
		if st, err := readProc(e.minioPID, false); err == nil && e.minioPID != 0 {
			mio = st.CPUSeconds
		}
		if st, err := readProc(os.Getpid(), false); err == nil {
			self = st.CPUSeconds
		}
		return
	}
	if err := sleep(o.Ramp); err != nil {
		return nil, err
	}
	rec.measured.Store(true)
	w0 := time.Now()
	off0, ack0 := rec.offered.Load(), rec.acked.Load()
	col0, mio0, self0 := cpu()
	colWait0, _ := schedWait(e.pid)
	mioWait0, _ := schedWait(e.minioPID)
	if o.SimCPUProfile != "" {
		f, err := os.Create(o.SimCPUProfile)
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		defer pprof.StopCPUProfile() // also at the window's end, below; a second stop is a no-op
	}
	var profErr chan error
	if o.Pprof != "" && e.pid != 0 {
		profErr = make(chan error, 1)
		at := o.PprofAt
		if at == 0 {
			at = max(o.Duration/2-time.Duration(o.PprofSeconds)*time.Second/2, 0)
		}
		go func() { profErr <- profile(ctx, e.url, o.Pprof, at, o.PprofSeconds) }()
	}
	if err := sleep(o.Duration); err != nil {
		return nil, err
	}
	rec.measured.Store(false)
	window := time.Since(w0).Seconds()
	pprof.StopCPUProfile()
	if o.SimMemProfile != "" {
		if err := writeHeap(o.SimMemProfile); err != nil {
			return nil, err
		}
	}
	col1, mio1, self1 := cpu()
	colWait1, _ := schedWait(e.pid)
	mioWait1, _ := schedWait(e.minioPID)
	sum.Collector.RunqueueWaitSeconds, sum.MinIO.RunqueueWaitSeconds = colWait1-colWait0, mioWait1-mioWait0
	sum.MeasuredSeconds = window
	sum.Offered, sum.Acknowledged = rec.offered.Load()-off0, rec.acked.Load()-ack0
	sum.AckedPerSecond = float64(sum.Acknowledged) / window
	sum.SampleLatency, sum.BatchLatency = rec.windowSample.Load().summary(), rec.windowBatch.Load().summary()
	sum.Collector.CPUSeconds, sum.Collector.Cores = col1-col0, (col1-col0)/window
	sum.MinIO.CPUSeconds, sum.MinIO.Cores = mio1-mio0, (mio1-mio0)/window
	sum.Simulator.CPUSeconds, sum.Simulator.Cores = self1-self0, (self1-self0)/window

	// Drain: arrivals stop; the senders empty their queues; the collector its WAL.
	stopArrive()
	arriveWG.Wait()
	logf("arrivals stopped after %s; draining %d queued samples", time.Since(start).Round(time.Second), backlog())
	d0 := time.Now()
	for backlog() > 0 && time.Since(d0) < o.DrainWait && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	sum.DrainSeconds = time.Since(d0).Seconds()
	left := backlog()
	stopSend()
	sendWG.Wait()
	if left > 0 {
		logf("%d samples still queued after %s: not acknowledged, so not counted", left, o.DrainWait)
	}
	if e.pid != 0 || o.CollectorURL != "" {
		d1 := time.Now()
		for {
			m, err := scrape(ctx, e.url+"/metrics")
			walN, ok1 := m["edgeloop_collector_wal_records"]
			pend, ok2 := m["edgeloop_collector_shards_pending"]
			if err == nil && (!ok1 || !ok2) {
				err = errors.New("no edgeloop_collector_wal_records or edgeloop_collector_shards_pending")
			}
			if err == nil && walN == 0 && pend == 0 {
				break
			} else if time.Since(d1) > o.DrainWait || ctx.Err() != nil {
				// Still checked: what is only in the WAL then shows as lost.
				sum.Undrained = fmt.Sprintf("the collector did not drain within %s: wal records %v, shards pending %v (%v)", o.DrainWait, walN, pend, err)
				logf("%s", sum.Undrained)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		sum.CollectorDrainSeconds = time.Since(d1).Seconds()
	}
	close(progStop)
	<-progDone
	if profErr != nil {
		if err := <-profErr; err != nil {
			logf("profile: %v", err)
		} else {
			logf("collector CPU profile in %s", o.Pprof)
		}
	}
	errMu.Lock()
	err = firstErr
	errMu.Unlock()
	if err != nil {
		return nil, err
	}

	sum.Errors = map[string]float64{}
	if o.Sender == "lite" {
		sum.Batches, sum.Retries = float64(rec.batches.Load()), float64(rec.retries.Load())
		rec.fails.mu.Lock()
		for k, v := range rec.fails.by {
			sum.Errors[k] = float64(v)
		}
		rec.fails.mu.Unlock()
	} else {
		sums := reg.sums()
		sum.Batches = sums["edgeloop_sender_batches_total{outcome=sent}"]
		sum.Retries = sums["edgeloop_sender_batches_total{outcome=failed}"]
		for k, v := range sums {
			if r, ok := strings.CutPrefix(k, "edgeloop_sender_errors_total{reason="); ok && v > 0 {
				sum.Errors[strings.TrimSuffix(r, "}")] = v
			}
		}
	}
	if e.pid != 0 {
		if st, err := readProc(e.pid, false); err == nil {
			sum.Collector.RSSPeakMiB = st.PeakMiB
		}
	}
	if e.minioPID != 0 {
		if st, err := readProc(e.minioPID, false); err == nil {
			sum.MinIO.RSSPeakMiB = st.PeakMiB
		}
	}
	if st, err := readProc(os.Getpid(), false); err == nil {
		sum.Simulator.RSSPeakMiB = st.PeakMiB
	}
	sum.Host.LoadEnd = loadAvg()
	sum.Shed = rec.shed.Load()

	// Conservation.
	acked := make(map[uint64]struct{}, rec.acked.Load())
	for _, n := range nodes {
		for _, k := range n.acked {
			acked[k] = struct{}{}
		}
		n.acked = nil
	}
	method := o.Verify
	if e.bucket == nil {
		method = "none"
	}
	v0 := time.Now()
	if sum.Conservation, err = verify(ctx, e.bucket, method, acked); err != nil {
		return nil, err
	}
	logf("conservation (%s) checked in %s", method, time.Since(v0).Round(time.Second))
	printSummary(w, sum)
	return sum, nil
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("fleet: heap profile: %w", err)
	}
	return nil
}

// profile saves the collector's CPU profile of seconds, starting after at.
func profile(ctx context.Context, base, path string, at time.Duration, seconds int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(at):
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(seconds+60) * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("fleet: profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fleet: profile: %s (is pprof on in the collector's configuration?)", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("fleet: profile: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

// setUp starts MinIO and the collector, or opens the given ones, and Toxiproxy's proxies.
func setUp(ctx context.Context, o options, work string, names []string, logf func(string, ...any)) (*env, error) {
	e := &env{url: strings.TrimRight(o.CollectorURL, "/"), pid: o.CollectorPID}
	if o.CollectorURL != "" {
		if o.Bucket != "" {
			b, err := objstore.Open(ctx, o.Bucket)
			if err != nil {
				return e, fmt.Errorf("fleet: %w", err)
			}
			e.bucket = b
		}
	} else if err := startServers(ctx, o, work, names, e, logf); err != nil {
		return e, err
	}
	if o.NetFraction > 0 {
		srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
		upstream := strings.TrimPrefix(e.url, "http://")
		for g := range o.NetGroups {
			p := toxiproxy.NewProxy(srv, fmt.Sprintf("group-%d", g), "127.0.0.1:0", upstream)
			if err := p.Start(); err != nil {
				return e, fmt.Errorf("fleet: toxiproxy: %w", err)
			}
			e.stop = append(e.stop, p.Stop)
			var toxics []string
			if o.NetLatency > 0 {
				toxics = append(toxics, fmt.Sprintf(`{"type":"latency","stream":"upstream","attributes":{"latency":%d,"jitter":%d}}`, o.NetLatency.Milliseconds(), o.NetJitter.Milliseconds()))
			}
			if o.NetBandwidth > 0 {
				toxics = append(toxics, fmt.Sprintf(`{"type":"bandwidth","stream":"upstream","attributes":{"rate":%d}}`, o.NetBandwidth))
			}
			if o.NetReset > 0 {
				toxics = append(toxics, fmt.Sprintf(`{"type":"reset_peer","stream":"upstream","toxicity":%g,"attributes":{"timeout":0}}`, o.NetReset))
			}
			for _, tx := range toxics {
				if _, err := p.Toxics.AddToxicJson(strings.NewReader(tx)); err != nil {
					return e, fmt.Errorf("fleet: toxiproxy toxic %s: %w", tx, err)
				}
			}
			e.proxyAddrs = append(e.proxyAddrs, p.Listen)
		}
	}
	return e, nil
}

// startServers starts MinIO and the collector, with a token for each of names.
func startServers(ctx context.Context, o options, work string, names []string, e *env, logf func(string, ...any)) error {
	minioBin, err := findMinIO(o.MinIO)
	if err != nil {
		return err
	}
	bin := o.Edgeloop
	if bin == "" {
		logf("building cmd/edgeloop")
		if bin, err = buildEdgeloop(work); err != nil {
			return err
		}
	}
	mAddr, err := freeAddr()
	if err != nil {
		return err
	}
	access, secret := "fleet-access", "fleet-secret-"+fmt.Sprint(time.Now().UnixNano())
	creds := []string{"MINIO_ROOT_USER=" + access, "MINIO_ROOT_PASSWORD=" + secret, "MINIO_BROWSER=off", "MINIO_UPDATE=off"}
	m, err := startChild("minio", minioBin, filepath.Join(work, "minio.log"), creds,
		"server", "--quiet", "--address", mAddr, "--certs-dir", filepath.Join(work, "minio-certs"), filepath.Join(work, "minio"))
	if err != nil {
		return err
	}
	e.stop = append(e.stop, m.stop)
	e.minioPID = m.pid()
	if err := m.waitHTTP("http://"+mAddr+"/minio/health/live", time.Minute); err != nil {
		return err
	}
	s3 := objstore.DefaultS3Config()
	s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = mAddr, access, secret, true, "fleet"
	if err := objstore.CreateS3Bucket(ctx, s3); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if e.bucket, err = objstore.NewS3(s3); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}

	cdir := filepath.Join(work, "collector")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	var tokens strings.Builder
	tokens.WriteString("# fleet simulator: token-<node> for each node\n")
	for _, n := range names {
		tokens.WriteString(token.HashLine(n, collectortest.Token(n)) + "\n")
	}
	tokensFile := filepath.Join(cdir, "tokens")
	if err := os.WriteFile(tokensFile, []byte(tokens.String()), 0o600); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	cAddr, err := freeAddr()
	if err != nil {
		return err
	}
	// The collector's defaults, but for shards.max_age (a drain would wait 5 minutes for the
	// last shard) and pprof, for the profile.
	conf := fmt.Sprintf(`instance: fleet
listen: %q
pprof: true
log:
  format: json
auth:
  tokens_file: %s
bucket: s3://fleet?endpoint=%s&insecure=true
wal:
  dir: %s
shards:
  max_age: %s
`, cAddr, tokensFile, mAddr, filepath.Join(cdir, "wal"), o.ShardMaxAge)
	confFile := filepath.Join(cdir, "collector.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	c, err := startChild("collector", bin, filepath.Join(work, "collector.log"),
		[]string{"AWS_ACCESS_KEY_ID=" + access, "AWS_SECRET_ACCESS_KEY=" + secret}, "collector", "--config", confFile)
	if err != nil {
		return err
	}
	e.stop = append(e.stop, c.stop)
	e.url, e.pid = "http://"+cAddr, c.pid()
	if err := c.waitHTTP(e.url+"/readyz", 2*time.Minute); err != nil {
		return err
	}
	logf("MinIO (pid %d) at %s, collector (pid %d) at %s", e.minioPID, mAddr, e.pid, cAddr)
	return nil
}

func printSummary(w io.Writer, s *Summary) {
	fmt.Fprintf(w, `
fleet summary: %d nodes × %g samples/s of %d B, %s sender, batch_delay %s, queue %s, network %s
  measured       %.0f s (after the ramp); load average %.2f at the start, %.2f at most, %.2f at the end (%d CPUs)
  acknowledged   %d of %d offered: %.0f samples/s
  batch latency  p50 %.3f s  p99 %.3f s  p99.9 %.3f s  max %.3f s  (%d batches; sender's Peek to acknowledgement)
  sample latency p50 %.3f s  p99 %.3f s  p99.9 %.3f s  max %.3f s  (append to acknowledgement, batch_delay included)
  shed           %d samples not queued (the fleet's queues full)%s
  requests       %.0f answered 200, %.0f failed and retried %v
  collector      %.2f cores (%.0f CPU s; %.0f s runnable waiting for a CPU), RSS peak %.0f MiB, %d sockets at most
  minio          %.2f cores, RSS peak %.0f MiB
  simulator      %.2f cores, RSS peak %.0f MiB
  drain          senders %.1f s, collector %.1f s
  conservation   %s: %d shards, %d acknowledged, %d stored, lost %d, twice %d, stored unacknowledged %d: %s
`, s.Nodes, s.Rate, s.SampleBytes, s.Sender, s.BatchDelay, s.Queue, s.Network,
		s.MeasuredSeconds, s.Host.LoadStart, s.Host.LoadMax, s.Host.LoadEnd, s.Host.CPUs,
		s.Acknowledged, s.Offered, s.AckedPerSecond,
		s.BatchLatency.P50, s.BatchLatency.P99, s.BatchLatency.P999, s.BatchLatency.Max, s.BatchLatency.Count,
		s.SampleLatency.P50, s.SampleLatency.P99, s.SampleLatency.P999, s.SampleLatency.Max,
		s.Shed, undrained(s), s.Batches, s.Retries, s.Errors,
		s.Collector.Cores, s.Collector.CPUSeconds, s.Collector.RunqueueWaitSeconds, s.Collector.RSSPeakMiB, s.Collector.SocketsMax,
		s.MinIO.Cores, s.MinIO.RSSPeakMiB,
		s.Simulator.Cores, s.Simulator.RSSPeakMiB,
		s.DrainSeconds, s.CollectorDrainSeconds,
		s.Conservation.Method, s.Conservation.Shards, s.Conservation.Acknowledged, s.Conservation.Stored,
		s.Conservation.Lost, s.Conservation.Twice, s.Conservation.StoredUnacked, passWord(s.Conservation))
}

func undrained(s *Summary) string {
	if s.Undrained == "" {
		return ""
	}
	return "; " + s.Undrained
}

func passWord(c Conservation) string {
	switch {
	case c.Method == "none":
		return "not checked"
	case c.Pass:
		return "pass"
	default:
		return "FAIL"
	}
}
