package modelrepo

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/edgeloop/edgeloop/internal/datatype"
)

// MetadataEmbeddingOutput is the ONNX metadata_props key that names a model's embedding
// output (Manifest.EmbeddingOutput) for DraftManifest.
const MetadataEmbeddingOutput = "edgeloop.embedding_output"

// EmbeddingReference is the reference of the exporter's embedding drift signal: a fixed
// sample of the version's embeddings on the evaluation set, compared with the embeddings of
// live traffic by the maximum mean discrepancy (MMD) with a Gaussian kernel (docs/drift.md,
// "Embedding distance"). Embeddings wider than MaxEmbeddingDims are compared through a fixed
// random projection to Dims values, which preserves distances up to a small distortion
// (Johnson–Lindenstrauss) and bounds both the manifest's size and the exporter's cost.
type EmbeddingReference struct {
	// Width is the embedding output's width: values per sample.
	Width int `json:"width"`
	// Dims is the width of each point: Width itself when Width ≤ MaxEmbeddingDims, else the
	// embeddings are projected with ProjectionVectors(Seed, Dims, Width).
	Dims int `json:"dims"`
	// Seed picks the projection vectors; unused when Dims == Width.
	Seed uint64 `json:"seed,omitempty"`
	// Bandwidth σ of the kernel exp(−‖x−y‖²/(2σ²)): the median distance between the points
	// (the median heuristic), fixed here so that every exporter measures with the same kernel.
	Bandwidth float64 `json:"bandwidth"`
	// Points holds the reference points, Dims values each, one after the other.
	Points []float32 `json:"points"`
}

// Limits of an EmbeddingReference. MaxEmbeddingPoints × MaxEmbeddingDims float32 values are
// about 200 KB of manifest JSON, and bound the exporter's kernel sums (docs/drift.md, "Cost").
const (
	MaxEmbeddingDims   = 32
	MaxEmbeddingPoints = 512
	MinEmbeddingPoints = 10
	maxEmbeddingWidth  = 1 << 16
)

// EmbeddingWidth returns the width of an embedding output of the given shape: its last
// dimension, which must be fixed.
func EmbeddingWidth(shape []int64) (int, error) {
	if len(shape) < 1 || len(shape) > 2 {
		return 0, fmt.Errorf("shape %v: want [batch, width] or [width]", shape)
	}
	w := shape[len(shape)-1]
	if w < 1 || w > maxEmbeddingWidth {
		return 0, fmt.Errorf("shape %v: the width (last dimension) must be fixed, 1 to %d", shape, maxEmbeddingWidth)
	}
	return int(w), nil
}

// validateEmbedding checks the embedding output and its reference against each other.
func (m *Manifest) validateEmbedding() []error {
	e := m.EmbeddingOutput
	var ref *EmbeddingReference
	if m.DriftReference != nil {
		ref = m.DriftReference.Embedding
	}
	if e == nil {
		if ref != nil {
			return []error{errors.New("drift_reference.embedding: set without embedding_output")}
		}
		return nil
	}
	errs := validateTensor("embedding_output", e.Name, e.Datatype, e.Shape, true)
	if e.Datatype != datatype.FP32 {
		errs = append(errs, fmt.Errorf("embedding_output.datatype: must be FP32, got %q", e.Datatype))
	}
	width, err := EmbeddingWidth(e.Shape)
	if err != nil {
		errs = append(errs, fmt.Errorf("embedding_output.%w", err))
	}
	if e.Name == m.Output.Name || (m.SecondOutput != nil && e.Name == m.SecondOutput.Name) {
		errs = append(errs, fmt.Errorf("embedding_output.name: %q is also a class-score output", e.Name))
	}
	if ref != nil && err == nil && ref.Width != width {
		errs = append(errs, fmt.Errorf("drift_reference.embedding.width: %d, the embedding output is %d wide", ref.Width, width))
	}
	return errs
}

// validate reports what is wrong with the reference itself.
func (r *EmbeddingReference) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.Width < 1 || r.Width > maxEmbeddingWidth {
		bad("drift_reference.embedding.width: must be 1 to %d, got %d", maxEmbeddingWidth, r.Width)
	}
	if want := min(r.Width, MaxEmbeddingDims); r.Dims != want {
		bad("drift_reference.embedding.dims: must be min(width, %d) = %d, got %d", MaxEmbeddingDims, want, r.Dims)
		return errs
	}
	if !(r.Bandwidth > 0) || math.IsInf(r.Bandwidth, 0) {
		bad("drift_reference.embedding.bandwidth: must be positive and finite, got %v", r.Bandwidth)
	}
	if n := len(r.Points); r.Dims < 1 || n%r.Dims != 0 || n/r.Dims < MinEmbeddingPoints || n/r.Dims > MaxEmbeddingPoints {
		bad("drift_reference.embedding.points: %d values are not %d to %d points of %d", n, MinEmbeddingPoints, MaxEmbeddingPoints, r.Dims)
	}
	if slices.ContainsFunc(r.Points, func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }) {
		bad("drift_reference.embedding.points: must be finite")
	}
	return errs
}

// Projection returns the reference's projection vectors, Dims × Width values, or nil when
// the embeddings are compared as they are (Dims == Width).
func (r *EmbeddingReference) Projection() []float32 {
	if r.Dims == r.Width {
		return nil
	}
	return ProjectionVectors(r.Seed, r.Dims, r.Width)
}

// ProjectEmbedding writes the point of one embedding x (width values) into dst (dims values):
// x itself when proj is nil, else its dot product with each projection vector.
func ProjectEmbedding(dst, x, proj []float32) {
	if proj == nil {
		copy(dst, x)
		return
	}
	width := len(x)
	for j := range dst {
		dst[j] = Dot(proj[j*width:(j+1)*width], x)
	}
}

// ComputeEmbeddingReference picks up to points evenly spaced rows of the embeddings emb (rows
// of width values, one after the other), projects them when width > MaxEmbeddingDims, and
// fixes the kernel's bandwidth by the median heuristic.
func ComputeEmbeddingReference(emb []float32, width int, seed uint64, points int) (*EmbeddingReference, error) {
	if width < 1 || width > maxEmbeddingWidth {
		return nil, fmt.Errorf("embedding reference: width %d: want 1 to %d", width, maxEmbeddingWidth)
	}
	rows := len(emb) / width
	if len(emb) != rows*width {
		return nil, fmt.Errorf("embedding reference: %d values are not whole rows of %d", len(emb), width)
	}
	points = min(points, MaxEmbeddingPoints, rows)
	if points < MinEmbeddingPoints {
		return nil, fmt.Errorf("embedding reference: %d embeddings, at least %d needed", rows, MinEmbeddingPoints)
	}
	r := &EmbeddingReference{Width: width, Dims: min(width, MaxEmbeddingDims)}
	if r.Dims < width {
		r.Seed = seed
	}
	proj := r.Projection()
	r.Points = make([]float32, points*r.Dims)
	for i := range points {
		row := i * rows / points
		x := emb[row*width : (row+1)*width]
		if slices.ContainsFunc(x, func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }) {
			return nil, fmt.Errorf("embedding reference: embedding %d is not finite", row)
		}
		ProjectEmbedding(r.Points[i*r.Dims:(i+1)*r.Dims], x, proj)
	}
	r.Bandwidth = medianDistance(r.Points, r.Dims)
	return r, nil
}

// medianDistance is the median Euclidean distance between distinct points; 1 when every
// point is the same (a dead embedding), so that the kernel stays defined and any change from
// the constant shows.
func medianDistance(points []float32, dims int) float64 {
	n := len(points) / dims
	d := make([]float64, 0, n*(n-1)/2)
	for i := range n {
		for j := i + 1; j < n; j++ {
			d = append(d, math.Sqrt(SquaredDistance(points[i*dims:(i+1)*dims], points[j*dims:(j+1)*dims])))
		}
	}
	slices.Sort(d)
	if m := d[len(d)/2]; m > 0 {
		return m
	}
	if d[len(d)-1] > 0 {
		return d[len(d)-1]
	}
	return 1
}

// SquaredDistance is ‖a−b‖², in float64.
func SquaredDistance(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return s
}

// MeanKernel is the mean of the Gaussian kernel exp(−γ‖x−y‖²) over the pairs of a point x of
// a and a point y of b (dims values each); with same (a and b the same set) it leaves out the
// pairs of a point with itself, as the unbiased MMD² estimate needs.
func MeanKernel(a, b []float32, dims int, gamma float64, same bool) float64 {
	na, nb := len(a)/dims, len(b)/dims
	var sum float64
	pairs := 0
	for i := range na {
		x := a[i*dims : (i+1)*dims]
		j0 := 0
		if same {
			j0 = i + 1 // each unordered pair once; the kernel is symmetric
		}
		for j := j0; j < nb; j++ {
			sum += math.Exp(-gamma * SquaredDistance(x, b[j*dims:(j+1)*dims]))
			pairs++
		}
	}
	if pairs == 0 {
		return math.NaN()
	}
	return sum / float64(pairs)
}

// Gamma is the kernel's γ = 1/(2σ²) for the reference's bandwidth σ.
func (r *EmbeddingReference) Gamma() float64 { return 1 / (2 * r.Bandwidth * r.Bandwidth) }

// MMD2 is the unbiased estimate of the squared MMD between the reference points and live
// points (Dims values each), given refTerm = MeanKernel(r.Points, r.Points, r.Dims,
// r.Gamma(), true), which a caller comparing many windows computes once. It is about 0 when
// both come from one distribution (and may then be slightly negative) and grows towards 2 as
// they part.
func (r *EmbeddingReference) MMD2(live []float32, refTerm float64) float64 {
	g := r.Gamma()
	return refTerm + MeanKernel(live, live, r.Dims, g, true) - 2*MeanKernel(r.Points, live, r.Dims, g, false)
}
