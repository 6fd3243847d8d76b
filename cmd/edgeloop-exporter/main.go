// Command edgeloop-exporter is the lean edge binary: the exporter, `model verify` and `version`,
// without client-go, the trainer or the collector (docs/deploy.md). The full edgeloop binary
// runs the same exporter code (cmd/internal/cli).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/edgeloop/edgeloop/cmd/internal/cli"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func commands() []cli.Command {
	return []cli.Command{
		{Name: "exporter", Summary: "run the edge agent: GPU and inference telemetry on :9750", Run: runExporter},
		{Name: "model", Summary: "check a local model version directory: verify", Run: runModel},
		{Name: "version", Summary: "print the version and exit", Run: runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop-exporter <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nThe lean edge build of edgeloop; the full `edgeloop` binary has every other command.")
	fmt.Fprintln(w, "Run 'edgeloop-exporter <command> -h' for a command's flags. Docs: docs/deploy.md.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--version" {
		return runVersion(nil, stdout, stderr)
	}
	return cli.Dispatch("edgeloop-exporter", commands(), usage, args, stdout, stderr)
}

func runExporter(args []string, stdout, stderr io.Writer) int {
	applyMemoryDefaults(os.Getenv, os.ReadFile)
	return cli.RunExporter("edgeloop-exporter exporter", args, stdout, stderr)
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	return cli.RunVersion("edgeloop-exporter version", args, stdout, stderr)
}

func modelCommands() []cli.Command {
	return []cli.Command{
		{Name: "verify", Summary: "check a local version directory against its signed manifest", Run: runModelVerify},
	}
}

func modelUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop-exporter model <command> [flags]\n\ncommands:")
	for _, c := range modelCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nkeygen, sign, publish, alias and ls are in the full edgeloop binary (docs/model-repository.md).")
}

func runModel(args []string, stdout, stderr io.Writer) int {
	return cli.Dispatch("edgeloop-exporter model", modelCommands(), modelUsage, args, stdout, stderr)
}

func runModelVerify(args []string, stdout, stderr io.Writer) int {
	return cli.RunModelVerify("edgeloop-exporter model", args, stdout, stderr)
}
