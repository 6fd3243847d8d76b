package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// CheckMetricsGolden compares what g exposes (text format) with the golden file, rewriting it
// first when update is set, lints it with client_golang's linter and, unless -short, with
// `promtool check metrics`.
func CheckMetricsGolden(t *testing.T, g prometheus.Gatherer, golden string, update bool) {
	t.Helper()
	var got bytes.Buffer
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	enc := expfmt.NewEncoder(&got, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("exposition differs from %s (run with -update and review the diff):\n%s", golden, got.String())
	}
	problems, err := testutil.GatherAndLint(g)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	if testing.Short() {
		return
	}
	cmd := exec.Command(Tool(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(want)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// MetricValue returns the value of the series of family name in g whose labels include want:
// a counter's, gauge's or untyped value, or a histogram's or summary's sample count. ok is
// false when there is no such series.
func MetricValue(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) (value float64, ok bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			case m.Summary != nil:
				return float64(m.GetSummary().GetSampleCount()), true
			default:
				return m.GetUntyped().GetValue(), true
			}
		}
	}
	return 0, false
}
