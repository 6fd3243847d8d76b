package demo

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDriftSignalThresholds: the thresholds the demo judges its drift signals by are the
// alerts' (alerts/rules/edgeloop-alerts.yml), so that "crossed its alert's threshold" is true.
func TestDriftSignalThresholds(t *testing.T) {
	rules, err := os.ReadFile("../alerts/rules/edgeloop-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range driftSignals() {
		re := regexp.MustCompile(`expr: max by \(model, version, node\) \((?:abs\((?:ln\()?)?` + sig.metric + `\)*\) > ([0-9.]+)\n`)
		m := re.FindSubmatch(rules)
		if m == nil {
			t.Errorf("%s: no alert on max by (model, version, node) of %s in the rules", sig.name, sig.metric)
			continue
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v != sig.threshold {
			t.Errorf("%s: the demo's threshold is %g, the alert's %g", sig.name, sig.threshold, v)
		}
	}
}

func TestRegainedShare(t *testing.T) {
	for _, c := range []struct{ before, drift, after, want float64 }{
		{0.88, 0.48, 0.88, 1},
		{0.88, 0.48, 0.84, 0.9},
		{0.88, 0.48, 0.48, 0},
		{0.88, 0.48, 0.40, -0.2},
		{0.88, 0.90, 0.95, math.NaN()}, // the drift took nothing away
		{0.88, 0.48, math.NaN(), math.NaN()},
	} {
		got := regainedShare(c.before, c.drift, c.after)
		if math.IsNaN(c.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-c.want) > 1e-9 {
			t.Errorf("regainedShare(%g, %g, %g) = %g, want %g", c.before, c.drift, c.after, got, c.want)
		}
	}
}

// TestSummaryShowsEstimatesAndSignals: the summary puts the estimate beside the true accuracy,
// the regained share beside its target, and the fired signals earliest first.
func TestSummaryShowsEstimatesAndSignals(t *testing.T) {
	sigs := []SignalFired{
		{Signal: "input sketch", Node: "edge-3", After: 9 * time.Second, Value: 0.4},
		{Signal: "confidence PSI", Node: "edge-2", After: 12 * time.Second, Value: 0.5},
		{Signal: "class mix", Node: "edge-2", After: 9 * time.Second, Value: 0.3},
	}
	sortSignals(sigs)
	if got := []string{sigs[0].Signal, sigs[1].Signal, sigs[2].Signal}; strings.Join(got, ",") != "class mix,input sketch,confidence PSI" {
		t.Errorf("signals sorted %v", got)
	}
	s := &Summary{OK: true, NewVersion: "2", AccuracyBefore: 0.88, AccuracyDrift: 0.48, AccuracyAfter: 0.86,
		EstimatedBefore: 0.86, EstimatedDrift: 0.62, EstimatedAfter: math.NaN(), RecoveryTarget: 0.9, Regained: 0.95,
		Signals: sigs, TimeToRecover: 70 * time.Second}
	text := SummaryText(s)
	for _, want := range []string{
		"regained 95% of the accuracy they lost (target 90%) on version 2",
		"before drift 0.860   under drift 0.620   after retrain n/a (label-free",
		"class mix +9s (edge-2), input sketch +9s (edge-3), confidence PSI +12s (edge-2)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
	rows := summaryRows(s)
	found := 0
	for _, r := range rows {
		switch r.Label {
		case "share of the lost accuracy regained (target)":
			found++
			if r.Value != "95% (90%)" {
				t.Errorf("%s: %q", r.Label, r.Value)
			}
		case "drift onset → recovered model serving":
			found++
			if r.Value != repDuration(70*time.Second) {
				t.Errorf("%s: %q", r.Label, r.Value)
			}
		}
	}
	if found != 2 {
		t.Errorf("%d of 2 rows found in %v", found, rows)
	}
	if got := repSignals(nil); got != "none crossed its alert's threshold" {
		t.Errorf("no signals: %q", got)
	}
}

// TestGaugeMaxOf: a signal is the largest of its series after the alert's own reduction: the
// absolute mean shift, |ln| of the spread ratio (a ratio of 0 has none), the plain value else.
func TestGaugeMaxOf(t *testing.T) {
	reg := prometheus.NewRegistry()
	shift := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shift"}, []string{"channel"})
	ratio := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ratio"}, []string{"channel"})
	reg.MustRegister(shift, ratio)
	shift.WithLabelValues("0").Set(0.3)
	shift.WithLabelValues("1").Set(-0.7)
	ratio.WithLabelValues("0").Set(1.4)
	ratio.WithLabelValues("1").Set(0.5)
	ratio.WithLabelValues("2").Set(0)
	for _, tc := range []struct {
		name string
		of   func(float64) float64
		want float64
	}{
		{"shift", nil, 0.3},
		{"shift", math.Abs, 0.7},
		{"ratio", absLog, math.Log(2)},
		{"absent", nil, math.NaN()},
	} {
		got := gaugeMaxOf(reg, tc.name, tc.of)
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
