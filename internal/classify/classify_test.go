package classify

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExpectedCalibrationErrorByHand(t *testing.T) {
	// Three bins: [0, 1/3), [1/3, 2/3), [2/3, 1].
	conf := []float64{0.2, 0.3, 0.5, 0.6, 0.9, 1.0}
	correct := []bool{false, true, true, false, true, true}
	// Bin 0: 2 samples, acc 0.5, conf 0.25 → 2/6·0.25. Bin 1: 2, acc 0.5, conf 0.55 → 2/6·0.05.
	// Bin 2: 2, acc 1, conf 0.95 → 2/6·0.05.
	want := 2.0/6*0.25 + 2.0/6*0.05 + 2.0/6*0.05
	if got := ExpectedCalibrationError(conf, correct, 3); math.Abs(got-want) > 1e-12 {
		t.Fatalf("ECE = %v, want %v", got, want)
	}
	if got := ExpectedCalibrationError(nil, nil, 15); got != 0 {
		t.Fatalf("ECE of nothing = %v", got)
	}
}

func TestHistogramBin(t *testing.T) {
	for _, tc := range []struct {
		c    float64
		n    int
		want int
	}{{0, 10, 0}, {0.09999, 10, 0}, {0.1, 10, 1}, {0.95, 10, 9}, {1, 10, 9}, {1.5, 10, 9}, {-1, 10, 0}, {0.5, 15, 7}} {
		if got := HistogramBin(tc.c, tc.n); got != tc.want {
			t.Errorf("HistogramBin(%v, %d) = %d, want %d", tc.c, tc.n, got, tc.want)
		}
	}
}

// TestFitTemperatureRecoversKnownT draws labels from softmax(z/T) for random logits z and a
// known T: the maximum-likelihood fit must land close to T.
func TestFitTemperatureRecoversKnownT(t *testing.T) {
	for _, want := range []float64{0.5, 1, 2.5} {
		rng := rand.New(rand.NewPCG(1, uint64(want*10)))
		const n, k = 20000, 5
		logits := make([]float32, n*k)
		labels := make([]int, n)
		p := make([]float64, k)
		for i := range n {
			z := logits[i*k : (i+1)*k]
			for j := range z {
				z[j] = float32(rng.NormFloat64() * 3)
			}
			Softmax(z, want, p)
			u, acc := rng.Float64(), 0.0
			labels[i] = k - 1
			for j, q := range p {
				if acc += q; u < acc {
					labels[i] = j
					break
				}
			}
		}
		got, nll, err := FitTemperature(logits, labels, k)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want)/want > 0.05 {
			t.Errorf("T = %.4f, want %.4f ± 5%%", got, want)
		}
		// The fitted NLL is no worse than at the true T.
		var atTrue float64
		for i, l := range labels {
			atTrue += CrossEntropy(logits[i*k:(i+1)*k], l, want)
		}
		if atTrue /= n; nll > atTrue+1e-9 {
			t.Errorf("NLL at fit %.6f > NLL at true T %.6f", nll, atTrue)
		}
	}
}

func TestFitTemperatureRefusesBadInput(t *testing.T) {
	if _, _, err := FitTemperature([]float32{1, 2, 3}, []int{0}, 2); err == nil {
		t.Fatal("3 values for 1 sample of 2 classes: want an error")
	}
}

func TestCrossEntropyAndSoftmax(t *testing.T) {
	z := []float32{1, 2, 3}
	p := make([]float64, 3)
	Softmax(z, 1, p)
	if got, want := CrossEntropy(z, 2, 1), -math.Log(p[2]); math.Abs(got-want) > 1e-12 {
		t.Fatalf("CrossEntropy = %v, want %v", got, want)
	}
	// Huge logits stay finite.
	if ce := CrossEntropy([]float32{1e30, -1e30}, 1, 1); math.IsInf(ce, 0) || math.IsNaN(ce) {
		t.Fatalf("CrossEntropy of huge logits = %v", ce)
	}
}

func TestParseClasses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{{`["a","b"]`, 2, false}, {"a, b, c", 3, false}, {"", 0, false}, {`[1]`, 0, true}} {
		got, err := ParseClasses(tc.in)
		if (err != nil) != tc.err || len(got) != tc.want {
			t.Errorf("ParseClasses(%q) = %q, %v", tc.in, got, err)
		}
	}
}
