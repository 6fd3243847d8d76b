package modelsync

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsDocumented checks that docs/metrics.md names every sync metric. The exporter's
// own docs test cannot see them all: the vectors export nothing until a model has loaded or
// failed.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(nil)
	descs := make(chan *prometheus.Desc, 16)
	for _, c := range []prometheus.Collector{m.failures, m.info, m.loads, m.lastSuccess} {
		c.Describe(descs)
	}
	close(descs)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range descs {
		match := name.FindStringSubmatch(d.String())
		if match == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		n++
		if !strings.Contains(string(doc), "`"+match[1]+"`") {
			t.Errorf("docs/metrics.md does not document %s", match[1])
		}
	}
	if n != 4 {
		t.Fatalf("described %d metrics, want 4", n)
	}
}
