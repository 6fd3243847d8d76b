package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/edgeloop/edgeloop/exporter"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
)

// Exit codes: 0 success, 1 a failure while running, 2 bad usage or an invalid configuration.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"exporter", "run the edge agent: GPU and inference telemetry on :9750", runExporter},
		{"collector", "run the data-center collector: sample ingest, write-ahead log and shards on :9751", runCollector},
		{"retrain", "run the retrain controller: Alertmanager webhook, policy, jobs, gate, publish on :9752", runRetrain},
		{"model", "manage a signed model repository: keygen, sign, verify, publish, ls", runModel},
		{"evalset", "manage labelled evaluation sets in the object store: create, ls, show", runEvalset},
		{"bucket", "create or list an object-store bucket (s3:// or file:// URL): create, ls", runBucket},
		{"traffic", "send Fashion-MNIST traffic that drifts to exporters, and play the annotators (docs/deploy-by-hand.md)", runTraffic},
		{"train", "train the builtin Fashion-MNIST model and write model.onnx + metrics.json", runTrain},
		{"evaluate", "score models on an evaluation set for the retrain gate (its evaluation job)", runEvaluate},
		{"demo", "run the whole loop on loopback with simulated edge nodes and drift (make demo)", runDemo},
		{"version", "print the version and exit", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'edgeloop <command> -h' for a command's flags. Docs: docs/ in the repository.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--version" {
		return runVersion(nil, stdout, stderr)
	}
	return dispatch("edgeloop", commands(), usage, args, stdout, stderr)
}

// dispatch runs the command of cmds that args[0] names, or prints usage: to stdout when asked
// for (-h, --help, help, exit 0), to stderr otherwise (exit 2).
func dispatch(prog string, cmds []command, usage func(io.Writer), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage(stderr)
	return exitUsage
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	fmt.Fprintln(stdout, version.Get())
	return exitOK
}

// flagExit maps a flag parsing error to an exit code: -h is a success, anything else usage.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// serverFlags are the flags every server subcommand shares.
type serverFlags struct {
	configFile  string
	configCheck bool
}

func (f *serverFlags) register(fs *flag.FlagSet, component string) {
	fs.StringVar(&f.configFile, "config", "", "path to the "+component+" YAML configuration (default: built-in defaults)")
	fs.BoolVar(&f.configCheck, "config.check", false, "validate the configuration, print the result and exit (2 if invalid)")
}

// signalContext is cancelled on SIGINT or SIGTERM, so servers shut down gracefully.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runExporter(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop exporter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serverFlags
	f.register(fs, "exporter")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := exporter.LoadConfig(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "edgeloop exporter: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if f.configCheck {
		fmt.Fprintf(stdout, "configuration %s is valid\n", displayName(f.configFile))
		return exitOK
	}
	// Each part logs with its own component=...; the lines of this command are the exporter's.
	base := telemetry.NewLogger(stderr, cfg.Log)
	logger := base.With("component", "exporter")
	ctx, stop := signalContext()
	defer stop()
	tracing, err := telemetry.NewTracing(ctx, cfg.Tracing, "edgeloop-exporter", version.Get().Version)
	if err != nil {
		logger.Error("cannot start tracing", "err", err)
		return exitFailure
	}
	defer shutdownTracing(tracing, logger)
	e, err := exporter.New(cfg, nvml.New(), tracing, base)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailure
	}
	// SIGHUP reloads the inference port's tokens: a leaked client token is revoked in place.
	defer reloadOnSIGHUP(ctx, e.Reload)()
	if err := e.Run(ctx); err != nil {
		logger.Error("stopped on error", "err", err)
		return exitFailure
	}
	return exitOK
}

func displayName(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

func shutdownTracing(t *telemetry.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.Warn("traces may be lost", "err", err)
	}
}
