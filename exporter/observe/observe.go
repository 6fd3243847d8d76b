// Package observe is the inference telemetry core: the inference front calls it once per
// request to record latency and outcome, score the confidence of every prediction in the
// classification output, and keep the sliding window behind the drift signals (PSI of the
// confidence distribution against a reference, and a label-free accuracy estimate).
//
// Observe is on the request path of every inference. It allocates nothing (unless the request
// carries a sampled trace, whose ids become an exemplar), observes the latency on a cached
// client_golang histogram, and adds everything else to plain per-model tallies under one
// uncontended lock; the scrape turns the tallies into metrics and does the drift arithmetic.
// docs/inference-telemetry.md describes the metrics and formulas.
package observe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// Outcome is how an inference request ended; its String is the `outcome` label.
type Outcome uint8

const (
	// OutcomeSuccess: the model answered. Only successful requests have their output scored.
	OutcomeSuccess Outcome = iota
	// OutcomeInvalidRequest: the request was rejected before inference (bad JSON, shape, type).
	OutcomeInvalidRequest
	// OutcomeRuntimeError: the built-in runtime failed to run the model.
	OutcomeRuntimeError
	// OutcomeUpstreamError: the upstream V2 server (Triton) failed or could not be reached.
	OutcomeUpstreamError
	// OutcomeCanceled: the client went away or its deadline passed first. Kept apart from the
	// errors so that impatient clients do not page anyone about the model.
	OutcomeCanceled
	numOutcomes
)

// String returns the outcome's label value, such as "success" or "upstream_error".
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeInvalidRequest:
		return "invalid_request"
	case OutcomeRuntimeError:
		return "runtime_error"
	case OutcomeUpstreamError:
		return "upstream_error"
	case OutcomeCanceled:
		return "canceled"
	}
	return "unknown"
}

// Stage is one part of serving a request; its String is the `stage` label.
type Stage uint8

const (
	// StageQueue is the wait before the request is picked up (batching, concurrency limit).
	StageQueue Stage = iota
	// StagePreprocess is decoding the request and building the input tensor.
	StagePreprocess
	// StageInfer is running the model, locally or on the upstream server.
	StageInfer
	// StagePostprocess is scoring and encoding the response.
	StagePostprocess
	// NumStages is the number of stages, the length of Observation.Stages.
	NumStages
)

// String returns the stage's label value, such as "infer".
func (s Stage) String() string {
	switch s {
	case StageQueue:
		return "queue"
	case StagePreprocess:
		return "preprocess"
	case StageInfer:
		return "infer"
	case StagePostprocess:
		return "postprocess"
	}
	return "unknown"
}

// Observation is what the inference front measured for one request.
type Observation struct {
	// Latency is the request's whole duration. Observed for every outcome; negative is ignored.
	Latency time.Duration
	// Stages holds the duration of each stage, indexed by Stage; zero means "not measured".
	// Exported only with `stages: true`.
	Stages [NumStages]time.Duration
	// Outcome is how the request ended. An unknown value is counted as runtime_error.
	Outcome Outcome
	// Scores is the classification output of a successful request: rows × classes values,
	// row-major, one prediction per row (a batch), as logits or probabilities per the model's
	// ModelSpec.Output. It is read only when Outcome is OutcomeSuccess, and only during the call.
	Scores []float32
	// Input is the request's first input tensor as float32 values, one sample after the other,
	// for the input drift signals; nil when the caller has not decoded it. It is read only
	// when Outcome is OutcomeSuccess and the input signals are on, and only during the call.
	Input []float32
	// Embedding is the model's embedding output (ModelSpec.DriftReference.Embedding says its
	// width), one row per sample, for the embedding signal; nil when the model has none or
	// the runtime did not return it. Read like Input.
	Embedding []float32
}

// ModelSpec describes a model version as its manifest does, for Core.Model.
type ModelSpec struct {
	// Name and Version are the `model` and `version` labels.
	Name, Version string
	// Classes names the output classes in output order; there must be at least two, unique and
	// non-empty. Each becomes one `class` series of edgeloop_inference_predictions_total.
	Classes []string
	// Output says whether the output holds logits or probabilities.
	Output OutputKind
	// Reference is the reference confidence histogram from the manifest: drift.bins values,
	// counts or proportions (it is normalised). Nil means "learn it from the first
	// drift.reference_samples predictions".
	Reference []float64
	// ReferenceScorer is the scorer Reference was computed with. It must match the configured
	// scorer, since histograms of different scorers are not comparable; empty means "the
	// configured one".
	ReferenceScorer Scorer
	// Temperature is the manifest's fitted softmax temperature (calibration.temperature);
	// 0 means none. With drift.calibrated_accuracy on, the estimated accuracy averages the
	// top-1 probability calibrated with it.
	Temperature float64
	// DriftReference is the manifest's reference for the class-mix and input signals; nil
	// leaves those signals absent.
	DriftReference *modelrepo.DriftReference
	// InputShape is the shape of one sample of the first input, without the batch
	// dimension; the input signals need it to split a request into samples.
	InputShape []int64
}

// Core owns the inference metrics of one exporter and the model versions that feed them.
type Core struct {
	cfg    Config
	scorer classify.ScorerIndex

	// The latency histograms are client_golang's own: they carry exemplars. Everything else
	// is tallied by each Model under its lock and turned into metrics at scrape time.
	latency *prometheus.HistogramVec
	stages  *prometheus.HistogramVec // nil unless cfg.Stages

	requestsDesc    *prometheus.Desc
	predictionsDesc *prometheus.Desc
	lowDesc         *prometheus.Desc
	errorsDesc      *prometheus.Desc
	confidenceDesc  *prometheus.Desc
	psiDesc         *prometheus.Desc
	accuracyDesc    *prometheus.Desc
	classMixDesc    *prometheus.Desc
	meanShiftDesc   *prometheus.Desc
	stdRatioDesc    *prometheus.Desc
	sketchPSIDesc   *prometheus.Desc
	embeddingDesc   *prometheus.Desc
	confBounds      [numConfidenceBuckets]float64

	mu     sync.Mutex
	models map[modelKey]*Model // loaded versions, for the scrape and to refuse duplicates
}

type modelKey struct{ name, version string }

// Native histogram settings of the latency histograms: factor 1.1 (schema 3, ~4.5% relative
// resolution), a bucket cap that bounds a series' size, and an hourly reset that lets a
// histogram that had to coarsen regain its resolution.
const (
	nativeFactor     = 1.1
	nativeMaxBuckets = 160
	nativeMinReset   = time.Hour
)

// latencyBuckets spans 100 µs (a small model on a GPU) to 10 s (a cold upstream) in 1-2.5-5
// steps, for servers and dashboards without native histograms.
func latencyBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

func latencyOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         latencyBuckets(),
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: nativeMinReset,
	}
}

// New validates cfg and registers the inference metrics with reg. A model version's series
// appear when Core.Model is called for it.
func New(reg prometheus.Registerer, cfg Config) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	id, _ := cfg.Scorer.Index()
	mv := []string{"model", "version"}
	c := &Core{
		cfg:    cfg,
		scorer: id,
		latency: prometheus.NewHistogramVec(latencyOpts("edgeloop_inference_duration_seconds",
			"Time to serve an inference request, whatever its outcome."), mv),
		requestsDesc: prometheus.NewDesc("edgeloop_inference_requests_total",
			"Inference requests served, by outcome.",
			[]string{"model", "version", "outcome"}, nil),
		predictionsDesc: prometheus.NewDesc("edgeloop_inference_predictions_total",
			"Predictions (output rows) scored, by top-1 class.",
			[]string{"model", "version", "class"}, nil),
		lowDesc: prometheus.NewDesc("edgeloop_inference_low_confidence_total",
			"Predictions whose confidence was below inference.low_confidence_threshold.",
			mv, nil),
		errorsDesc: prometheus.NewDesc("edgeloop_confidence_errors_total",
			"Outputs or output rows of successful requests that could not be scored, by reason.",
			[]string{"model", "version", "reason"}, nil),
		confidenceDesc: prometheus.NewDesc("edgeloop_inference_confidence",
			"Confidence of each prediction (output row) by the configured scorer, from 0 to 1.",
			mv, nil),
		psiDesc: prometheus.NewDesc("edgeloop_confidence_psi",
			"Population stability index of the confidence distribution in the sliding window against the reference; absent until both exist.",
			mv, nil),
		accuracyDesc: prometheus.NewDesc("edgeloop_estimated_accuracy",
			"Mean top-1 probability over the sliding window (calibrated with the manifest's temperature when it has one), a label-free accuracy estimate; absent until the window is full.",
			mv, nil),
		classMixDesc: prometheus.NewDesc("edgeloop_class_mix_js_distance",
			"Jensen-Shannon distance (0 to 1) of the predicted-class mix in the window to the manifest's reference; absent when off, without a reference, or until the window is full.",
			mv, nil),
		meanShiftDesc: prometheus.NewDesc("edgeloop_input_mean_shift",
			"Mean of an input channel over the window minus the reference's mean, in reference standard deviations; absent when off, without a reference, or until the window is full.",
			[]string{"model", "version", "channel"}, nil),
		stdRatioDesc: prometheus.NewDesc("edgeloop_input_std_ratio",
			"Standard deviation of an input channel over the window divided by the reference's; absent when off, without a reference, or until the window is full.",
			[]string{"model", "version", "channel"}, nil),
		sketchPSIDesc: prometheus.NewDesc("edgeloop_input_sketch_psi",
			"PSI of the histogram of one fixed random projection of the input over the window against the reference's; absent when off, without a reference, or until the window is full.",
			[]string{"model", "version", "projection"}, nil),
		embeddingDesc: prometheus.NewDesc("edgeloop_embedding_mmd",
			"Maximum mean discrepancy (Gaussian kernel, the reference's bandwidth) between the embeddings in the window and the manifest's reference points, from 0; absent when off, without a reference, or until the window is full.",
			mv, nil),
		confBounds: confidenceBuckets(),
		models:     map[modelKey]*Model{},
	}
	if cfg.Stages {
		c.stages = prometheus.NewHistogramVec(latencyOpts("edgeloop_inference_stage_duration_seconds",
			"Time an inference request spent in one stage: queue, preprocess, infer or postprocess."),
			[]string{"model", "version", "stage"})
	}
	// One collector for everything, so registration succeeds or fails as a whole.
	if err := reg.Register(collector{c}); err != nil {
		return nil, fmt.Errorf("observe: register metrics: %w", err)
	}
	return c, nil
}

// Model is the telemetry of one loaded model version. Its methods are safe for concurrent use.
type Model struct {
	core    *Core
	key     modelKey
	classes []string // label values of the predictions, by class index
	created time.Time
	kind    OutputKind
	scorer  classify.ScorerIndex
	entropy bool    // whether scoring needs the entropy pass
	low     float64 // low-confidence threshold
	bins    float64 // drift.bins as a float, to bin without a conversion per row
	lastBin int
	invT    float64 // 1/temperature of the estimated accuracy; 0 for the raw top-1 probability

	latency   prometheus.Observer
	latencyEx prometheus.ExemplarObserver // the same series; nil if it cannot take exemplars
	stages    [NumStages]prometheus.Observer

	// mu guards the tallies and the drift state: one uncontended lock per request costs less
	// than the atomic operations of the client_golang counters and histogram it replaces, and
	// keeps the confidence histogram and the drift window consistent with each other.
	mu sync.Mutex
	tally
	drift
	classMix *classMix   // nil unless the class-mix signal is on and has a reference
	input    *inputDrift // nil unless the input signals are on and have a reference
	// embedding is nil unless the embedding signal is on and has a reference.
	embedding *embeddingDrift
}

// Model registers the series of a model version that has just loaded and returns the handle
// its requests are observed through. Call Close when the version is unloaded. Loading a name
// and version that is already loaded (and not closed) is an error: the two handles would
// share, and one's Close would delete, the same series.
func (c *Core) Model(spec ModelSpec) (*Model, error) {
	if err := c.checkSpec(spec); err != nil {
		return nil, fmt.Errorf("observe: model %q version %q: %w", spec.Name, spec.Version, err)
	}
	key := modelKey{spec.Name, spec.Version}
	sig := c.cfg.Drift.signals(spec.Name)
	var mix *classMix
	var in *inputDrift
	var emb *embeddingDrift
	if ref := spec.DriftReference; ref != nil {
		if sig.ClassMix && len(ref.ClassMix) > 0 {
			mix = newClassMix(sig.Window, ref.ClassMix)
		}
		if sig.Input && ref.Input != nil {
			var err error
			if in, err = newInputDrift(sig.Window, spec.InputShape, ref.Input); err != nil {
				return nil, fmt.Errorf("observe: model %q version %q: %w", spec.Name, spec.Version, err)
			}
		}
		if sig.Embedding && ref.Embedding != nil {
			var err error
			if emb, err = newEmbeddingDrift(sig.EmbeddingWindow, ref.Embedding); err != nil {
				return nil, fmt.Errorf("observe: model %q version %q: %w", spec.Name, spec.Version, err)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.models[key]; ok {
		return nil, fmt.Errorf("observe: model %q version %q: already loaded", spec.Name, spec.Version)
	}
	m := &Model{
		core:      c,
		key:       key,
		classes:   append([]string(nil), spec.Classes...),
		created:   time.Now(),
		kind:      spec.Output,
		scorer:    c.scorer,
		entropy:   c.scorer == classify.IndexEntropy,
		low:       c.cfg.LowConfidenceThreshold,
		bins:      float64(c.cfg.Drift.Bins),
		lastBin:   c.cfg.Drift.Bins - 1,
		tally:     tally{predictions: make([]uint64, len(spec.Classes))},
		drift:     newDrift(c.cfg.Drift, spec.Reference),
		classMix:  mix,
		input:     in,
		embedding: emb,
	}
	if t := spec.Temperature; c.cfg.Drift.CalibratedAccuracy && t > 0 && t != 1 {
		m.invT = 1 / t
	}
	// The label values were checked by checkSpec, so WithLabelValues cannot panic. Caching the
	// children keeps label lookups off the request path.
	m.latency = c.latency.WithLabelValues(spec.Name, spec.Version)
	m.latencyEx, _ = m.latency.(prometheus.ExemplarObserver)
	if c.stages != nil {
		for s := range NumStages {
			m.stages[s] = c.stages.WithLabelValues(spec.Name, spec.Version, s.String())
		}
	}
	c.models[key] = m
	return m, nil
}

// checkSpec rejects what would otherwise panic in client_golang (invalid UTF-8 label values)
// or silently produce wrong metrics.
func (c *Core) checkSpec(spec ModelSpec) error {
	if spec.Name == "" || spec.Version == "" {
		return errors.New("name and version must not be empty")
	}
	if !utf8.ValidString(spec.Name) || !utf8.ValidString(spec.Version) {
		return errors.New("name and version must be valid UTF-8")
	}
	if len(spec.Classes) < 2 {
		return fmt.Errorf("need at least 2 classes, got %d", len(spec.Classes))
	}
	seen := make(map[string]int, len(spec.Classes))
	for i, name := range spec.Classes {
		if name == "" || !utf8.ValidString(name) {
			return fmt.Errorf("class %d: name must be non-empty UTF-8, got %q", i, name)
		}
		if j, dup := seen[name]; dup {
			return fmt.Errorf("classes %d and %d are both named %q", j, i, name)
		}
		seen[name] = i
	}
	if spec.Output != Logits && spec.Output != Probabilities {
		return fmt.Errorf("output kind must be Logits or Probabilities, got %d", spec.Output)
	}
	if t := spec.Temperature; math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return fmt.Errorf("temperature must be finite and not negative, got %g", t)
	}
	if r := spec.DriftReference; r != nil && len(r.ClassMix) > 0 {
		if len(r.ClassMix) != len(spec.Classes) {
			return fmt.Errorf("the reference class mix has %d values for %d classes", len(r.ClassMix), len(spec.Classes))
		}
		var sum float64
		for i, v := range r.ClassMix {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return fmt.Errorf("reference class mix %d: must be finite and non-negative, got %g", i, v)
			}
			sum += v
		}
		if sum == 0 {
			return errors.New("reference class mix is all zero")
		}
	}
	if spec.Reference == nil {
		return nil
	}
	if spec.ReferenceScorer != "" && spec.ReferenceScorer != c.cfg.Scorer {
		return fmt.Errorf("reference histogram was computed with scorer %q but the configured scorer is %q", spec.ReferenceScorer, c.cfg.Scorer)
	}
	if len(spec.Reference) != c.cfg.Drift.Bins {
		return fmt.Errorf("reference histogram has %d bins, drift.bins is %d", len(spec.Reference), c.cfg.Drift.Bins)
	}
	var sum float64
	for i, v := range spec.Reference {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("reference histogram bin %d: must be finite and non-negative, got %g", i, v)
		}
		sum += v
	}
	if sum == 0 {
		return errors.New("reference histogram is all zero")
	}
	return nil
}

// Close deletes the model version's series and stops its drift gauges, so that after a hot
// swap only the serving version is exported. Observations after Close are counted nowhere.
// Close is idempotent.
func (m *Model) Close() {
	c := m.core
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.models[m.key] != m {
		return
	}
	delete(c.models, m.key)
	labels := prometheus.Labels{"model": m.key.name, "version": m.key.version}
	c.latency.DeletePartialMatch(labels)
	if c.stages != nil {
		c.stages.DeletePartialMatch(labels)
	}
}

// batchChunk is how many scored rows Observe gathers on its stack before taking the lock:
// one lock per request for batches up to this size, and a bounded stack for any batch. It is
// small because Go zeroes the buffer on every call (64 rows cost 14 ns in zeroing alone).
const batchChunk = 16

// Observe records one request. It is safe for concurrent use, never panics on bad output, and
// allocates nothing unless ctx carries a sampled span, whose trace and span ids are attached
// to the latency observation as an exemplar so that a slow bucket links to its trace.
func (m *Model) Observe(ctx context.Context, o Observation) {
	if o.Latency >= 0 {
		sec := o.Latency.Seconds()
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() && sc.IsValid() && m.latencyEx != nil {
			m.latencyEx.ObserveWithExemplar(sec, prometheus.Labels{
				"trace_id": sc.TraceID().String(),
				"span_id":  sc.SpanID().String(),
			})
		} else {
			m.latency.Observe(sec)
		}
	}
	if m.stages[0] != nil {
		for s, d := range o.Stages {
			if d > 0 {
				m.stages[s].Observe(d.Seconds())
			}
		}
	}
	outcome := o.Outcome
	if outcome >= numOutcomes {
		outcome = OutcomeRuntimeError
	}
	if outcome != OutcomeSuccess {
		m.mu.Lock()
		m.requests[outcome]++
		m.mu.Unlock()
		return
	}
	m.observeScores(o.Scores)
	if m.input != nil {
		m.observeInput(o.Input)
	}
	if m.embedding != nil {
		m.observeEmbedding(o.Embedding)
	}
}

// observeScores counts a successful request and scores its output. An output that is empty
// or cannot be split into rows is one error; a row that cannot be scored is one error and is
// skipped, while the other rows of the batch still count. Scoring happens outside the lock.
func (m *Model) observeScores(out []float32) {
	k := len(m.classes)
	if len(out) == 0 || len(out)%k != 0 {
		r := classify.ReasonShapeMismatch
		if len(out) == 0 {
			r = classify.ReasonEmpty
		}
		m.fail(r, true)
		return
	}
	if len(out) == k { // batch 1, the common case at the edge: no chunk buffer to zero
		var one [1]scored
		s, r := classify.ScoreRow(out, m.kind, m.entropy)
		if r != classify.ReasonNone {
			// Not m.fail: with that call here, the success path measured 120 instead of
			// 101 ns in BenchmarkObserve (Go 1.26, amd64).
			m.mu.Lock()
			m.requests[OutcomeSuccess]++
			m.errors[r]++
			m.mu.Unlock()
			return
		}
		top1 := s.MaxSoftmax
		if m.invT != 0 {
			top1 = classify.CalibratedTop1(out, s.Class, m.kind, m.invT)
		}
		one[0] = m.prepare(s, top1)
		m.commit(one[:], true)
		return
	}
	var rows [batchChunk]scored
	n, counted := 0, false
	for off := 0; off < len(out); off += k {
		s, r := classify.ScoreRow(out[off:off+k:off+k], m.kind, m.entropy)
		if r != classify.ReasonNone { // rare: a lock of its own keeps the common path simple
			m.fail(r, false)
			continue
		}
		top1 := s.MaxSoftmax
		if m.invT != 0 {
			top1 = classify.CalibratedTop1(out[off:off+k:off+k], s.Class, m.kind, m.invT)
		}
		rows[n] = m.prepare(s, top1)
		if n++; n == batchChunk {
			m.commit(rows[:n], !counted)
			n, counted = 0, true
		}
	}
	if n > 0 || !counted {
		m.commit(rows[:n], !counted)
	}
}

// scored is one prediction, with every bucket it falls in worked out before taking the lock.
type scored struct {
	conf    float64
	class   int32
	entry   uint32 // drift window entry
	classic uint8  // classic confidence bucket
	native  uint8  // 0 for the zero bucket, else native slot + 1
	low     bool
}

// prepare bins a prediction; top1 is the top-1 probability the estimated accuracy averages.
func (m *Model) prepare(s Scores, top1 float64) scored {
	conf := s.ConfidenceAt(m.scorer)
	bin := int(conf * m.bins)
	if bin > m.lastBin { // conf == 1
		bin = m.lastBin
	}
	return scored{
		conf:    conf,
		class:   int32(s.Class),
		entry:   newEntry(bin, top1),
		classic: classicBucket(&m.core.confBounds, conf),
		native:  nativeSlot(conf),
		low:     conf < m.low,
	}
}

// fail counts an output or row that could not be scored, and the request if asked to.
func (m *Model) fail(r Reason, countRequest bool) {
	m.mu.Lock()
	if countRequest {
		m.requests[OutcomeSuccess]++
	}
	m.errors[r]++
	m.mu.Unlock()
}

// commit adds scored predictions (and, once per request, the request) to the tallies.
func (m *Model) commit(rows []scored, countRequest bool) {
	m.mu.Lock()
	if countRequest {
		m.requests[OutcomeSuccess]++
	}
	for i := range rows {
		r := &rows[i]
		m.predictions[r.class]++
		if r.low {
			m.lowConfidence++
		}
		m.confidence.add(r)
		m.add(r.entry)
		if m.classMix != nil {
			m.classMix.add(r.class)
		}
	}
	m.mu.Unlock()
}
