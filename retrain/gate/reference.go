package gate

import (
	"fmt"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// The input sketch of a drift reference: a few random projections, each in decile bins; and
// the number of embedding points. The seed (of the input sketch and of an embedding's
// projection) is stored in the manifest, so changing these here changes only versions
// published later.
const (
	ReferenceProjections     = 4
	ReferenceSketchBins      = 10
	ReferenceSeed            = 0x5eed
	ReferenceEmbeddingPoints = 256
)

// driftReference computes the reference of the exporter's class-mix, input and embedding
// drift signals (docs/drift.md) from the model's scores on the evaluation sets of set: the
// share of samples predicted as each class, the inputs' per-channel mean and standard
// deviation and projection sketch, and, when the scores carry the model's embeddings, a
// sample of them. The held-out captured samples are left out: the sampler chose them for
// being unusual (low confidence), so they are not what normal traffic looks like. It returns
// nil when no evaluation-set sample is left.
func driftReference(set *Set, sc *Scores, kind classify.OutputKind) (*modelrepo.DriftReference, error) {
	k, width, values := len(set.Spec.Classes), set.Width(), sc.Values
	ew := sc.EmbeddingWidth
	if len(sc.Embedding) > 0 && (ew < 1 || len(sc.Embedding) != set.Len()*ew) {
		return nil, fmt.Errorf("drift reference: %d embedding values for %d samples of width %d", len(sc.Embedding), set.Len(), ew)
	}
	var inputs, embeddings []float32
	counts := make([]float64, k)
	n := 0
	for _, p := range set.Parts {
		if p.Name == PartHeldOut {
			continue
		}
		for i := p.Offset; i < p.Offset+p.Samples && i < set.Len(); i++ {
			s, err := classify.Score(values[i*k:(i+1)*k], kind)
			if err != nil {
				return nil, fmt.Errorf("drift reference: sample %d: %w", i, err)
			}
			counts[s.Class]++
			n++
		}
		end := min(p.Offset+p.Samples, set.Len())
		inputs = append(inputs, set.Inputs[p.Offset*width:end*width]...)
		if len(sc.Embedding) > 0 {
			embeddings = append(embeddings, sc.Embedding[p.Offset*ew:end*ew]...)
		}
	}
	if n == 0 {
		return nil, nil
	}
	for c := range counts {
		counts[c] /= float64(n)
	}
	ref := &modelrepo.DriftReference{ClassMix: counts, Samples: n, EvalDigest: set.Digest}
	in, err := modelrepo.ComputeInputReference(inputs, width, modelrepo.InputChannels(set.Spec.Shape),
		ReferenceSeed, ReferenceProjections, ReferenceSketchBins)
	if err != nil {
		return nil, fmt.Errorf("drift reference: %w", err)
	}
	ref.Input = in
	if len(embeddings) > 0 && n >= modelrepo.MinEmbeddingPoints {
		if ref.Embedding, err = modelrepo.ComputeEmbeddingReference(embeddings, ew, ReferenceSeed, ReferenceEmbeddingPoints); err != nil {
			return nil, fmt.Errorf("drift reference: %w", err)
		}
	}
	return ref, nil
}
