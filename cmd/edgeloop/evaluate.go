package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// runEvaluate is `edgeloop evaluate`: the reference evaluation job of the retrain gate's job
// evaluator (docs/gate.md, "The evaluation job"). Logic lives in retrain/gate.
func runEvaluate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop evaluate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The job contract's environment variables give the defaults; flags win over them.
	request := fs.String("request", os.Getenv(jobenv.DatasetManifest), "the evaluation request (request.json); default $"+jobenv.DatasetManifest)
	out := fs.String("out", os.Getenv(jobenv.Output), "directory to write report.json into; default $"+jobenv.Output)
	logCfg := telemetry.DefaultLogConfig()
	fs.StringVar(&logCfg.Level, "log.level", logCfg.Level, "debug, info, warn or error")
	fs.StringVar(&logCfg.Format, "log.format", logCfg.Format, "logfmt or json")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *request == "" || *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "edgeloop evaluate: --request and --out (or their EDGELOOP_* variables) are required, and nothing else")
		return exitUsage
	}
	if err := logCfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgeloop evaluate: %v\n", err)
		return exitUsage
	}
	logger := telemetry.NewLogger(stderr, logCfg).With("component", "evaluate")
	ctx, stop := signalContext()
	defer stop()
	if err := gate.RunEvalJob(ctx, *request, *out, logger); err != nil {
		logger.Error("evaluation failed", "err", err)
		return exitFailure
	}
	return exitOK
}
