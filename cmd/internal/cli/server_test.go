package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// testServer is a Server whose Run returns runErr at once, or, when wait is set, blocks until
// its context ends (a signal), counting Reload calls.
type testServer struct {
	runErr  error
	wait    bool
	started chan struct{}
	reloads chan struct{}
}

func (s *testServer) Run(ctx context.Context) error {
	close(s.started)
	if s.wait {
		<-ctx.Done()
	}
	return s.runErr
}

func (s *testServer) Reload() error {
	s.reloads <- struct{}{}
	return nil
}

type testConfig struct{ Name string }

func testCommand(loadErr, newErr error, srv *testServer) ServerCommand[testConfig] {
	return ServerCommand[testConfig]{
		Prog:      "prog server",
		Component: "server",
		Load: func(path string) (testConfig, error) {
			return testConfig{Name: path}, loadErr
		},
		Telemetry: func(testConfig) (telemetry.LogConfig, telemetry.TracingConfig) {
			return telemetry.LogConfig{Level: "info", Format: "json"}, telemetry.TracingConfig{}
		},
		New: func(_ testConfig, _ *slog.Logger, _ *telemetry.Tracing) (Server, error) {
			if newErr != nil {
				return nil, newErr
			}
			return srv, nil
		},
	}
}

func TestRunServerExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name           string
		args           []string
		loadErr        error
		newErr         error
		runErr         error
		wantCode       int
		wantOut        string // in stdout
		wantErr        string // in stderr
		wantRunStarted bool
	}{
		{name: "config check", args: []string{"--config.check"}, wantCode: ExitOK, wantOut: "configuration (built-in defaults) is valid"},
		{name: "config check of a file", args: []string{"--config", "x.yaml", "--config.check"}, wantCode: ExitOK, wantOut: "configuration x.yaml is valid"},
		{name: "invalid configuration", args: []string{"--config", "x.yaml"}, loadErr: errors.New("listen: bad"), wantCode: ExitUsage, wantErr: "prog server: invalid configuration:\nlisten: bad"},
		{name: "bad flag", args: []string{"--nope"}, wantCode: ExitUsage, wantErr: "flag provided but not defined"},
		{name: "help", args: []string{"-h"}, wantCode: ExitOK, wantErr: "path to the server YAML configuration"},
		{name: "cannot start", newErr: errors.New("port in use"), wantCode: ExitFailure, wantErr: `"msg":"cannot start","component":"server","err":"port in use"`},
		{name: "stops on error", runErr: errors.New("disk gone"), wantCode: ExitFailure, wantErr: `"msg":"stopped on error","component":"server","err":"disk gone"`, wantRunStarted: true},
		{name: "clean stop", wantCode: ExitOK, wantRunStarted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &testServer{runErr: tc.runErr, started: make(chan struct{}), reloads: make(chan struct{}, 1)}
			var stdout, stderr bytes.Buffer
			code := RunServer(testCommand(tc.loadErr, tc.newErr, srv), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantOut) || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.wantOut, stderr.String(), tc.wantErr)
			}
			select {
			case <-srv.started:
				if !tc.wantRunStarted {
					t.Fatal("the server ran")
				}
			default:
				if tc.wantRunStarted {
					t.Fatal("the server did not run")
				}
			}
		})
	}
}

// TestRunServerSignals: SIGHUP reloads the running server, SIGTERM stops it with exit 0.
func TestRunServerSignals(t *testing.T) {
	srv := &testServer{wait: true, started: make(chan struct{}), reloads: make(chan struct{}, 1)}
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- RunServer(testCommand(nil, nil, srv), nil, &stdout, &stderr) }()
	<-srv.started
	// The SIGHUP handler is installed before Run, so the signal cannot kill the test process.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not reload the server")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("exit code after SIGTERM %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the server")
	}
}
