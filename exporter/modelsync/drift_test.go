package modelsync

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// TestDriftReferenceFromManifest: a version whose signed manifest carries a temperature and a
// drift reference is loaded with them, and requests through the inference front (built-in
// runtime) feed the class-mix and input signals; the next version, published without them,
// has those signals absent and its estimate uncalibrated.
func TestDriftReferenceFromManifest(t *testing.T) {
	f := newFixture(t, "latest")
	cfg := observe.DefaultConfig()
	cfg.Drift.Window = 10
	cfg.Drift.Signals = observe.Signals{ClassMix: true, Input: true}
	f.reg = prometheus.NewRegistry()
	var err error
	if f.core, err = observe.New(f.reg, cfg); err != nil {
		t.Fatal(err)
	}
	m := draft()
	m.Calibration = &modelrepo.Calibration{Temperature: 2, ECE: 0.01, ECEBefore: 0.05, EvalDigest: strings.Repeat("a", 64), Samples: 100}
	m.DriftReference = &modelrepo.DriftReference{
		ClassMix: []float64{0.2, 0.3, 0.5},
		Input: &modelrepo.InputReference{
			Channels: []modelrepo.ChannelStats{{Mean: 1, Std: 2}},
			Projections: &modelrepo.ProjectionReference{Seed: 3,
				Edges: [][]float64{{-1, 0, 1}, {-1, 0, 1}, {-1, 0, 1}, {-1, 0, 1}}, Histograms: [][]float64{
					{0.25, 0.25, 0.25, 0.25}, {0.25, 0.25, 0.25, 0.25}, {0.25, 0.25, 0.25, 0.25}, {0.25, 0.25, 0.25, 0.25}}},
		},
		Samples: 100, EvalDigest: strings.Repeat("a", 64),
	}
	if _, err := f.repo.Publish(context.Background(), "tiny", m, []modelrepo.File{modelrepo.BytesFile(modelrepo.ModelFile, f.onnx)}, f.signer, modelrepo.PublishOptions{Version: 1}); err != nil {
		t.Fatal(err)
	}
	f.start()
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // 2 rows each: a full window of 10
		if code, v := f.infer(); code != 200 || v != "1" {
			t.Fatalf("infer: %d from version %q", code, v)
		}
	}
	got := families(t, f.reg)
	for _, name := range []string{"edgeloop_class_mix_js_distance", "edgeloop_input_mean_shift", "edgeloop_input_std_ratio", "edgeloop_input_sketch_psi", "edgeloop_estimated_accuracy"} {
		if got[name] == 0 {
			t.Errorf("version 1: %s absent", name)
		}
	}
	// The request's inputs are [1 2 4 1] and [3 −1 0 2]: mean 1.5, against the reference's
	// mean 1 and std 2, a shift of 0.25.
	if v := gaugeValue(t, f.reg, "edgeloop_input_mean_shift"); v < 0.2499 || v > 0.2501 {
		t.Errorf("input mean shift %v, want 0.25", v)
	}

	// Version 2 without the fields, as every manifest before them.
	f.publish(2)
	if err := f.attempt(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if code, v := f.infer(); code != 200 || v != "2" {
			t.Fatalf("infer: %d from version %q", code, v)
		}
	}
	got = families(t, f.reg)
	for _, name := range []string{"edgeloop_class_mix_js_distance", "edgeloop_input_mean_shift", "edgeloop_input_std_ratio", "edgeloop_input_sketch_psi"} {
		if got[name] != 0 {
			t.Errorf("version 2 without a drift reference: %s has %d series", name, got[name])
		}
	}
	if got["edgeloop_estimated_accuracy"] != 1 {
		t.Errorf("version 2: %d estimated accuracy series, want 1 (version 1's went with it)", got["edgeloop_estimated_accuracy"])
	}
}

// families counts the series of each metric family gathered from reg.
func families(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		out[mf.GetName()] = len(mf.GetMetric())
	}
	return out
}

// gaugeValue returns the first series of the named gauge.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}
