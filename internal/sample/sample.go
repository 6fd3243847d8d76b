// Package sample is edgeloop's sample format, shared by the exporter (capture, spool, sender)
// and the collector: one captured input with its metadata, identified by a content-derived key.
//
// A sample is a WebDataset-style group of files sharing one key: <key>.json (the metadata,
// Meta) and <key>.input.npy (the input tensor as a NumPy array) or <key>.input.<ext> (encoded
// bytes such as a PNG, as the client sent them). The same sample travels in three forms:
//
//   - a spool record on the edge node (MarshalRecord, UnmarshalRecord): one opaque record;
//   - a batch on the wire and a dataset shard in object storage: a tar of samples (WriteTar,
//     ReadTar), which any WebDataset reader and the reference trainer read;
//   - files on disk, such as the sender's dead-letter directory: the tar's members.
//   - a stored record in the collector's write-ahead log (MarshalStored, ParseStored): the
//     spool record's content plus the sample's index line, encoded once at ingest so that the
//     shard builder copies bytes into shards (StoredTarWriter) instead of re-encoding them.
//
// Every decoding path validates what it returns (Validate), bounds what it allocates, and never
// panics on hostile input: samples cross the boundary between thousands of physically
// insecure edge nodes and the data center. docs/wire-format.md is the contract in prose.
package sample

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgeloop/edgeloop/internal/datatype"
	"github.com/edgeloop/edgeloop/internal/npy"
)

// SchemaVersion is the version of Meta this package writes and accepts. A change that a v1
// reader would misread gets a new version (and a new key domain, see Key).
const SchemaVersion = 1

// Limits on one sample, shared by every form so that a sample valid in one is valid in all.
const (
	// MaxMetaBytes bounds a sample's metadata JSON. It matches the reference trainer's limit on
	// one file of a shard; scores of even a 10,000-class model fit well within it.
	MaxMetaBytes = 1 << 20
	// MaxInputBytes bounds a sample's input file: room for a 1000×1000×2 float32 tensor or a
	// large encoded image.
	MaxInputBytes = 8 << 20
	// maxText bounds free-text fields (request id, class name, input name) in bytes.
	maxText = 256
)

// Scores kinds: what Meta.Scores holds.
const (
	// ScoresLogits are unnormalised scores.
	ScoresLogits = "logits"
	// ScoresProbabilities are softmax outputs.
	ScoresProbabilities = "probabilities"
)

// NPYFile is Meta.Input.File for an input tensor stored as a NumPy array.
const NPYFile = "input.npy"

// ErrInvalid is wrapped by every error that says a sample breaks a rule of the format.
var ErrInvalid = errors.New("invalid sample")

// Meta is a sample's metadata, the content of <key>.json.
type Meta struct {
	// SchemaVersion is SchemaVersion; New fills it.
	SchemaVersion int `json:"schema_version"`
	// Key identifies the sample by its content (see Key); New fills it.
	Key string `json:"key"`
	// Model, Version and Node name the model version that made the prediction and the edge
	// node it ran on. They become label values and object-key path components, so they are
	// restricted to 1-128 letters, digits, '.', '_' and '-', not starting with '.' or '-'.
	Model   string `json:"model"`
	Version string `json:"version"`
	Node    string `json:"node"`
	// Time is when the prediction was made, in UTC (New converts it).
	Time time.Time `json:"time"`
	// RequestID is the client's request id, if it sent one.
	RequestID string `json:"request_id,omitempty"`
	// Prediction is the top-1 class index: an index into Scores.
	Prediction int `json:"prediction"`
	// PredictedClass is the name of the predicted class, when the model's classes are named.
	PredictedClass string `json:"predicted_class,omitempty"`
	// Scores is the scored output row as the model produced it.
	Scores []float32 `json:"scores"`
	// ScoresKind says what Scores holds: ScoresLogits or ScoresProbabilities.
	ScoresKind string `json:"scores_kind"`
	// Confidence holds the prediction's confidence by scorer name (max_softmax, margin,
	// entropy, ...).
	Confidence map[string]float64 `json:"confidence"`
	// Reason is the name of the capture strategy that kept the sample.
	Reason string `json:"reason"`
	// TraceID is the W3C trace id of the request's sampled trace, if any.
	TraceID string `json:"trace_id,omitempty"`
	// Label is the sample's class, set later by annotators or a teacher model: a JSON class
	// index (7) or class name ("Sneaker"), as the reference trainer reads it. It is raw JSON so
	// that either form round-trips unchanged; IndexLabel and NameLabel build one. It is not
	// part of the key, so labelling a sample does not change its identity.
	Label json.RawMessage `json:"label,omitempty"`
	// Input describes the input file.
	Input InputInfo `json:"input"`
}

// InputInfo describes a sample's input: the tensor it came from and the file that holds it.
type InputInfo struct {
	// Name is the input tensor's name in the inference request.
	Name string `json:"name"`
	// Datatype is the tensor's Open Inference Protocol datatype (FP32, UINT8, BYTES, ...) as
	// the client sent it; a .npy file may hold it converted (the exporter stores float32).
	Datatype string `json:"datatype"`
	// Shape is the tensor's shape. For a .npy file, the array holds exactly as many values as
	// the shape's product.
	Shape []int64 `json:"shape"`
	// File is the input file's name after "<key>.": "input.npy" (NPYFile) or "input.<ext>"
	// for encoded bytes, ext being 1-16 lowercase letters or digits.
	File string `json:"file"`
}

// Sample is one captured sample: its metadata and the bytes of its input file.
type Sample struct {
	Meta Meta
	// Input is the content of the input file Meta.Input.File names.
	Input []byte
	// metaJSON is Meta encoded, as ReadTar's validation left it, for MarshalStored: the
	// collector would otherwise encode every sample's metadata twice. Nil elsewhere.
	metaJSON []byte
	// frame is the buffer ReadTar read Input into, Input at its end, with room in front for
	// the header, metadata and index line of the stored record, which MarshalStored then
	// writes in place instead of copying the input (4 KiB a small sample, and as much
	// memory again per batch in flight). Nil elsewhere, and once MarshalStored used it.
	frame []byte
}

// New returns a sample of meta and input with SchemaVersion and Key filled in and Time in
// UTC, after validating it. input is kept, not copied.
func New(meta Meta, input []byte) (*Sample, error) {
	meta.SchemaVersion = SchemaVersion
	meta.Time = meta.Time.UTC()
	meta.Key = Key(meta, input)
	s := &Sample{Meta: meta, Input: input}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// IndexLabel returns the Meta.Label naming class index i.
func IndexLabel(i int) json.RawMessage { return json.RawMessage(strconv.Itoa(i)) }

// NameLabel returns the Meta.Label naming a class by its name.
func NameLabel(name string) json.RawMessage {
	b, _ := json.Marshal(name) // a string always marshals
	return b
}

// MetaName is the name of the sample's metadata file: "<key>.json".
func (s *Sample) MetaName() string { return s.Meta.Key + ".json" }

// InputName is the name of the sample's input file: "<key>.input.<ext>".
func (s *Sample) InputName() string { return s.Meta.Key + "." + s.Meta.Input.File }

// MetaJSON returns the content of the sample's metadata file.
func (s *Sample) MetaJSON() ([]byte, error) {
	b, err := marshalMeta(&s.Meta)
	if err != nil {
		return nil, fmt.Errorf("sample: encode metadata: %w", err)
	}
	return b, nil
}

// InvalidError lists every rule a sample breaks. It wraps ErrInvalid.
type InvalidError struct {
	// Problems each name a field by its JSON path ("input.shape") and say what is wrong.
	Problems []string
}

func (e *InvalidError) Error() string { return "invalid sample: " + strings.Join(e.Problems, "; ") }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Time bounds: before 1970 is a clock that was never set; the upper bound keeps the time
// representable in every form (tar headers hold seconds in 11 octal digits).
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ValidName reports whether s may be a model, version, node, reason or scorer name: 1-128
// letters, digits, '.', '_' and '-', starting with a letter, digit or '_'. Such a name is safe
// as a Prometheus label value, a URL path segment and an object-key path component ("." and
// ".." excluded). It is a loop rather than a regular expression because ingest checks five
// names per sample.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidKey reports whether s has the form of a sample key: 32 lowercase hex digits, the form
// of a trace id too.
func ValidKey(s string) bool { return len(s) == 32 && lowerHex(s) }

// validFile reports whether s is a valid Meta.Input.File: "input." and 1-16 lowercase letters
// or digits.
func validFile(s string) bool {
	ext, ok := strings.CutPrefix(s, "input.")
	if !ok || len(ext) == 0 || len(ext) > 16 {
		return false
	}
	for i := 0; i < len(ext); i++ {
		if c := ext[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// NameRule says what ValidName accepts, as the messages of every configuration key and field
// that holds such a name put it.
const NameRule = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'"

// Validate checks every rule of the format and reports all that are broken in one
// *InvalidError. The key must be the one Key computes from the content, so a sample altered
// after New (other than its label) fails.
func (s *Sample) Validate() error {
	_, err := s.validate()
	return err
}

// validate is Validate returning the metadata's JSON, which it encodes to check its size.
func (s *Sample) validate() ([]byte, error) {
	var p problems
	m := &s.Meta
	if m.SchemaVersion != SchemaVersion {
		p.add("schema_version", "must be %d, got %d", SchemaVersion, m.SchemaVersion)
	}
	for _, f := range []struct{ field, v string }{{"model", m.Model}, {"version", m.Version}, {"node", m.Node}, {"reason", m.Reason}} {
		if !ValidName(f.v) {
			p.add(f.field, "%s, got %s", NameRule, quote(f.v))
		}
	}
	switch {
	case m.Time.IsZero():
		p.add("time", "must be set")
	case m.Time.Before(minTime) || !m.Time.Before(maxTime):
		p.add("time", "must be from 1970 to 2199, got %s", m.Time.UTC().Format(time.RFC3339Nano))
	}
	p.text("request_id", m.RequestID, false)
	p.text("predicted_class", m.PredictedClass, false)
	if m.Prediction < 0 || m.Prediction >= len(m.Scores) {
		p.add("prediction", "must be a class index below the %d scores, got %d", len(m.Scores), m.Prediction)
	}
	for i, v := range m.Scores {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			p.add(fmt.Sprintf("scores[%d]", i), "must be finite, got %v", v)
			break // one is enough: a broken output row is usually broken throughout
		}
	}
	if m.ScoresKind != ScoresLogits && m.ScoresKind != ScoresProbabilities {
		p.add("scores_kind", "must be %q or %q, got %s", ScoresLogits, ScoresProbabilities, quote(m.ScoresKind))
	}
	for _, name := range sortedKeys(m.Confidence) {
		if !ValidName(name) {
			p.add("confidence", "scorer name %s: %s", quote(name), NameRule)
		} else if v := m.Confidence[name]; math.IsNaN(v) || math.IsInf(v, 0) {
			p.add("confidence."+name, "must be finite, got %v", v)
		}
	}
	if m.TraceID != "" && (!ValidKey(m.TraceID) || m.TraceID == strings.Repeat("0", 32)) {
		p.add("trace_id", "must be empty or 32 lowercase hex digits, not all zero, got %s", quote(m.TraceID))
	}
	if err := validateLabel(m.Label); err != nil {
		p.add("label", "%v", err)
	}
	s.validateInput(&p)
	switch {
	case !ValidKey(m.Key):
		p.add("key", "must be 32 lowercase hex digits, got %s", quote(m.Key))
	default:
		if want := Key(*m, s.Input); m.Key != want {
			p.add("key", "%s does not match the sample's content, whose key is %s", m.Key, want)
		}
	}
	var meta []byte
	if len(p) == 0 {
		// Only a valid sample is measured: an invalid one may not even encode (NaN).
		var err error
		if meta, err = marshalMeta(m); err != nil {
			p.add("", "metadata does not encode: %v", err)
		} else if len(meta) > MaxMetaBytes {
			p.add("", "metadata is %d bytes of JSON, above the limit of %d", len(meta), MaxMetaBytes)
		}
	}
	if len(p) > 0 {
		return nil, &InvalidError{Problems: p}
	}
	return meta, nil
}

func (s *Sample) validateInput(p *problems) {
	in := &s.Meta.Input
	p.text("input.name", in.Name, true)
	if !datatype.Valid(in.Datatype) {
		p.add("input.datatype", "must be an Open Inference Protocol datatype (BOOL, UINT8 ... INT64, FP16, FP32, FP64, BF16, BYTES), got %s", quote(in.Datatype))
	}
	elems, shapeOK := int64(1), true
	if len(in.Shape) > npy.MaxRank {
		p.add("input.shape", "must have at most %d dimensions, got %d", npy.MaxRank, len(in.Shape))
		shapeOK = false
	}
	for i, d := range in.Shape {
		if !shapeOK {
			break
		}
		switch {
		case d < 0:
			p.add("input.shape", "dimension %d is negative (%d)", i, d)
			shapeOK = false
		case d != 0 && elems > npy.MaxElements/d:
			p.add("input.shape", "%v has more than %d elements", in.Shape, npy.MaxElements)
			shapeOK = false
		default:
			elems *= d
		}
	}
	if !validFile(in.File) {
		p.add("input.file", "must be %q or \"input.<ext>\" with 1-16 lowercase letters or digits as ext, got %s", NPYFile, quote(in.File))
	}
	switch n := len(s.Input); {
	case n == 0:
		p.add("input", "the input file is empty")
		return
	case n > MaxInputBytes:
		p.add("input", "the input file is %d bytes, above the limit of %d", n, MaxInputBytes)
		return
	}
	if in.File != NPYFile {
		return
	}
	a, err := npy.Check(bytes.NewReader(s.Input))
	if err != nil {
		p.add("input", "%s: %v", NPYFile, err)
		return
	}
	if n := a.Elements(); shapeOK && int64(n) != elems {
		p.add("input", "%s holds %d values (shape %v) but input.shape %v calls for %d", NPYFile, n, a.Shape, in.Shape, elems)
	}
}

// validateLabel accepts no label, a non-negative integer or a non-empty class name: what the
// reference trainer takes for a class index or name.
func validateLabel(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if !json.Valid(raw) || !utf8.Valid(raw) || dec.Decode(&v) != nil {
		return fmt.Errorf("must be a class index or a class name, got %s", quote(string(raw)))
	}
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(v.String(), 10, 32); err != nil || i < 0 {
			return fmt.Errorf("must be a class index (an integer from 0) or a class name, got %s", v)
		}
		return nil
	case string:
		if v == "" || len(v) > maxText || !printable(v) {
			return fmt.Errorf("a class name must be 1-%d bytes of printable UTF-8, got %s", maxText, quote(v))
		}
		return nil
	}
	return fmt.Errorf("must be a class index or a class name, got %s", quote(string(raw)))
}

// problems collects "field: message" lines.
type problems []string

func (p *problems) add(field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	*p = append(*p, msg)
}

// text checks a free-text field: bounded, valid UTF-8, no control characters.
func (p *problems) text(field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "must be set")
	case len(v) > maxText:
		p.add(field, "must be at most %d bytes, got %d", maxText, len(v))
	case !printable(v):
		p.add(field, "must be valid UTF-8 without control characters, got %s", quote(v))
	}
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// quote quotes a value for a message, shortened so that a hostile sample cannot make its
// rejection message (sent back to the node, logged) large.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
