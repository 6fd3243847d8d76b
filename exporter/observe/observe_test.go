package observe

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the current output")

// scriptedRequests is a fixed sequence of requests covering every path of Observe.
func scriptedRequests(m *Model) {
	ctx := context.Background()
	nan := float32(math.NaN())
	for _, o := range []Observation{
		{Latency: 2 * time.Millisecond, Outcome: OutcomeSuccess, Scores: highRow},
		// a batch of three: two boots (one of them unsure) and a shirt
		{Latency: 7 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{
			0.1, 0.1, 0.8,
			0.3, 0.2, 0.5,
			0.7, 0.2, 0.1,
		}},
		// one bad row in a batch: counted as an error, the other row still counts
		{Latency: 3 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{nan, 0.5, 0.5, 0.2, 0.2, 0.6}},
		{Latency: 1 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{0.5, 0.5}},       // shape
		{Latency: 1 * time.Millisecond, Outcome: OutcomeSuccess},                                    // empty
		{Latency: 1 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{0.9, 0.9, 0.9}},  // sum 2.7
		{Latency: 1 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{-0.1, 0.6, 0.5}}, // negative
		{Latency: 1 * time.Millisecond, Outcome: OutcomeSuccess, Scores: []float32{0.5, float32(math.Inf(1)), 0}},
		{Latency: 100 * time.Microsecond, Outcome: OutcomeInvalidRequest, Scores: highRow}, // not scored
		{Latency: 4 * time.Second, Outcome: OutcomeUpstreamError},
		{Latency: 30 * time.Millisecond, Outcome: OutcomeRuntimeError},
		{Latency: 20 * time.Second, Outcome: OutcomeCanceled},
		{Latency: -1, Outcome: numOutcomes}, // the first invalid outcome, from a buggy caller: runtime_error, no latency
		{
			Latency: 5 * time.Millisecond, Outcome: OutcomeSuccess, Scores: lowRow,
			Stages: [NumStages]time.Duration{StageQueue: time.Millisecond, StageInfer: 3 * time.Millisecond},
		},
	} {
		m.Observe(ctx, o)
	}
}

// TestMetricCounts checks the counters after the scripted requests against counts worked out
// by hand from the script.
func TestMetricCounts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Stages = true
	reg, _, m := newTestModel(t, cfg, ModelSpec{})
	scriptedRequests(m)
	want := `
# HELP edgeloop_confidence_errors_total Outputs or output rows of successful requests that could not be scored, by reason.
# TYPE edgeloop_confidence_errors_total counter
edgeloop_confidence_errors_total{model="fmnist",reason="empty",version="1"} 1
edgeloop_confidence_errors_total{model="fmnist",reason="inf",version="1"} 1
edgeloop_confidence_errors_total{model="fmnist",reason="nan",version="1"} 1
edgeloop_confidence_errors_total{model="fmnist",reason="negative_probability",version="1"} 1
edgeloop_confidence_errors_total{model="fmnist",reason="not_normalized",version="1"} 1
edgeloop_confidence_errors_total{model="fmnist",reason="shape_mismatch",version="1"} 1
# HELP edgeloop_inference_low_confidence_total Predictions whose confidence was below inference.low_confidence_threshold.
# TYPE edgeloop_inference_low_confidence_total counter
edgeloop_inference_low_confidence_total{model="fmnist",version="1"} 2
# HELP edgeloop_inference_predictions_total Predictions (output rows) scored, by top-1 class.
# TYPE edgeloop_inference_predictions_total counter
edgeloop_inference_predictions_total{class="bag",model="fmnist",version="1"} 1
edgeloop_inference_predictions_total{class="boot",model="fmnist",version="1"} 3
edgeloop_inference_predictions_total{class="shirt",model="fmnist",version="1"} 2
# HELP edgeloop_inference_requests_total Inference requests served, by outcome.
# TYPE edgeloop_inference_requests_total counter
edgeloop_inference_requests_total{model="fmnist",outcome="canceled",version="1"} 1
edgeloop_inference_requests_total{model="fmnist",outcome="invalid_request",version="1"} 1
edgeloop_inference_requests_total{model="fmnist",outcome="runtime_error",version="1"} 2
edgeloop_inference_requests_total{model="fmnist",outcome="success",version="1"} 9
edgeloop_inference_requests_total{model="fmnist",outcome="upstream_error",version="1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"edgeloop_confidence_errors_total", "edgeloop_inference_low_confidence_total",
		"edgeloop_inference_predictions_total", "edgeloop_inference_requests_total"); err != nil {
		t.Fatal(err)
	}

	// Six predictions were scored (1 + 3 + 1 + 1); their max-softmax confidences sum to
	// 0.9 + 0.8 + 0.5 + 0.7 + 0.6 + 0.4, and two fall at or below 0.5.
	conf := family(t, reg, "edgeloop_inference_confidence").GetMetric()[0].GetHistogram()
	if conf.GetSampleCount() != 6 || math.Abs(conf.GetSampleSum()-3.9) > 1e-6 {
		t.Errorf("confidence count %d sum %v, want 6 and 3.9", conf.GetSampleCount(), conf.GetSampleSum())
	}
	if b := conf.GetBucket()[4]; b.GetUpperBound() != 0.5 || b.GetCumulativeCount() != 2 {
		t.Errorf("confidence bucket le=%v holds %d, want le=0.5 holding 2", b.GetUpperBound(), b.GetCumulativeCount())
	}
	// 13 of the 14 requests have a latency, one a negative one.
	lat := family(t, reg, "edgeloop_inference_duration_seconds").GetMetric()[0].GetHistogram()
	if lat.GetSampleCount() != 13 || lat.GetSchema() != 3 {
		t.Errorf("latency count %d schema %d, want 13 observations, native schema 3", lat.GetSampleCount(), lat.GetSchema())
	}
	stages := family(t, reg, "edgeloop_inference_stage_duration_seconds").GetMetric()
	var measured []string
	for _, s := range stages {
		if s.GetHistogram().GetSampleCount() > 0 {
			measured = append(measured, label(s, "stage"))
		}
	}
	if len(stages) != int(NumStages) || !slices.Equal(measured, []string{"infer", "queue"}) {
		t.Errorf("%d stage series, measured %v; want 4 series, infer and queue measured", len(stages), measured)
	}
}

// TestMetricsGolden compares the whole exposition after the scripted requests with
// testdata/metrics.golden (regenerate with -update, then review the diff), and checks it with
// promtool's and client_golang's linters.
func TestMetricsGolden(t *testing.T) {
	cfg := driftConfig(4, 10, 10)
	cfg.Stages = true
	reg, c, m := newTestModel(t, cfg, ModelSpec{})
	scriptedRequests(m)
	m2, err := c.Model(ModelSpec{Name: "fmnist", Version: "2", Classes: []string{"shirt", "bag", "boot"},
		Output: Logits, Reference: []float64{0, 1, 2, 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		m2.Observe(context.Background(), Observation{
			Latency: time.Duration(i+1) * time.Millisecond, Outcome: OutcomeSuccess,
			Scores: []float32{float32(i) / 4, 1, 0},
		})
	}
	// A third version with a drift reference and the signals beyond confidence on.
	c.cfg.Drift.Signals = Signals{ClassMix: true, Input: true}
	c.cfg.Drift.CalibratedAccuracy = true
	m3, err := c.Model(ModelSpec{Name: "fmnist", Version: "3", Classes: []string{"shirt", "bag", "boot"},
		Output: Logits, Temperature: 2, InputShape: []int64{4}, DriftReference: &modelrepo.DriftReference{
			ClassMix: []float64{0.5, 0.25, 0.25},
			Input: &modelrepo.InputReference{
				Channels: []modelrepo.ChannelStats{{Mean: 0.5, Std: 0.25}},
				Projections: &modelrepo.ProjectionReference{Seed: 7,
					Edges: [][]float64{{-0.1, 0.1}, {-0.1, 0.1}}, Histograms: [][]float64{{0.25, 0.5, 0.25}, {0.25, 0.5, 0.25}}},
			}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		m3.Observe(context.Background(), Observation{
			Latency: time.Millisecond, Outcome: OutcomeSuccess,
			Scores: []float32{float32(i % 3), 1, 0}, Input: []float32{float32(i) / 10, 0.5, 0.25, 1},
		})
	}
	testenv.CheckMetricsGolden(t, reg, "testdata/metrics.golden", *update)
}

// TestCloseRemovesVersion: after a hot swap only the new version's series remain, and the
// old handle can be closed twice and observed into without effect.
func TestCloseRemovesVersion(t *testing.T) {
	cfg := driftConfig(2, 10, 10)
	cfg.Stages = true
	reg, c, v1 := newTestModel(t, cfg, ModelSpec{})
	v2, err := c.Model(ModelSpec{Name: "fmnist", Version: "2", Classes: []string{"shirt", "bag", "boot"}, Output: Probabilities})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Model{v1, v2} {
		observeN(m, 10, highRow)
		m.Observe(context.Background(), Observation{Latency: time.Millisecond, Outcome: OutcomeSuccess, Scores: lowRow,
			Stages: [NumStages]time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}})
	}
	if got := versions(t, reg); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("versions before Close: %v", got)
	}
	if _, err := c.Model(ModelSpec{Name: "fmnist", Version: "1", Classes: []string{"a", "b"}, Output: Logits}); err == nil {
		t.Fatal("loaded version 1 twice")
	}
	v1.Close()
	v1.Close()
	observeN(v1, 5, highRow) // a request that was in flight during the swap
	if got := versions(t, reg); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("versions after closing 1: %v, want only 2", got)
	}
	if _, ok := gauge(t, reg, "edgeloop_estimated_accuracy", "2"); !ok {
		t.Fatal("version 2 lost its drift gauge")
	}
	// The version may load again, starting from zero.
	again, err := c.Model(ModelSpec{Name: "fmnist", Version: "1", Classes: []string{"a", "b", "c"}, Output: Probabilities})
	if err != nil {
		t.Fatal(err)
	}
	observeN(again, 1, highRow)
	if got := testutil.ToFloat64(counterFor(t, reg, "edgeloop_inference_requests_total", "1", "success")); got != 1 {
		t.Fatalf("reloaded version 1 counts %v successes, want 1", got)
	}
}

// versions returns the distinct version labels of every edgeloop series.
func versions(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if v := label(m, "version"); !slices.Contains(vs, v) {
				vs = append(vs, v)
			}
		}
	}
	slices.Sort(vs)
	return vs
}

// counterFor wraps the matching exported counter as a Collector for testutil.ToFloat64.
func counterFor(t *testing.T, g prometheus.Gatherer, name, version, outcome string) prometheus.Collector {
	t.Helper()
	for _, m := range family(t, g, name).GetMetric() {
		if label(m, "version") == version && label(m, "outcome") == outcome {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"},
				func() float64 { return m.GetCounter().GetValue() })
		}
	}
	t.Fatalf("no %s{version=%q,outcome=%q}", name, version, outcome)
	return nil
}

func family(t *testing.T, g prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("metric family %s not exported", name)
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestLowConfidenceThreshold: "low" is strictly below the threshold, by the configured
// scorer. The margin of [0.25, 0.75] is exactly 0.5 in float32.
func TestLowConfidenceThreshold(t *testing.T) {
	tests := []struct {
		threshold float64
		row       []float32
		low       float64
	}{
		{0.5, []float32{0.25, 0.75}, 0}, // margin 0.5: at the threshold is not below it
		{0.5, []float32{0.3, 0.7}, 1},   // margin 0.4
		{0.5, []float32{0.8, 0.2}, 0},   // margin 0.6
		{0, []float32{0.5, 0.5}, 0},     // threshold 0 counts nothing, not even margin 0
		{1, []float32{0, 1}, 0},         // margin 1
		{1, []float32{0.01, 0.99}, 1},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.Scorer, cfg.LowConfidenceThreshold = Margin, tt.threshold
		reg, _, m := newTestModel(t, cfg, ModelSpec{Classes: []string{"a", "b"}})
		observeN(m, 1, tt.row)
		low := family(t, reg, "edgeloop_inference_low_confidence_total").GetMetric()[0].GetCounter().GetValue()
		if low != tt.low {
			t.Errorf("threshold %v, row %v: low-confidence count %v, want %v", tt.threshold, tt.row, low, tt.low)
		}
	}
}

// TestExemplar: a sampled span in the context puts its trace and span ids on the latency
// observation; an unsampled span or none puts nothing.
func TestExemplar(t *testing.T) {
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanID := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	withSpan := func(flags trace.TraceFlags) context.Context {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: flags})
		return trace.ContextWithSpanContext(context.Background(), sc)
	}
	tests := []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"sampled", withSpan(trace.FlagsSampled), true},
		{"not sampled", withSpan(0), false},
		{"no span", context.Background(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, _, m := newTestModel(t, DefaultConfig(), ModelSpec{})
			m.Observe(tt.ctx, Observation{Latency: 12 * time.Millisecond, Outcome: OutcomeSuccess, Scores: highRow})
			h := family(t, reg, "edgeloop_inference_duration_seconds").GetMetric()[0].GetHistogram()
			exemplars := h.GetExemplars() // native histogram exemplars
			for _, b := range h.GetBucket() {
				if e := b.GetExemplar(); e != nil {
					exemplars = append(exemplars, e)
				}
			}
			if !tt.want {
				if len(exemplars) > 0 {
					t.Fatalf("exemplars %v, want none", exemplars)
				}
				return
			}
			if len(exemplars) == 0 {
				t.Fatal("no exemplar for a sampled span")
			}
			for _, e := range exemplars {
				got := map[string]string{}
				for _, l := range e.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				if got["trace_id"] != traceID.String() || got["span_id"] != spanID.String() || e.GetValue() != 0.012 {
					t.Errorf("exemplar %v = %v, want trace_id %s span_id %s value 0.012", got, e.GetValue(), traceID, spanID)
				}
			}
		})
	}
}

// TestObserveAllocs holds the hot path to zero allocations on every path without a span.
func TestObserveAllocs(t *testing.T) {
	nan := float32(math.NaN())
	batch := make([]float32, 40*10) // 40 rows: more than one chunk
	for i := range batch {
		batch[i] = float32(i%7) - 3
	}
	tests := []struct {
		name   string
		scorer Scorer
		stages bool
		kind   OutputKind
		o      Observation
	}{
		{"logits batch 1", MaxSoftmax, false, Logits, Observation{Latency: time.Millisecond, Scores: benchLogits}},
		{"logits batch 40, entropy, stages", Entropy, true, Logits, Observation{Latency: time.Millisecond, Scores: batch,
			Stages: [NumStages]time.Duration{1, 2, 3, 4}}},
		{"probabilities, margin", Margin, false, Probabilities, Observation{Latency: time.Millisecond,
			Scores: []float32{0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.05, 0.05, 0.05, 0.05}}},
		{"bad row", MaxSoftmax, false, Logits, Observation{Latency: time.Millisecond, Scores: append([]float32{nan}, benchLogits[1:]...)}},
		{"shape mismatch", MaxSoftmax, false, Logits, Observation{Latency: time.Millisecond, Scores: benchLogits[:7]}},
		{"upstream error", MaxSoftmax, false, Logits, Observation{Latency: time.Millisecond, Outcome: OutcomeUpstreamError}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Scorer, cfg.Stages = tt.scorer, tt.stages
			_, _, m := newTestModel(t, cfg, ModelSpec{Output: tt.kind,
				Classes: []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}})
			ctx := context.Background()
			if n := testing.AllocsPerRun(200, func() { m.Observe(ctx, tt.o) }); n != 0 {
				t.Fatalf("Observe allocates %v times per call, want 0", n)
			}
		})
	}
}

// TestConfidenceHistogramMatchesClientGolang feeds the same confidences, boundary values
// included, to the core's confidence histogram and to a client_golang histogram configured
// alike, and requires the same exported classic and native buckets.
func TestConfidenceHistogramMatchesClientGolang(t *testing.T) {
	_, confVec := rawHistograms()
	ref := confVec.WithLabelValues("fmnist", "1")
	bounds := confidenceBuckets()
	values := []float64{0, confZeroThreshold, math.Nextafter(confZeroThreshold, 1), 1e-3, 0.5,
		math.Nextafter(0.5, 1), 0.9170040432046711, math.Nextafter(0.9170040432046711, 1), 1}
	values = append(values, bounds[:]...)
	for _, b := range bounds {
		values = append(values, math.Nextafter(b, 0), math.Nextafter(b, 2))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		values = append(values, math.Pow(rng.Float64(), 1+4*rng.Float64()), 1-rng.Float64()*0.1)
	}
	var h confHist
	for _, v := range values {
		v = min(v, 1)
		ref.Observe(v)
		r := scored{conf: v, classic: classicBucket(&bounds, v), native: nativeSlot(v)}
		h.add(&r)
	}
	m := &Model{key: modelKey{"fmnist", "1"}, created: time.Now()}
	desc := prometheus.NewDesc("raw_confidence", "Raw confidence.", []string{"model", "version"}, nil)
	got, err := h.metric(desc, &bounds, m)
	if err != nil {
		t.Fatal(err)
	}
	var gotM, wantM dto.Metric
	if err := got.Write(&gotM); err != nil {
		t.Fatal(err)
	}
	if err := ref.(prometheus.Metric).Write(&wantM); err != nil {
		t.Fatal(err)
	}
	g, w := gotM.GetHistogram(), wantM.GetHistogram()
	if g.GetSampleCount() != w.GetSampleCount() || g.GetSampleSum() != w.GetSampleSum() {
		t.Errorf("count/sum %d/%v, client_golang %d/%v", g.GetSampleCount(), g.GetSampleSum(), w.GetSampleCount(), w.GetSampleSum())
	}
	if g.GetSchema() != w.GetSchema() || g.GetZeroThreshold() != w.GetZeroThreshold() || g.GetZeroCount() != w.GetZeroCount() {
		t.Errorf("schema/zero threshold/zero count %d/%v/%d, client_golang %d/%v/%d",
			g.GetSchema(), g.GetZeroThreshold(), g.GetZeroCount(), w.GetSchema(), w.GetZeroThreshold(), w.GetZeroCount())
	}
	if gb, wb := nativeBuckets(g), nativeBuckets(w); !maps(gb, wb) {
		t.Errorf("native buckets\n got %v\nwant %v", gb, wb)
	}
	if len(g.GetBucket()) != len(w.GetBucket()) {
		t.Fatalf("%d classic buckets, client_golang %d", len(g.GetBucket()), len(w.GetBucket()))
	}
	for i, b := range g.GetBucket() {
		if wb := w.GetBucket()[i]; b.GetUpperBound() != wb.GetUpperBound() || b.GetCumulativeCount() != wb.GetCumulativeCount() {
			t.Errorf("classic bucket %d: le=%v %d, client_golang le=%v %d", i, b.GetUpperBound(), b.GetCumulativeCount(), wb.GetUpperBound(), wb.GetCumulativeCount())
		}
	}
}

// nativeBuckets decodes the positive spans and deltas of a native histogram into key → count.
func nativeBuckets(h *dto.Histogram) map[int]int64 {
	out := map[int]int64{}
	key, count := 0, int64(0)
	deltas := h.GetPositiveDelta()
	for _, s := range h.GetPositiveSpan() {
		key += int(s.GetOffset())
		for range s.GetLength() {
			count += deltas[0]
			deltas = deltas[1:]
			if count != 0 {
				out[key] = count
			}
			key++
		}
	}
	return out
}

func maps(a, b map[int]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestConcurrentUse runs requests, scrapes, snapshots and a hot swap at once (meant for
// -race) and checks no request was lost.
func TestConcurrentUse(t *testing.T) {
	reg, c, m := newTestModel(t, driftConfig(10, 50, 50), ModelSpec{Output: Logits})
	const workers, perWorker = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			row := []float32{float32(w), 1, 0, 0.5, 2, -1}
			for i := range perWorker {
				row[0] = float32(i%5) - 2
				m.Observe(context.Background(), Observation{Latency: time.Millisecond, Outcome: OutcomeSuccess, Scores: row})
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
			m.Drift()
			other, err := c.Model(ModelSpec{Name: "other", Version: "1", Classes: []string{"a", "b"}, Output: Logits})
			if err != nil {
				t.Error(err)
				return
			}
			other.Observe(context.Background(), Observation{Outcome: OutcomeSuccess, Scores: []float32{1, 2}})
			other.Close()
		}
	})
	wg.Wait()
	if got := testutil.ToFloat64(counterFor(t, reg, "edgeloop_inference_requests_total", "1", "success")); got != workers*perWorker {
		t.Fatalf("%v successes counted, want %d", got, workers*perWorker)
	}
	if st := m.Drift(); st.WindowCount != 50 || math.IsNaN(st.PSI) {
		t.Fatalf("drift after the run: %+v", st)
	}
}

func TestModelSpecErrors(t *testing.T) {
	c, err := New(prometheus.NewRegistry(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ok := ModelSpec{Name: "m", Version: "1", Classes: []string{"a", "b"}, Output: Logits}
	tests := []struct {
		name   string
		mutate func(*ModelSpec)
	}{
		{"no name", func(s *ModelSpec) { s.Name = "" }},
		{"no version", func(s *ModelSpec) { s.Version = "" }},
		{"invalid UTF-8 version", func(s *ModelSpec) { s.Version = "\xff" }},
		{"one class", func(s *ModelSpec) { s.Classes = []string{"a"} }},
		{"duplicate class", func(s *ModelSpec) { s.Classes = []string{"a", "b", "a"} }},
		{"empty class name", func(s *ModelSpec) { s.Classes = []string{"a", ""} }},
		{"invalid UTF-8 class", func(s *ModelSpec) { s.Classes = []string{"a", "\xc3"} }},
		{"no output kind", func(s *ModelSpec) { s.Output = 0 }},
		{"reference of the wrong length", func(s *ModelSpec) { s.Reference = []float64{1, 2} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := ok
			tt.mutate(&spec)
			if _, err := c.Model(spec); err == nil {
				t.Fatalf("%+v accepted", spec)
			}
		})
	}
	if _, err := c.Model(ok); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	bad := DefaultConfig()
	bad.Drift.Bins = 0
	if _, err := New(prometheus.NewRegistry(), bad); err == nil || !strings.Contains(err.Error(), "drift.bins") {
		t.Errorf("New with invalid config: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(reg, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, DefaultConfig()); err == nil {
		t.Error("two cores registered on one registry")
	}
}
