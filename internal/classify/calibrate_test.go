package classify

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCalibratedTop1 compares CalibratedTop1 with the top of Softmax(z, T), for logits and for
// the probabilities softmax(z) they give, over random rows and temperatures.
func TestCalibratedTop1(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	p := make([]float64, 10)
	for i := range 2000 {
		k := 2 + rng.IntN(9)
		z := make([]float32, k)
		scale := []float64{0.1, 1, 5, 30}[i%4]
		for j := range z {
			z[j] = float32(scale * rng.NormFloat64())
		}
		temp := math.Exp(rng.Float64()*4 - 2) // 0.14 to 7.4
		s, err := Score(z, Logits)
		if err != nil {
			t.Fatal(err)
		}
		Softmax(z, temp, p[:k])
		want := p[s.Class]
		if got := CalibratedTop1(z, s.Class, Logits, 1/temp); math.Abs(got-want) > 1e-8 {
			t.Fatalf("logits %v, T %v: %v, want %v", z, temp, got, want)
		}
		Softmax(z, 1, p[:k])
		probs := make([]float32, k)
		for j := range probs {
			probs[j] = float32(p[j])
		}
		// From float32 probabilities: as exact as their rounding allows. A probability that
		// underflowed to 0 stays 0 at any temperature, so such rows are not compared.
		positive := true
		for _, v := range probs {
			positive = positive && v > 0
		}
		if got := CalibratedTop1(probs, s.Class, Probabilities, 1/temp); positive && math.Abs(got-want) > 1e-5 {
			t.Fatalf("probabilities %v, T %v: %v, want %v", probs, temp, got, want)
		}
	}
	if got := CalibratedTop1([]float32{0, 0}, 0, Probabilities, 1); got != 0 {
		t.Errorf("all-zero probabilities: %v, want 0", got)
	}
}
