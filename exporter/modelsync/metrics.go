package modelsync

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sync's series, documented in docs/metrics.md.
type metrics struct {
	failures    *prometheus.CounterVec
	info        *prometheus.GaugeVec
	loads       *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	rollbacks   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_model_sync_failures_total",
			Help: "Model sync attempts that failed, by reason; the serving version stays.",
		}, []string{"model", "reason"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeloop_model_info",
			Help: "Constant 1 for the model version serving, with the SHA-256 of its model.onnx.",
		}, []string{"model", "version", "sha256"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_model_loads_total",
			Help: "Model versions loaded and swapped in, from the repository or the local cache.",
		}, []string{"model"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeloop_model_sync_last_success_timestamp_seconds",
			Help: "Unix time of the last sync attempt that reached the repository and left the selected version serving.",
		}, []string{"model"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_model_sync_rollbacks_refused_total",
			Help: "Signed aliases or latest hints refused because their sequence was below the last accepted, or listings below the signed latest hint; the serving version stays.",
		}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.failures, m.info, m.loads, m.lastSuccess, m.rollbacks)
	}
	return m
}

// init creates a model's counters at zero, so increase() sees the first event.
func (m *metrics) init(model string) {
	m.loads.WithLabelValues(model)
	m.rollbacks.WithLabelValues(model)
}

func (m *metrics) rollback(model string) { m.rollbacks.WithLabelValues(model).Inc() }

func (m *metrics) failure(model, reason string) { m.failures.WithLabelValues(model, reason).Inc() }

func (m *metrics) success(model string) {
	m.lastSuccess.WithLabelValues(model).Set(float64(time.Now().UnixNano()) / 1e9)
}

// serving moves edgeloop_model_info from the old version (0 for none) to the new one.
func (m *metrics) serving(model string, old int64, oldSHA string, version int64, sha string) {
	if old > 0 {
		m.info.DeleteLabelValues(model, strconv.FormatInt(old, 10), oldSHA)
	}
	m.info.WithLabelValues(model, strconv.FormatInt(version, 10), sha).Set(1)
	m.loads.WithLabelValues(model).Inc()
}
