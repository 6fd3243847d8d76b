package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var testDesc = prometheus.NewDesc("test_value", "A test value.", []string{"source"}, nil)

func constant(source string, v float64) SubcollectorFunc {
	return func(ch chan<- prometheus.Metric) error {
		ch <- prometheus.MustNewConstMetric(testDesc, prometheus.GaugeValue, v, source)
		return nil
	}
}

func TestSetSurvivesFailureAndPanic(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	set := NewSet(logger, map[string]Subcollector{
		"good": constant("good", 1),
		"failing": SubcollectorFunc(func(ch chan<- prometheus.Metric) error {
			// What was sent before the failure is still exported.
			ch <- prometheus.MustNewConstMetric(testDesc, prometheus.GaugeValue, 2, "failing")
			return errors.New("read sensor: device is gone")
		}),
		"panicking": SubcollectorFunc(func(chan<- prometheus.Metric) error {
			panic("sensor driver bug") // stands for a bug in a collector or a cgo call

		}),
		"empty": SubcollectorFunc(func(chan<- prometheus.Metric) error {
			return fmt.Errorf("temperature: %w", ErrNoData)
		}),
	})

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(set)
	want := `
# HELP edgeloop_exporter_scrape_collector_success Whether the exporter collector succeeded on this scrape (1) or failed (0).
# TYPE edgeloop_exporter_scrape_collector_success gauge
edgeloop_exporter_scrape_collector_success{collector="empty"} 1
edgeloop_exporter_scrape_collector_success{collector="failing"} 0
edgeloop_exporter_scrape_collector_success{collector="good"} 1
edgeloop_exporter_scrape_collector_success{collector="panicking"} 0
# HELP test_value A test value.
# TYPE test_value gauge
test_value{source="failing"} 2
test_value{source="good"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"edgeloop_exporter_scrape_collector_success", "test_value"); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	durations := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "edgeloop_exporter_scrape_collector_duration_seconds" {
			continue
		}
		if mf.GetType() != dto.MetricType_GAUGE {
			t.Errorf("duration type = %v, want gauge", mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			durations[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	for _, name := range []string{"empty", "failing", "good", "panicking"} {
		d, ok := durations[name]
		if !ok || d < 0 {
			t.Errorf("duration for %q = %v, %v; want a non-negative value", name, d, ok)
		}
	}

	out := logs.String()
	for _, wantLog := range []string{
		`msg="collector failed" collector=failing`,
		`msg="collector panicked" collector=panicking`,
		`msg="collector returned no data" collector=empty`,
		"sensor driver bug",
	} {
		if !strings.Contains(out, wantLog) {
			t.Errorf("log lacks %q:\n%s", wantLog, out)
		}
	}
}

func TestSetLogsPersistentFailureOnce(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fail := true
	set := NewSet(logger, map[string]Subcollector{
		"flaky": SubcollectorFunc(func(chan<- prometheus.Metric) error {
			if fail {
				return errors.New("broken")
			}
			return nil
		}),
	})
	for range 3 {
		testutil.CollectAndCount(set)
	}
	fail = false
	testutil.CollectAndCount(set)

	out := logs.String()
	if n := strings.Count(out, "collector failed"); n != 1 {
		t.Errorf("logged the failure %d times at info level and above, want once:\n%s", n, out)
	}
	if !strings.Contains(out, `msg="collector recovered" collector=flaky`) {
		t.Errorf("recovery not logged:\n%s", out)
	}
}

func TestSetNames(t *testing.T) {
	set := NewSet(slog.New(slog.DiscardHandler), map[string]Subcollector{"b": constant("b", 1), "a": constant("a", 1)})
	if got := set.Names(); strings.Join(got, ",") != "a,b" {
		t.Errorf("Names() = %v, want [a b]", got)
	}
}
