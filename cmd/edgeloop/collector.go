package main

import (
	"io"
	"log/slog"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// runCollector is `edgeloop collector`: the data center's sample ingest (docs/collector.md).
// SIGHUP reloads the token files and certificate lists: revoking a stolen edge node's
// credential needs no restart.
func runCollector(args []string, stdout, stderr io.Writer) int {
	return cli.RunServer(cli.ServerCommand[collector.Config]{
		Prog:      "edgeloop collector",
		Component: "collector",
		Load:      collector.LoadConfig,
		Telemetry: func(c collector.Config) (telemetry.LogConfig, telemetry.TracingConfig) { return c.Log, c.Tracing },
		New: func(c collector.Config, logger *slog.Logger, tracing *telemetry.Tracing) (cli.Server, error) {
			return collector.New(c, collector.Options{Logger: logger, Tracing: tracing})
		},
	}, args, stdout, stderr)
}
