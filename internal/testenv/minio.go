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
	if testing.Short() {
		t.Skip("testenv: -short: not starting MinIO")
	}
	bin := Tool(t, "minio")
	accessKey, secretKey = "test"+rand.Text()[:16], rand.Text()
	var lastErr error
	// The free port is found by binding and closing it, so another process may take it before
	// MinIO does: retry with a new port then.
	for range 3 {
		endpoint, lastErr = startMinIO(t, bin, accessKey, secretKey)
		if lastErr == nil {
			return endpoint, accessKey, secretKey
		}
	}
	t.Fatalf("testenv: starting MinIO: %v", lastErr)
	return "", "", ""
}

func startMinIO(t testing.TB, bin, accessKey, secretKey string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	cmd := exec.Command(bin, "server", "--quiet",
		"--address", endpoint,
		"--certs-dir", filepath.Join(dir, "certs"),
		filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+accessKey,
		"MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", bin, err)
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
	if err := waitLive(endpoint, exited); err != nil {
		stop()
		return "", fmt.Errorf("%w\nminio output:\n%s", err, out.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("minio output:\n%s", out.String())
		}
	})
	return endpoint, nil
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
