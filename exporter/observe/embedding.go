package observe

import (
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// embeddingDrift is the window of the embedding distance (docs/drift.md, "Embedding
// distance"): a ring of the latest embeddings, compared with the reference's points by the
// maximum mean discrepancy at scrape time. The request path only copies each embedding into
// the ring, under the lock; the scrape projects the window as the reference's points were
// projected (width × dims multiply-adds per embedding, about 2 µs for 128 × 32, which would
// otherwise be the request's) and does the kernel sums, O((window + reference)² × dims). A
// window too large to hold raw (more than maxRawEmbeddingValues) is projected on the request
// path instead, so that its memory stays window × dims.
type embeddingDrift struct {
	ref     *modelrepo.EmbeddingReference
	proj    []float32 // the reference's projection vectors; nil when embeddings are compared as they are
	refTerm float64   // the reference's own kernel mean, the same for every window
	dims    int
	stride  int  // values per ring entry: the width when raw, else dims
	raw     bool // the ring holds embeddings as they came, projected at scrape time

	// Under the Model's lock.
	ring   []float32 // window × stride
	next   int
	filled int
	added  uint64 // embeddings ever added: the scrape reuses its value while it has not moved

	// Used by the scrape only; scrapes are serialised by the Core's lock.
	scratch    []float32 // window × dims: the window's points
	rawScratch []float32 // window × width: a raw ring's copy, projected after the lock
	cachedAt   uint64
	cached     float64
}

// maxRawEmbeddingValues bounds a raw ring (4 MiB): 256 embeddings of up to 4,096 values.
const maxRawEmbeddingValues = 1 << 20

func newEmbeddingDrift(window int, ref *modelrepo.EmbeddingReference) (*embeddingDrift, error) {
	if ref.Dims < 1 || ref.Dims > modelrepo.MaxEmbeddingDims || ref.Dims > ref.Width || len(ref.Points) < ref.Dims || len(ref.Points)%ref.Dims != 0 || !(ref.Bandwidth > 0) {
		return nil, fmt.Errorf("embedding signal: malformed reference (width %d, dims %d, %d values, bandwidth %v)", ref.Width, ref.Dims, len(ref.Points), ref.Bandwidth)
	}
	d := &embeddingDrift{
		ref:     ref,
		proj:    ref.Projection(),
		refTerm: modelrepo.MeanKernel(ref.Points, ref.Points, ref.Dims, ref.Gamma(), true),
		dims:    ref.Dims,
		stride:  ref.Dims,
		scratch: make([]float32, window*ref.Dims),
	}
	if d.proj != nil && window*ref.Width <= maxRawEmbeddingValues {
		d.raw, d.stride = true, ref.Width
	}
	d.ring = make([]float32, window*d.stride)
	return d, nil
}

// WantsEmbedding reports whether the version's embedding signal is on, so that a front that
// must decode the embedding output (an upstream's answer) does so only then.
func (m *Model) WantsEmbedding() bool { return m != nil && m.embedding != nil }

// observeEmbedding adds each row of a request's embedding output to the window: as it is to a
// raw ring, else projected first (outside the lock). An output that is not whole rows of the
// reference's width is ignored, like an input that does not fit the input signals.
func (m *Model) observeEmbedding(emb []float32) {
	d := m.embedding
	w := d.ref.Width
	if len(emb) == 0 || len(emb)%w != 0 {
		return
	}
	var p [modelrepo.MaxEmbeddingDims]float32
	for off := 0; off < len(emb); off += w {
		row := emb[off : off+w]
		if !d.raw {
			modelrepo.ProjectEmbedding(p[:d.dims], row, d.proj)
			row = p[:d.dims]
		}
		m.mu.Lock()
		copy(d.ring[d.next*d.stride:(d.next+1)*d.stride], row)
		if d.next++; d.next*d.stride == len(d.ring) {
			d.next = 0
		}
		if d.filled*d.stride < len(d.ring) {
			d.filled++
		}
		d.added++
		m.mu.Unlock()
	}
}

// snapshot copies the window for the scrape, or reports false until it is full or when it
// has not changed since the last value (which is then reused). The caller holds the Model's
// lock.
func (d *embeddingDrift) snapshot() (changed, ready bool) {
	if !d.full() {
		return false, false
	}
	if d.added == d.cachedAt {
		return false, true
	}
	if d.raw {
		d.rawScratch = append(d.rawScratch[:0], d.ring...)
	} else {
		copy(d.scratch, d.ring)
	}
	d.cachedAt = d.added
	return true, true
}

// full reports whether the window is full. The caller holds the Model's lock.
func (d *embeddingDrift) full() bool { return d.filled*d.stride == len(d.ring) }

// points writes the points of the window held in ring (as the ring holds it) into dst.
func (d *embeddingDrift) points(dst, ring []float32) {
	if !d.raw {
		copy(dst, ring)
		return
	}
	w := d.ref.Width
	for i := range len(ring) / w {
		modelrepo.ProjectEmbedding(dst[i*d.dims:(i+1)*d.dims], ring[i*w:(i+1)*w], d.proj)
	}
}

// distance is √max(MMD², 0) of the snapshot against the reference; the sums run without the
// Model's lock, so requests never wait for them.
func (d *embeddingDrift) distance(changed bool) float64 {
	if changed {
		if d.raw {
			d.points(d.scratch, d.rawScratch)
		}
		d.cached = d.mmd(d.scratch)
	}
	return d.cached
}

// mmd is √max(MMD², 0) of points against the reference.
func (d *embeddingDrift) mmd(points []float32) float64 {
	return math.Sqrt(max(d.ref.MMD2(points, d.refTerm), 0))
}
