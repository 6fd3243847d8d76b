package modelrepo

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// DriftReference is what the exporter's drift signals beyond the confidence histogram compare
// live traffic with: the predicted-class mix and the input statistics of the version on the
// gate's evaluation set (docs/drift.md). A manifest without it (one written before the field
// existed) leaves those signals absent on the exporter, never zero.
type DriftReference struct {
	// ClassMix is the share of evaluation samples predicted as each class (top-1), in the
	// order of Classes. It sums to 1.
	ClassMix []float64 `json:"class_mix,omitempty"`
	// Input holds the input statistics; nil when the input has no float elements to measure.
	Input *InputReference `json:"input,omitempty"`
	// Embedding is the reference of the embedding distance; nil when the model has no
	// embedding output.
	Embedding *EmbeddingReference `json:"embedding,omitempty"`
	// Samples is how many evaluation samples the reference was computed on.
	Samples int `json:"samples"`
	// EvalDigest names the evaluation set.
	EvalDigest string `json:"eval_digest"`
}

// InputReference is the input statistics of a DriftReference.
type InputReference struct {
	// Channels has each channel's mean and standard deviation over every element of every
	// sample (InputChannels says how a sample is split into channels).
	Channels []ChannelStats `json:"channels"`
	// Projections is the random-projection sketch; nil for none.
	Projections *ProjectionReference `json:"projections,omitempty"`
}

// ChannelStats is one input channel's mean and (population) standard deviation.
type ChannelStats struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// ProjectionReference is a sketch of the input distribution: the histograms of a few fixed
// random projections of the flattened input. The projection vectors are not stored: they are
// ProjectionVectors(Seed, len(Edges), width), the same on every machine.
type ProjectionReference struct {
	// Seed picks the projection vectors.
	Seed uint64 `json:"seed"`
	// Edges holds, per projection, the bins−1 increasing inner bin edges: the reference's
	// quantiles, so that each bin holds about the same share of the reference.
	Edges [][]float64 `json:"edges"`
	// Histograms holds, per projection, the reference's share per bin (bins values, sum 1).
	Histograms [][]float64 `json:"histograms"`
}

// Limits of a DriftReference: enough for a sketch, small enough for a manifest.
const (
	MaxProjections = 16
	maxInputChans  = 64
	minSketchBins  = 2
	maxSketchBins  = 100
)

// InputChannels returns how many channels a sample of the given per-sample shape (without the
// batch dimension) has: the first dimension of a sample of rank 3 or more (the CHW layout of
// ONNX image models), else 1. Each channel is a contiguous run of the flattened sample.
func InputChannels(sampleShape []int64) int {
	if len(sampleShape) >= 3 && sampleShape[0] > 0 && sampleShape[0] <= maxInputChans {
		return int(sampleShape[0])
	}
	return 1
}

// ProjectionVectors returns count projection vectors of width values, one after the other:
// random signs ±1/√width (a Rademacher projection, which preserves distances as well as a
// Gaussian one for this use) drawn from splitmix64 seeded with seed. The generator is spelled
// out here, not taken from math/rand, so that the publisher and every exporter derive the
// same vectors whatever their Go version.
func ProjectionVectors(seed uint64, count, width int) []float32 {
	v := make([]float32, count*width)
	scale := float32(1 / math.Sqrt(float64(width)))
	state := seed
	var bits uint64
	for i := range v {
		if i%64 == 0 {
			state += 0x9e3779b97f4a7c15
			z := state
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			bits = z ^ (z >> 31)
		}
		if bits&1 == 1 {
			v[i] = scale
		} else {
			v[i] = -scale
		}
		bits >>= 1
	}
	return v
}

// ComputeInputReference measures the input statistics of n samples of width values each
// (inputs holds them one after the other): per-channel mean and standard deviation, and, when
// projections > 0, the quantile edges and histograms of that many random projections with the
// given number of bins.
func ComputeInputReference(inputs []float32, width, channels int, seed uint64, projections, bins int) (*InputReference, error) {
	if width < 1 || channels < 1 || width%channels != 0 {
		return nil, fmt.Errorf("input reference: width %d does not split into %d channels", width, channels)
	}
	n := len(inputs) / width
	if n < 1 || len(inputs) != n*width {
		return nil, fmt.Errorf("input reference: %d values are not whole samples of width %d", len(inputs), width)
	}
	if projections < 0 || projections > MaxProjections || (projections > 0 && (bins < minSketchBins || bins > maxSketchBins)) {
		return nil, fmt.Errorf("input reference: %d projections of %d bins: want 0 to %d projections of %d to %d bins", projections, bins, MaxProjections, minSketchBins, maxSketchBins)
	}
	per := width / channels
	ref := &InputReference{Channels: make([]ChannelStats, channels)}
	for c := range channels {
		var sum, sq float64
		for i := range n {
			for _, x := range inputs[i*width+c*per : i*width+(c+1)*per] {
				sum += float64(x)
				sq += float64(x) * float64(x)
			}
		}
		cnt := float64(n * per)
		mean := sum / cnt
		ref.Channels[c] = ChannelStats{Mean: mean, Std: math.Sqrt(max(sq/cnt-mean*mean, 0))}
	}
	if projections == 0 {
		return ref, nil
	}
	vecs := ProjectionVectors(seed, projections, width)
	p := &ProjectionReference{Seed: seed}
	vals := make([]float64, n)
	for j := range projections {
		vec := vecs[j*width : (j+1)*width]
		for i := range n {
			vals[i] = float64(Dot(vec, inputs[i*width:(i+1)*width]))
		}
		sorted := slices.Clone(vals)
		slices.Sort(sorted)
		edges := make([]float64, bins-1)
		for b := range edges {
			edges[b] = sorted[(b+1)*n/bins]
		}
		hist := make([]float64, bins)
		for _, v := range vals {
			hist[SketchBin(edges, v)]++
		}
		for b := range hist {
			hist[b] /= float64(n)
		}
		p.Edges = append(p.Edges, edges)
		p.Histograms = append(p.Histograms, hist)
	}
	ref.Projections = p
	return ref, nil
}

// Dot is the dot product of a projection vector and a sample, in float32 as the exporter
// computes it on the request path.
func Dot(vec, x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(vec) && i+4 <= len(x); i += 4 {
		s0 += vec[i] * x[i]
		s1 += vec[i+1] * x[i+1]
		s2 += vec[i+2] * x[i+2]
		s3 += vec[i+3] * x[i+3]
	}
	for ; i < len(vec) && i < len(x); i++ {
		s0 += vec[i] * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// SketchBin returns the bin of v among the inner edges, the number of edges ≤ v: bin b holds
// edges[b−1] ≤ v < edges[b], the first and last bins open-ended.
func SketchBin(edges []float64, v float64) int {
	lo, hi := 0, len(edges)
	for lo < hi {
		mid := (lo + hi) / 2
		if v < edges[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// validate reports what is wrong with the reference of a manifest with k classes.
func (r *DriftReference) validate(k int) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.Samples < 1 {
		bad("drift_reference.samples: must be positive, got %d", r.Samples)
	}
	if !sha256RE.MatchString(r.EvalDigest) {
		bad("drift_reference.eval_digest: must be 64 lowercase hex digits, got %q", r.EvalDigest)
	}
	if len(r.ClassMix) > 0 {
		if len(r.ClassMix) != k {
			bad("drift_reference.class_mix: has %d values for %d classes", len(r.ClassMix), k)
		}
		if err := checkShares(r.ClassMix); err != nil {
			bad("drift_reference.class_mix: %v", err)
		}
	}
	if r.Embedding != nil {
		errs = append(errs, r.Embedding.validate()...)
	}
	in := r.Input
	if in == nil {
		return errs
	}
	if len(in.Channels) < 1 || len(in.Channels) > maxInputChans {
		bad("drift_reference.input.channels: must have 1 to %d entries, got %d", maxInputChans, len(in.Channels))
	}
	for i, c := range in.Channels {
		if math.IsNaN(c.Mean) || math.IsInf(c.Mean, 0) || math.IsNaN(c.Std) || math.IsInf(c.Std, 0) || c.Std < 0 {
			bad("drift_reference.input.channels[%d]: mean and std must be finite, std not negative, got %v and %v", i, c.Mean, c.Std)
		}
	}
	p := in.Projections
	if p == nil {
		return errs
	}
	if len(p.Edges) < 1 || len(p.Edges) > MaxProjections || len(p.Histograms) != len(p.Edges) {
		bad("drift_reference.input.projections: must have 1 to %d edges and as many histograms, got %d and %d", MaxProjections, len(p.Edges), len(p.Histograms))
		return errs
	}
	for j, h := range p.Histograms {
		e := p.Edges[j]
		if len(h) < minSketchBins || len(h) > maxSketchBins || len(e) != len(h)-1 {
			bad("drift_reference.input.projections[%d]: %d bins need %d edges, got %d (%d to %d bins)", j, len(h), len(h)-1, len(e), minSketchBins, maxSketchBins)
			continue
		}
		if len(h) != len(p.Histograms[0]) {
			bad("drift_reference.input.projections[%d]: has %d bins, projection 0 has %d", j, len(h), len(p.Histograms[0]))
		}
		if slices.ContainsFunc(e, func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }) || !slices.IsSorted(e) {
			bad("drift_reference.input.projections[%d].edges: must be finite and increasing", j)
		}
		if err := checkShares(h); err != nil {
			bad("drift_reference.input.projections[%d].histogram: %v", j, err)
		}
	}
	return errs
}

// checkShares checks proportions: finite, not negative, not all zero.
func checkShares(v []float64) error {
	sum := 0.0
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return fmt.Errorf("values must be finite and not negative, got %v", x)
		}
		sum += x
	}
	if sum <= 0 {
		return errors.New("must not be all zero")
	}
	return nil
}
