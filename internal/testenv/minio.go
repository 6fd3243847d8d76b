package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// MinIO starts a real MinIO server for the calling test and returns its endpoint (host:port,
// plain HTTP) and root credentials. The server listens on a free loopback port, keeps its data
// in a temporary directory, has random credentials and no web console, and is stopped when the
// test (including its subtests) ends.
//
// Each call starts its own server (about half a second), so tests never see each other's
// objects; a test with many cases calls MinIO once and runs its cases as subtests against it.
// The binary comes from Tool(t, "minio") (the MINIO variable that `make test` sets); short
// mode (`make test-unit`) skips the test, as it runs no external programs.
func MinIO(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	m := StartMinIO(t)
	return m.Endpoint, m.AccessKey, m.SecretKey
}

// MinIOServer is a MinIO process that a test can stop and start again on the same port and
// data directory, to play an object-store outage.
type MinIOServer struct {
	// Endpoint is host:port (plain HTTP); AccessKey and SecretKey the root credentials.
	Endpoint, AccessKey, SecretKey string

	t    testing.TB
	bin  string
	dir  string
	out  *Buffer
	mu   sync.Mutex
	stop func()
	pid  int
}

// Pid is the running server's process id (0 while stopped), for benchmarks that account its
// CPU time.
func (m *MinIOServer) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
}

// StartMinIO is MinIO returning the server, which Stop and Start control. It is stopped when
// the test ends.
func StartMinIO(t testing.TB) *MinIOServer {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: -short: not starting MinIO")
	}
	m := &MinIOServer{t: t, bin: Tool(t, "minio"), AccessKey: "test" + rand.Text()[:16], SecretKey: rand.Text(), out: &Buffer{}}
	var lastErr error
	// The free port is found by binding and closing it, so another process may take it before
	// MinIO does: retry with a new port then.
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		m.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		m.dir = t.TempDir()
		if lastErr = m.start(); lastErr == nil {
			t.Cleanup(func() {
				m.Stop()
				if t.Failed() {
					t.Logf("minio output:\n%s", m.out.String())
				}
			})
			return m
		}
	}
	t.Fatalf("testenv: starting MinIO: %v", lastErr)
	return nil
}

// Stop stops the server (SIGINT, then SIGKILL after ten seconds); the data stays.
func (m *MinIOServer) Stop() {
	m.mu.Lock()
	stop := m.stop
	m.stop, m.pid = nil, 0
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Start starts a stopped server again on the same port and data, failing the test if it
// cannot (another process may have taken the port meanwhile, which loopback tests make rare).
func (m *MinIOServer) Start() {
	m.t.Helper()
	var err error
	for range 3 {
		if err = m.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.t.Fatalf("testenv: restarting MinIO: %v", err)
}

func (m *MinIOServer) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil {
		return nil
	}
	cmd := exec.Command(m.bin, "server", "--quiet",
		"--address", m.Endpoint,
		"--certs-dir", filepath.Join(m.dir, "certs"),
		filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", m.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if err := waitLive(m.Endpoint, exited); err != nil {
		stop()
		return fmt.Errorf("%w\nminio output:\n%s", err, m.out.String())
	}
	m.stop, m.pid = stop, cmd.Process.Pid
	return nil
}

// waitLive polls MinIO's liveness endpoint until it answers 200, the process exits, or a
// generous deadline passes (a loaded CI machine can be slow to start a 150 MB binary).
func waitLive(endpoint string, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + endpoint + "/minio/health/live"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("minio exited before it was live: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("minio not live at %s after 60s", url)
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
