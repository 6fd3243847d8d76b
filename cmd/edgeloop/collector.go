package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
)

func runCollector(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serverFlags
	f.register(fs, "collector")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := collector.LoadConfig(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "edgeloop collector: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if f.configCheck {
		fmt.Fprintf(stdout, "configuration %s is valid\n", displayName(f.configFile))
		return exitOK
	}
	base := telemetry.NewLogger(stderr, cfg.Log)
	logger := base.With("component", "collector")
	ctx, stop := signalContext()
	defer stop()
	tracing, err := telemetry.NewTracing(ctx, cfg.Tracing, "edgeloop-collector", version.Get().Version)
	if err != nil {
		logger.Error("cannot start tracing", "err", err)
		return exitFailure
	}
	defer shutdownTracing(tracing, logger)
	srv, err := collector.New(cfg, collector.Options{Logger: base, Tracing: tracing})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailure
	}
	// SIGHUP reloads the token files: revoking a stolen edge node's token needs no restart.
	defer reloadOnSIGHUP(ctx, srv.Reload)()
	if err := srv.Run(ctx); err != nil {
		logger.Error("stopped on error", "err", err)
		return exitFailure
	}
	return exitOK
}

// reloadOnSIGHUP calls reload on every SIGHUP until ctx ends; reload logs its own errors (the
// old settings stay). The returned function stops listening.
func reloadOnSIGHUP(ctx context.Context, reload func() error) (stop func()) {
	return cli.ReloadOnSIGHUP(ctx, reload)
}
