package sender

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Batch outcomes: the batches_total label values.
const (
	outcomeSent   = "sent"   // the collector answered 200: every sample durable or rejected
	outcomeFailed = "failed" // anything else: retried, split or dead-lettered
)

// Error reasons: the errors_total label values.
const (
	reasonNetwork     = "network"       // no HTTP response: connection refused, reset, timeout, TLS
	reasonAuth        = "http_4xx_auth" // 401 or 403
	reasonBadRequest  = "http_400"      // the collector could not read the batch
	reasonTooLarge    = "http_413"      // the batch is above the collector's limits
	reasonTooMany     = "http_429"      // the collector is overloaded
	reasonUnavailable = "http_503"      // the collector is unavailable
	reasonServer      = "http_5xx"      // any other 5xx
	reasonOther       = "http_other"    // any other status (3xx, other 4xx): usually a wrong url
	reasonBadResponse = "bad_response"  // a 200 whose body is not the contract's JSON
	reasonQueue       = "queue"         // the spool failed to peek or ack
	reasonDeadLetter  = "dead_letter"   // a dead-letter entry could not be written
	reasonUndecodable = "undecodable"   // a spool record is not a valid sample
)

var errorReasons = []string{
	reasonNetwork, reasonAuth, reasonBadRequest, reasonTooLarge, reasonTooMany, reasonUnavailable,
	reasonServer, reasonOther, reasonBadResponse, reasonQueue, reasonDeadLetter, reasonUndecodable,
}

// Dead-letter reasons: the dead_letter_samples_total label values.
const (
	deadRejected    = "rejected"    // listed as rejected in a 200 response
	deadTooLarge    = "too_large"   // alone in a batch and still refused with 413
	deadBadRequest  = "bad_request" // alone in a batch and still refused with 400
	deadUndecodable = "undecodable" // the spool record does not decode to a valid sample
)

// Reasons a 200 answer is not taken as the collector's account of a batch: the
// bad_responses_total label values. The batch is then not acknowledged but sent again.
const (
	badNotJSON       = "not_json"       // the body is not a JSON object
	badMissingField  = "missing_field"  // accepted, duplicates or rejected is absent (or null)
	badCountMismatch = "count_mismatch" // accepted + duplicates + rejected is not the batch's size, or a count is negative
	badUnknownKey    = "unknown_key"    // a rejected key the batch does not hold, or one listed twice
)

var badResponseReasons = []string{badNotJSON, badMissingField, badCountMismatch, badUnknownKey}

// What became of a sample whose dead-letter entry could not be written: the
// dead_letter_failures_total label values.
const (
	dlRetained = "retained" // kept in the spool and sent again later (a write error)
	dlDropped  = "dropped"  // logged only: the entry alone is larger than dead_letter_max_bytes
)

// metrics are the sender's series, documented in docs/sender.md and docs/metrics.md. Labelled
// children are created once, at zero, so that increase() sees the first event.
type metrics struct {
	batches         map[string]prometheus.Counter
	samplesSent     prometheus.Counter
	samplesRejected prometheus.Counter
	deadLetter      map[string]prometheus.Counter
	deadLetterBytes prometheus.Gauge
	bytesSent       prometheus.Counter
	duration        prometheus.Histogram
	errors          map[string]prometheus.Counter
	backoff         prometheus.Gauge
	throttled       prometheus.Counter
	lastSuccess     prometheus.Gauge

	badResponses       map[string]prometheus.Counter
	deadLetterFailures map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	batches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeloop_sender_batches_total",
		Help: "Batch requests made to the collector, by outcome: sent (200) or failed (retried, split or dead-lettered).",
	}, []string{"outcome"})
	deadLetter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeloop_sender_dead_letter_samples_total",
		Help: "Samples (or undecodable spool records) moved to the dead-letter directory instead of being sent, by reason.",
	}, []string{"reason"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeloop_sender_errors_total",
		Help: "Failures of the sender, by reason; failed requests are retried, split or dead-lettered.",
	}, []string{"reason"})
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeloop_sender_bad_responses_total",
		Help: "200 answers that do not account for every sample of the batch, by reason; the batch is not acknowledged but sent again.",
	}, []string{"reason"})
	dlFail := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeloop_sender_dead_letter_failures_total",
		Help: "Refused samples whose dead-letter entry could not be written, by what became of them: retained (kept in the spool, sent again) or dropped (larger than the cap).",
	}, []string{"action"})
	m := &metrics{
		badResponses:       map[string]prometheus.Counter{},
		deadLetterFailures: map[string]prometheus.Counter{},
		batches:            map[string]prometheus.Counter{},
		deadLetter:         map[string]prometheus.Counter{},
		errors:             map[string]prometheus.Counter{},
		samplesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeloop_sender_samples_sent_total",
			Help: "Samples the collector accepted (stored now or earlier), durable at the collector.",
		}),
		samplesRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeloop_sender_samples_rejected_total",
			Help: "Samples the collector rejected as invalid in a 200 response; they are dead-lettered.",
		}),
		deadLetterBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeloop_sender_dead_letter_bytes",
			Help: "Bytes held in the dead-letter directory.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeloop_sender_bytes_sent_total",
			Help: "Compressed request body bytes of batch requests that got an HTTP response.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeloop_sender_request_duration_seconds",
			Help:    "Duration of batch requests to the collector, whatever their outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		backoff: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeloop_sender_backoff_seconds",
			Help: "The retry wait in progress after a failed request; 0 when not backing off.",
		}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeloop_sender_throttled_seconds_total",
			Help: "Time spent waiting for the drain rate limits (max_rate, max_bytes_per_second).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeloop_sender_last_success_timestamp_seconds",
			Help: "Unix time of the last batch the collector answered with 200.",
		}),
	}
	for _, o := range []string{outcomeSent, outcomeFailed} {
		m.batches[o] = batches.WithLabelValues(o)
	}
	for _, r := range []string{deadRejected, deadTooLarge, deadBadRequest, deadUndecodable} {
		m.deadLetter[r] = deadLetter.WithLabelValues(r)
	}
	for _, r := range errorReasons {
		m.errors[r] = errs.WithLabelValues(r)
	}
	for _, r := range badResponseReasons {
		m.badResponses[r] = bad.WithLabelValues(r)
	}
	for _, a := range []string{dlRetained, dlDropped} {
		m.deadLetterFailures[a] = dlFail.WithLabelValues(a)
	}
	if reg != nil {
		reg.MustRegister(bad, dlFail, batches, deadLetter, errs, m.samplesSent, m.samplesRejected, m.deadLetterBytes,
			m.bytesSent, m.duration, m.backoff, m.throttled, m.lastSuccess)
	}
	return m
}
