// Command fleet simulates a fleet of edge nodes sending samples to one collector and measures
// what the fleet does to it: acknowledged samples a second, ingest latency as the senders see
// it, retries, the collector's CPU, memory and open connections, and conservation (every
// acknowledged sample in exactly one shard record). Each node runs the real sender
// (exporter/sender) with its own token over an in-memory queue (or a real spool), fed by
// Poisson arrivals. It starts MinIO and the collector as processes, or uses running ones.
// docs/benchmarks.md ("Fleet simulator") describes the flags, the output and the results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	Nodes       int
	Rate        float64
	SampleBytes int
	Ramp        time.Duration
	Duration    time.Duration
	DrainWait   time.Duration
	Seed        uint64
	Work        string
	Out         string
	Progress    time.Duration

	Edgeloop     string
	MinIO        string
	CollectorURL string
	CollectorPID int
	Bucket       string
	ShardMaxAge  time.Duration
	Pprof        string
	PprofAt      time.Duration
	PprofSeconds int

	BatchDelay      time.Duration
	MaxBatchSamples int
	Timeout         time.Duration
	InitialBackoff  time.Duration
	MaxBackoff      time.Duration
	MaxRate         float64

	Spool          bool
	MaxQueuedBytes int64
	Sender         string

	NetFraction  float64
	NetGroups    int
	NetLatency   time.Duration
	NetJitter    time.Duration
	NetBandwidth int
	NetReset     float64

	SimCPUProfile string
	SimMemProfile string

	Verify    string
	Plot      string
	PlotFiles []string
	Keep      bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Nodes, "nodes", 100, "simulated edge nodes")
	fs.Float64Var(&o.Rate, "rate", 1, "samples a second per node (Poisson arrivals)")
	fs.IntVar(&o.SampleBytes, "sample-bytes", 4096, "size of each sample's .npy input")
	fs.DurationVar(&o.Ramp, "ramp", 10*time.Second, "nodes start spread over this time; not measured")
	fs.DurationVar(&o.Duration, "duration", 2*time.Minute, "measured time after the ramp")
	fs.DurationVar(&o.DrainWait, "drain-timeout", 5*time.Minute, "how long the senders and the collector may take to drain after the arrivals stop")
	fs.Uint64Var(&o.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the arrivals")
	fs.StringVar(&o.Work, "work", "", "working directory for MinIO's data, the WAL, tokens and logs (default a new temporary one, removed unless -keep)")
	fs.StringVar(&o.Out, "out", "", "write the JSON summary here")
	fs.DurationVar(&o.Progress, "progress", 10*time.Second, "interval of the progress lines")
	fs.StringVar(&o.Edgeloop, "edgeloop", "", "edgeloop binary for the collector (default: build ./cmd/edgeloop from the working tree)")
	fs.StringVar(&o.MinIO, "minio", "", "MinIO binary (default $MINIO, then PATH)")
	fs.StringVar(&o.CollectorURL, "collector-url", "", "use this running collector instead of starting one (its tokens file must hold the nodes' tokens: token-<node> for node-<i>)")
	fs.IntVar(&o.CollectorPID, "collector-pid", 0, "with -collector-url: its process id, for CPU, RSS and connections from /proc")
	fs.StringVar(&o.Bucket, "bucket", "", "with -collector-url: its bucket URL, to check conservation (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	fs.DurationVar(&o.ShardMaxAge, "shard-max-age", 10*time.Second, "the started collector's shards.max_age (its default is 5m, which would hold the drain)")
	fs.StringVar(&o.Pprof, "pprof", "", "save a CPU profile of the collector here (from its /debug/pprof)")
	fs.DurationVar(&o.PprofAt, "pprof-at", 0, "when to start the profile, after the ramp (default the middle of the run)")
	fs.IntVar(&o.PprofSeconds, "pprof-seconds", 30, "length of the CPU profile")
	fs.DurationVar(&o.BatchDelay, "batch-delay", 2*time.Second, "sender batch_delay")
	fs.IntVar(&o.MaxBatchSamples, "max-batch-samples", 500, "sender max_batch_samples")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "sender timeout")
	fs.DurationVar(&o.InitialBackoff, "initial-backoff", time.Second, "sender initial_backoff")
	fs.DurationVar(&o.MaxBackoff, "max-backoff", 5*time.Minute, "sender max_backoff")
	fs.Float64Var(&o.MaxRate, "max-rate", 50, "sender max_rate (samples a second)")
	fs.StringVar(&o.Sender, "sender", "real", "real (exporter/sender, about 1.8 MiB per node once it has sent) or lite (a wire-compatible stand-in sharing one zstd encoder, for fleets the real one cannot fit in memory)")
	fs.Int64Var(&o.MaxQueuedBytes, "max-queued-bytes", 4<<30, "the in-memory queues of all nodes together hold at most this many bytes; past it new samples are shed and counted (0: no limit)")
	fs.BoolVar(&o.Spool, "spool", false, "each node on a real spool (internal/spool) under -work instead of an in-memory queue: for small fleets, since N spools on one disk measure the disk")
	fs.Float64Var(&o.NetFraction, "net-fraction", 0, "fraction of the nodes that reach the collector through Toxiproxy with the -net-* faults")
	fs.IntVar(&o.NetGroups, "net-groups", 4, "Toxiproxy proxies the -net-fraction nodes are spread over")
	fs.DurationVar(&o.NetLatency, "net-latency", 0, "latency added to each request (Toxiproxy latency toxic, upstream)")
	fs.DurationVar(&o.NetJitter, "net-jitter", 0, "jitter of -net-latency")
	fs.IntVar(&o.NetBandwidth, "net-bandwidth", 0, "uplink bandwidth of each proxy in KB/s (Toxiproxy bandwidth toxic, shared by its nodes); 0 unlimited")
	fs.Float64Var(&o.NetReset, "net-reset", 0, "fraction of connections reset (Toxiproxy reset_peer toxic with this toxicity): Toxiproxy works on TCP streams and cannot drop packets")
	fs.StringVar(&o.SimCPUProfile, "sim-cpuprofile", "", "save the simulator's own CPU profile of the measured window here")
	fs.StringVar(&o.SimMemProfile, "sim-memprofile", "", "save the simulator's own heap profile at the end of the measured window here")
	fs.StringVar(&o.Verify, "verify", "tar", "conservation check: tar (read every shard's tar), index (its index.jsonl) or none")
	fs.StringVar(&o.Plot, "plot", "", "instead of a run: write an SVG plot of p99 latency and collector RSS against nodes to this file from the JSON summaries named as arguments")
	keep := fs.Bool("keep", false, "keep the temporary working directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.Keep = *keep
	if o.Plot != "" {
		o.PlotFiles = fs.Args()
		return o, nil
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("fleet: unexpected arguments %q", fs.Args())
	}
	var errs []string
	if o.Nodes < 1 {
		errs = append(errs, "-nodes must be at least 1")
	}
	if !(o.Rate > 0) {
		errs = append(errs, "-rate must be positive")
	}
	if o.SampleBytes < 132 {
		errs = append(errs, "-sample-bytes must be at least 132")
	}
	if o.Duration <= 0 || o.Ramp < 0 {
		errs = append(errs, "-duration must be positive and -ramp not negative")
	}
	if o.Sender != "real" && o.Sender != "lite" {
		errs = append(errs, "-sender must be real or lite")
	}
	if o.Verify != "tar" && o.Verify != "index" && o.Verify != "none" {
		errs = append(errs, "-verify must be tar, index or none")
	}
	if o.NetFraction < 0 || o.NetFraction > 1 || o.NetReset < 0 || o.NetReset > 1 {
		errs = append(errs, "-net-fraction and -net-reset must be between 0 and 1")
	}
	if o.NetFraction > 0 && o.NetGroups < 1 {
		errs = append(errs, "-net-groups must be at least 1")
	}
	if o.CollectorURL == "" && (o.CollectorPID != 0 || o.Bucket != "") {
		errs = append(errs, "-collector-pid and -bucket go with -collector-url")
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("fleet: %s", strings.Join(errs, "; "))
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(2)
	}
	if o.Plot != "" {
		if err := plotFiles(o.Plot, o.PlotFiles); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if o.Out != "" {
		b, _ := json.MarshalIndent(sum, "", "  ")
		err := os.MkdirAll(filepath.Dir(o.Out), 0o755)
		if err == nil {
			err = os.WriteFile(o.Out, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet: write summary:", err)
			os.Exit(1)
		}
	}
	if !sum.Conservation.Pass && sum.Conservation.Method != "none" {
		os.Exit(3)
	}
}
