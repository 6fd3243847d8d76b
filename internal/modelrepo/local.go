package modelrepo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/datatype"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// MetricsFile is what a training job writes beside model.onnx (the job contract, docs/architecture.md).
const MetricsFile = "metrics.json"

// TrainerMetrics is the part of a training job's metrics.json that goes into a manifest.
// Other keys in the file are ignored: jobs may record more (history, timings).
type TrainerMetrics struct {
	// Accuracy is the top-1 accuracy on the eval split.
	Accuracy *float64 `json:"accuracy"`
	// Loss is the mean loss on the eval split, when the job reports it.
	Loss *float64 `json:"loss"`
	// PerClassAccuracy is each class's accuracy: a list in class order, or an object keyed by
	// class name.
	PerClassAccuracy json.RawMessage `json:"per_class_accuracy"`
	// ConfidenceHistogram is the reference confidence histogram on the eval split.
	ConfidenceHistogram []float64 `json:"confidence_histogram"`
	// ConfidenceScorer names the scorer of ConfidenceHistogram.
	ConfidenceScorer string `json:"confidence_scorer"`
	// Classes names the classes, when the job knows them.
	Classes []string `json:"classes"`
	// Model is the model's name, when the job was given it.
	Model string `json:"model"`
	// BaseVersion is the version retrained, when there was one ("" or a number).
	BaseVersion json.RawMessage `json:"base_version"`
	// Datasets are URIs of the data trained on, when the job records them.
	Datasets []string `json:"datasets"`
}

// ReadTrainerMetrics reads a metrics.json.
func ReadTrainerMetrics(path string) (*TrainerMetrics, error) {
	data, err := readLimited(path, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	var tm TrainerMetrics
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &tm, nil
}

// Apply copies the metrics into m. Evaluation results (accuracy, loss, per-class accuracy,
// reference histogram and scorer) replace m's, as they describe the model file beside them;
// classes, model name, parent version and datasets only fill what m leaves empty.
func (tm *TrainerMetrics) Apply(m *Manifest) error {
	if len(m.Classes) == 0 {
		m.Classes = tm.Classes
	}
	if m.Model == "" {
		m.Model = tm.Model
	}
	if len(m.Datasets) == 0 {
		m.Datasets = tm.Datasets
	}
	if m.ParentVersion == 0 && len(tm.BaseVersion) > 0 {
		var s string
		var n int64
		switch {
		case json.Unmarshal(tm.BaseVersion, &n) == nil:
			m.ParentVersion = n
		case json.Unmarshal(tm.BaseVersion, &s) == nil && s != "":
			if v, ok := parseVersion(s); ok {
				m.ParentVersion = v
			}
		}
	}
	setMetric := func(name string, v *float64) {
		if v == nil {
			return
		}
		if m.Metrics == nil {
			m.Metrics = map[string]float64{}
		}
		m.Metrics[name] = *v
	}
	setMetric("accuracy", tm.Accuracy)
	setMetric("loss", tm.Loss)
	if len(tm.PerClassAccuracy) > 0 && !bytes.Equal(tm.PerClassAccuracy, []byte("null")) {
		pc, err := perClass(tm.PerClassAccuracy, m.Classes)
		if err != nil {
			return fmt.Errorf("%s: per_class_accuracy: %w", MetricsFile, err)
		}
		if m.PerClassMetrics == nil {
			m.PerClassMetrics = map[string][]float64{}
		}
		m.PerClassMetrics["accuracy"] = pc
	}
	if len(tm.ConfidenceHistogram) > 0 {
		m.ReferenceHistogram = tm.ConfidenceHistogram
		m.ReferenceScorer = tm.ConfidenceScorer
	}
	return nil
}

// perClass reads per-class values given as a list in class order or as an object keyed by
// class name (then classes must be known, to order them).
func perClass(raw json.RawMessage, classes []string) ([]float64, error) {
	var list []float64
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var byName map[string]float64
	if err := json.Unmarshal(raw, &byName); err != nil {
		return nil, errors.New("must be a list of numbers or an object of class name to number")
	}
	if len(classes) == 0 {
		return nil, errors.New("is keyed by class name, but the class names are unknown (give --classes)")
	}
	out := make([]float64, len(classes))
	for i, c := range classes {
		v, ok := byName[c]
		if !ok {
			return nil, fmt.Errorf("has no value for class %q", c)
		}
		out[i] = v
	}
	if len(byName) != len(classes) {
		return nil, fmt.Errorf("has %d entries for %d classes", len(byName), len(classes))
	}
	return out, nil
}

// DraftManifest builds the unsigned manifest of the local version directory dir from what
// lies there, leaving Files for the caller: an existing edgeloop.json (its signature dropped)
// is the base; metrics.json adds the evaluation results (TrainerMetrics.Apply); and
// model.onnx, when the base does not describe them, gives the input and outputs (an output
// computed by a Softmax node is "probabilities", any other "logits") and the classes of its
// "classes" metadata (a JSON list or comma-separated).
func DraftManifest(dir string) (*Manifest, error) {
	m := &Manifest{}
	data, err := readLimited(filepath.Join(dir, ManifestFile), MaxManifestSize)
	switch {
	case err == nil:
		if m, err = ParseManifest(data); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
		}
		m.Signature = nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	tm, err := ReadTrainerMetrics(filepath.Join(dir, MetricsFile))
	switch {
	case err == nil:
		if len(m.Classes) == 0 {
			m.Classes = tm.Classes
		}
	case errors.Is(err, fs.ErrNotExist):
		tm = nil
	default:
		return nil, err
	}
	if m.Input.Name == "" || m.Output.Name == "" || len(m.Classes) == 0 {
		model, err := os.ReadFile(filepath.Join(dir, ModelFile))
		if err != nil {
			return nil, fmt.Errorf("version directory: %w", err)
		}
		if err := describeONNX(m, model); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ModelFile), err)
		}
	}
	// Last, so that per-class values keyed by name can be put in the order of classes that
	// came from the model.
	if tm != nil {
		if err := tm.Apply(m); err != nil {
			return nil, err
		}
	}
	m.SchemaVersion = SchemaVersion
	return m, nil
}

// describeONNX fills m's input, outputs and classes from an ONNX model where m leaves them
// empty.
func describeONNX(m *Manifest, data []byte) error {
	model, err := onnx.Decode(data)
	if err != nil {
		return err
	}
	g := &model.Graph
	if m.Input.Name == "" {
		// Before IR version 4 initializers were listed as inputs too; the data input is the
		// one that is not.
		var inputs []onnx.ValueInfo
		for _, in := range g.Inputs {
			if g.Initializer(in.Name) == nil {
				inputs = append(inputs, in)
			}
		}
		if len(inputs) != 1 {
			return fmt.Errorf("has %d data inputs; a classifier has one (describe it in edgeloop.json)", len(inputs))
		}
		dt, err := v2Datatype(inputs[0].ElemType)
		if err != nil {
			return fmt.Errorf("input %s: %w", inputs[0].Name, err)
		}
		m.Input = Tensor{Name: inputs[0].Name, Datatype: dt, Shape: dims(inputs[0].Shape)}
	}
	if m.Output.Name == "" {
		// The embedding output, when the metadata names one, is not a class-score output.
		embedding := strings.TrimSpace(model.Metadata[MetadataEmbeddingOutput])
		var scored []onnx.ValueInfo
		for _, o := range g.Outputs {
			if o.Name != embedding || embedding == "" {
				scored = append(scored, o)
				continue
			}
			dt, err := v2Datatype(o.ElemType)
			if err != nil {
				return fmt.Errorf("embedding output %s: %w", o.Name, err)
			}
			m.EmbeddingOutput = &Tensor{Name: o.Name, Datatype: dt, Shape: dims(o.Shape)}
		}
		if embedding != "" && m.EmbeddingOutput == nil {
			return fmt.Errorf("metadata %s names %q, which is not an output of the graph", MetadataEmbeddingOutput, embedding)
		}
		if len(scored) == 0 || len(scored) > 2 {
			return fmt.Errorf("has %d class-score outputs; expected one or two (describe them in edgeloop.json)", len(scored))
		}
		outs := make([]Output, len(scored))
		for i, o := range scored {
			dt, err := v2Datatype(o.ElemType)
			if err != nil {
				return fmt.Errorf("output %s: %w", o.Name, err)
			}
			kind := OutputLogits
			for _, n := range g.Nodes {
				if n.OpType == "Softmax" && len(n.Outputs) > 0 && n.Outputs[0] == o.Name {
					kind = OutputProbabilities
				}
			}
			outs[i] = Output{Name: o.Name, Kind: kind, Datatype: dt, Shape: dims(o.Shape)}
		}
		m.Output = outs[0]
		if len(outs) == 2 {
			m.SecondOutput = &outs[1]
		}
	}
	if len(m.Classes) == 0 {
		if s := strings.TrimSpace(model.Metadata["classes"]); s != "" {
			var classes []string
			if strings.HasPrefix(s, "[") {
				if err := json.Unmarshal([]byte(s), &classes); err != nil {
					return fmt.Errorf("metadata classes: %w", err)
				}
			} else {
				for c := range strings.SplitSeq(s, ",") {
					classes = append(classes, strings.TrimSpace(c))
				}
			}
			m.Classes = classes
		}
	}
	return nil
}

func dims(shape []onnx.Dim) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = -1
		if d.Param == "" && d.Value > 0 {
			out[i] = d.Value
		}
	}
	return out
}

func v2Datatype(t onnx.DataType) (string, error) {
	switch t {
	case onnx.Float:
		return datatype.FP32, nil
	case onnx.Double:
		return datatype.FP64, nil
	case onnx.Float16:
		return datatype.FP16, nil
	case onnx.BFloat16:
		return datatype.BF16, nil
	case onnx.Int8:
		return datatype.Int8, nil
	case onnx.Int16:
		return datatype.Int16, nil
	case onnx.Int32:
		return datatype.Int32, nil
	case onnx.Int64:
		return datatype.Int64, nil
	case onnx.Uint8:
		return datatype.Uint8, nil
	case onnx.Uint16:
		return datatype.Uint16, nil
	case onnx.Uint32:
		return datatype.Uint32, nil
	case onnx.Uint64:
		return datatype.Uint64, nil
	case onnx.Bool:
		return datatype.Bool, nil
	case onnx.String:
		return datatype.Bytes, nil
	}
	return "", fmt.Errorf("element type %v has no Open Inference Protocol datatype", t)
}

// SignDir signs the local version directory dir: it sets m.Files to the size and SHA-256 of
// every file DirFiles finds, m.Created to now when zero, signs m and writes it to
// dir/edgeloop.json (atomically, replacing any). It returns the signed manifest.
func SignDir(dir string, m Manifest, s *Signer) (*Manifest, error) {
	files, err := DirFiles(dir)
	if err != nil {
		return nil, err
	}
	m.SchemaVersion = SchemaVersion
	m.Files = map[string]FileDigest{}
	for _, f := range files {
		d, err := DigestFile(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, err
		}
		m.Files[f.Name] = d
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	if err := s.Sign(&m); err != nil {
		return nil, err
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "."+ManifestFile+".tmp-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := fsutil.WriteNew(tmp, data, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return &m, fsutil.SyncDir(dir)
}
