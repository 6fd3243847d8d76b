package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/internal/memlimit"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// runCollector is `edgeloop collector`: the data center's sample ingest (docs/collector.md).
// SIGHUP reloads the token files and certificate lists: revoking a stolen edge node's
// credential needs no restart. Under a cgroup memory limit, GOMEMLIMIT defaults to 90% of it.
func runCollector(args []string, stdout, stderr io.Writer) int {
	return cli.RunServer(cli.ServerCommand[collector.Config]{
		Prog:      "edgeloop collector",
		Component: "collector",
		Load:      collector.LoadConfig,
		Telemetry: func(c collector.Config) (telemetry.LogConfig, telemetry.TracingConfig) { return c.Log, c.Tracing },
		New: func(c collector.Config, logger *slog.Logger, tracing *telemetry.Tracing) (cli.Server, error) {
			// Under a container's memory limit, the heap gives way before the OOM killer acts.
			if limit := memlimit.FromCgroup(os.Getenv, os.ReadFile); limit > 0 {
				logger.Info("soft memory limit from the cgroup's", "gomemlimit_bytes", limit)
			}
			return collector.New(c, collector.Options{Logger: logger, Tracing: tracing})
		},
	}, args, stdout, stderr)
}
