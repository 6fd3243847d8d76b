package spool

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the spool's series, documented in docs/spool.md. The gauges and counters are
// read from the spool's own state at scrape time, so they always agree with Stats and cost
// the append path nothing; only the fsync histogram is observed as it happens.
type metrics struct {
	s     *Spool
	fsync prometheus.Histogram

	records, bytes, oldestAge, unsynced, dropped, corrupt, paused, segments *prometheus.Desc
	fsyncErrors, rewritten, diskErrors                                      *prometheus.Desc
}

func newMetrics(s *Spool, prefix string) *metrics {
	if prefix == "" {
		prefix = DefaultMetricPrefix
	}
	return &metrics{
		s: s,
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    prefix + "_fsync_duration_seconds",
			Help:    "Duration of each fsync of a spool segment by the group commit.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs to 1.6s
		}),
		records:   prometheus.NewDesc(prefix+"_records", "Unacked records in the spool.", nil, nil),
		bytes:     prometheus.NewDesc(prefix+"_bytes", "Bytes of the unacked records in the spool, framing included (what max_bytes bounds).", nil, nil),
		oldestAge: prometheus.NewDesc(prefix+"_oldest_record_age_seconds", "Age of the oldest unacked record; 0 when the spool is empty.", nil, nil),
		unsynced:  prometheus.NewDesc(prefix+"_unsynced_records", "Records written but not yet fsynced: what a power cut would lose now.", nil, nil),
		dropped:   prometheus.NewDesc(prefix+"_dropped_records_total", "Records dropped unsent, by reason: full (oldest dropped for room), full_newest (refused when full), age (older than max_age).", []string{"reason"}, nil),
		corrupt:   prometheus.NewDesc(prefix+"_corrupt_records_total", "Damaged records skipped: stretches of bad bytes found by recovery, records failing their CRC when read, unreadable files.", nil, nil),
		paused:    prometheus.NewDesc(prefix+"_paused", "1 while appends fail on disk errors (a full disk, I/O errors), else 0.", nil, nil),
		segments:  prometheus.NewDesc(prefix+"_segments", "Segment files the spool holds.", nil, nil),
		fsyncErrors: prometheus.NewDesc(prefix+"_fsync_errors_total",
			"Segment fsyncs that failed; each poisons its segment, whose unsynced records are written again to a new one.", nil, nil),
		rewritten: prometheus.NewDesc(prefix+"_rewritten_records_total",
			"Records written again to a new segment because the fsync of theirs failed.", nil, nil),
		diskErrors: prometheus.NewDesc(prefix+"_disk_errors_total",
			"File operations of the spool that failed, at any call site: a full disk, an I/O error, a short write, a failed fsync, a file that could not be removed (docs/faults.md).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.records, m.bytes, m.oldestAge, m.unsynced, m.dropped, m.corrupt, m.paused, m.segments, m.fsyncErrors, m.rewritten, m.diskErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Stats()
	age := 0.0
	if !st.OldestTime.IsZero() {
		age = max(0, m.s.now().Sub(st.OldestTime).Seconds())
	}
	paused := 0.0
	if st.Paused {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(m.records, prometheus.GaugeValue, float64(st.Records))
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(m.oldestAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(m.unsynced, prometheus.GaugeValue, float64(st.Unsynced))
	for _, reason := range []string{ReasonFull, ReasonFullNewest, ReasonAge} {
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(st.Dropped[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(m.corrupt, prometheus.CounterValue, float64(st.Corrupt))
	ch <- prometheus.MustNewConstMetric(m.paused, prometheus.GaugeValue, paused)
	ch <- prometheus.MustNewConstMetric(m.segments, prometheus.GaugeValue, float64(st.Segments))
	ch <- prometheus.MustNewConstMetric(m.fsyncErrors, prometheus.CounterValue, float64(st.FsyncErrors))
	ch <- prometheus.MustNewConstMetric(m.rewritten, prometheus.CounterValue, float64(st.Rewritten))
	ch <- prometheus.MustNewConstMetric(m.diskErrors, prometheus.CounterValue, float64(st.DiskErrors))
}

// register adds the spool's collectors to reg, all or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	if err := reg.Register(m); err != nil {
		return err
	}
	if err := reg.Register(m.fsync); err != nil {
		reg.Unregister(m)
		return err
	}
	return nil
}

// unregister takes them off again, so that a spool reopened later can register its own.
func (m *metrics) unregister(reg prometheus.Registerer) {
	reg.Unregister(m)
	reg.Unregister(m.fsync)
}

var _ prometheus.Collector = (*metrics)(nil)
