// Package cli holds what the full edgeloop binary and the lean edgeloop-exporter binary both
// need to run their subcommands: the dispatcher, the exit codes, the signal and reload wiring,
// and the commands both ship (exporter, model verify, version). It lives under cmd/ because it
// is command wiring, not a library: it parses flags and prints to the writers it is given, and
// never exits the process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes: 0 success, 1 a failure while running, 2 bad usage or an invalid configuration.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Command is one subcommand: its name, a one-line summary for the usage text, and the function
// that runs it with the arguments after its name.
type Command struct {
	Name, Summary string
	Run           func(args []string, stdout, stderr io.Writer) int
}

// Dispatch runs the command of cmds that args[0] names, or prints usage: to stdout when asked
// for (-h, --help, help, exit 0), to stderr otherwise (exit 2).
func Dispatch(prog string, cmds []Command, usage func(io.Writer), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return ExitOK
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage(stderr)
	return ExitUsage
}

// FlagExit maps a flag parsing error to an exit code: -h is a success, anything else usage.
func FlagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	return ExitUsage
}

// SignalContext is cancelled on SIGINT or SIGTERM, so servers shut down gracefully.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ReloadOnSIGHUP calls reload on every SIGHUP until ctx ends or stop is called; reload logs its
// own errors (the server keeps its old state when a reload fails).
func ReloadOnSIGHUP(ctx context.Context, reload func() error) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				_ = reload()
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// Shutdowner is what ShutdownTracing flushes: telemetry.Tracing, or anything else with buffered
// spans.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// ShutdownTracing flushes t for at most five seconds and logs when spans may be lost.
func ShutdownTracing(t Shutdowner, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.Warn("traces may be lost", "err", err)
	}
}

// DisplayName is how a --config path is shown: the built-in defaults when none was given.
func DisplayName(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

// ServerFlags are the flags every server subcommand shares.
type ServerFlags struct {
	ConfigFile  string
	ConfigCheck bool
}

// Register adds --config and --config.check to fs.
func (f *ServerFlags) Register(fs *flag.FlagSet, component string) {
	fs.StringVar(&f.ConfigFile, "config", "", "path to the "+component+" YAML configuration (default: built-in defaults)")
	fs.BoolVar(&f.ConfigCheck, "config.check", false, "validate the configuration, print the result and exit (2 if invalid)")
}

// Strings is a repeatable string flag.
type Strings []string

// String joins the values with commas, as flag.Value asks.
func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set appends one value.
func (s *Strings) Set(v string) error {
	*s = append(*s, v)
	return nil
}
