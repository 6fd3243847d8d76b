// Package scrape runs many small metric collectors behind one prometheus.Collector, the way
// node_exporter's collector package does: each named subcollector reports its own
// edgeloop_exporter_scrape_collector_success and _duration_seconds, and an error or a panic in
// one of them is logged and marks only that one failed, so a single broken source (one GPU, one
// file) never empties a scrape.
package scrape

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoData is what a subcollector returns when it has nothing to report and that is not a
// failure (the hardware does not support the reading, say). Unlike node_exporter, which counts
// it as a failure, a Set reports success 1 for it and logs it only at debug level: "absent" is
// a normal state here, and alerting on success == 0 must not fire for it.
var ErrNoData = errors.New("no data")

// Subcollector is one small source of metrics, run on every scrape.
type Subcollector interface {
	// Update sends the source's current metrics on ch. It returns ErrNoData (possibly wrapped)
	// when there is nothing to report, or an error when reading the source failed; metrics
	// sent before a failure are still exported.
	Update(ch chan<- prometheus.Metric) error
}

// SubcollectorFunc adapts a function to the Subcollector interface.
type SubcollectorFunc func(ch chan<- prometheus.Metric) error

// Update calls f(ch).
func (f SubcollectorFunc) Update(ch chan<- prometheus.Metric) error { return f(ch) }

// Set is a prometheus.Collector that runs every one of its subcollectors concurrently on each
// scrape. It is unchecked (Describe sends nothing) because what its subcollectors export, GPU
// series for instance, is only known at scrape time.
type Set struct {
	logger   *slog.Logger
	names    []string // sorted, so logs and tests see a stable order
	subs     []Subcollector
	failing  []bool // per subcollector: did its last run fail? Guarded by mu.
	mu       sync.Mutex
	success  *prometheus.Desc
	duration *prometheus.Desc
}

// NewSet returns a Set running the subcollectors keyed by their names. Names become the
// `collector` label value, so they must be unique across everything registered in one registry
// (prefix them with the component, like "gpu_power").
func NewSet(logger *slog.Logger, subs map[string]Subcollector) *Set {
	names := make([]string, 0, len(subs))
	for name := range subs {
		names = append(names, name)
	}
	slices.Sort(names)
	s := &Set{
		logger:  logger,
		names:   names,
		subs:    make([]Subcollector, len(names)),
		failing: make([]bool, len(names)),
		success: prometheus.NewDesc("edgeloop_exporter_scrape_collector_success",
			"Whether the exporter collector succeeded on this scrape (1) or failed (0).",
			[]string{"collector"}, nil),
		duration: prometheus.NewDesc("edgeloop_exporter_scrape_collector_duration_seconds",
			"How long the exporter collector took on this scrape.",
			[]string{"collector"}, nil),
	}
	for i, name := range names {
		s.subs[i] = subs[name]
	}
	return s
}

// Names returns the subcollectors' names in the order they are reported.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Describe sends nothing: a Set is an unchecked collector.
func (s *Set) Describe(chan<- *prometheus.Desc) {}

// Collect runs every subcollector concurrently and waits for all of them.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for i := range s.subs {
		wg.Go(func() { s.run(i, ch) })
	}
	wg.Wait()
}

// run executes one subcollector and reports its success and duration.
func (s *Set) run(i int, ch chan<- prometheus.Metric) {
	name := s.names[i]
	start := time.Now()
	err := update(name, s.subs[i], ch)
	elapsed := time.Since(start)

	ok := err == nil || errors.Is(err, ErrNoData)
	s.log(i, err, elapsed)
	v := 0.0
	if ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(s.duration, prometheus.GaugeValue, elapsed.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(s.success, prometheus.GaugeValue, v, name)
}

// update calls the subcollector, turning a panic into an error so that a bug in one source
// costs that source's metrics only, not the scrape or the process.
func update(name string, c Subcollector, ch chan<- prometheus.Metric) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{collector: name, value: r, stack: debug.Stack()}
		}
	}()
	return c.Update(ch)
}

// panicError records a recovered panic with the stack it happened on.
type panicError struct {
	collector string
	value     any
	stack     []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("collector %s panicked: %v", e.collector, e.value)
}

// log reports a failure loudly when it starts and quietly while it persists: an edge node may
// scrape a broken GPU every 15s for weeks, and one error line per scrape would drown the log.
// Recovery is logged too, so the log still tells when the failure ended.
func (s *Set) log(i int, err error, elapsed time.Duration) {
	name := s.names[i]
	failed := err != nil && !errors.Is(err, ErrNoData)
	s.mu.Lock()
	wasFailing := s.failing[i]
	s.failing[i] = failed
	s.mu.Unlock()

	var pe *panicError
	switch {
	case errors.As(err, &pe):
		// A panic is a bug: always worth an error line, with the stack to fix it.
		s.logger.Error("collector panicked", "collector", name, "duration_seconds", elapsed.Seconds(), "err", err, "stack", string(pe.stack))
	case failed && !wasFailing:
		s.logger.Error("collector failed", "collector", name, "duration_seconds", elapsed.Seconds(), "err", err)
	case failed:
		s.logger.Debug("collector still failing", "collector", name, "duration_seconds", elapsed.Seconds(), "err", err)
	case wasFailing:
		s.logger.Info("collector recovered", "collector", name)
	case err != nil:
		s.logger.Debug("collector returned no data", "collector", name, "err", err)
	}
}
