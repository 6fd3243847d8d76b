package exporter

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgeloop/edgeloop/exporter/gpu"
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
)

// TestEveryMetricIsDocumented fails when the exporter exports a metric family that
// docs/metrics.md does not name. It gathers the exporter's own registry (with an inference model
// loaded and observed, per-stage durations on) and the GPU collector's golden outputs, which hold
// every GPU family in both naming modes.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := string(doc)

	cfg := DefaultConfig()
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.GPU.Enabled = gpu.EnabledFalse // the golden files below cover the GPU families
	cfg.Inference.Telemetry.Stages = true
	// A static upstream model and capture on, so the front and the capture pipeline register
	// their metrics (the upstream is never called).
	cfg.Inference.Front.Listen = "127.0.0.1:0"
	cfg.Models = []infer.ModelConfig{{Name: "fashion", Runtime: infer.RuntimeUpstream, Classes: []string{"a", "b"},
		Upstream: &upstream.Config{URL: "http://127.0.0.1:1"}}}
	dir := t.TempDir()
	cfg.Capture.Sampler.Enabled = true
	cfg.Capture.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Capture.Sender.URL = "http://127.0.0.1:1"
	cfg.Capture.Sender.TokenFile = filepath.Join(dir, "token")
	cfg.Capture.Sender.DeadLetterDir = filepath.Join(dir, "deadletter")
	if err := os.WriteFile(cfg.Capture.Sender.TokenFile, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Observer().Model(observe.ModelSpec{Name: "fashion", Version: "1", Classes: []string{"a", "b"}, Output: observe.Logits})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(context.Background(), observe.Observation{Latency: time.Millisecond, Outcome: observe.OutcomeSuccess, Scores: []float32{1, 2}})

	names := map[string]bool{}
	families, err := e.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		names[f.GetName()] = true
	}
	goldens, _ := filepath.Glob("gpu/testdata/*.prom")
	if len(goldens) == 0 {
		t.Fatal("no GPU golden files found")
	}
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		parsed, err := parser.TextToMetricFamilies(strings.NewReader(string(data)))
		if err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		for name := range parsed {
			names[name] = true
		}
	}
	// The Go runtime and process collectors are documented as go_* and process_*.
	generic := regexp.MustCompile(`^(go|process)_`)
	for name := range names {
		if generic.MatchString(name) {
			continue
		}
		if !strings.Contains(documented, "`"+name+"`") && !strings.Contains(documented, "`"+name+"{") {
			t.Errorf("docs/metrics.md does not document %s", name)
		}
	}
	if !names["edgeloop_inference_stage_duration_seconds"] || !names["DCGM_FI_DEV_GPU_UTIL"] || !names["edgeloop_gpu_memory_used_bytes"] {
		t.Fatalf("expected families missing from what was gathered: %d names", len(names))
	}
}
