package main

import (
	"context"
	"fmt"
	"io"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
)

// Exit codes: 0 success, 1 a failure while running, 2 bad usage or an invalid configuration.
const (
	exitOK      = cli.ExitOK
	exitFailure = cli.ExitFailure
	exitUsage   = cli.ExitUsage
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

// dispatch runs the command of cmds that args[0] names, or prints usage (cli.Dispatch).
func dispatch(prog string, cmds []command, usage func(io.Writer), args []string, stdout, stderr io.Writer) int {
	cc := make([]cli.Command, len(cmds))
	for i, c := range cmds {
		cc[i] = cli.Command{Name: c.name, Summary: c.summary, Run: c.run}
	}
	return cli.Dispatch(prog, cc, usage, args, stdout, stderr)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	return cli.RunVersion("edgeloop version", args, stdout, stderr)
}

// flagExit maps a flag parsing error to an exit code: -h is a success, anything else usage.
func flagExit(err error) int { return cli.FlagExit(err) }

// signalContext is cancelled on SIGINT or SIGTERM, so servers shut down gracefully.
func signalContext() (context.Context, context.CancelFunc) { return cli.SignalContext() }

// runExporter is shared with the lean edgeloop-exporter binary (cmd/internal/cli).
func runExporter(args []string, stdout, stderr io.Writer) int {
	return cli.RunExporter("edgeloop exporter", args, stdout, stderr)
}
