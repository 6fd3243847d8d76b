// Package dataset reads labelled samples from WebDataset shards for any classifier: the shape,
// datatype and classes a sample must have come from a Spec (the serving model version's
// manifest), never from code. It is what the reference trainer, the evaluation gate and
// `edgeloop evalset create --freeze` share, so that a sample is usable, refused or held out by
// the same rules everywhere. docs/evalsets.md describes the rules in prose.
//
// Shards come from the edge, so every reader bounds what it allocates and never panics on
// hostile input: a bad sample is refused and counted, a bad shard is an error.
package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"strings"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
)

// Limits on a Spec: far above any classifier's input, low enough that one sample's values
// stay within a sample's largest input file (sample.MaxInputBytes holds 2M float32 values).
const (
	// MaxRank bounds the number of per-sample dimensions.
	MaxRank = 8
	// MaxWidth bounds the number of values of one sample.
	MaxWidth = 1 << 24
	// MaxClasses bounds the number of classes, as the model manifest does.
	MaxClasses = 100_000
	// maxClassName bounds one class name in bytes.
	maxClassName = 256
)

// DatatypeFP32 is the only Spec.Datatype accepted today: samples are converted to float32
// (npy float32, float64 and uint8 arrays are read), which is what FP32 models take.
const DatatypeFP32 = "FP32"

// Spec is what a sample must be to be used, taken from the serving model version's manifest
// (modelrepo.Manifest: Input.Shape without the batch dimension, Input.Datatype, Classes).
type Spec struct {
	// Shape is one sample's dimensions, without the batch dimension, all > 0 (for example
	// [1,28,28] or [3,32,32]).
	Shape []int64
	// Datatype is the V2 datatype of the model input; only "FP32" is supported.
	Datatype string
	// Classes names the classes in the model's output order.
	Classes []string
}

// SpecOf returns the Spec of a model version: its manifest's input shape without the batch
// dimension, its input datatype (FP32 when the manifest names none) and classes, validated.
// A manifest's shape leads with the batch dimension (-1 when variable, or a fixed size), and
// the exporter captures one sample per row of it (exporter/capture), so the first dimension is
// dropped whatever it is; a shape of one dimension is kept as it is.
func SpecOf(m *modelrepo.Manifest) (Spec, error) {
	shape := m.Input.Shape
	if len(shape) > 1 {
		shape = shape[1:]
	}
	dt := m.Input.Datatype
	if dt == "" {
		dt = DatatypeFP32
	}
	s := Spec{Shape: append([]int64(nil), shape...), Datatype: dt, Classes: append([]string(nil), m.Classes...)}
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("model %s version %d: %w", m.Model, m.Version, err)
	}
	return s, nil
}

// Validate reports every problem of the spec in one error, naming the field.
func (s Spec) Validate() error {
	var errs []error
	switch {
	case len(s.Shape) == 0:
		errs = append(errs, errors.New("shape: must have at least one dimension"))
	case len(s.Shape) > MaxRank:
		errs = append(errs, fmt.Errorf("shape: at most %d dimensions, got %d", MaxRank, len(s.Shape)))
	default:
		w := int64(1)
		for i, d := range s.Shape {
			if d <= 0 {
				errs = append(errs, fmt.Errorf("shape[%d]: must be > 0, got %d (a variable dimension has no place in a per-sample shape)", i, d))
				break
			}
			if d > MaxWidth || w*d > MaxWidth { // d first: w*d must not overflow
				errs = append(errs, fmt.Errorf("shape: %v has more than %d values per sample", s.Shape, MaxWidth))
				break
			}
			w *= d
		}
	}
	if s.Datatype != DatatypeFP32 {
		errs = append(errs, fmt.Errorf("datatype: only %q is supported, got %q", DatatypeFP32, s.Datatype))
	}
	switch {
	case len(s.Classes) == 0:
		errs = append(errs, errors.New("classes: must name at least one class"))
	case len(s.Classes) > MaxClasses:
		errs = append(errs, fmt.Errorf("classes: at most %d, got %d", MaxClasses, len(s.Classes)))
	}
	seen := make(map[string]bool, len(s.Classes))
	for i, c := range s.Classes {
		switch {
		case c == "" || len(c) > maxClassName:
			errs = append(errs, fmt.Errorf("classes[%d]: must be 1-%d bytes, got %d", i, maxClassName, len(c)))
		case seen[c]:
			errs = append(errs, fmt.Errorf("classes[%d]: %q appears twice", i, c))
		}
		seen[c] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("dataset spec: %w", errors.Join(errs...))
	}
	return nil
}

// Width is the number of values of one sample: the product of Shape (0 for an invalid shape).
func (s Spec) Width() int {
	if len(s.Shape) == 0 {
		return 0
	}
	w := int64(1)
	for _, d := range s.Shape {
		if d <= 0 || d > MaxWidth || w*d > MaxWidth { // d first: w*d must not overflow
			return 0
		}
		w *= d
	}
	return int(w)
}

// ShapeMatches reports whether an array of shape got can be used as one sample of shape want:
// the two are equal after dropping their leading 1-dimensions. So [1,1,28,28] (a batch of one)
// and [28,28] fit [1,28,28], but [784] and [28,28,1] do not: the same number of values in
// another layout is another input (an NHWC image is not an NCHW one), and refusing it is
// safer than scoring garbage.
func ShapeMatches(got []int, want []int64) bool {
	g, w := got, want
	for len(g) > 0 && g[0] == 1 {
		g = g[1:]
	}
	for len(w) > 0 && w[0] == 1 {
		w = w[1:]
	}
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if int64(g[i]) != w[i] {
			return false
		}
	}
	return true
}

// Refusal reasons, the keys of Stats.Rejected.
const (
	// ReasonShape: the input's shape does not fit Spec.Shape (see ShapeMatches).
	ReasonShape = "shape"
	// ReasonDtype: the input's dtype cannot be converted to float32.
	ReasonDtype = "dtype"
	// ReasonLabel: the label names no class of Spec.Classes, or is not a label at all.
	ReasonLabel = "label"
	// ReasonNPY: no input.npy, or one that does not decode.
	ReasonNPY = "npy"
	// ReasonNonFinite: a value is NaN or infinite.
	ReasonNonFinite = "nonfinite"
	// ReasonMeta: no <key>.json, or one that is not a JSON object.
	ReasonMeta = "meta"
)

// RefusedError says why a sample cannot be used; Reason is one of the Reason constants.
type RefusedError struct {
	Reason string
	Err    error
}

func (e *RefusedError) Error() string { return e.Reason + ": " + e.Err.Error() }

func (e *RefusedError) Unwrap() error { return e.Err }

func refused(reason, format string, args ...any) error {
	return &RefusedError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the refusal reason of err ("npy" when err is not a *RefusedError).
func ReasonOf(err error) string {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ReasonNPY
}

// DecodeInput decodes a sample's input.npy into spec.Width() float32 values. float32 and
// float64 arrays are taken as they are; uint8 arrays are grey levels and divided by 255, as
// the reference trainer and Fashion-MNIST's loader do (so a model trained on [0,1] images
// reads captured uint8 images the same way). The error is a *RefusedError.
func DecodeInput(data []byte, spec Spec) ([]float32, error) {
	if len(data) == 0 {
		return nil, refused(ReasonNPY, "no input.npy")
	}
	a, err := npy.Read(bytesReader(data))
	if err != nil {
		if strings.Contains(err.Error(), "dtype") {
			return nil, refused(ReasonDtype, "%v", err)
		}
		return nil, refused(ReasonNPY, "%v", err)
	}
	if !ShapeMatches(a.Shape, spec.Shape) {
		return nil, refused(ReasonShape, "input of shape %v does not fit %v", a.Shape, spec.Shape)
	}
	if len(a.Data) != spec.Width() {
		return nil, refused(ReasonShape, "input of shape %v has %d values, want %d", a.Shape, len(a.Data), spec.Width())
	}
	scale := a.Descr == "|u1"
	for i, v := range a.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, refused(ReasonNonFinite, "input value %d is %v", i, v)
		}
		if scale {
			a.Data[i] = v / 255
		}
	}
	return a.Data, nil
}

// ContentKey is the content-derived key of a sample's decoded input: the lowercase hex of the
// first 16 bytes of the SHA-256 of the values as little-endian float32 (32 hex digits, the
// form of a sample key). The same image captured twice, on two nodes or at two times, has two
// sample keys but one content key, so it is read once and lands on one side of the split.
func ContentKey(values []float32) string {
	h := sha256.New()
	WriteFloat32s(h, values)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// WriteFloat32s writes values to h as little-endian float32, a block at a time.
func WriteFloat32s(h hash.Hash, values []float32) {
	var buf [4 * 256]byte
	for len(values) > 0 {
		n := min(len(values), 256)
		for i, v := range values[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf[:4*n])
		values = values[n:]
	}
}

// HoldoutBuckets is the number of buckets HeldOut hashes keys into; bucket 0 is held out, so
// about 1 in HoldoutBuckets samples is for evaluation only.
const HoldoutBuckets = 10

// HeldOut reports whether the sample with this content key belongs to the evaluation side of
// the deterministic split (about 1 in 10, by a hash of the key): never trained on, always
// evaluated. For a ContentKey the rule is: its first 16 hex digits, read as a big-endian
// unsigned integer, are 0 modulo HoldoutBuckets, which is exactly the reference trainer's
// split by input values (int.from_bytes(hashlib.sha256(x.astype('<f4').tobytes()).digest()[:8],
// 'big') % 10 == 0 in Python). Any other string is hashed with SHA-256 first. The split does
// not depend on which other samples exist, so a sample stays on its side as shards are added.
func HeldOut(key string) bool {
	var v uint64
	if len(key) >= 16 && lowerHex(key[:16]) {
		b, _ := hex.DecodeString(key[:16]) // checked: 16 hex digits
		v = binary.BigEndian.Uint64(b)
	} else {
		sum := sha256.Sum256([]byte(key))
		v = binary.BigEndian.Uint64(sum[:8])
	}
	return v%HoldoutBuckets == 0
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ClassIndex returns the index of name in classes, or -1.
func ClassIndex(classes []string, name string) int { return slices.Index(classes, name) }
