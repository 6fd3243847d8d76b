package classify

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestScore checks every scorer on rows whose softmax was worked out by hand (to 12 digits,
// independently of the code: p_i = e^z_i / Σ e^z_j, H = −Σ p_i ln p_i). The tolerance is what
// float32 inputs allow.
func TestScore(t *testing.T) {
	ln3 := float32(math.Log(3))
	tests := []struct {
		name                     string
		kind                     OutputKind
		row                      []float32
		class                    int
		maxSoftmax, margin, entr float64
	}{
		// p = (0.0900, 0.2447, 0.6652)
		{"logits K=3", Logits, []float32{1, 2, 3}, 2, 0.665240955775, 0.420512484720, 0.242320889338},
		// p = (1/4, 3/4): margin 1/2, H = (1/4)ln4 + (3/4)ln(4/3)
		{"logits K=2", Logits, []float32{0, ln3}, 1, 0.75, 0.5, 0.188721875541},
		// a tie for the top: the lower index wins, as in numpy.argmax, and the margin is 0
		{"logits tie", Logits, []float32{2, 2, 0}, 0, 0.468310530833, 0, 0.194090980523},
		// equal logits are the uniform distribution: no confidence by margin or entropy
		{"logits uniform", Logits, []float32{5, 5, 5, 5}, 0, 0.25, 0, 0},
		// a naive softmax overflows e^1000 to +Inf and returns NaN
		{"large logits", Logits, []float32{1000, 0, -1000}, 0, 1, 1, 1},
		{"large negative logits", Logits, []float32{-1000, -1000}, 0, 0.5, 0, 0},
		// differences beyond the float64 exponent range
		{"extreme logits", Logits, []float32{-3e38, 3e38}, 1, 1, 1, 1},
		{"probabilities", Probabilities, []float32{0.1, 0.2, 0.7}, 2, 0.7, 0.5, 0.270153300838},
		// sums to 0.995, within ProbabilityTolerance: renormalised
		{"probabilities renormalised", Probabilities, []float32{0.3, 0.695}, 1, 0.698492462312, 0.396984924623, 0.116874097271},
		// 0·ln 0 = 0: a one-hot output is fully confident
		{"probabilities one-hot", Probabilities, []float32{0, 1, 0}, 1, 1, 1, 1},
		{"probabilities tie", Probabilities, []float32{0.5, 0.5}, 0, 0.5, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Score(tt.row, tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			if s.Class != tt.class {
				t.Errorf("class = %d, want %d", s.Class, tt.class)
			}
			for _, c := range []struct {
				scorer    Scorer
				got, want float64
			}{
				{MaxSoftmax, s.MaxSoftmax, tt.maxSoftmax},
				{Margin, s.Margin, tt.margin},
				{Entropy, s.Entropy, tt.entr},
			} {
				if math.Abs(c.got-c.want) > 1e-6 {
					t.Errorf("%s = %.12f, want %.12f", c.scorer, c.got, c.want)
				}
				if got := s.Confidence(c.scorer); got != c.got {
					t.Errorf("Confidence(%s) = %v, want the field's %v", c.scorer, got, c.got)
				}
			}
		})
	}
}

func TestScoreReasons(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name string
		kind OutputKind
		row  []float32
		want Reason
	}{
		{"empty", Logits, nil, ReasonEmpty},
		{"one value", Logits, []float32{3}, ReasonShapeMismatch},
		{"NaN logit", Logits, []float32{1, nan, 2}, ReasonNaN},
		{"+Inf logit", Logits, []float32{1, inf}, ReasonInf},
		{"-Inf logit", Logits, []float32{-inf, 1}, ReasonInf},
		{"NaN probability", Probabilities, []float32{0.5, nan}, ReasonNaN},
		{"Inf probability", Probabilities, []float32{inf, 0}, ReasonInf},
		{"negative probability", Probabilities, []float32{1.2, -0.2}, ReasonNegativeProbability},
		{"sum above tolerance", Probabilities, []float32{0.5, 0.52}, ReasonNotNormalized},
		{"sum below tolerance", Probabilities, []float32{0.2, 0.2, 0.2}, ReasonNotNormalized},
		{"logits declared as probabilities", Probabilities, []float32{2.1, 0.3, 0.7}, ReasonNotNormalized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Score(tt.row, tt.kind)
			var got Reason
			if !errors.As(err, &got) || got != tt.want {
				t.Fatalf("error = %v, want reason %s", err, tt.want.String())
			}
		})
	}
	if _, err := Score([]float32{1, 2}, OutputKind(0)); err == nil {
		t.Error("Score accepted the zero OutputKind")
	}
}

// TestScoreBounds feeds random rows of every scale and checks what the metrics rely on: every
// confidence is a number in [0, 1], the class is an index of the row, and skipping the
// entropy pass (as the hot path does) changes nothing else.
func TestScoreBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		k := 2 + rng.IntN(40)
		scale := math.Pow(10, float64(rng.IntN(8)-3)) // 1e-3 .. 1e4
		row := make([]float32, k)
		kind := Logits
		if i%2 == 1 {
			kind = Probabilities
			var sum float64
			for j := range row {
				v := rng.Float64() * scale
				row[j] = float32(v)
				sum += v
			}
			for j := range row {
				row[j] = float32(float64(row[j]) / sum)
			}
		} else {
			for j := range row {
				row[j] = float32(rng.NormFloat64() * scale)
			}
		}
		s, err := Score(row, kind)
		if err != nil {
			t.Fatalf("%v %v: %v", kind, row, err)
		}
		for _, v := range []float64{s.MaxSoftmax, s.Margin, s.Entropy} {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%v %v: confidence %v outside [0, 1]: %+v", kind, row, v, s)
			}
		}
		if s.Class < 0 || s.Class >= k || row[s.Class] != maxOf(row) {
			t.Fatalf("%v %v: class %d is not the top-1", kind, row, s.Class)
		}
		fast, r := ScoreRow(row, kind, false)
		if r != ReasonNone || fast.Class != s.Class || fast.MaxSoftmax != s.MaxSoftmax || fast.Margin != s.Margin {
			t.Fatalf("%v %v: without entropy %+v, with %+v", kind, row, fast, s)
		}
	}
}

func maxOf(row []float32) float32 {
	m := row[0]
	for _, v := range row {
		m = max(m, v)
	}
	return m
}

// TestExpNonPositive holds the softmax's exponential to its documented accuracy over the
// whole range it is used on.
func TestExpNonPositive(t *testing.T) {
	var worst, at float64
	for x := float64(minExponent); x <= 0; x += 0.000937 {
		want := math.Exp(x)
		if e := math.Abs(expNonPositive(x)/want - 1); e > worst {
			worst, at = e, x
		}
	}
	for _, x := range []float64{0, -1e-300, -math.Ln2 / 64, -math.Ln2, -1, -20, minExponent} {
		if e := math.Abs(expNonPositive(x)/math.Exp(x) - 1); e > worst {
			worst, at = e, x
		}
	}
	if worst > 1e-9 {
		t.Fatalf("relative error %.3g at x = %v, want < 1e-9", worst, at)
	}
	if got := expNonPositive(0); got != 1 {
		t.Errorf("e^0 = %v, want exactly 1 (the top class's term)", got)
	}
}

func TestExp2Table(t *testing.T) {
	for j, bits := range exp2Table {
		got, want := math.Float64frombits(bits), math.Exp2(float64(j)/32)
		if math.Abs(got-want) > math.Nextafter(want, 2)-want {
			t.Errorf("exp2Table[%d] = %v, want 2^(%d/32) = %v", j, got, j, want)
		}
	}
}

func TestReasonNames(t *testing.T) {
	// The names are label values: a change breaks dashboards and alerts, so it must be deliberate.
	want := []string{"none", "nan", "inf", "empty", "shape_mismatch", "not_normalized", "negative_probability"}
	if int(NumReasons) != len(want) {
		t.Fatalf("%d reasons, want %d", NumReasons, len(want))
	}
	for r := range NumReasons {
		if r.String() != want[r] {
			t.Errorf("Reason(%d) = %q, want %q", r, r, want[r])
		}
	}
}

// TestScorerIndex checks that each scorer's index picks that scorer's confidence, and that
// an unknown name is refused.
func TestScorerIndex(t *testing.T) {
	s := Scores{MaxSoftmax: 0.9, Margin: 0.7, Entropy: 0.5}
	for _, tc := range []struct {
		sc   Scorer
		want float64
	}{{MaxSoftmax, 0.9}, {Margin, 0.7}, {Entropy, 0.5}} {
		i, ok := tc.sc.Index()
		if !ok || s.ConfidenceAt(i) != tc.want || s.Confidence(tc.sc) != tc.want {
			t.Errorf("%s: index %d, %v: %v, %v; want %v", tc.sc, i, ok, s.ConfidenceAt(i), s.Confidence(tc.sc), tc.want)
		}
	}
	if _, ok := Scorer("max-softmax").Index(); ok {
		t.Error("an unknown scorer has an index")
	}
	if c := s.Confidence("max-softmax"); !math.IsNaN(c) {
		t.Errorf("an unknown scorer's confidence is %v, want NaN", c)
	}
}
