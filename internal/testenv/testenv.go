// Package testenv finds the external programs that tests run (promtool, MinIO, Prometheus, ...).
//
// `make test` installs each pinned tool and passes its path in an environment variable named
// after it (PROMTOOL, MINIO, ...). A test that needs a tool asks Tool for it: outside CI a missing
// tool skips the test with a message saying how to get it; in CI (CI=true) it fails the test,
// because an integration test must never skip silently there.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Tool returns the path of the external program name, taken from the environment variable
// NAME (upper case) or else from PATH.
func Tool(t testing.TB, name string) string {
	t.Helper()
	env := strings.ToUpper(name)
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testenv: %s=%q: %v", env, p, err)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Missing(t, name+" not found: set "+env+" or run the tests through `make test`, which installs it")
	return ""
}

// Missing reports an absent test dependency: a failure in CI, a skip elsewhere.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s (CI=true: integration tests may not skip)", why)
	}
	t.Skip("testenv: " + why)
}

// FashionMNIST returns dir, the Fashion-MNIST directory (fmnist.DefaultDir), when its four IDX
// files are there; otherwise it reports the data set Missing.
func FashionMNIST(t testing.TB, dir string) string {
	t.Helper()
	for _, name := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			Missing(t, "Fashion-MNIST not found in "+dir+": apt-get install dataset-fashion-mnist (make test does)")
		}
	}
	return dir
}

// Buffer is an io.Writer safe for concurrent use: a child process's output copied by os/exec's
// goroutines, or a log written by a component's goroutine while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
