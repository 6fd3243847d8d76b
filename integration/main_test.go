//go:build integration

// Package integration runs edgeloop's real binary against real programs (promtool now; MinIO,
// Prometheus and Alertmanager as their parts land). Each test starts what it needs on loopback
// and stops it; a missing program fails the run in CI (CI=true) and skips elsewhere.
package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the edgeloop binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeloop-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "edgeloop")
	build := exec.Command("go", "build", "-o", binary, "github.com/edgeloop/edgeloop/cmd/edgeloop")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build edgeloop:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if reference.dir != "" {
		_ = os.RemoveAll(reference.dir)
	}
	os.Exit(code)
}

// process is a running edgeloop subcommand whose JSON log lines the test can wait for.
type process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	raw   strings.Builder
	done  chan struct{}
}

// startEnv runs `edgeloop args...` with env added to its environment and a JSON log on
// stderr; the process is killed when the test ends if it is still running.
func startEnv(t testing.TB, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stderr)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("edgeloop %s log:\n%s", strings.Join(args, " "), p.log())
		}
	})
	return p
}

func (p *process) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var line map[string]any
		p.mu.Lock()
		p.raw.WriteString(sc.Text() + "\n")
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			p.lines = append(p.lines, line)
		}
		p.mu.Unlock()
	}
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitFor returns the first log line whose msg is msg, failing the test after timeout.
func (p *process) waitFor(t testing.TB, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("edgeloop exited before logging %q", msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %q log line within %s", msg, timeout)
	return nil
}

// stop sends SIGTERM and returns the exit code.
func (p *process) stop(t testing.TB) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("edgeloop did not stop within 15s of SIGTERM")
	}
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr returns a loopback address with a port free now, for a process that must be told
// its address before it starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
