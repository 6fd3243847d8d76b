package main

import (
	"io"
	"log/slog"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/retrain"
)

// runRetrain is `edgeloop retrain`: the retrain controller (docs/retrain.md). SIGHUP reloads
// the token files: a leaked webhook or operator token is revoked without a restart.
func runRetrain(args []string, stdout, stderr io.Writer) int {
	return cli.RunServer(cli.ServerCommand[retrain.Config]{
		Prog:      "edgeloop retrain",
		Component: "retrain",
		Load:      retrain.LoadConfig,
		Telemetry: func(c retrain.Config) (telemetry.LogConfig, telemetry.TracingConfig) { return c.Log, c.Tracing },
		New: func(c retrain.Config, logger *slog.Logger, tracing *telemetry.Tracing) (cli.Server, error) {
			return retrain.New(c, retrain.Options{Logger: logger, Tracing: tracing})
		},
	}, args, stdout, stderr)
}
