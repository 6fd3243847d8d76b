// Package classify holds the arithmetic of classifier scores that the training jobs, the
// retrain gate and the exporters share: the confidence scorers of one prediction (Score, the
// exporter's hot path included), softmax and cross-entropy, the confidence histogram's
// binning, expected calibration error and the fit of a softmax temperature. docs/gate.md
// defines the metrics, docs/inference-telemetry.md the scorers.
package classify

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Names of the ONNX graphs edgeloop's reference trainers write, which the gate scores when a
// model does not say otherwise.
const (
	// LogitsName is the output holding unnormalised class scores: FLOAT [batch, classes].
	LogitsName = "logits"
	// ProbabilitiesName is Softmax(logits) along the class axis: FLOAT [batch, classes].
	ProbabilitiesName = "probabilities"
	// MetadataClasses is the ONNX metadata_props key holding the class names, as a JSON list
	// or comma-separated.
	MetadataClasses = "classes"
)

// HistogramBins is the number of equal-width confidence bins over [0, 1] of the reference
// histogram (manifest reference_histogram) and the exporter's default drift.bins.
const HistogramBins = 10

// ECEBins is the number of equal-width confidence bins of ExpectedCalibrationError, the
// usual 15 of Guo et al. (2017).
const ECEBins = 15

// HistogramBin is the bin of a confidence c in [0, 1] among n equal bins: ⌊c·n⌋, with c = 1
// in the last bin and values outside [0, 1] clamped.
func HistogramBin(c float64, n int) int {
	b := int(c * float64(n))
	return min(max(b, 0), n-1)
}

// Softmax writes softmax(z/t) into p (len(p) == len(z)), computed stably in float64.
func Softmax(z []float32, t float64, p []float64) {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v)/t)
	}
	var s float64
	for i, v := range z {
		p[i] = math.Exp(float64(v)/t - m)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
}

// CrossEntropy is −log softmax(z/t)[label], computed stably (log-sum-exp).
func CrossEntropy(z []float32, label int, t float64) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v)/t)
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v)/t - m)
	}
	return m + math.Log(s) - float64(z[label])/t
}

// ExpectedCalibrationError is Σ_b (n_b/N)·|acc_b − conf_b| over bins equal-width confidence
// bins (HistogramBin), where acc_b is the share of correct predictions among the n_b samples
// whose top-1 confidence falls into bin b and conf_b their mean confidence. It is 0 for no
// samples.
func ExpectedCalibrationError(confidence []float64, correct []bool, bins int) float64 {
	n := len(confidence)
	if n == 0 || bins < 1 {
		return 0
	}
	count := make([]int, bins)
	right := make([]int, bins)
	conf := make([]float64, bins)
	for i, c := range confidence {
		b := HistogramBin(c, bins)
		count[b]++
		conf[b] += c
		if correct[i] {
			right[b]++
		}
	}
	var e float64
	for b := range bins {
		if count[b] == 0 {
			continue
		}
		nb := float64(count[b])
		e += nb / float64(n) * math.Abs(float64(right[b])/nb-conf[b]/nb)
	}
	return e
}

// Temperature bounds of FitTemperature: beyond them a model is so far off that a temperature
// is not the fix, and the fit says so by landing on a bound.
const (
	MinTemperature = 0.05
	MaxTemperature = 20
)

// FitTemperature returns the softmax temperature T in [MinTemperature, MaxTemperature] that
// minimises the mean negative log-likelihood of labels under softmax(logits/T), and that NLL.
// logits holds len(labels) rows of k values. The NLL is unimodal in log T for the usual
// models, so a golden-section search on log T converges to the optimum; 60 iterations shrink
// the bracket [log 0.05, log 20] to below 1e-11.
func FitTemperature(logits []float32, labels []int, k int) (t, nll float64, err error) {
	n := len(labels)
	if n == 0 || k < 2 || len(logits) != n*k {
		return 0, 0, fmt.Errorf("fit temperature: %d values for %d samples of %d classes", len(logits), n, k)
	}
	f := func(logT float64) float64 {
		t := math.Exp(logT)
		var s float64
		for i, l := range labels {
			s += CrossEntropy(logits[i*k:(i+1)*k], l, t)
		}
		return s / float64(n)
	}
	a, b := math.Log(MinTemperature), math.Log(MaxTemperature)
	phi := (math.Sqrt(5) - 1) / 2
	c, d := b-phi*(b-a), a+phi*(b-a)
	fc, fd := f(c), f(d)
	for range 60 {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - phi*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + phi*(b-a)
			fd = f(d)
		}
	}
	logT := (a + b) / 2
	if math.IsNaN(logT) {
		return 0, 0, errors.New("fit temperature: the likelihood is not a number (non-finite logits?)")
	}
	return math.Exp(logT), f(logT), nil
}

// ParseClasses reads a "classes" metadata value: a JSON list of strings, or names separated
// by commas. An empty value is no classes.
func ParseClasses(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var got []string
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &got); err != nil {
			return nil, fmt.Errorf("classes %q: %w", s, err)
		}
		return got, nil
	}
	for c := range strings.SplitSeq(s, ",") {
		got = append(got, strings.TrimSpace(c))
	}
	return got, nil
}
