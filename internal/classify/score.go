package classify

import (
	"math"
)

// Scorer names a way of turning one classification output row into a confidence in [0, 1].
// The names are the values of the exporter's `scorer` config key and the keys of a model's
// confidence histograms, so the edge, the gate and the trainers score a prediction alike.
type Scorer string

const (
	// MaxSoftmax is the top-1 probability: max_i p_i.
	MaxSoftmax Scorer = "max_softmax"
	// Margin is the top-1 probability minus the top-2 probability: p_(1) − p_(2).
	Margin Scorer = "margin"
	// Entropy is the normalised entropy turned into a confidence: 1 − H(p)/ln K, where
	// H(p) = −Σ p_i ln p_i and K is the number of classes.
	Entropy Scorer = "entropy"
)

// ScorerIndex is a Scorer as a small integer, so that a hot path (the exporter's, per
// prediction) picks a confidence without comparing names: see Scorer.Index and
// Scores.ConfidenceAt.
type ScorerIndex uint8

// The indexes of the scorers.
const (
	IndexMaxSoftmax ScorerIndex = iota
	IndexMargin
	IndexEntropy
)

// Index returns the scorer's index and whether the name is known: a configuration checks a
// scorer name with it.
func (s Scorer) Index() (ScorerIndex, bool) {
	switch s {
	case MaxSoftmax:
		return IndexMaxSoftmax, true
	case Margin:
		return IndexMargin, true
	case Entropy:
		return IndexEntropy, true
	}
	return 0, false
}

// OutputKind says what a model's classification output holds. The zero value is invalid on
// purpose: declaring probabilities as logits (or the reverse) yields plausible but wrong
// confidences, so a model spec that forgets to say which must fail at load, not skew metrics.
type OutputKind uint8

const (
	// Logits are unnormalised scores; the scorers apply a numerically stable softmax.
	Logits OutputKind = iota + 1
	// Probabilities are softmax outputs: non-negative and summing to 1 within ProbabilityTolerance.
	Probabilities
)

// String returns "logits", "probabilities" or "invalid".
func (k OutputKind) String() string {
	switch k {
	case Logits:
		return "logits"
	case Probabilities:
		return "probabilities"
	}
	return "invalid"
}

// ProbabilityTolerance is how far the sum of a probability row may stray from 1 before the row
// is rejected as not_normalized. Rows within it are renormalised by their sum, so the rounding
// of a float16 or int8-calibrated softmax does not count as an error, while a model whose
// output was wrongly declared as probabilities (logits, or independent sigmoids) does.
const ProbabilityTolerance = 0.01

// Reason says why an output could not be scored. Its String is the `reason` label of the
// exporter's edgeloop_confidence_errors_total, and it is an error so Score can return it as one.
type Reason uint8

const (
	// ReasonNone: the row was scored (ScoreRow's answer when nothing is wrong).
	ReasonNone Reason = iota
	// ReasonNaN: a value in the row is NaN.
	ReasonNaN
	// ReasonInf: a value in the row is +Inf or −Inf.
	ReasonInf
	// ReasonEmpty: a successful response carried no output scores.
	ReasonEmpty
	// ReasonShapeMismatch: the output length is not a multiple of the number of classes (or a
	// row passed to Score has fewer than two values).
	ReasonShapeMismatch
	// ReasonNotNormalized: a probability row does not sum to 1 within ProbabilityTolerance.
	ReasonNotNormalized
	// ReasonNegativeProbability: a probability row holds a negative value.
	ReasonNegativeProbability
	// NumReasons is the number of reasons, ReasonNone included: an array indexed by Reason
	// has this length.
	NumReasons
)

// String returns the reason's label value, such as "nan" or "shape_mismatch".
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonNaN:
		return "nan"
	case ReasonInf:
		return "inf"
	case ReasonEmpty:
		return "empty"
	case ReasonShapeMismatch:
		return "shape_mismatch"
	case ReasonNotNormalized:
		return "not_normalized"
	case ReasonNegativeProbability:
		return "negative_probability"
	}
	return "unknown"
}

// Error makes a Reason usable as the error Score returns.
func (r Reason) Error() string { return "classify: cannot score output: " + r.String() }

// Scores is what the scorers derive from one output row. Every confidence is in [0, 1].
type Scores struct {
	// Class is the index of the top-1 class; ties go to the lowest index, as numpy.argmax does.
	Class int
	// MaxSoftmax is the top-1 probability. It is also what the estimated accuracy averages.
	MaxSoftmax float64
	// Margin is the top-1 probability minus the top-2 probability (0 on a tie).
	Margin float64
	// Entropy is the entropy scorer's confidence 1 − H(p)/ln K (not the entropy itself), so
	// that for every scorer a higher value means a surer model.
	Entropy float64
}

// Confidence returns the confidence by scorer s, or NaN for an unknown scorer.
func (s Scores) Confidence(sc Scorer) float64 {
	i, ok := sc.Index()
	if !ok {
		return math.NaN()
	}
	return s.ConfidenceAt(i)
}

// ConfidenceAt returns the confidence by the scorer of index i (Scorer.Index); an index of no
// scorer gives the top-1 probability.
func (s Scores) ConfidenceAt(i ScorerIndex) float64 {
	switch i {
	case IndexMargin:
		return s.Margin
	case IndexEntropy:
		return s.Entropy
	}
	return s.MaxSoftmax
}

// Score scores one classification output row (one prediction, K ≥ 2 values) by every scorer.
// The returned error is a Reason when the row cannot be scored: NaN or infinite values, fewer
// than two values, or probabilities that are negative or do not sum to ~1.
func Score(row []float32, kind OutputKind) (Scores, error) {
	switch {
	case len(row) == 0:
		return Scores{}, ReasonEmpty
	case len(row) < 2:
		return Scores{}, ReasonShapeMismatch
	case kind != Logits && kind != Probabilities:
		return Scores{}, invalidKindError{}
	}
	s, r := ScoreRow(row, kind, true)
	if r != ReasonNone {
		return Scores{}, r
	}
	return s, nil
}

// invalidKindError is returned by Score for an OutputKind that is neither Logits nor
// Probabilities: a programming error, not a property of the output, so it is no Reason.
type invalidKindError struct{}

func (invalidKindError) Error() string { return "classify: cannot score output: invalid output kind" }

// ScoreRow is Score for a hot path: without the argument checks (len(row) ≥ 2 and a valid
// kind are the caller's business), with the entropy pass optional, since it costs a log per
// class and the exporter needs it only when its configured scorer is entropy, and with the
// Reason returned as such (ReasonNone when the row was scored), so that a caller counting
// failures by reason needs no type assertion. It allocates nothing.
func ScoreRow(row []float32, kind OutputKind, withEntropy bool) (Scores, Reason) {
	if kind == Probabilities {
		return scoreProbabilities(row, withEntropy)
	}
	return scoreLogits(row, withEntropy)
}

// scoreLogits applies the softmax p_i = exp(z_i − m) / S with m = max_j z_j and
// S = Σ_j exp(z_j − m), which never overflows (every exponent is ≤ 0) and is exact for the
// top class (p_1 = 1/S). The entropy follows without a log per class:
// H = −Σ p_i (d_i − ln S) = ln S − (Σ e_i d_i)/S with d_i = z_i − m and e_i = exp(d_i).
func scoreLogits(row []float32, withEntropy bool) (Scores, Reason) {
	m1, m2, top := math.Inf(-1), math.Inf(-1), 0
	for i, z := range row {
		f := float64(z)
		if f-f != 0 { // only NaN and ±Inf fail this; one test keeps the loop tight
			return Scores{}, nonFinite(f)
		}
		if f > m1 {
			m1, m2, top = f, m1, i
		} else if f > m2 {
			m2 = f
		}
	}
	var sum, weighted float64
	if withEntropy {
		for _, z := range row {
			d := float64(z) - m1
			if d < minExponent {
				d = minExponent
			}
			e := expNonPositive(d)
			sum += e
			weighted += e * d
		}
	} else {
		for _, z := range row {
			d := float64(z) - m1
			if d < minExponent {
				d = minExponent
			}
			sum += expNonPositive(d)
		}
	}
	d2 := m2 - m1
	if d2 < minExponent {
		d2 = minExponent
	}
	p1 := 1 / sum
	s := Scores{
		Class:      top,
		MaxSoftmax: p1,
		Margin:     clamp01(p1 - expNonPositive(d2)*p1),
	}
	if withEntropy {
		h := math.Log(sum) - weighted*p1
		s.Entropy = clamp01(1 - h/math.Log(float64(len(row))))
	}
	return s, ReasonNone
}

// scoreProbabilities renormalises by the row sum q = Σ p_i (within ProbabilityTolerance of 1)
// and uses H = −Σ (p_i/q) ln(p_i/q) = ln q − (Σ p_i ln p_i)/q, with 0·ln 0 = 0.
func scoreProbabilities(row []float32, withEntropy bool) (Scores, Reason) {
	m1, m2, top := math.Inf(-1), math.Inf(-1), 0
	var sum float64
	for i, p := range row {
		f := float64(p)
		if f-f != 0 {
			return Scores{}, nonFinite(f)
		}
		if f < 0 {
			return Scores{}, ReasonNegativeProbability
		}
		sum += f
		if f > m1 {
			m1, m2, top = f, m1, i
		} else if f > m2 {
			m2 = f
		}
	}
	if math.Abs(sum-1) > ProbabilityTolerance {
		return Scores{}, ReasonNotNormalized
	}
	inv := 1 / sum
	s := Scores{
		Class:      top,
		MaxSoftmax: clamp01(m1 * inv),
		Margin:     clamp01((m1 - m2) * inv),
	}
	if withEntropy {
		var plogp float64
		for _, p := range row {
			if f := float64(p); f > 0 {
				plogp += f * math.Log(f)
			}
		}
		h := math.Log(sum) - plogp*inv
		s.Entropy = clamp01(1 - h/math.Log(float64(len(row))))
	}
	return s, ReasonNone
}

func nonFinite(f float64) Reason {
	if math.IsNaN(f) {
		return ReasonNaN
	}
	return ReasonInf
}

// clamp01 absorbs the last-bit rounding that can put a confidence a hair outside [0, 1].
func clamp01(x float64) float64 {
	switch {
	case x < 0:
		return 0
	case x > 1:
		return 1
	}
	return x
}

// exp2Table holds the bits of 2^(j/32), j = 0..31, correctly rounded. It is a read-only
// lookup table (TestExp2Table checks it against math.Exp2), not state.
var exp2Table = [32]uint64{
	0x3ff0000000000000, 0x3ff059b0d3158574, 0x3ff0b5586cf9890f, 0x3ff11301d0125b51,
	0x3ff172b83c7d517b, 0x3ff1d4873168b9aa, 0x3ff2387a6e756238, 0x3ff29e9df51fdee1,
	0x3ff306fe0a31b715, 0x3ff371a7373aa9cb, 0x3ff3dea64c123422, 0x3ff44e086061892d,
	0x3ff4bfdad5362a27, 0x3ff5342b569d4f82, 0x3ff5ab07dd485429, 0x3ff6247eb03a5585,
	0x3ff6a09e667f3bcd, 0x3ff71f75e8ec5f74, 0x3ff7a11473eb0187, 0x3ff82589994cce13,
	0x3ff8ace5422aa0db, 0x3ff93737b0cdc5e5, 0x3ff9c49182a3f090, 0x3ffa5503b23e255d,
	0x3ffae89f995ad3ad, 0x3ffb7f76f2fb5e47, 0x3ffc199bdd85529c, 0x3ffcb720dcef9069,
	0x3ffd5818dcfba487, 0x3ffdfc97337b9b5f, 0x3ffea4afa2a490da, 0x3fff50765b6e4540,
}

// minExponent is the least argument expNonPositive takes: its 2^k step needs k ≥ −1022.
const minExponent = -700

// expNonPositive returns e^x for minExponent ≤ x ≤ 0 with a relative error below 1e-9, in
// under half the time of math.Exp (which handles every special case a softmax never meets).
// K of these per prediction are most of the scoring cost, and the hot-path budget (1.5× two
// histogram observations) leaves little room for them. Callers clamp arguments below
// minExponent to it (e^−700 ≈ 1e−304: against a softmax denominator ≥ 1, the same as 0)
// rather than this function, which keeps it small enough to inline.
//
// Method: x = (32k + j)·ln2/32 + r with |r| ≤ ln2/64; e^x = 2^k · 2^(j/32) · e^r, the middle
// factor from exp2Table, e^r by its cubic Taylor polynomial (truncation error
// ≤ (ln2/64)^4/4! ≈ 5.7e-10), 2^k by adding k to the exponent bits. Rounding x·32/ln2 to an
// integer by adding 1.5·2^52 leaves that integer in the low bits of the sum, so no float-to-int
// conversion is needed.
func expNonPositive(x float64) float64 {
	const (
		invStep = 32 / math.Ln2
		step    = math.Ln2 / 32
		round   = 0x1.8p52
	)
	t := x*invStep + round
	n := t - round
	r := x - n*step
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6)))
	bits := math.Float64bits(t) // n (≥ −32400) in the low 32 bits, two's complement
	k := uint64(int64(int32(uint32(bits))) >> 5)
	return p * math.Float64frombits(exp2Table[bits&31]+k<<52)
}
