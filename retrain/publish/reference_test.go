package publish

import (
	"context"
	"math"
	"testing"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// TestPublishDriftReference publishes a candidate and checks the drift reference in its signed
// manifest against what the model and the evaluation set give when computed here: the class
// mix of the model's own predictions and the inputs' statistics, over the evaluation set's
// 540 samples and not the 60 held-out captured ones.
func TestPublishDriftReference(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir, report := f.candidate(t, 1)
	if _, err := Publish(ctx, f.repo, f.signer, Input{Model: "pets", CandidateDir: dir, Report: report, Stable: true}); err != nil {
		t.Fatal(err)
	}
	got, err := f.repo.Manifest(ctx, "pets", 1, f.verify)
	if err != nil {
		t.Fatal(err)
	}
	ref := got.DriftReference
	if ref == nil || ref.Input == nil || ref.Input.Projections == nil {
		t.Fatalf("drift reference %+v, want class mix, channels and projections", ref)
	}
	if ref.Samples != 540 || ref.EvalDigest != f.set.Digest {
		t.Errorf("reference over %d samples of %s, want 540 of %s", ref.Samples, ref.EvalDigest, f.set.Digest)
	}

	// The model's predictions, scored again here.
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	scores, err := gate.Builtin{}.Score(ctx, f.set, []gate.Model{m})
	if err != nil {
		t.Fatal(err)
	}
	kind := classify.Logits
	if scores[0].Kind == modelrepo.OutputProbabilities {
		kind = classify.Probabilities
	}
	mix := make([]float64, 3)
	for i := range 540 {
		s, err := classify.Score(scores[0].Values[i*3:(i+1)*3], kind)
		if err != nil {
			t.Fatal(err)
		}
		mix[s.Class] += 1.0 / 540
	}
	for c := range mix {
		if math.Abs(ref.ClassMix[c]-mix[c]) > 1e-9 {
			t.Errorf("class mix %v, want %v", ref.ClassMix, mix)
			break
		}
	}
	var sum, sq float64
	for _, x := range f.set.Inputs[:540*4] {
		sum, sq = sum+float64(x), sq+float64(x)*float64(x)
	}
	mean := sum / (540 * 4)
	std := math.Sqrt(sq/(540*4) - mean*mean)
	if len(ref.Input.Channels) != 1 || math.Abs(ref.Input.Channels[0].Mean-mean) > 1e-9 || math.Abs(ref.Input.Channels[0].Std-std) > 1e-9 {
		t.Errorf("channels %+v, want mean %v std %v", ref.Input.Channels, mean, std)
	}
	p := ref.Input.Projections
	if p.Seed != gate.ReferenceSeed || len(p.Edges) != gate.ReferenceProjections {
		t.Fatalf("projections: seed %d, %d of them", p.Seed, len(p.Edges))
	}
	// Decile edges: each bin holds about a tenth of the reference.
	for j, h := range p.Histograms {
		for b, share := range h {
			if math.Abs(share-0.1) > 0.02 {
				t.Errorf("projection %d bin %d holds %.3f of the reference, want about 0.1", j, b, share)
			}
		}
	}
}
