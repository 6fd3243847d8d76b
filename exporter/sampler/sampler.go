// Package sampler decides which predictions the exporter captures as training samples.
//
// For every prediction (one output row) the inference front asks Decide whether to keep its
// input. Strategies (low confidence, close to a threshold, small margin, high entropy, a random
// share, chosen classes) say which predictions are worth labelling; token buckets per minute,
// hour and day and a daily byte budget say how many the node may send over its metered uplink;
// duplicate suppression keeps consecutive, near-identical video frames from filling that
// budget. The configuration is a superset of Roboflow Inference's active_learning
// configuration. docs/sampler.md describes the semantics; this file the order they run in.
//
// Decide runs on the request path of every prediction: when it captures nothing it takes no
// lock, reads no clock and allocates nothing (BenchmarkDecideNoCapture).
package sampler

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are what a Sampler needs besides its configuration.
type Options struct {
	// Registerer takes the sampler's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock of the limits, the byte budget's day and the dedup window; nil means
	// time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the probability draws; nil means math/rand/v2's
	// Float64. It is called concurrently.
	Rand func() float64
}

// Candidate is one prediction offered for capture.
type Candidate struct {
	// Model is the model's name: a metric label value, and the scope of the strategies'
	// limits and of duplicate suppression.
	Model string
	// Scores are the prediction's scores by every scorer, as observe.Score returns them.
	Scores observe.Scores
	// ClassName is the predicted class's name, "" when the model has no class names.
	ClassName string
	// Input is the row's input values. It is read during the call only, never retained.
	// Without values (nil) the candidate is not checked for duplicates.
	Input []float32
	// Shape is the row's input shape without the batch dimension, such as [784], [28 28] or
	// [3 224 224]; it tells image-shaped inputs from others for the perceptual hash.
	Shape []int64
	// Size is the number of bytes the stored sample would take, for the byte budget.
	Size int64
}

// Decision is the sampler's answer for one candidate.
type Decision struct {
	// Capture says whether to capture the candidate.
	Capture bool
	// Reason is the name of the strategy that chose the candidate, when Capture.
	Reason string
	// Tags are the strategy's tags followed by the global tags, when Capture. The slice is
	// shared: read only.
	Tags []string
	// Skipped is why a candidate that matched a strategy was not captured (a Skip* value);
	// "" when it was captured or matched nothing.
	Skipped string
}

// Sampler decides which predictions to capture. It is safe for concurrent use.
type Sampler struct {
	enabled    bool
	strategies []strategy
	nearDedup  bool
	maxDist    int
	window     int64 // nanoseconds
	maxEntries int
	seed       maphash.Seed
	now        func() time.Time
	rand       func() float64
	start      time.Time // dedup times are nanoseconds since start, on the monotonic clock
	metrics    *metrics

	// models maps a model name to its state; copied on write, because models are few and
	// added once, while every Decide reads it.
	models   atomic.Pointer[map[string]*model]
	modelsMu sync.Mutex

	// mu guards the limits, the byte budget and the dedup rings: the state of the capture
	// path, which only candidates that matched a strategy take.
	mu      sync.Mutex
	overall buckets
	bytes   byteBudget
}

// strategyKind is how a strategy matches, decided once in New.
type strategyKind uint8

const (
	kindBelow   strategyKind = iota // confidence < threshold
	kindBand                        // lo < confidence < hi
	kindRandom                      // every prediction; the probability draw is the match
	kindClasses                     // the class filter alone
)

// scorer picks one of observe.Scores' confidences without comparing strings.
type scorer uint8

const (
	scoreMaxSoftmax scorer = iota
	scoreMargin
	scoreEntropy
)

func scorerOf(s observe.Scorer) scorer {
	switch s {
	case observe.Margin:
		return scoreMargin
	case observe.Entropy:
		return scoreEntropy
	}
	return scoreMaxSoftmax
}

func (sc scorer) of(s *observe.Scores) float64 {
	switch sc {
	case scoreMargin:
		return s.Margin
	case scoreEntropy:
		return s.Entropy
	}
	return s.MaxSoftmax
}

// strategy is a StrategyConfig compiled for the hot path.
type strategy struct {
	name        string
	kind        strategyKind
	scorer      scorer
	threshold   float64 // kindBelow
	lo, hi      float64 // kindBand
	probability float64
	classNames  map[string]struct{} // nil: no class filter
	classIndex  map[int]struct{}    // entries that are numbers, for models without class names
	limits      []Limit
	tags        []string
}

// matches reports whether c meets the strategy's condition and class filter (the probability
// draw comes after).
func (st *strategy) matches(c *Candidate) bool {
	switch st.kind {
	case kindBelow:
		if !(st.scorer.of(&c.Scores) < st.threshold) {
			return false
		}
	case kindBand:
		if conf := st.scorer.of(&c.Scores); !(st.lo < conf && conf < st.hi) {
			return false
		}
	}
	if st.classNames == nil {
		return true
	}
	if c.ClassName != "" {
		_, ok := st.classNames[c.ClassName]
		return ok
	}
	_, ok := st.classIndex[c.Scores.Class]
	return ok
}

// model is the per-model state: cached metric children, and the strategies' limits and the
// dedup ring (both guarded by Sampler.mu).
type model struct {
	considered prometheus.Counter
	captured   []prometheus.Counter // by strategy index
	skipped    [numSkipReasons]prometheus.Counter
	limits     []buckets // by strategy index
	dedup      ring
}

// New returns a Sampler for cfg, which it validates.
func New(cfg Config, opts Options) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sampler: invalid configuration: %w", err)
	}
	s := &Sampler{
		enabled:    cfg.Enabled,
		nearDedup:  cfg.Dedup.Enabled && cfg.Dedup.MaxDistance >= 0,
		maxDist:    cfg.Dedup.MaxDistance,
		window:     int64(cfg.Dedup.Window),
		maxEntries: cfg.Dedup.MaxEntries,
		seed:       maphash.MakeSeed(),
		now:        opts.Now,
		rand:       opts.Rand,
		metrics:    newMetrics(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	s.start = s.now()
	for _, sc := range cfg.EffectiveStrategies() {
		s.strategies = append(s.strategies, compile(sc, cfg.Tags))
	}
	s.overall = newBuckets(cfg.Limits, s.start)
	if p := cfg.Roboflow.BatchingStrategy.batchPeriod(); p > 0 {
		s.overall = append(s.overall, newBucket(cfg.Roboflow.BatchingStrategy.MaxBatchImages, p, s.start))
	}
	s.bytes = byteBudget{max: cfg.MaxBytesPerDay, day: dayOf(s.start)}
	s.models.Store(&map[string]*model{})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("sampler: register metrics: %w", err)
		}
	}
	return s, nil
}

// compile turns a validated StrategyConfig into its hot-path form.
func compile(sc StrategyConfig, globalTags []string) strategy {
	st := strategy{name: sc.Name, scorer: scorerOf(sc.Scorer), probability: 1, limits: sc.Limits}
	switch {
	case sc.Probability != nil:
		st.probability = *sc.Probability
	case sc.TrafficPercentage != nil:
		st.probability = *sc.TrafficPercentage
	}
	switch sc.Type {
	case Threshold:
		st.kind, st.threshold = kindBelow, *sc.Threshold
	case Margin:
		st.kind, st.threshold, st.scorer = kindBelow, *sc.Threshold, scoreMargin
	case Entropy:
		st.kind, st.threshold, st.scorer = kindBelow, *sc.Threshold, scoreEntropy
	case CloseToThreshold:
		// The bounds are computed once: |c − t| < ε computed per prediction can land on the
		// other side of a bound than the user's decimal arithmetic (0.9 − 0.8 < 0.1 in
		// binary floating point), while t − ε and t + ε usually round to the bounds people
		// write (0.9 − 0.1 == 0.8; TestStrategies checks Roboflow's documented example).
		st.kind, st.lo, st.hi = kindBand, *sc.Threshold-sc.Epsilon, *sc.Threshold+sc.Epsilon
	case Random:
		st.kind = kindRandom
	default: // Classes, classes_based
		st.kind = kindClasses
	}
	classes := sc.Classes
	if len(classes) == 0 {
		classes = sc.SelectedClassNames
	}
	if len(classes) > 0 {
		st.classNames = make(map[string]struct{}, len(classes))
		st.classIndex = map[int]struct{}{}
		for _, c := range classes {
			st.classNames[c] = struct{}{}
			if i, err := strconv.Atoi(c); err == nil && i >= 0 {
				st.classIndex[i] = struct{}{}
			}
		}
	}
	st.tags = append(append([]string(nil), sc.Tags...), globalTags...)
	return st
}

// model returns the state of the named model, creating it on first sight.
func (s *Sampler) model(name string) *model {
	if m, ok := (*s.models.Load())[name]; ok {
		return m
	}
	s.modelsMu.Lock()
	defer s.modelsMu.Unlock()
	old := *s.models.Load()
	if m, ok := old[name]; ok {
		return m
	}
	now := s.now()
	m := &model{
		considered: s.metrics.considered.WithLabelValues(name),
		captured:   make([]prometheus.Counter, len(s.strategies)),
		limits:     make([]buckets, len(s.strategies)),
	}
	for i := range s.strategies {
		m.captured[i] = s.metrics.captured.WithLabelValues(name, s.strategies[i].name)
		m.limits[i] = newBuckets(s.strategies[i].limits, now)
	}
	for r := skipProbability; r < numSkipReasons; r++ {
		m.skipped[r] = s.metrics.skipped.WithLabelValues(name, r.String())
	}
	models := make(map[string]*model, len(old)+1)
	for k, v := range old {
		models[k] = v
	}
	models[name] = m
	s.models.Store(&models)
	return m
}

// Decide decides whether to capture c. The steps, in order, each reached only when the one
// before passes:
//
//  1. Strategies, in configuration order: the condition and class filter, then the
//     probability draw. Every strategy that passes both is a contender. A random strategy's
//     draw is its condition: losing it is no match, so no skip is counted for it.
//  2. Limits, peeked (nothing taken): the first contender whose own buckets have a token is
//     chosen; then the overall buckets and the day's byte budget must have room.
//  3. Duplicates: the input's signature is computed (only now: it reads the whole input) and
//     compared with the model's captures within the window.
//  4. Take: the chosen strategy's and the overall tokens and the bytes are spent, the
//     signature is remembered, and the capture is counted under the chosen strategy.
//
// So a duplicate spends no token and no byte, and the cost of hashing is paid only by
// candidates the limits would let through. A candidate refused after matching is counted
// once, under the furthest step it reached (probability < rate_limit < byte_budget <
// duplicate, near_duplicate).
func (s *Sampler) Decide(c *Candidate) Decision {
	if !s.enabled {
		return Decision{}
	}
	m := s.model(c.Model)
	m.considered.Inc()
	var contenders uint64
	refused := skipNone
	for i := range s.strategies {
		st := &s.strategies[i]
		if !st.matches(c) {
			continue
		}
		if !s.draw(st.probability) {
			if st.kind != kindRandom {
				refused = skipProbability
			}
			continue
		}
		contenders |= 1 << i
	}
	if contenders == 0 {
		return s.skip(m, refused)
	}
	return s.capture(m, c, contenders)
}

// draw returns true with probability p.
func (s *Sampler) draw(p float64) bool {
	switch {
	case p >= 1:
		return true
	case p <= 0:
		return false
	}
	return s.rand() < p
}

// skip counts a refusal (none for skipNone) and returns its Decision.
func (s *Sampler) skip(m *model, r skipReason) Decision {
	if r == skipNone {
		return Decision{}
	}
	m.skipped[r].Inc()
	return Decision{Skipped: r.String()}
}

// capture runs steps 2 to 4 of Decide for the contenders (a bit per strategy index).
func (s *Sampler) capture(m *model, c *Candidate, contenders uint64) Decision {
	now := s.now()
	size := max(c.Size, 0)
	s.mu.Lock()
	_, refused := s.pick(m, contenders, size, now)
	s.mu.Unlock()
	if refused != skipNone {
		return s.skip(m, refused)
	}

	// Without values there is nothing to compare: every empty input would be a duplicate of
	// every other, so dedup does not apply to them.
	dedup := len(c.Input) > 0
	var sig signature
	if dedup {
		sig = sign(s.seed, c.Input, c.Shape, s.nearDedup)
	}
	at := int64(now.Sub(s.start))

	s.mu.Lock()
	chosen := -1
	if dedup {
		refused = m.dedup.find(sig, at, s.window, s.dedupDistance())
	}
	if refused == skipNone {
		// Another capture may have taken the last token since the peek: pick again.
		chosen, refused = s.pick(m, contenders, size, now)
	}
	if refused == skipNone {
		m.limits[chosen].take()
		s.overall.take()
		s.bytes.spend(size)
		if dedup {
			m.dedup.add(entry{signature: sig, at: at}, s.maxEntries)
		}
	}
	s.mu.Unlock()
	if refused != skipNone {
		return s.skip(m, refused)
	}
	st := &s.strategies[chosen]
	m.captured[chosen].Inc()
	return Decision{Capture: true, Reason: st.name, Tags: st.tags}
}

// pick returns the first contender whose own limits have a token, provided the overall
// limits and the byte budget have room; it takes nothing. s.mu is held.
func (s *Sampler) pick(m *model, contenders uint64, size int64, now time.Time) (int, skipReason) {
	chosen := -1
	for i := range s.strategies {
		if contenders&(1<<i) != 0 && m.limits[i].available(now) {
			chosen = i
			break
		}
	}
	switch {
	case chosen < 0, !s.overall.available(now):
		return -1, skipRateLimit
	case !s.bytes.fits(size, now):
		return -1, skipByteBudget
	}
	return chosen, skipNone
}

// dedupDistance is the near-duplicate distance, or -1 when near duplicates are not suppressed.
func (s *Sampler) dedupDistance() int {
	if !s.nearDedup {
		return -1
	}
	return s.maxDist
}

// Skipped counts a candidate the sampler chose but the caller could not capture, such as
// reason "spool_full", in edgeloop_samples_skipped_total, beside the sampler's own reasons.
func (s *Sampler) Skipped(model, reason string) {
	m := s.model(model)
	for r := skipProbability; r < numSkipReasons; r++ {
		if r.String() == reason {
			m.skipped[r].Inc()
			return
		}
	}
	s.metrics.skipped.WithLabelValues(model, reason).Inc()
}
