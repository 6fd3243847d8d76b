package observe

import (
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// embeddingDrift is the window of the embedding distance (docs/drift.md, "Embedding
// distance"): a ring of the latest embeddings, projected as the reference's points are, and
// compared with them by the maximum mean discrepancy at scrape time. The request path
// projects outside the lock and copies dims values into the ring under it; the kernel sums,
// O((window + reference)² × dims), are the scrape's.
type embeddingDrift struct {
	ref     *modelrepo.EmbeddingReference
	proj    []float32 // the reference's projection vectors; nil when embeddings are compared as they are
	refTerm float64   // the reference's own kernel mean, the same for every window
	dims    int

	// Under the Model's lock.
	ring   []float32 // window × dims
	next   int
	filled int
	added  uint64 // embeddings ever added: the scrape reuses its value while it has not moved

	// Used by the scrape only; scrapes are serialised by the Core's lock.
	scratch  []float32
	cachedAt uint64
	cached   float64
}

func newEmbeddingDrift(window int, ref *modelrepo.EmbeddingReference) (*embeddingDrift, error) {
	if ref.Dims < 1 || ref.Dims > modelrepo.MaxEmbeddingDims || ref.Dims > ref.Width || len(ref.Points) < ref.Dims || len(ref.Points)%ref.Dims != 0 || !(ref.Bandwidth > 0) {
		return nil, fmt.Errorf("embedding signal: malformed reference (width %d, dims %d, %d values, bandwidth %v)", ref.Width, ref.Dims, len(ref.Points), ref.Bandwidth)
	}
	return &embeddingDrift{
		ref:     ref,
		proj:    ref.Projection(),
		refTerm: modelrepo.MeanKernel(ref.Points, ref.Points, ref.Dims, ref.Gamma(), true),
		dims:    ref.Dims,
		ring:    make([]float32, window*ref.Dims),
		scratch: make([]float32, window*ref.Dims),
	}, nil
}

// observeEmbedding projects each row of a request's embedding output and adds it to the
// window. An output that is not whole rows of the reference's width is ignored, like an input
// that does not fit the input signals.
func (m *Model) observeEmbedding(emb []float32) {
	d := m.embedding
	w := d.ref.Width
	if len(emb) == 0 || len(emb)%w != 0 {
		return
	}
	var p [modelrepo.MaxEmbeddingDims]float32
	for off := 0; off < len(emb); off += w {
		modelrepo.ProjectEmbedding(p[:d.dims], emb[off:off+w], d.proj)
		m.mu.Lock()
		copy(d.ring[d.next*d.dims:(d.next+1)*d.dims], p[:d.dims])
		if d.next++; d.next*d.dims == len(d.ring) {
			d.next = 0
		}
		if d.filled*d.dims < len(d.ring) {
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
	if d.filled*d.dims < len(d.ring) {
		return false, false
	}
	if d.added == d.cachedAt {
		return false, true
	}
	copy(d.scratch, d.ring)
	d.cachedAt = d.added
	return true, true
}

// distance is √max(MMD², 0) of the snapshot against the reference; the sums run without the
// Model's lock, so requests never wait for them.
func (d *embeddingDrift) distance(changed bool) float64 {
	if changed {
		d.cached = math.Sqrt(max(d.ref.MMD2(d.scratch, d.refTerm), 0))
	}
	return d.cached
}
