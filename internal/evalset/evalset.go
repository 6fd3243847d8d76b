// Package evalset stores labelled evaluation sets in the object store: the data the evaluation
// gate scores every model version on, kept as data rather than code, for any classifier.
//
// Layout (docs/evalsets.md is the contract in prose):
//
//	evalsets/<model>/<name>/shard-000000.tar ...   samples: <key>.json (with a "label") and
//	                                               <key>.input.npy (float32, the per-sample shape)
//	evalsets/<model>/<name>/manifest.json          written last: a set without it does not exist
//
// A set is immutable: Write refuses a name that exists, and Load verifies the manifest's digest
// over the content, so two scores recorded against the same digest were made on the same data.
package evalset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// SchemaVersion is the manifest schema this package writes and the newest it reads.
const SchemaVersion = 1

// TaskClassification is the only Manifest.Task today; the field leaves room for "detection".
const TaskClassification = "classification"

// Root is the object-key prefix of every evaluation set.
const Root = "evalsets/"

// ManifestFile is the name of a set's manifest object within its prefix.
const ManifestFile = "manifest.json"

// Limits on what Load and List accept from a store.
const (
	// MaxManifestBytes bounds a manifest: 100,000 class names of 256 bytes fit.
	MaxManifestBytes = 32 << 20
	// MaxValues bounds the values of a whole set (1 GiB of float32), checked before reading.
	MaxValues = 1 << 28
	// MaxShards bounds the shard count a manifest may list.
	MaxShards = 100_000
	// MaxDescription bounds Manifest.Description in bytes.
	MaxDescription = 4096
	// shardTargetBytes is about how many bytes of input values Write puts in one shard.
	shardTargetBytes = 64 << 20
)

// Errors wrapped by this package's functions.
var (
	// ErrExists: Write was asked for a name that already holds a set.
	ErrExists = errors.New("evaluation set already exists")
	// ErrNotFound: no set of that model and name (no manifest).
	ErrNotFound = errors.New("evaluation set not found")
	// ErrDigest: a set's content does not match its manifest's digest (tampered or corrupt).
	ErrDigest = errors.New("evaluation set digest mismatch")
	// ErrMismatch: a set cannot score a model (shape, datatype or classes differ).
	ErrMismatch = errors.New("evaluation set does not fit the model")
)

// Input describes one sample of a set.
type Input struct {
	// Shape is the per-sample shape, without a batch dimension.
	Shape []int64 `json:"shape"`
	// Datatype is the V2 datatype of the model input ("FP32").
	Datatype string `json:"datatype"`
}

// Manifest is manifest.json, the description of one set.
type Manifest struct {
	// SchemaVersion is the manifest schema, SchemaVersion for manifests written now.
	SchemaVersion int `json:"schema_version"`
	// Model is the model the set is for; Name the set's name within it.
	Model string `json:"model"`
	Name  string `json:"name"`
	// Created is when the set was written.
	Created time.Time `json:"created"`
	// Task is what the labels are for: "classification".
	Task string `json:"task"`
	// Count is the number of samples.
	Count int `json:"count"`
	// ClassCounts is the number of samples of each class, in the order of Classes.
	ClassCounts []int `json:"class_counts"`
	// Classes names the classes in the model's output order; labels are indexes into it.
	Classes []string `json:"classes"`
	// Input is the per-sample shape and datatype.
	Input Input `json:"input"`
	// Shards are the shard objects' names relative to the set's prefix, in order.
	Shards []string `json:"shards"`
	// Digest is the lowercase hex SHA-256 of the content (see Set.ComputeDigest).
	Digest string `json:"digest"`
	// Source says how the set was made: "files:<dir>", "frozen:<n> samples of <model>", ...
	Source string `json:"source"`
	// Description is free text for people.
	Description string `json:"description,omitempty"`
}

// Spec returns the dataset.Spec a sample of the set fits.
func (m *Manifest) Spec() dataset.Spec {
	return dataset.Spec{Shape: m.Input.Shape, Datatype: m.Input.Datatype, Classes: m.Classes}
}

// Prefix is the set's object-key prefix, ending in "/".
func Prefix(model, name string) string { return Root + model + "/" + name + "/" }

// ManifestKey is the object key of the set's manifest.
func ManifestKey(model, name string) string { return Prefix(model, name) + ManifestFile }

// ValidateNames checks a model name (the model repository's rule, modelrepo.ValidateModelName)
// and a set name (the sample format's safe-name rule, sample.ValidName): both become object-key
// path components.
func ValidateNames(model, name string) error {
	if err := modelrepo.ValidateModelName(model); err != nil {
		return fmt.Errorf("evalset: %w", err)
	}
	if !sample.ValidName(name) {
		return fmt.Errorf("evalset: set name %.80q: use 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'", name)
	}
	return nil
}

// Set is an evaluation set in memory.
type Set struct {
	// Manifest describes the set; Write fills Count, ClassCounts, Digest and Shards.
	Manifest Manifest
	// Keys identify the samples: 32 lowercase hex digits each (dataset.ContentKey), distinct.
	Keys []string
	// Inputs holds Count * Width() values, one sample after the other.
	Inputs []float32
	// Labels holds each sample's class index into Manifest.Classes.
	Labels []int
	// Duplicates counts samples FromFiles dropped because their values repeated an earlier
	// sample's with the same label. It is not stored.
	Duplicates int
}

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Keys) }

// Width is the number of values of one sample: the product of Manifest.Input.Shape.
func (s *Set) Width() int { return s.Manifest.Spec().Width() }

// Input returns sample i's values (a slice of Inputs, not a copy).
func (s *Set) Input(i int) []float32 {
	w := s.Width()
	return s.Inputs[i*w : (i+1)*w]
}

// ClassCounts counts the samples of each class.
func (s *Set) ClassCounts() []int {
	counts := make([]int, len(s.Manifest.Classes))
	for _, l := range s.Labels {
		if l >= 0 && l < len(counts) {
			counts[l]++
		}
	}
	return counts
}

// digestDomain starts the digest's input; a change of the encoding changes it.
const digestDomain = "edgeloop.evalset.digest.v1"

// ComputeDigest returns the digest of the set's content as the Manifest records it: the
// lowercase hex SHA-256 of, in order, with integers big-endian and a string being its u32 byte
// length then its bytes:
//
//	string "edgeloop.evalset.digest.v1"
//	u32 rank, then each dimension of Input.Shape as i64
//	string Input.Datatype
//	u32 number of classes, then each class name as a string
//	u64 number of samples, then for each sample in order:
//	    string key, u64 label, the Width() values as little-endian float32
//
// Names, times, source and description are not part of it: the digest names the data.
func (s *Set) ComputeDigest() string {
	h := sha256.New()
	b := make([]byte, 0, 256)
	str := func(v string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	str(digestDomain)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Manifest.Input.Shape)))
	for _, d := range s.Manifest.Input.Shape {
		b = binary.BigEndian.AppendUint64(b, uint64(d))
	}
	str(s.Manifest.Input.Datatype)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Manifest.Classes)))
	for _, c := range s.Manifest.Classes {
		str(c)
		if len(b) > 4096 {
			h.Write(b)
			b = b[:0]
		}
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(s.Keys)))
	h.Write(b)
	w := s.Width()
	for i, k := range s.Keys {
		b = b[:0]
		str(k)
		var label uint64
		if i < len(s.Labels) {
			label = uint64(s.Labels[i])
		}
		b = binary.BigEndian.AppendUint64(b, label)
		h.Write(b)
		if (i+1)*w <= len(s.Inputs) {
			dataset.WriteFloat32s(h, s.Inputs[i*w:(i+1)*w])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Check says whether the set can score a model with this input and classes: the same
// per-sample shape (after dropping a batch dimension: spec.Shape may be the model manifest's
// [-1, ...]; leading 1-dimensions are ignored as dataset.ShapeMatches does), the same datatype,
// and the same classes in the same order. A set whose classes are another list is refused
// naming the classes the model does not know and those the set lacks. The error wraps
// ErrMismatch.
func (s *Set) Check(spec dataset.Spec) error {
	return s.Manifest.Check(spec)
}

// Check is Set.Check on the manifest alone, so a set can be judged before it is loaded.
func (m *Manifest) Check(spec dataset.Spec) error {
	var problems []string
	shape := spec.Shape
	if len(shape) > 1 && shape[0] <= 0 {
		shape = shape[1:] // the model's variable batch dimension; a fixed 1 is a leading 1-dim
	}
	if !shapeFits(m.Input.Shape, shape) {
		problems = append(problems, fmt.Sprintf("the set's samples have shape %v, the model takes %v", m.Input.Shape, spec.Shape))
	}
	if m.Input.Datatype != spec.Datatype {
		problems = append(problems, fmt.Sprintf("the set's datatype is %q, the model takes %q", m.Input.Datatype, spec.Datatype))
	}
	if !slices.Equal(m.Classes, spec.Classes) {
		problems = append(problems, classDiff(m.Classes, spec.Classes))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: set %s/%s: %s", ErrMismatch, m.Model, m.Name, strings.Join(problems, "; "))
	}
	return nil
}

func shapeFits(set, model []int64) bool {
	got := make([]int, len(set))
	for i, d := range set {
		if d <= 0 || d > math.MaxInt32 {
			return false
		}
		got[i] = int(d)
	}
	for _, d := range model {
		if d <= 0 {
			return false
		}
	}
	return dataset.ShapeMatches(got, model)
}

// classDiff explains how two class lists differ.
func classDiff(set, model []string) string {
	inModel := make(map[string]bool, len(model))
	for _, c := range model {
		inModel[c] = true
	}
	inSet := make(map[string]bool, len(set))
	for _, c := range set {
		inSet[c] = true
	}
	var unknown, missing []string
	for _, c := range set {
		if !inModel[c] {
			unknown = append(unknown, c)
		}
	}
	for _, c := range model {
		if !inSet[c] {
			missing = append(missing, c)
		}
	}
	var parts []string
	if len(unknown) > 0 {
		parts = append(parts, fmt.Sprintf("classes unknown to the model: %s", quoteList(unknown)))
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("model classes missing from the set: %s", quoteList(missing)))
	}
	if len(parts) == 0 {
		if len(set) != len(model) {
			return fmt.Sprintf("the set lists %d classes, the model %d (a class appears twice)", len(set), len(model))
		}
		return fmt.Sprintf("the same classes in another order: the set has %s, the model %s", quoteList(set), quoteList(model))
	}
	return strings.Join(parts, "; ")
}

// quoteList quotes up to 10 names, so a 1000-class mismatch stays readable.
func quoteList(names []string) string {
	const show = 10
	q := make([]string, 0, min(len(names), show)+1)
	for i, n := range names {
		if i == show {
			q = append(q, fmt.Sprintf("... (%d more)", len(names)-show))
			break
		}
		q = append(q, fmt.Sprintf("%.64q", n))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// validate checks that the set is whole and consistent before it is written, returning every
// problem in one error.
func (s *Set) validate() error {
	m := &s.Manifest
	var errs []error
	if err := ValidateNames(m.Model, m.Name); err != nil {
		errs = append(errs, err)
	}
	if err := m.Spec().Validate(); err != nil {
		errs = append(errs, err)
	}
	if m.Task != TaskClassification {
		errs = append(errs, fmt.Errorf("task: must be %q, got %q", TaskClassification, m.Task))
	}
	if len(m.Description) > MaxDescription {
		errs = append(errs, fmt.Errorf("description: at most %d bytes, got %d", MaxDescription, len(m.Description)))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	n, w := len(s.Keys), s.Width()
	switch {
	case n == 0:
		return errors.New("the set has no samples")
	case len(s.Labels) != n:
		return fmt.Errorf("%d keys but %d labels", n, len(s.Labels))
	case len(s.Inputs) != n*w:
		return fmt.Errorf("%d samples of %d values call for %d inputs, got %d", n, w, n*w, len(s.Inputs))
	case int64(n)*int64(w) > MaxValues:
		return fmt.Errorf("%d samples of %d values: more than the %d values a set may hold", n, w, MaxValues)
	}
	seen := make(map[string]int, n)
	for i, k := range s.Keys {
		if !sample.ValidKey(k) {
			return fmt.Errorf("sample %d: key %.40q is not 32 lowercase hex digits", i, k)
		}
		if j, dup := seen[k]; dup {
			return fmt.Errorf("samples %d and %d have the same key %s", j, i, k)
		}
		seen[k] = i
		if l := s.Labels[i]; l < 0 || l >= len(m.Classes) {
			return fmt.Errorf("sample %d (%s): label %d is not a class index below %d", i, k, l, len(m.Classes))
		}
	}
	for i, v := range s.Inputs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("sample %d (%s): value %d is %v", i/w, s.Keys[i/w], i%w, v)
		}
	}
	return nil
}
