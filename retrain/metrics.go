package retrain

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/retrain/gate"
)

// refusedEvalSet is the `source` of edgeloop_retrain_gate_refused_samples_total for samples of
// a configured evaluation set; captured samples count under gate.PartHeldOut. Set names are not
// labels: operators name them freely, and the reason is in gate.json and the log.
const refusedEvalSet = "eval_set"

// countRefused adds what the gate left out of set to edgeloop_retrain_gate_refused_samples_total.
func (m *metrics) countRefused(model string, set *gate.Set) {
	for _, r := range set.Refused {
		src := refusedEvalSet
		if r.Source == gate.PartHeldOut {
			src = gate.PartHeldOut
		}
		m.refused.WithLabelValues(model, src).Add(float64(r.Samples))
	}
}

// Trigger sources, the `source` label of edgeloop_retrain_triggers_total.
const (
	SourceAlertmanager = "alertmanager"
	SourceManual       = "manual"
	SourceLabels       = "labels"
	SourceSchedule     = "schedule"
	SourceDrift        = "drift"
)

// Reasons a trigger starts nothing, the `reason` label of
// edgeloop_retrain_triggers_skipped_total (docs/retrain.md, "Policy").
const (
	SkipDuplicate       = "duplicate" // a webhook already acted on (groupKey, fingerprint, start)
	SkipResolved        = "resolved"  // a resolved alert
	SkipNotConfigured   = "alert_not_configured"
	SkipNoModelLabel    = "no_model_label"    // the alert has no `model` label
	SkipUnknownModel    = "unknown_model"     // the model is not in `models:`
	SkipActiveJob       = "active_job"        // the model has a job in progress
	SkipCooldown        = "cooldown"          // the model's last job ended less than policy.cooldown ago
	SkipBudget          = "budget"            // policy.daily_budget jobs already started today
	SkipNotEnoughLabels = "not_enough_labels" // fewer than policy.min_new_labels new labels
)

var skipReasons = []string{SkipDuplicate, SkipResolved, SkipNotConfigured, SkipNoModelLabel, SkipUnknownModel,
	SkipActiveJob, SkipCooldown, SkipBudget, SkipNotEnoughLabels}

// metrics are the controller's metrics (docs/metrics.md, "Retrain").
type metrics struct {
	triggers    *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	jobs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	gate        *prometheus.CounterVec
	refused     *prometheus.CounterVec
	active      *prometheus.GaugeVec
	published   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, models []string) *metrics {
	m := &metrics{
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_retrain_triggers_total",
			Help: "Triggers received, by model and source (alertmanager, manual, labels, schedule, drift).",
		}, []string{"model", "source"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_retrain_triggers_skipped_total",
			Help: "Triggers that started no job, by model and reason.",
		}, []string{"model", "reason"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_retrain_jobs_total",
			Help: "Jobs ended, by model and result (promoted, rejected, failed, timed_out, cancelled, error).",
		}, []string{"model", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgeloop_retrain_job_duration_seconds",
			Help:    "Duration of jobs from trigger to result, by model.",
			Buckets: []float64{30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800},
		}, []string{"model"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeloop_retrain_last_success_timestamp_seconds",
			Help: "Unix time a job last published a new version of the model.",
		}, []string{"model"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_retrain_gate_decisions_total",
			Help: "Gate decisions on candidates, by model and decision (promote, refuse).",
		}, []string{"model", "decision"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeloop_retrain_gate_refused_samples_total",
			Help: "Samples the gate left out of an evaluation because they did not fit the serving version's shape, dtype or classes, by model and source (eval_set, held_out).",
		}, []string{"model", "source"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeloop_retrain_active_jobs",
			Help: "Jobs in progress, by model (0 or 1).",
		}, []string{"model"}),
		published: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeloop_retrain_published_version",
			Help: "The version the controller last published, by model (0: none yet).",
		}, []string{"model"}),
	}
	reg.MustRegister(m.triggers, m.skipped, m.jobs, m.duration, m.lastSuccess, m.gate, m.refused, m.active, m.published)
	// Every configured model's series exist from the start, so rate() and absent-based
	// alerts see a 0 before the first event rather than nothing.
	for _, model := range models {
		for _, r := range Results {
			m.jobs.WithLabelValues(model, string(r))
		}
		for _, r := range skipReasons {
			m.skipped.WithLabelValues(model, r)
		}
		for _, d := range []string{"promote", "refuse"} {
			m.gate.WithLabelValues(model, d)
		}
		for _, src := range []string{refusedEvalSet, gate.PartHeldOut} {
			m.refused.WithLabelValues(model, src)
		}
		m.active.WithLabelValues(model)
		m.duration.WithLabelValues(model)
		m.published.WithLabelValues(model)
	}
	return m
}
