package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/edgeloop/edgeloop/exporter"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
)

// RunVersion prints the build's version; prog names the command in flag errors.
func RunVersion(prog string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	fmt.Fprintln(stdout, version.Get())
	return ExitOK
}

// RunExporter runs the edge agent until SIGINT or SIGTERM (docs/exporter.md); prog is how the
// command names itself ("edgeloop exporter", "edgeloop-exporter exporter"). SIGHUP reloads the
// inference port's tokens.
func RunExporter(prog string, args []string, stdout, stderr io.Writer) int {
	return RunServer(ServerCommand[exporter.Config]{
		Prog:      prog,
		Component: "exporter",
		Load:      exporter.LoadConfig,
		Telemetry: func(c exporter.Config) (telemetry.LogConfig, telemetry.TracingConfig) { return c.Log, c.Tracing },
		New: func(c exporter.Config, logger *slog.Logger, tracing *telemetry.Tracing) (Server, error) {
			return exporter.New(c, exporter.Options{Logger: logger, Tracing: tracing})
		},
	}, args, stdout, stderr)
}

// RunModelVerify checks a local version directory against its signed manifest; prog is the
// parent command ("edgeloop model"), so messages read "edgeloop model verify: ...".
func RunModelVerify(prog string, args []string, stdout, stderr io.Writer) int {
	name := prog + " verify"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags] DIR\n", name)
		fs.PrintDefaults()
	}
	var pubs Strings
	fs.Var(&pubs, "pub", "trusted public key file, or a directory of *.pub files (repeatable)")
	model := fs.String("model", "", "also require the manifest to name this model")
	ver := fs.Int64("version", 0, "also require the manifest to name this version")
	if err := fs.Parse(args); err != nil {
		return FlagExit(err)
	}
	if fs.NArg() != 1 || len(pubs) == 0 {
		fmt.Fprintf(stderr, "%s: --pub and one version directory are required\n", name)
		fs.Usage()
		return ExitUsage
	}
	dir := fs.Arg(0)
	v, err := modelrepo.LoadVerifier(pubs...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitFailure
	}
	m, err := modelrepo.VerifyDir(dir, v, *model, *ver)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (%s)\n", name, err, modelrepo.Reason(err))
		return ExitFailure
	}
	fmt.Fprintf(stdout, "OK: %s is %s version %d, %d files, signed by key %s\n", dir, m.Model, m.Version, len(m.Files), m.Signature.KeyID)
	return ExitOK
}
