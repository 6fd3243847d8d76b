package gate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sort"
	"strconv"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// PartHeldOut names the part of a Set made of the job's held-out labelled captured samples.
const PartHeldOut = "held_out"

// Set is the evaluation set the gate scores every version on: the model's evaluation sets
// that fit its spec, then the held-out labelled captured samples of the job's dataset.
type Set struct {
	// Spec is what every sample is: shape (per sample), datatype and classes.
	Spec dataset.Spec
	// Inputs holds Len()×Spec.Width() values, one sample after the other.
	Inputs []float32
	// Labels holds one class index per sample.
	Labels []int
	// Parts says where the samples come from, in order: Parts[i] covers Offset to
	// Offset+Samples−1.
	Parts []Part
	// Refused lists what did not fit the spec and was left out, with why.
	Refused []Refusal
	// Digest names the set: two reports with the same Digest were made on the same samples.
	Digest string
}

// Part is one source of a Set's samples.
type Part struct {
	// Name is the evaluation set's name, or PartHeldOut.
	Name string `json:"name"`
	// Offset is the index of the part's first sample in the Set; Samples its count.
	Offset  int `json:"offset"`
	Samples int `json:"samples"`
	// Digest is the evaluation set's own digest (its manifest's), or for the held-out part
	// the digest of its labels and values.
	Digest string `json:"digest"`
}

// Refusal is a source, or some samples, the gate could not use.
type Refusal struct {
	// Source is the evaluation set's name, or PartHeldOut for captured samples.
	Source string `json:"source"`
	// Reason says why, in words.
	Reason string `json:"reason"`
	// Samples is how many samples were refused (the whole set's count for a set refused
	// whole, when known).
	Samples int `json:"samples"`
}

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Labels) }

// Width is the number of input values of one sample.
func (s *Set) Width() int { return s.Spec.Width() }

// RefusedSamples is the total of Refused.
func (s *Set) RefusedSamples() int {
	n := 0
	for _, r := range s.Refused {
		n += r.Samples
	}
	return n
}

// Sources are what BuildSet assembles a Set from.
type Sources struct {
	// Bucket holds the evaluation sets (evalsets/<model>/<name>/); nil when EvalSets is empty.
	Bucket objstore.Bucket
	// Model is the model whose evaluation sets are read.
	Model string
	// EvalSets names the evaluation sets to use.
	EvalSets []string
	// HeldOut is the held-out side of the job's labelled captured samples, read against the
	// same spec (dataset.ReadLabelled, then Split); nil for none.
	HeldOut *dataset.Labelled
}

// BuildSet assembles the evaluation set for spec: each named evaluation set that loads and
// fits spec (evalset.Set.Check), then src.HeldOut. A set that does not exist or does not fit
// is refused and recorded in Set.Refused with the reason, as are the captured samples
// dataset.ReadLabelled rejected; other errors (the bucket failing) are returned, since a
// retry may succeed.
func BuildSet(ctx context.Context, spec dataset.Spec, src Sources, logger *slog.Logger) (*Set, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("build evaluation set: %w", err)
	}
	set := &Set{Spec: spec}
	width := spec.Width()
	for _, name := range src.EvalSets {
		es, err := evalset.Load(ctx, src.Bucket, src.Model, name)
		n := 0
		if err == nil {
			n = es.Len()
			err = es.Check(spec)
			if err == nil && len(es.Inputs) != len(es.Labels)*width {
				err = fmt.Errorf("%w: %d values for %d samples of width %d", evalset.ErrMismatch, len(es.Inputs), len(es.Labels), width)
			}
		}
		if err != nil {
			// A set that is missing, tampered with or made for another input is refused (the
			// rest still decides); a bucket that fails is retried by the caller.
			if errors.Is(err, evalset.ErrNotFound) || errors.Is(err, evalset.ErrMismatch) || errors.Is(err, evalset.ErrDigest) {
				set.Refused = append(set.Refused, Refusal{Source: name, Reason: err.Error(), Samples: n})
				logger.Warn("evaluation set refused", "set", name, "err", err)
				continue
			}
			return nil, fmt.Errorf("build evaluation set: %s: %w", name, err)
		}
		set.add(Part{Name: name, Digest: es.Manifest.Digest}, es.Inputs, es.Labels)
	}
	if h := src.HeldOut; h != nil {
		if len(h.Inputs) != len(h.Labels)*width {
			return nil, fmt.Errorf("build evaluation set: held-out samples: %d values for %d samples of width %d", len(h.Inputs), len(h.Labels), width)
		}
		reasons := make([]string, 0, len(h.Stats.Rejected))
		for r := range h.Stats.Rejected {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			set.Refused = append(set.Refused, Refusal{Source: PartHeldOut, Reason: describeRejection(r, spec), Samples: h.Stats.Rejected[r]})
		}
		if len(h.Labels) > 0 {
			set.add(Part{Name: PartHeldOut, Digest: valuesDigest(spec, h.Labels, h.Inputs)}, h.Inputs, h.Labels)
		}
	}
	for _, l := range set.Labels {
		if l < 0 || l >= len(spec.Classes) {
			return nil, fmt.Errorf("build evaluation set: label %d outside the %d classes", l, len(spec.Classes))
		}
	}
	set.Digest = set.ComputeDigest()
	if set.Len() > 0 {
		logger.Info("evaluation set built", "samples", set.Len(), "parts", len(set.Parts), "refused", set.RefusedSamples(), "digest", set.Digest[:16])
	}
	return set, nil
}

// describeRejection words a dataset.ReadLabelled refusal reason for gate.json.
func describeRejection(reason string, spec dataset.Spec) string {
	var why string
	switch reason {
	case dataset.ReasonShape:
		why = fmt.Sprintf("the input's shape does not fit %v", spec.Shape)
	case dataset.ReasonDtype:
		why = "the input's dtype cannot be read as float32"
	case dataset.ReasonLabel:
		why = fmt.Sprintf("the label names none of the classes %q", spec.Classes)
	case dataset.ReasonNPY:
		why = "no input.npy, or one that does not decode"
	case dataset.ReasonNonFinite:
		why = "a value is NaN or infinite"
	case dataset.ReasonMeta:
		why = "no sample .json, or not a JSON object"
	default:
		return "captured samples refused: " + reason
	}
	return "captured samples refused (" + reason + "): " + why
}

func (s *Set) add(p Part, inputs []float32, labels []int) {
	p.Offset, p.Samples = s.Len(), len(labels)
	s.Parts = append(s.Parts, p)
	s.Inputs = append(s.Inputs, inputs...)
	s.Labels = append(s.Labels, labels...)
}

// ComputeDigest computes the Set's Digest: the SHA-256 of the spec (shape, datatype, classes)
// and of each part's name and digest, in order. Evaluation sets are immutable and named by
// their own digest, so the combined digest names the samples without rehashing them; the
// held-out part's digest covers its values. BuildSet sets it; a set built by hand calls it.
func (s *Set) ComputeDigest() string {
	h := sha256.New()
	writeSpec(h, s.Spec)
	writeInt(h, len(s.Parts))
	for _, p := range s.Parts {
		writeString(h, p.Name)
		writeString(h, p.Digest)
		writeInt(h, p.Samples)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// valuesDigest is the digest of a part given by its values: spec, labels and inputs.
func valuesDigest(spec dataset.Spec, labels []int, inputs []float32) string {
	h := sha256.New()
	writeSpec(h, spec)
	writeInt(h, len(labels))
	for _, l := range labels {
		writeInt(h, l)
	}
	dataset.WriteFloat32s(h, inputs)
	return hex.EncodeToString(h.Sum(nil))
}

// NewSet returns a Set of one part named name holding inputs and labels, with its digest:
// what a test, or a caller with samples already in memory, scores.
func NewSet(spec dataset.Spec, name string, inputs []float32, labels []int) (*Set, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if len(inputs) != len(labels)*spec.Width() {
		return nil, fmt.Errorf("new set: %d values for %d samples of width %d", len(inputs), len(labels), spec.Width())
	}
	s := &Set{Spec: spec}
	s.add(Part{Name: name, Digest: valuesDigest(spec, labels, inputs)}, slices.Clone(inputs), slices.Clone(labels))
	s.Digest = s.ComputeDigest()
	return s, nil
}

func writeSpec(h hash.Hash, spec dataset.Spec) {
	writeInt(h, len(spec.Shape))
	for _, d := range spec.Shape {
		writeInt(h, int(d))
	}
	writeString(h, spec.Datatype)
	writeInt(h, len(spec.Classes))
	for _, c := range spec.Classes {
		writeString(h, c)
	}
}

func writeInt(h hash.Hash, v int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	h.Write(b[:])
}

func writeString(h hash.Hash, s string) {
	writeInt(h, len(s))
	h.Write([]byte(s))
}

// SpecForFirstModel is the spec when no version is serving: the candidate's own (its ONNX
// input shape and "classes" metadata, as modelrepo.DraftManifest describes the job's output
// directory), with declared classes (models[].classes) taking precedence and required to
// agree with the model's when it names any.
func SpecForFirstModel(candidateDir string, declared []string) (dataset.Spec, error) {
	m, err := modelrepo.DraftManifest(candidateDir)
	if err != nil {
		return dataset.Spec{}, fmt.Errorf("candidate: %w", err)
	}
	if len(declared) > 0 {
		if len(m.Classes) > 0 && !slices.Equal(m.Classes, declared) {
			return dataset.Spec{}, fmt.Errorf("candidate: its classes %q differ from the configured %q", m.Classes, declared)
		}
		m.Classes = declared
	}
	if len(m.Classes) == 0 {
		return dataset.Spec{}, errors.New("candidate: the model names no classes (ONNX metadata \"classes\") and models[].classes is not set")
	}
	return dataset.SpecOf(m)
}

// validName is the rule for served model names: modelrepo's.
func validName(s string) error { return modelrepo.ValidateModelName(s) }

// validSetName is the rule for evaluation set names: the sample format's safe-name rule, as
// evalset.ValidateNames applies it.
func validSetName(s string) error {
	if !sample.ValidName(s) {
		return fmt.Errorf("set name %q: use 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'", s)
	}
	return nil
}

// String describes the set for logs.
func (s *Set) String() string {
	return strconv.Itoa(s.Len()) + " samples, digest " + s.Digest
}
