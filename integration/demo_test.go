//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestDemo runs `edgeloop demo` as `make demo` does (without a terminal: progress lines) on a
// fresh work directory, base model training included: it must end by itself with exit 0 once
// the drifted nodes serve a retrained model that recovered their accuracy, print the summary
// and write the report.
func TestDemo(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "--data", dataDir, "--work-dir", work, "--deadline", "7m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "run", "demo.log"))
		t.Fatalf("edgeloop demo: %v after %s\n%s\nlast of demo.log:\n%s", err, took.Round(time.Second), out.String(), tail(string(log), 4000))
	}
	text := out.String()
	t.Logf("edgeloop demo took %s:\n%s", took.Round(time.Second), text)
	for _, want := range []string{"training the base model", "every node serves version 1", "contrast ×0.70", "version 2 published", "edgeloop demo: recovered in"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	acc := func(name string) float64 {
		m := regexp.MustCompile(name + ` (\d\.\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("summary lacks %q", name)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	before, under, after := acc("before drift"), acc("under drift"), acc("after retrain")
	if !(under < before-0.2 && after > under+0.2) {
		t.Errorf("accuracy before %.3f, under drift %.3f, after retrain %.3f: want a drop and a recovery of more than 0.2 each", before, under, after)
	}
	report := filepath.Join(work, "run", "report.html")
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(html), "<svg"); n != 3 || !strings.Contains(string(html), "edge-3") {
		t.Errorf("report %s: %d charts, want 3 with every node", report, n)
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
