package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHistQuantile checks the histogram's quantiles against the exact ones of known data:
// within its 1 % bucket width, never above the maximum.
func TestHistQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Millisecond) // 1 ms … 10 s, uniform
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 9.9}, {0.999, 9.99}, {1, 10}} {
		got := h.quantile(tc.q)
		if math.Abs(got-tc.want)/tc.want > 0.011 || got > 10 {
			t.Errorf("quantile(%g) = %.4f s, want %.4f s within 1.1 %%", tc.q, got, tc.want)
		}
	}
	if s := h.summary(); s.Count != 10000 || s.Max != 10 {
		t.Errorf("summary %+v: want 10000 samples, max 10 s", s)
	}
	var empty hist
	if empty.quantile(0.99) != 0 {
		t.Error("an empty histogram's quantile is not 0")
	}
}

// TestParseFlags checks the flags' rules.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{args: nil},
		{args: []string{"-nodes", "0"}, err: "-nodes"},
		{args: []string{"-rate", "0"}, err: "-rate"},
		{args: []string{"-verify", "md5"}, err: "-verify"},
		{args: []string{"-sender", "fast"}, err: "-sender"},
		{args: []string{"-net-fraction", "2"}, err: "-net-fraction"},
		{args: []string{"-bucket", "s3://b"}, err: "-collector-url"},
		{args: []string{"extra"}, err: "unexpected"},
	} {
		_, err := parseFlags(tc.args, &strings.Builder{})
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want one naming %q", tc.args, err, tc.err)
		}
	}
}

// TestPlot writes the plot of two summaries and checks it names both fleets and both goals.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, s := range []Summary{
		{Nodes: 2000, BatchLatency: Latency{P99: 0.4}, Collector: ProcSummary{RSSPeakMiB: 300}},
		{Nodes: 1000, BatchLatency: Latency{P99: 0.2}, Collector: ProcSummary{RSSPeakMiB: 250}},
	} {
		b, _ := json.Marshal(s)
		f := filepath.Join(dir, "s"+time.Now().Format("150405.000000000")+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	out := filepath.Join(dir, "plot.svg")
	if err := plotFiles(out, files); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	svg := string(b)
	for _, want := range []string{"<svg", ">1000<", ">2000<", "goal &lt; 1 s", "goal ≤ 512", "</svg>"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot has no %q", want)
		}
	}
	// Sorted by nodes: 1000's label comes first.
	if strings.Index(svg, ">1000<") > strings.Index(svg, ">2000<") {
		t.Error("plot is not sorted by nodes")
	}
}
