package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
	"github.com/edgeloop/edgeloop/retrain"
)

// runRetrain is `edgeloop retrain`: the retrain controller (docs/retrain.md).
func runRetrain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop retrain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serverFlags
	f.register(fs, "retrain")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := retrain.LoadConfig(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "edgeloop retrain: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if f.configCheck {
		fmt.Fprintf(stdout, "configuration %s is valid\n", displayName(f.configFile))
		return exitOK
	}
	base := telemetry.NewLogger(stderr, cfg.Log)
	logger := base.With("component", "retrain")
	ctx, stop := signalContext()
	defer stop()
	tracing, err := telemetry.NewTracing(ctx, cfg.Tracing, "edgeloop-retrain", version.Get().Version)
	if err != nil {
		logger.Error("cannot start tracing", "err", err)
		return exitFailure
	}
	defer shutdownTracing(tracing, logger)
	c, err := retrain.New(cfg, retrain.Options{Logger: base, Tracing: tracing})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailure
	}
	// SIGHUP reloads the token files: a leaked webhook or operator token is revoked without a
	// restart.
	defer reloadOnSIGHUP(ctx, c.Reload)()
	if err := c.Run(ctx); err != nil {
		logger.Error("stopped on error", "err", err)
		return exitFailure
	}
	return exitOK
}
