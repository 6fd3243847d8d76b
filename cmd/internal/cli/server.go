package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
)

// Server is a long-running component: the exporter, the collector or the retrain controller.
type Server interface {
	// Run serves until ctx ends, then drains and returns.
	Run(ctx context.Context) error
	// Reload re-reads what SIGHUP reloads (token and certificate lists); it logs its own errors
	// and keeps the old settings on one.
	Reload() error
}

// ServerCommand describes a server command to RunServer. C is the server's configuration type.
type ServerCommand[C any] struct {
	// Prog is how the command names itself in messages ("edgeloop collector").
	Prog string
	// Component names the server: its log lines' component attribute, its tracing service
	// (edgeloop-<component>) and what --config's help calls the file.
	Component string
	// Load reads and validates a configuration file ("" for the built-in defaults).
	Load func(path string) (C, error)
	// Telemetry returns the configuration's log and tracing sections.
	Telemetry func(C) (telemetry.LogConfig, telemetry.TracingConfig)
	// New builds the server from a valid configuration, binding its ports, so that a port
	// conflict fails the start. logger is the base logger; parts add their component.
	New func(cfg C, logger *slog.Logger, tracing *telemetry.Tracing) (Server, error)
}

// RunServer runs a server command the one way all three do: --config and --config.check, the
// structured log, tracing (flushed at exit), SIGINT and SIGTERM to drain and stop (exit 0),
// SIGHUP to Reload. Exit codes: 0 after a clean stop or a valid --config.check, 1 when the
// server fails to start or stops on an error, 2 for bad flags or an invalid configuration.
func RunServer[C any](c ServerCommand[C], args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.Prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f ServerFlags
	f.Register(fs, c.Component)
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	cfg, err := c.Load(f.ConfigFile)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", c.Prog, err)
		return ExitUsage
	}
	if f.ConfigCheck {
		fmt.Fprintf(stdout, "configuration %s is valid\n", DisplayName(f.ConfigFile))
		return ExitOK
	}
	logCfg, traceCfg := c.Telemetry(cfg)
	// Each part logs with its own component=...; the lines of this function are the server's.
	base := telemetry.NewLogger(stderr, logCfg)
	logger := base.With("component", c.Component)
	ctx, stop := SignalContext()
	defer stop()
	tracing, err := telemetry.NewTracing(ctx, traceCfg, "edgeloop-"+c.Component, version.Get().Version)
	if err != nil {
		logger.Error("cannot start tracing", "err", err)
		return ExitFailure
	}
	defer ShutdownTracing(tracing, logger)
	srv, err := c.New(cfg, base, tracing)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return ExitFailure
	}
	// SIGHUP re-reads the credential lists, so a leaked token is revoked without a restart.
	defer ReloadOnSIGHUP(ctx, srv.Reload)()
	if err := srv.Run(ctx); err != nil {
		logger.Error("stopped on error", "err", err)
		return ExitFailure
	}
	return ExitOK
}
