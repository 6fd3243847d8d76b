package demo

import (
	"fmt"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// EvalSetName is the name of the evaluation set the demo writes for its model
// (evalsets/fashion/demo-golden/ in the demo's bucket) and lists in the controller's
// gate.eval_sets.
const EvalSetName = "demo-golden"

// EvalPerClass is how many images of each class the demo's evaluation set holds.
const EvalPerClass = 200

// ProbeEvery makes one traffic image in ProbeEvery a probe, never labelled.
const ProbeEvery = 4

// Split divides a test set into the part the evaluation set is drawn from and the part the
// traffic replays, so that the gate never scores a model on an image a node sent (and so
// could have been captured, labelled and trained on) and the traffic never sends an
// evaluation image. docs/demo.md states the rule.
type Split struct {
	// Eval are the evaluation set's image indexes: the first perClass images of each class
	// among the first half of the test set, in index order.
	Eval []int
	// Traffic are the images the nodes replay: the second half of the test set, less any
	// image whose pixels equal an evaluation image's or an earlier traffic image's, so that
	// an index names one content (what the labeller and the "not trained on" count rely on).
	Traffic []int
	// Reserved is the first index of the traffic half (test.Len()/2).
	Reserved int
	// Dropped counts second-half images left out for repeating pixels.
	Dropped int
	// Probes are the traffic images the labeller never labels (Truth.Withhold): every
	// ProbeEvery-th of Traffic. A retrained model is scored on them, having never trained on
	// them whatever the exporters captured.
	Probes []int
}

// SplitTest splits test by the demo's fixed rule: indexes below test.Len()/2 are reserved for
// evaluation, of which the first perClass of each class form the set; the traffic replays the
// indexes from test.Len()/2 on, each content once and none an evaluation image's. It fails
// when the first half lacks perClass distinct images of a class.
func SplitTest(test *fmnist.Dataset, perClass int) (*Split, error) {
	half := test.Len() / 2
	s := &Split{Reserved: half}
	taken := make([]int, fmnist.NumClasses)
	evalKeys := map[string]bool{}
	for i := 0; i < half && len(s.Eval) < perClass*fmnist.NumClasses; i++ {
		c := int(test.Labels[i])
		if c >= fmnist.NumClasses || taken[c] == perClass {
			continue
		}
		k := dataset.ContentKey(test.Image(i))
		if evalKeys[k] {
			continue // the same pixels twice: one evaluation sample, as an evaluation set keys by content
		}
		evalKeys[k] = true
		taken[c]++
		s.Eval = append(s.Eval, i)
	}
	for c, n := range taken {
		if n < perClass {
			return nil, fmt.Errorf("demo: split: the first %d test images hold %d distinct images of class %d, want %d", half, n, c, perClass)
		}
	}
	sent := map[string]bool{}
	for i := half; i < test.Len(); i++ {
		k := dataset.ContentKey(test.Image(i))
		if evalKeys[k] || sent[k] {
			s.Dropped++
			continue
		}
		sent[k] = true
		if len(s.Traffic)%ProbeEvery == ProbeEvery-1 {
			s.Probes = append(s.Probes, i)
		}
		s.Traffic = append(s.Traffic, i)
	}
	return s, nil
}

// EvalSet builds the demo's evaluation set from the split's evaluation images, for a model
// whose per-sample input is spec (the served version's manifest: [784] for the Go MLP,
// [1,28,28] for a CNN; the values are the same, only the shape differs).
func (s *Split) EvalSet(test *fmnist.Dataset, spec dataset.Spec, model string) (*evalset.Set, error) {
	if w := spec.Width(); w != fmnist.Pixels {
		return nil, fmt.Errorf("demo: evaluation set: the model takes %d values per sample (shape %v), a Fashion-MNIST image has %d", w, spec.Shape, fmnist.Pixels)
	}
	if len(spec.Classes) != fmnist.NumClasses {
		return nil, fmt.Errorf("demo: evaluation set: the model has %d classes, Fashion-MNIST %d", len(spec.Classes), fmnist.NumClasses)
	}
	set := &evalset.Set{
		Manifest: evalset.Manifest{
			Model: model, Name: EvalSetName, Task: evalset.TaskClassification,
			Classes:     append([]string(nil), spec.Classes...),
			Input:       evalset.Input{Shape: append([]int64(nil), spec.Shape...), Datatype: spec.Datatype},
			Source:      fmt.Sprintf("fashion-mnist t10k: the first %d images of each class below index %d", len(s.Eval)/fmnist.NumClasses, s.Reserved),
			Description: "edgeloop demo: Fashion-MNIST test images the demo's traffic never sends (docs/demo.md)",
		},
		Keys:   make([]string, 0, len(s.Eval)),
		Labels: make([]int, 0, len(s.Eval)),
		Inputs: make([]float32, 0, len(s.Eval)*fmnist.Pixels),
	}
	for _, i := range s.Eval {
		img := test.Image(i)
		set.Keys = append(set.Keys, dataset.ContentKey(img))
		set.Labels = append(set.Labels, int(test.Labels[i]))
		set.Inputs = append(set.Inputs, img...)
	}
	return set, nil
}
