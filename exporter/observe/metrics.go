package observe

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeloop/edgeloop/internal/classify"
)

// tally is what a Model counts under its lock and the scrape turns into metrics. Plain
// integers under one lock taken once per request are cheaper than one atomic client_golang
// update per counter, histogram and prediction, which the hot-path budget cannot afford.
type tally struct {
	requests      [numOutcomes]uint64
	errors        [classify.NumReasons]uint64
	predictions   []uint64 // by class index
	lowConfidence uint64
	confidence    confHist
}

// numConfidenceBuckets is the number of classic buckets of the confidence histogram.
const numConfidenceBuckets = 25

// confidenceBuckets is coarse below 0.5, 0.05 wide up to 0.9 and 0.01 wide above, where a
// well-trained classifier puts most predictions and where the thresholds people alert on sit.
// The last bound is 1, the largest confidence, so the +Inf bucket never adds anything.
func confidenceBuckets() [numConfidenceBuckets]float64 {
	return [numConfidenceBuckets]float64{
		0.1, 0.2, 0.3, 0.4, 0.5,
		0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
		0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99,
		0.995, 0.999, 1,
	}
}

// The confidence histogram's native part: schema 3 (bucket factor 2^(1/8) ≈ 1.09, what
// client_golang picks for NativeHistogramBucketFactor 1.1) and a zero bucket up to 2^−20.
// Confidences lie in [0, 1], so keys run from −159 (just above 2^−20) to 0 (bucket (0.917, 1]):
// at most 160 buckets, a fixed array, and never a reason to coarsen the resolution.
const (
	confSchema        = 3
	confZeroThreshold = 0x1p-20
	nativeSlots       = 160 // key = slot − (nativeSlots − 1)
)

// confHist is the confidence histogram, classic and native buckets at once, with the bucket
// boundaries of a client_golang histogram configured the same way (TestConfidenceHistogramMatchesClientGolang).
type confHist struct {
	count   uint64
	sum     float64
	classic [numConfidenceBuckets]uint64 // per bucket, not cumulative
	zero    uint64
	native  [nativeSlots]uint64
}

func (h *confHist) add(r *scored) {
	h.count++
	h.sum += r.conf
	h.classic[r.classic]++
	if r.native == 0 {
		h.zero++
	} else {
		h.native[r.native-1]++
	}
}

// classicBucket returns the index of the first bound ≥ v, for 0 ≤ v ≤ 1.
func classicBucket(bounds *[numConfidenceBuckets]float64, v float64) uint8 {
	lo, hi := 0, numConfidenceBuckets-1 // bounds[hi] == 1 ≥ v
	for lo < hi {
		mid := (lo + hi) / 2
		if v <= bounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return uint8(lo)
}

// nativeSlot returns 0 for a confidence in the zero bucket, else its native bucket's slot + 1.
// The key is client_golang's for schema 3: with v = frac·2^exp, frac in [0.5, 1), key =
// (exp − 1)·8 + the number of bounds 2^(i/8 − 1), i = 0..7, below frac; bucket key holds
// (2^((key−1)/8), 2^(key/8)].
func nativeSlot(v float64) uint8 {
	if v <= confZeroThreshold {
		return 0
	}
	bits := math.Float64bits(v) // v is normal here, so frexp is a matter of bits
	exp := int(bits>>52) - 1022
	frac := math.Float64frombits(bits&(1<<52-1) | 1022<<52)
	var j int
	switch { // the bounds of client_golang's nativeHistogramBounds[3], highest first
	case frac > 0.9170040432046711:
		j = 8
	case frac > 0.8408964152537144:
		j = 7
	case frac > 0.7711054127039704:
		j = 6
	case frac > 0.7071067811865475:
		j = 5
	case frac > 0.6484197773255048:
		j = 4
	case frac > 0.5946035575013605:
		j = 3
	case frac > 0.5452538663326288:
		j = 2
	case frac > 0.5:
		j = 1
	}
	key := (exp-1)*8 + j
	return uint8(key + nativeSlots) // slot + 1 = key + nativeSlots − 1 + 1
}

// metric builds the histogram's exported form: client_golang's constant native histogram,
// with the classic buckets added to the same series, as a client_golang histogram with both
// would expose it.
func (h *confHist) metric(desc *prometheus.Desc, bounds *[numConfidenceBuckets]float64, m *Model) (prometheus.Metric, error) {
	positive := make(map[int]int64)
	for slot, n := range h.native {
		if n > 0 {
			positive[slot-(nativeSlots-1)] = int64(n)
		}
	}
	native, err := prometheus.NewConstNativeHistogram(desc, h.count, h.sum, positive, nil, h.zero,
		confSchema, confZeroThreshold, m.created, m.key.name, m.key.version)
	if err != nil {
		return nil, err
	}
	buckets := make([]*dto.Bucket, numConfidenceBuckets)
	var cum uint64
	for i, n := range h.classic {
		cum += n
		buckets[i] = &dto.Bucket{CumulativeCount: new(cum), UpperBound: new(bounds[i])}
	}
	return classicAndNative{native, buckets}, nil
}

// classicAndNative adds classic buckets to a constant native histogram.
type classicAndNative struct {
	prometheus.Metric
	buckets []*dto.Bucket
}

// Write writes the native histogram and then its classic buckets.
func (h classicAndNative) Write(out *dto.Metric) error {
	if err := h.Metric.Write(out); err != nil {
		return err
	}
	out.Histogram.Bucket = h.buckets
	return nil
}

// collector exposes a Core's metrics as one prometheus.Collector.
type collector struct{ c *Core }

// Describe sends the descriptors of every metric the core can export.
func (col collector) Describe(ch chan<- *prometheus.Desc) {
	c := col.c
	c.latency.Describe(ch)
	if c.stages != nil {
		c.stages.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{c.requestsDesc, c.predictionsDesc, c.lowDesc, c.errorsDesc,
		c.confidenceDesc, c.psiDesc, c.accuracyDesc, c.classMixDesc, c.meanShiftDesc, c.stdRatioDesc, c.sketchPSIDesc, c.embeddingDesc} {
		ch <- d
	}
}

// Collect sends the latency histograms and turns each loaded version's tallies into metrics;
// the drift gauges are computed here, at scrape time, so the request path only counts.
func (col collector) Collect(ch chan<- prometheus.Metric) {
	c := col.c
	c.latency.Collect(ch)
	if c.stages != nil {
		c.stages.Collect(ch)
	}
	c.mu.Lock() // held throughout, so that a version closed meanwhile is not exported again
	defer c.mu.Unlock()
	for _, m := range c.models {
		m.collect(ch)
	}
}

// collect copies the model's tallies under its lock, then builds the metrics outside it.
func (m *Model) collect(ch chan<- prometheus.Metric) {
	c := m.core
	m.mu.Lock()
	t := m.tally
	t.predictions = append([]uint64(nil), m.predictions...)
	psiValue, accuracy := m.signals()
	mix := math.NaN()
	if m.classMix != nil {
		mix = m.classMix.distance()
	}
	var in inputSignals
	inReady := false
	if m.input != nil {
		in, inReady = m.input.signals()
	}
	var embChanged, embReady bool
	if m.embedding != nil {
		embChanged, embReady = m.embedding.snapshot()
	}
	m.mu.Unlock()

	n, v := m.key.name, m.key.version
	counter := func(desc *prometheus.Desc, value uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(desc, prometheus.CounterValue, float64(value), m.created, labels...)
	}
	for o := range numOutcomes {
		counter(c.requestsDesc, t.requests[o], n, v, o.String())
	}
	for i, class := range m.classes {
		counter(c.predictionsDesc, t.predictions[i], n, v, class)
	}
	counter(c.lowDesc, t.lowConfidence, n, v)
	for r := classify.ReasonNone + 1; r < classify.NumReasons; r++ {
		counter(c.errorsDesc, t.errors[r], n, v, r.String())
	}
	if h, err := t.confidence.metric(c.confidenceDesc, &c.confBounds, m); err != nil {
		// The bucket counts add up to the count by construction, which is all that is checked;
		// should that ever break, failing the scrape is louder than a silently missing series.
		ch <- prometheus.NewInvalidMetric(c.confidenceDesc, err)
	} else {
		ch <- h
	}
	if !math.IsNaN(psiValue) {
		ch <- prometheus.MustNewConstMetric(c.psiDesc, prometheus.GaugeValue, psiValue, n, v)
	}
	if !math.IsNaN(accuracy) {
		ch <- prometheus.MustNewConstMetric(c.accuracyDesc, prometheus.GaugeValue, accuracy, n, v)
	}
	if !math.IsNaN(mix) {
		ch <- prometheus.MustNewConstMetric(c.classMixDesc, prometheus.GaugeValue, mix, n, v)
	}
	if embReady {
		ch <- prometheus.MustNewConstMetric(c.embeddingDesc, prometheus.GaugeValue, m.embedding.distance(embChanged), n, v)
	}
	if !inReady {
		return
	}
	gauge := func(desc *prometheus.Desc, values []float64) {
		for i, x := range values {
			if !math.IsNaN(x) { // a channel constant in the reference has no scale to shift by
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, x, n, v, strconv.Itoa(i))
			}
		}
	}
	gauge(c.meanShiftDesc, in.meanShift)
	gauge(c.stdRatioDesc, in.stdRatio)
	gauge(c.sketchPSIDesc, in.sketchPSI)
}
