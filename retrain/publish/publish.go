// Package publish is the last step of a retrain: it signs a candidate the gate accepted and
// publishes it as the next version of the model in the model repository, with the gate's
// evaluation as its metrics and reference histogram, and moves the rollout aliases.
// docs/gate.md describes what it writes.
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// The aliases a retrain moves. Exporters follow one of them (models[].version in their
// config): a few follow canary, the rest stable.
const (
	AliasCanary = "canary"
	AliasStable = "stable"
)

// GateFile is the file of a published version that holds the gate's report (and decision),
// so that the numbers in the manifest can be traced to the evaluation that produced them.
const GateFile = "gate.json"

// Input is what Publish publishes.
type Input struct {
	// Model is the model's name in the repository.
	Model string
	// CandidateDir is the training job's output directory: model.onnx, optionally
	// metrics.json, and extra files (such as checkpoint.pt) that are published with the
	// version, listed and signed in its manifest. A config.pbtxt or edgeloop.json there is
	// not copied: both are generated.
	CandidateDir string
	// ParentVersion is the version the candidate was retrained from; 0 for a first model.
	// It replaces the base_version of metrics.json.
	ParentVersion int64
	// Datasets are URIs of the data the candidate was trained on (shards, label files,
	// dataset manifests). When empty, those metrics.json lists are kept.
	Datasets []string
	// Report is the gate's evaluation of CandidateDir's model.onnx, made by gate.EvaluateFile
	// (its ModelSHA256 must match the file). It is required: nothing unevaluated is published.
	Report *gate.Report
	// Decision is the gate's verdict, recorded in GateFile when given.
	Decision *gate.Decision
	// Set describes the evaluation set, recorded in GateFile when given.
	Set *gate.SetSummary
	// Canary points AliasCanary at the new version; Stable points AliasStable at it.
	Canary, Stable bool
}

// gateRecord is the content of GateFile.
type gateRecord struct {
	Report   *gate.Report     `json:"report"`
	Decision *gate.Decision   `json:"decision,omitempty"`
	Set      *gate.SetSummary `json:"set,omitempty"`
}

// maxExtraFiles bounds the extra files of a version (the manifest allows 64 files in all).
const maxExtraFiles = 32

// Publish publishes in.CandidateDir as the next version of in.Model (one above the highest),
// signed by signer, and then points the aliases in asks for at it. The version's files are
// model.onnx, metrics.json when the job wrote one, the job's extra files, GateFile and a
// generated config.pbtxt.
//
// The manifest's metrics are the gate's, not the job's: "accuracy", "loss" and the per-class
// "accuracy" are measured on the held-out set, the same way for every version, so versions
// compare; the job's own accuracy and loss stay in metrics.json and are copied as
// "trainer_accuracy" and "trainer_loss". The reference histogram is the gate's max_softmax
// histogram on the evaluation set, and the fitted temperature is the manifest's calibration.
//
// The manifest is written last (modelrepo.Repository.Publish), so a publish that fails leaves
// no visible version. An alias that cannot be set after a successful publish returns the
// manifest together with the error: the version exists, only the alias needs retrying.
func Publish(ctx context.Context, repo *modelrepo.Repository, signer *modelrepo.Signer, in Input) (*modelrepo.Manifest, error) {
	draft, files, err := prepare(ctx, repo, in)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", in.Model, err)
	}
	m, err := repo.Publish(ctx, in.Model, *draft, files, signer, modelrepo.PublishOptions{})
	if err != nil {
		return nil, err // already "publish <model>: ..."
	}
	for _, a := range []struct {
		name string
		set  bool
	}{{AliasCanary, in.Canary}, {AliasStable, in.Stable}} {
		if !a.set {
			continue
		}
		// Signed, with a growing sequence: exporters refuse an older alias written back.
		if err := repo.SetSignedAlias(ctx, in.Model, a.name, m.Version, signer); err != nil {
			return m, fmt.Errorf("publish %s: version %d is published, but alias %s was not set: %w", in.Model, m.Version, a.name, err)
		}
	}
	return m, nil
}

// prepare builds the draft manifest and the files of the version.
func prepare(ctx context.Context, repo *modelrepo.Repository, in Input) (*modelrepo.Manifest, []modelrepo.File, error) {
	if err := modelrepo.ValidateModelName(in.Model); err != nil {
		return nil, nil, err
	}
	r := in.Report
	if r == nil {
		return nil, nil, errors.New("no gate report: a candidate is published only after the gate evaluated it")
	}
	if in.ParentVersion < 0 {
		return nil, nil, fmt.Errorf("parent version must be 0 (none) or positive, got %d", in.ParentVersion)
	}
	modelPath := filepath.Join(in.CandidateDir, modelrepo.ModelFile)
	d, err := modelrepo.DigestFile(modelPath)
	if err != nil {
		return nil, nil, err
	}
	if r.ModelSHA256 != d.SHA256 {
		return nil, nil, fmt.Errorf("the gate evaluated a model with sha256 %q, %s has %s", r.ModelSHA256, modelPath, d.SHA256)
	}
	m, err := modelrepo.DraftManifest(in.CandidateDir)
	if err != nil {
		return nil, nil, err
	}
	if len(m.Classes) == 0 {
		m.Classes = slices.Clone(r.Classes)
	}
	if !slices.Equal(m.Classes, r.Classes) || len(r.PerClass) != len(r.Classes) {
		return nil, nil, fmt.Errorf("the model's classes %q differ from those of the gate report %q", m.Classes, r.Classes)
	}
	if in.ParentVersion != 0 {
		versions, err := repo.Versions(ctx, in.Model)
		if err != nil {
			return nil, nil, err
		}
		if !slices.Contains(versions, in.ParentVersion) {
			return nil, nil, fmt.Errorf("%w: parent version %d of %s", modelrepo.ErrVersionNotFound, in.ParentVersion, in.Model)
		}
	}
	m.Model, m.Version, m.ParentVersion = in.Model, 0, in.ParentVersion
	if len(in.Datasets) > 0 {
		m.Datasets = slices.Clone(in.Datasets)
	}

	ApplyReport(m, r)

	record, err := GateRecordFile(r, in.Decision, in.Set)
	if err != nil {
		return nil, nil, err
	}
	files := []modelrepo.File{checkedFile(modelPath, modelrepo.ModelFile, d), record}
	extra, err := extraFiles(in.CandidateDir)
	if err != nil {
		return nil, nil, err
	}
	return m, append(files, extra...), nil
}

// GateRecordFile is the version's GateFile: the gate's report, with its decision and the
// summary of the evaluation set when there was one.
func GateRecordFile(r *gate.Report, d *gate.Decision, set *gate.SetSummary) (modelrepo.File, error) {
	record, err := json.MarshalIndent(gateRecord{Report: r, Decision: d, Set: set}, "", "  ")
	if err != nil {
		return modelrepo.File{}, err
	}
	return modelrepo.BytesFile(GateFile, append(record, '\n')), nil
}

// ApplyReport writes what a gate report measured into a version's manifest: the metrics
// ("accuracy", "loss" and the rest, measured on the evaluation set the same way for every
// version, so versions compare; the job's own accuracy and loss, when the draft had them, move
// to "trainer_accuracy" and "trainer_loss"), the per-class metrics, the task, the fitted
// temperature, the max_softmax reference histogram and the drift reference the exporter's
// drift signals compare against. The controller's publish and `edgeloop model publish
// --eval-set` both use it, so a first version published by hand carries what a retrained one
// does.
func ApplyReport(m *modelrepo.Manifest, r *gate.Report) {
	metrics := map[string]float64{
		"accuracy":        r.Accuracy,
		"macro_f1":        r.MacroF1,
		"top_k_accuracy":  r.TopKAccuracy,
		"top_k":           float64(r.TopK),
		"loss":            r.Loss,
		"mean_confidence": r.MeanConfidence,
		"ece":             r.ECE,
		"eval_samples":    float64(r.Samples),
	}
	for _, p := range r.Parts {
		if p.Name == gate.PartHeldOut {
			metrics["eval_captured_samples"] = float64(p.Samples)
		}
	}
	m.Task = modelrepo.TaskClassification
	m.Calibration = nil
	if c := r.Calibration; c != nil {
		m.Calibration = &modelrepo.Calibration{Temperature: c.Temperature, ECE: c.ECEAfter, ECEBefore: r.ECE,
			EvalDigest: r.EvalDigest, Samples: r.Samples}
		metrics["ece_calibrated"] = c.ECEAfter
	}
	// DraftManifest put the job's numbers under the plain names; they move aside.
	for _, name := range []string{"accuracy", "loss"} {
		if v, ok := m.Metrics[name]; ok {
			metrics["trainer_"+name] = v
		}
	}
	m.Metrics = metrics
	k := len(r.PerClass)
	acc, prec, f1, counts := make([]float64, k), make([]float64, k), make([]float64, k), make([]float64, k)
	complete, predicted := true, true
	for i, c := range r.PerClass {
		acc[i], prec[i], f1[i], counts[i] = c.Recall, c.Precision, c.F1, float64(c.Samples)
		complete = complete && c.Samples > 0
		predicted = predicted && c.Predicted > 0
	}
	m.PerClassMetrics = map[string][]float64{"eval_samples": counts}
	if complete { // a class without evaluation samples has no recall, and 0 would read as one
		m.PerClassMetrics["accuracy"] = acc // the class's recall, under the name exporters read
		m.PerClassMetrics["f1"] = f1
	}
	if predicted { // likewise precision of a class never predicted
		m.PerClassMetrics["precision"] = prec
	}
	m.ReferenceHistogram, m.ReferenceScorer = slices.Clone(r.ConfidenceHistogram), r.ConfidenceScorer
	m.DriftReference = r.DriftReference
}

// extraFiles are the files of dir published besides model.onnx and GateFile: metrics.json and
// whatever else the job wrote (checkpoint.pt, a label map), as the model repository's layout
// promises. Generated files (config.pbtxt, edgeloop.json) are left out, as are
// subdirectories; a name the repository cannot hold or too many files is an error, so a
// version never silently lacks a file its job wrote.
func extraFiles(dir string) ([]modelrepo.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []modelrepo.File
	for _, e := range entries {
		name := e.Name()
		switch name {
		case modelrepo.ModelFile, GateFile, modelrepo.ConfigFile, modelrepo.ManifestFile:
			continue
		}
		if !e.Type().IsRegular() {
			continue // subdirectories and links: versions are flat files
		}
		if err := modelrepo.ValidateFileName(name); err != nil {
			return nil, fmt.Errorf("the job's output %s: %w", name, err)
		}
		if len(files) == maxExtraFiles {
			return nil, fmt.Errorf("the job's output has more than %d extra files", maxExtraFiles)
		}
		path := filepath.Join(dir, name)
		d, err := modelrepo.DigestFile(path)
		if err != nil {
			return nil, err
		}
		// Checked as uploaded, like model.onnx: the bytes signed are the bytes read now.
		files = append(files, checkedFile(path, name, d))
	}
	return files, nil
}

// checkedFile is the file at path, which must still have digest d as it is uploaded: the
// model published is the model the gate evaluated, even if the file changes meanwhile.
func checkedFile(path, name string, d modelrepo.FileDigest) modelrepo.File {
	return modelrepo.File{Name: name, Size: d.Size, Open: func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return &digestReader{f: f, h: sha256.New(), want: d}, nil
	}}
}

// digestReader fails the read that completes the expected size when the content's SHA-256
// differs, so the upload, and with it the publish, fails before the manifest is written.
type digestReader struct {
	f    *os.File
	h    hash.Hash
	n    int64
	want modelrepo.FileDigest
}

func (r *digestReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	before := r.n
	r.n += int64(n)
	if before < r.want.Size && r.n >= r.want.Size {
		if got := hex.EncodeToString(r.h.Sum(nil)); r.n != r.want.Size || got != r.want.SHA256 {
			return n, fmt.Errorf("%s changed after the gate evaluated it", r.f.Name())
		}
	}
	return n, err
}

func (r *digestReader) Close() error { return r.f.Close() }

// ErrCanaryMoved is returned by PromoteAfterSoak when the canary alias no longer points at
// the version being promoted: a newer candidate or a rollback replaced it during the soak.
var ErrCanaryMoved = errors.New("canary alias moved")

// PromoteAfterSoak points AliasStable at version once it has soaked on AliasCanary: the
// retrain controller calls it when the configured soak time has passed without a rollback
// (timing the soak is the controller's job). It refuses when canary no longer points at
// version (ErrCanaryMoved) or when the version's manifest does not verify against v; canary
// is left where it is, so canary exporters keep serving the same version.
func PromoteAfterSoak(ctx context.Context, repo *modelrepo.Repository, v *modelrepo.Verifier, signer *modelrepo.Signer, model string, version int64) error {
	a, err := repo.Alias(ctx, model, AliasCanary)
	if err != nil {
		return fmt.Errorf("promote %s version %d: %w", model, version, err)
	}
	if a.Version != version {
		return fmt.Errorf("promote %s version %d: %w: it points at version %d", model, version, ErrCanaryMoved, a.Version)
	}
	if _, err := repo.Manifest(ctx, model, version, v); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if err := repo.SetSignedAlias(ctx, model, AliasStable, version, signer); err != nil {
		return fmt.Errorf("promote %s version %d: %w", model, version, err)
	}
	return nil
}
