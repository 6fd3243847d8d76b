package modelrepo

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/datatype"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// SchemaVersion is the manifest schema this package writes and the newest it reads.
const SchemaVersion = 1

// MaxManifestSize bounds the manifest read from a repository: far above any real one, small
// enough that a hostile store cannot exhaust an edge node's memory with it.
const MaxManifestSize = 1 << 20

// Manifest is edgeloop.json, the signed description of one model version. Its fields are
// documented in docs/model-repository.md; the JSON encoding follows this declaration order,
// which is part of what is signed (see SigningBytes).
type Manifest struct {
	// SchemaVersion is the manifest schema, SchemaVersion for manifests written now.
	SchemaVersion int `json:"schema_version"`
	// Model is the model's name.
	Model string `json:"model"`
	// Version is the version number, a positive integer (Triton's rule).
	Version int64 `json:"version"`
	// Created is when the version was made (RFC 3339).
	Created time.Time `json:"created"`
	// Files lists every file of the version except edgeloop.json itself, by name.
	Files map[string]FileDigest `json:"files"`
	// Classes names the output classes, in the order of the output tensor's last dimension.
	Classes []string `json:"classes,omitempty"`
	// Task is what the model does: TaskClassification, or empty in manifests written before
	// the field existed (which were all classifiers).
	Task string `json:"task,omitempty"`
	// Input is the model's input tensor.
	Input Tensor `json:"input"`
	// Output is the output tensor whose scores the exporter turns into a prediction and
	// a confidence.
	Output Output `json:"output"`
	// SecondOutput is an optional second output tensor (for example probabilities beside
	// logits).
	SecondOutput *Output `json:"second_output,omitempty"`
	// EmbeddingOutput is an optional output tensor of per-sample feature vectors (rows ×
	// width FP32, such as a classifier's last hidden layer) that the exporter's embedding
	// drift signal compares with drift_reference.embedding; nil for none.
	EmbeddingOutput *Tensor `json:"embedding_output,omitempty"`
	// Metrics are evaluation results on the eval split, such as "accuracy".
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// PerClassMetrics are per-class evaluation results, such as "accuracy", each in the order
	// of Classes.
	PerClassMetrics map[string][]float64 `json:"per_class_metrics,omitempty"`
	// ReferenceHistogram is the confidence histogram on the eval split (equal-width bins over
	// [0, 1]) that the exporter's drift signals compare live traffic with.
	ReferenceHistogram []float64 `json:"reference_histogram,omitempty"`
	// ReferenceScorer names the confidence scorer the histogram was made with ("max_softmax",
	// "margin", "entropy").
	ReferenceScorer string `json:"reference_scorer,omitempty"`
	// Calibration is the softmax temperature the retrain gate fitted on its evaluation set,
	// so that exporters can estimate accuracy from calibrated confidence; nil when none was
	// fitted.
	Calibration *Calibration `json:"calibration,omitempty"`
	// DriftReference is the predicted-class mix and input statistics on the evaluation set
	// that the exporter's class-mix and input drift signals compare live traffic with; nil in
	// manifests written before it existed.
	DriftReference *DriftReference `json:"drift_reference,omitempty"`
	// ParentVersion is the version this one was retrained from; 0 for none.
	ParentVersion int64 `json:"parent_version,omitempty"`
	// Datasets are URIs of the data the version was trained on (shards, dataset manifests).
	Datasets []string `json:"datasets,omitempty"`
	// Signature signs everything above; see SigningBytes.
	Signature *Signature `json:"signature,omitempty"`
}

// TaskClassification is the Task of a classifier: one output of class scores.
const TaskClassification = "classification"

// Calibration is a version's fitted softmax temperature (docs/model-repository.md).
type Calibration struct {
	// Temperature T: calibrated probabilities are softmax(logits / T).
	Temperature float64 `json:"temperature"`
	// ECE is the expected calibration error (15 equal-width bins) of the calibrated
	// probabilities on the evaluation set; ECEBefore that of the raw ones.
	ECE       float64 `json:"ece"`
	ECEBefore float64 `json:"ece_before"`
	// EvalDigest names the evaluation set the temperature was fitted on.
	EvalDigest string `json:"eval_digest"`
	// Samples is the evaluation set's size.
	Samples int `json:"samples"`
}

// FileDigest is what the manifest records of one file.
type FileDigest struct {
	// SHA256 is the lowercase hex SHA-256 of the file's content.
	SHA256 string `json:"sha256"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
}

// Tensor describes a model input as the Open Inference Protocol does.
type Tensor struct {
	// Name is the tensor's name in the model.
	Name string `json:"name"`
	// Datatype is the Open Inference Protocol datatype, such as "FP32".
	Datatype string `json:"datatype"`
	// Shape has one entry per dimension, -1 for a variable one (the batch).
	Shape []int64 `json:"shape"`
}

// Output describes a model output that carries class scores.
type Output struct {
	// Name is the tensor's name in the model.
	Name string `json:"name"`
	// Kind says what the scores are: OutputLogits or OutputProbabilities.
	Kind string `json:"kind"`
	// Datatype is the Open Inference Protocol datatype; empty means "FP32".
	Datatype string `json:"datatype,omitempty"`
	// Shape is the tensor's shape, -1 for variable dimensions; empty means [-1, len(Classes)].
	Shape []int64 `json:"shape,omitempty"`
}

// The kinds of Output.
const (
	OutputLogits        = "logits"
	OutputProbabilities = "probabilities"
)

// Signature is the manifest's ed25519 signature.
type Signature struct {
	// KeyID names the signing key: KeyID of its public key.
	KeyID string `json:"key_id"`
	// Algorithm is "ed25519".
	Algorithm string `json:"algorithm"`
	// Value is the signature, in standard base64.
	Value string `json:"value"`
}

// AlgorithmEd25519 is the only signature algorithm.
const AlgorithmEd25519 = "ed25519"

// SigningBytes returns the bytes the signature covers: the manifest without its signature,
// encoded by encoding/json.Marshal. That is compact JSON (no insignificant whitespace) with
// the fields in the order of the Manifest declaration, fields marked omitempty left out when
// empty, map keys sorted bytewise, times in RFC 3339 with nanoseconds, and strings escaped as
// encoding/json does (including <, > and & as \u003c, \u003e, \u0026).
//
// The stored edgeloop.json is indented for people; verification decodes it and re-encodes, so
// whitespace and key order in the file do not matter, only the values. Decoding is strict
// (unknown fields are refused), so nothing in the file escapes the signature.
func (m *Manifest) SigningBytes() ([]byte, error) {
	c := *m
	c.Signature = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	// One decode-encode round makes the bytes a fixed point, so the signer signs exactly what
	// a verifier will re-encode from the file: encoding/json maps invalid UTF-8 to U+FFFD,
	// which encodes differently the second time.
	var again Manifest
	if err := json.Unmarshal(b, &again); err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	return json.Marshal(&again)
}

// Marshal returns the manifest as stored: indented JSON with a trailing newline.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseManifest decodes edgeloop.json strictly: unknown fields, trailing data and a schema
// newer than SchemaVersion are ErrInvalidManifest. It does not verify or validate; see
// Verifier.Verify and Manifest.Validate.
func ParseManifest(data []byte) (*Manifest, error) {
	var head struct {
		SchemaVersion int `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	if head.SchemaVersion > SchemaVersion {
		// Said before the strict decoding, which would only complain of unknown fields.
		return nil, fmt.Errorf("%w: schema_version %d is newer than this edgeloop reads (%d); upgrade it", ErrInvalidManifest, head.SchemaVersion, SchemaVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	// Trailing data needs no check of its own: json.Unmarshal above refused it.
	return &m, nil
}

var (
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	scorerRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	keyIDRE  = regexp.MustCompile(`^[0-9a-f]{16}$`)
	// tensorNameRE keeps tensor names to printable ASCII without quotes, backslashes or
	// spaces, so they go into config.pbtxt and URLs unescaped.
	tensorNameRE = regexp.MustCompile(`^[!#-\[\]-~]{1,256}$`)
)

// maxName bounds model and alias names, within the sample format's 128.
const maxName = 64

// validName is the rule for model and alias names: the sample format's name rule (safe in an
// object key, a URL path, a metric label and a Triton model directory), at most maxName long
// and without "..".
func validName(s string) bool {
	return len(s) <= maxName && sample.ValidName(s) && !strings.Contains(s, "..")
}

// ValidateModelName reports why name cannot name a model, or nil: 1 to 64 letters, digits,
// '_', '.' or '-', not starting with '.' or '-', and no "..".
func ValidateModelName(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: model name %q: use 1-64 letters, digits, '_', '.' or '-', starting with a letter, digit or '_', without \"..\"", ErrInvalidName, name)
	}
	return nil
}

// ValidateAliasName reports why name cannot name an alias, or nil: the model-name rules,
// and neither "latest" nor a number, which are version selectors.
func ValidateAliasName(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: alias %q: use 1-64 letters, digits, '_', '.' or '-', starting with a letter, digit or '_', without \"..\"", ErrInvalidName, name)
	}
	if name == SelectorLatest || isDigits(name) {
		return fmt.Errorf("%w: alias %q: %q and numbers select versions and cannot be aliases", ErrInvalidName, name, SelectorLatest)
	}
	return nil
}

// ValidateSelector reports why s cannot select a version in Resolve, or nil: "latest" (or
// empty, meaning latest), a version number without leading zeros, or a valid alias name.
func ValidateSelector(s string) error {
	switch {
	case s == "" || s == SelectorLatest:
		return nil
	case isDigits(s):
		if _, ok := parseVersion(s); !ok {
			return fmt.Errorf("%w: version %q: a version is a positive integer without leading zeros", ErrInvalidName, s)
		}
		return nil
	}
	if !validName(s) {
		return fmt.Errorf("%w: selector %q: use %q, a version number or an alias name (1-64 letters, digits, '_', '.' or '-', starting with a letter, digit or '_')", ErrInvalidName, s, SelectorLatest)
	}
	return nil
}

// ValidateFileName reports why name cannot name a file of a version, or nil.
func ValidateFileName(name string) error {
	// One plain name, no directories: the sample format's name rule, without "..".
	if !sample.ValidName(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%w: file name %q: use 1-128 letters, digits, '_', '.' or '-', no directories", ErrInvalidName, name)
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Limits of what a manifest may describe.
const (
	maxRank      = 8
	maxClasses   = 100_000
	minHistBins  = 2
	maxHistBins  = 100
	maxFiles     = 64
	maxDatasets  = 10_000
	maxFileBytes = 1 << 40
)

// Validate reports every rule of the schema that m breaks, as one ErrInvalidManifest.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.SchemaVersion != SchemaVersion {
		bad("schema_version: must be %d, got %d", SchemaVersion, m.SchemaVersion)
	}
	if ValidateModelName(m.Model) != nil {
		bad("model: must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter, digit or '_', without \"..\"), got %q", m.Model)
	}
	if m.Version < 1 {
		bad("version: must be a positive integer, got %d", m.Version)
	}
	if m.Created.IsZero() {
		bad("created: must be set")
	}
	switch {
	case len(m.Files) == 0:
		bad("files: must list the version's files")
	case len(m.Files) > maxFiles:
		bad("files: at most %d files, got %d", maxFiles, len(m.Files))
	}
	if _, ok := m.Files[ModelFile]; !ok && len(m.Files) > 0 {
		bad("files: must include %s", ModelFile)
	}
	for _, name := range sortedKeys(m.Files) {
		d := m.Files[name]
		if name == ManifestFile {
			bad("files: must not include %s itself", ManifestFile)
		} else if ValidateFileName(name) != nil {
			bad("files: %q is not a plain file name (1-128 letters, digits, '_', '.' or '-')", name)
		}
		if !sha256RE.MatchString(d.SHA256) {
			bad("files[%s].sha256: must be 64 lowercase hex digits, got %q", name, d.SHA256)
		}
		if d.Size < 0 || d.Size > maxFileBytes {
			bad("files[%s].size: must be between 0 and 1 TiB, got %d", name, d.Size)
		}
	}
	if len(m.Classes) > maxClasses {
		bad("classes: at most %d, got %d", maxClasses, len(m.Classes))
	}
	seen := map[string]bool{}
	for i, c := range m.Classes {
		if c == "" {
			bad("classes[%d]: must not be empty", i)
		} else if seen[c] {
			bad("classes[%d]: %q appears twice", i, c)
		}
		seen[c] = true
	}
	if m.Task != "" && m.Task != TaskClassification {
		bad("task: must be %q or empty, got %q", TaskClassification, m.Task)
	}
	if c := m.Calibration; c != nil {
		if !(c.Temperature > 0) || math.IsInf(c.Temperature, 0) {
			bad("calibration.temperature: must be positive and finite, got %v", c.Temperature)
		}
		if !(c.ECE >= 0 && c.ECE <= 1) || !(c.ECEBefore >= 0 && c.ECEBefore <= 1) {
			bad("calibration: ece and ece_before must be between 0 and 1, got %v and %v", c.ECE, c.ECEBefore)
		}
		if !sha256RE.MatchString(c.EvalDigest) {
			bad("calibration.eval_digest: must be 64 lowercase hex digits, got %q", c.EvalDigest)
		}
		if c.Samples < 1 {
			bad("calibration.samples: must be positive, got %d", c.Samples)
		}
	}
	if r := m.DriftReference; r != nil {
		errs = append(errs, r.validate(len(m.Classes))...)
	}
	errs = append(errs, validateTensor("input", m.Input.Name, m.Input.Datatype, m.Input.Shape, true)...)
	errs = append(errs, m.validateOutput("output", &m.Output)...)
	if m.SecondOutput != nil {
		errs = append(errs, m.validateOutput("second_output", m.SecondOutput)...)
		if m.SecondOutput.Name == m.Output.Name {
			bad("second_output.name: must differ from output.name %q", m.Output.Name)
		}
	}
	errs = append(errs, m.validateEmbedding()...)
	for _, k := range sortedKeys(m.Metrics) {
		if k == "" {
			bad("metrics: empty metric name")
		}
		if v := m.Metrics[k]; math.IsNaN(v) || math.IsInf(v, 0) {
			bad("metrics[%s]: must be finite", k)
		}
	}
	for _, k := range sortedKeys(m.PerClassMetrics) {
		vs := m.PerClassMetrics[k]
		if len(vs) != len(m.Classes) {
			bad("per_class_metrics[%s]: has %d values for %d classes", k, len(vs), len(m.Classes))
		}
		if slices.ContainsFunc(vs, func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }) {
			bad("per_class_metrics[%s]: must be finite", k)
		}
	}
	if h := m.ReferenceHistogram; len(h) > 0 {
		sum := 0.0
		for _, v := range h {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				bad("reference_histogram: values must be finite and not negative, got %v", v)
				break
			}
			sum += v
		}
		if len(h) < minHistBins || len(h) > maxHistBins {
			bad("reference_histogram: must have %d to %d bins, got %d", minHistBins, maxHistBins, len(h))
		}
		if sum <= 0 {
			bad("reference_histogram: must not be all zero")
		}
		if !scorerRE.MatchString(m.ReferenceScorer) {
			bad("reference_scorer: must name the scorer of reference_histogram (like max_softmax), got %q", m.ReferenceScorer)
		}
	} else if m.ReferenceScorer != "" {
		bad("reference_scorer: set without reference_histogram")
	}
	if m.ParentVersion < 0 || (m.ParentVersion != 0 && m.ParentVersion == m.Version) {
		bad("parent_version: must be 0 (none) or another version's number, got %d", m.ParentVersion)
	}
	if len(m.Datasets) > maxDatasets {
		bad("datasets: at most %d, got %d", maxDatasets, len(m.Datasets))
	}
	for i, d := range m.Datasets {
		if u, err := url.Parse(d); err != nil || u.Scheme == "" {
			bad("datasets[%d]: must be a URI with a scheme (like s3://bucket/samples/...), got %q", i, d)
		}
	}
	if s := m.Signature; s != nil {
		if s.Algorithm != AlgorithmEd25519 {
			bad("signature.algorithm: must be %q, got %q", AlgorithmEd25519, s.Algorithm)
		}
		if !keyIDRE.MatchString(s.KeyID) {
			bad("signature.key_id: must be 16 lowercase hex digits, got %q", s.KeyID)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidManifest, errors.Join(errs...))
	}
	return nil
}

func (m *Manifest) validateOutput(field string, o *Output) []error {
	dt := o.Datatype
	if dt == "" {
		dt = "FP32"
	}
	errs := validateTensor(field, o.Name, dt, o.Shape, false)
	if o.Kind != OutputLogits && o.Kind != OutputProbabilities {
		errs = append(errs, fmt.Errorf("%s.kind: must be %q or %q, got %q", field, OutputLogits, OutputProbabilities, o.Kind))
	}
	if n := len(o.Shape); n > 0 && len(m.Classes) > 0 && o.Shape[n-1] > 0 && o.Shape[n-1] != int64(len(m.Classes)) {
		errs = append(errs, fmt.Errorf("%s.shape: last dimension %d differs from the %d classes", field, o.Shape[n-1], len(m.Classes)))
	}
	return errs
}

func validateTensor(field, name, dt string, shape []int64, shapeRequired bool) []error {
	var errs []error
	if !tensorNameRE.MatchString(name) {
		errs = append(errs, fmt.Errorf("%s.name: must be 1-256 printable ASCII characters without spaces, quotes or backslashes, got %q", field, name))
	}
	if !datatype.Valid(dt) {
		errs = append(errs, fmt.Errorf("%s.datatype: must be an Open Inference Protocol datatype such as FP32, got %q", field, dt))
	}
	if len(shape) == 0 && shapeRequired {
		errs = append(errs, fmt.Errorf("%s.shape: must be set (like [-1, 784])", field))
	}
	if len(shape) > maxRank {
		errs = append(errs, fmt.Errorf("%s.shape: at most %d dimensions, got %d", field, maxRank, len(shape)))
	}
	for _, d := range shape {
		if d < -1 || d == 0 {
			errs = append(errs, fmt.Errorf("%s.shape: dimensions must be positive or -1 (variable), got %v", field, shape))
			break
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// hexKeyID formats the first 8 bytes of a hash as a key ID.
func hexKeyID(sum []byte) string { return hex.EncodeToString(sum[:8]) }
