package ingest_test

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

func writeFileErr(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// waitFor polls cond for up to ten seconds, failing the test with what it waited for.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue is the value of the series of name in reg with the given label pairs (name,
// value, ...), failing the test when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	v, ok := testenv.MetricValue(t, reg, name, want)
	if !ok {
		t.Fatalf("no %s with labels %v", name, labels)
	}
	return v
}
