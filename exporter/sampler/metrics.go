package sampler

import "github.com/prometheus/client_golang/prometheus"

// skipReason is why a candidate that matched a strategy was not captured. Its String is the
// `reason` label of edgeloop_samples_skipped_total.
type skipReason uint8

const (
	skipNone skipReason = iota
	// The order is the order of the stages, so the furthest stage a candidate reached is the
	// largest value (see Decide).
	skipProbability
	skipRateLimit
	skipByteBudget
	skipDuplicate
	skipNearDuplicate
	numSkipReasons
)

// The sampler's skip reasons: the `reason` label values it sets, and Decision.Skipped.
const (
	// SkipProbability: every strategy that matched lost its probability draw.
	SkipProbability = "probability"
	// SkipRateLimit: a strategy's or the overall token bucket was empty.
	SkipRateLimit = "rate_limit"
	// SkipByteBudget: the sample would pass the day's max_bytes_per_day.
	SkipByteBudget = "byte_budget"
	// SkipDuplicate: the same input values were captured within dedup.window.
	SkipDuplicate = "duplicate"
	// SkipNearDuplicate: an input within dedup.max_distance bits was captured within
	// dedup.window.
	SkipNearDuplicate = "near_duplicate"
)

func (r skipReason) String() string {
	switch r {
	case skipProbability:
		return SkipProbability
	case skipRateLimit:
		return SkipRateLimit
	case skipByteBudget:
		return SkipByteBudget
	case skipDuplicate:
		return SkipDuplicate
	case skipNearDuplicate:
		return SkipNearDuplicate
	}
	return ""
}

// metrics are the sampler's series, documented in docs/sampler.md. One collector holds the
// three vectors so that registering is all or nothing.
type metrics struct {
	considered *prometheus.CounterVec
	captured   *prometheus.CounterVec
	skipped    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		considered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_samples_considered_total",
			Help: "Predictions the capture sampler decided on, by model.",
		}, []string{"model"}),
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_samples_captured_total",
			Help: "Predictions the capture sampler chose to capture, by model and the strategy that chose them.",
		}, []string{"model", "strategy"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_samples_skipped_total",
			Help: "Predictions that matched a capture strategy but were not captured, by model and reason.",
		}, []string{"model", "reason"}),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.considered.Describe(ch)
	m.captured.Describe(ch)
	m.skipped.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.considered.Collect(ch)
	m.captured.Collect(ch)
	m.skipped.Collect(ch)
}
