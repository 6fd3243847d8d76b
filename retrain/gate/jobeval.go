package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// The evaluation job contract (docs/gate.md, "The evaluation job"): the job gets the request
// (EvalRequest, the file EDGELOOP_DATASET_MANIFEST names) and an output directory
// (EDGELOOP_OUTPUT), runs every model the request lists on every sample of the set, and writes
// EvalReportFile there.
const (
	// EvalRequestFile is the request's file name in the evaluation directory.
	EvalRequestFile = "request.json"
	// EvalInputsFile holds the set's inputs: a float32 .npy array of shape [N, shape...].
	EvalInputsFile = "inputs.npy"
	// EvalReportFile is what the job writes under its output directory.
	EvalReportFile = "report.json"
	// EvalSchemaVersion is the version of EvalRequest and EvalReport.
	EvalSchemaVersion = 1
)

// EvalRequest is what an evaluation job is asked to score.
type EvalRequest struct {
	// SchemaVersion is EvalSchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// EvalDigest names the set; the report must carry it back.
	EvalDigest string `json:"eval_digest"`
	// Samples is the number of samples; Shape, Datatype and Classes the spec they fit.
	Samples  int      `json:"samples"`
	Shape    []int64  `json:"shape"`
	Datatype string   `json:"datatype"`
	Classes  []string `json:"classes"`
	// Inputs is the .npy file of the inputs, relative to the request's directory.
	Inputs string `json:"inputs"`
	// Models are the versions to score: role, directory (holding model.onnx), model_sha256,
	// the output to return and its kind.
	Models []Model `json:"models"`
}

// EvalReport is what an evaluation job writes: the scores of every requested model.
type EvalReport struct {
	// SchemaVersion is EvalSchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// EvalDigest is the request's: the gate refuses a report made on another set.
	EvalDigest string `json:"eval_digest"`
	// Evaluator names what ran the models in the job ("builtin" for edgeloop evaluate).
	Evaluator string `json:"evaluator"`
	// Scores has one entry per requested model, in the request's order.
	Scores []*Scores `json:"scores"`
}

// DefaultJobConfig is the job evaluator's default: `edgeloop evaluate` as a local job.
func DefaultJobConfig() JobConfig {
	local := jobs.DefaultLocalConfig()
	local.Command = []string{"{{.Edgeloop}}", "evaluate", "--request", "{{.DatasetManifest}}", "--out", "{{.Output}}"}
	return JobConfig{Timeout: 30 * time.Minute, Local: local}
}

// JobEvaluator runs an evaluation job on a job backend and reads back its report.
type JobEvaluator struct {
	cfg     JobConfig
	backend jobs.Backend
	id      string
	model   string
	dir     string
	logger  *slog.Logger
}

// NewJobEvaluator returns the job evaluator for the training job jobID of model. dir is a
// local directory it owns (emptied on each Score) for the request, the set and the report;
// backend runs the job, nil meaning the local backend with cfg.Local.
func NewJobEvaluator(cfg JobConfig, backend jobs.Backend, jobID, model, dir string, logger *slog.Logger) (*JobEvaluator, error) {
	if backend == nil {
		b, err := jobs.NewLocal(cfg.Local, filepath.Join(dir, "jobs"), logger)
		if err != nil {
			return nil, fmt.Errorf("job evaluator: %w", err)
		}
		backend = b
	}
	id := jobID
	if len(id) > 58 {
		id = id[:58]
	}
	return &JobEvaluator{cfg: cfg, backend: backend, id: id + "-eval", model: model, dir: dir, logger: logger.With("evaluator", EvaluatorJob)}, nil
}

// Name returns "job".
func (e *JobEvaluator) Name() string { return EvaluatorJob }

// Score writes the request and the set, runs the job and checks its report: made on this set
// (its digest), for these models (role and SHA-256), with one row of scores per sample.
func (e *JobEvaluator) Score(ctx context.Context, set *Set, models []Model) ([]*Scores, error) {
	if err := checkSet(set); err != nil {
		return nil, fmt.Errorf("job evaluator: %w", err)
	}
	for _, m := range models {
		if err := checkModel(m, set); err != nil {
			return nil, fmt.Errorf("job evaluator: %s: %w", m.Role, err)
		}
	}
	reqDir, outDir := filepath.Join(e.dir, "request"), filepath.Join(e.dir, "output")
	for _, d := range []string{reqDir, outDir} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := WriteEvalRequest(reqDir, set, models); err != nil {
		return nil, fmt.Errorf("job evaluator: %w", err)
	}
	spec := jobs.Spec{ID: e.id, Model: e.model, DatasetManifest: filepath.Join(reqDir, EvalRequestFile), Output: outDir, Timeout: e.cfg.Timeout}
	ref, err := e.backend.Start(ctx, spec)
	if err != nil {
		return nil, unavailable("job evaluator: start: %v", err)
	}
	e.logger.Info("evaluation job started", "backend", ref.Backend, "ref", ref.ID, "samples", set.Len(), "models", len(models))
	wctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	st, err := e.backend.Wait(wctx, ref)
	cancel()
	if err != nil {
		if cerr := e.backend.Cancel(context.WithoutCancel(ctx), ref); cerr != nil {
			e.logger.Warn("cannot cancel the evaluation job", "err", cerr)
		}
		return nil, unavailable("job evaluator: wait: %v", err)
	}
	if st.State != jobs.Succeeded {
		return nil, fmt.Errorf("job evaluator: the evaluation job failed: %s\n%s", st.Message, st.LogTail)
	}
	rep, err := ReadEvalReport(filepath.Join(outDir, EvalReportFile))
	if err != nil {
		return nil, fmt.Errorf("job evaluator: %w", err)
	}
	if err := rep.Check(set, models); err != nil {
		return nil, fmt.Errorf("job evaluator: %w", err)
	}
	return rep.Scores, nil
}

// Check refuses a report that is not the answer to a request for set and models.
func (r *EvalReport) Check(set *Set, models []Model) error {
	switch {
	case r.SchemaVersion != EvalSchemaVersion:
		return fmt.Errorf("report: schema_version %d, want %d", r.SchemaVersion, EvalSchemaVersion)
	case r.EvalDigest != set.Digest:
		return fmt.Errorf("report: made on the set with digest %q, not this one (%s)", r.EvalDigest, set.Digest)
	case len(r.Scores) != len(models):
		return fmt.Errorf("report: %d scores for %d models", len(r.Scores), len(models))
	}
	for i, m := range models {
		s := r.Scores[i]
		if s == nil || s.Role != m.Role || s.ModelSHA256 != m.SHA256 {
			return fmt.Errorf("report: scores %d are not those of the %s (sha256 %s)", i, m.Role, m.SHA256)
		}
		if len(s.Values) != set.Len()*len(set.Spec.Classes) {
			return fmt.Errorf("report: %s: %d values for %d samples of %d classes", m.Role, len(s.Values), set.Len(), len(set.Spec.Classes))
		}
	}
	return nil
}

// WriteEvalRequest writes EvalRequestFile and EvalInputsFile into dir.
func WriteEvalRequest(dir string, set *Set, models []Model) error {
	var buf bytes.Buffer
	shape := []int{set.Len()}
	for _, d := range set.Spec.Shape {
		shape = append(shape, int(d))
	}
	if err := npy.WriteFloat32(&buf, shape, set.Inputs); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, EvalInputsFile), buf.Bytes(), 0o644); err != nil {
		return err
	}
	req := EvalRequest{SchemaVersion: EvalSchemaVersion, EvalDigest: set.Digest, Samples: set.Len(),
		Shape: set.Spec.Shape, Datatype: set.Spec.Datatype, Classes: set.Spec.Classes, Inputs: EvalInputsFile, Models: models}
	data, err := json.MarshalIndent(req, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, EvalRequestFile), append(data, '\n'), 0o644)
}

// ReadEvalReport reads an evaluation job's report.
func ReadEvalReport(path string) (*EvalReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r EvalReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// RunEvalJob is the reference evaluation job (`edgeloop evaluate`): it reads the request at
// requestPath, scores every model with the builtin evaluator and writes EvalReportFile into
// outDir. Model directories in the request are local paths.
func RunEvalJob(ctx context.Context, requestPath, outDir string, logger *slog.Logger) error {
	data, err := os.ReadFile(requestPath)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	var req EvalRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return fmt.Errorf("evaluate: request %s: %w", requestPath, err)
	}
	if req.SchemaVersion != EvalSchemaVersion {
		return fmt.Errorf("evaluate: request schema_version %d, this edgeloop reads %d", req.SchemaVersion, EvalSchemaVersion)
	}
	spec := dataset.Spec{Shape: req.Shape, Datatype: req.Datatype, Classes: req.Classes}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("evaluate: request: %w", err)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(requestPath), filepath.Base(req.Inputs)))
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	arr, err := npy.Read(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("evaluate: inputs: %w", err)
	}
	want := append([]int{req.Samples}, make([]int, len(req.Shape))...)
	for i, d := range req.Shape {
		want[i+1] = int(d)
	}
	if !slices.Equal(arr.Shape, want) {
		return fmt.Errorf("evaluate: inputs have shape %v, the request says %v", arr.Shape, want)
	}
	// Labels stay with the controller: the job only scores. The set carries the request's
	// digest, which the report carries back.
	set := &Set{Spec: spec, Inputs: arr.Data, Labels: make([]int, req.Samples), Digest: req.EvalDigest}
	models := slices.Clone(req.Models)
	for i := range models {
		if models[i].Dir == "" {
			return errors.New("evaluate: a model of the request has no directory")
		}
	}
	logger.Info("evaluating", "samples", req.Samples, "models", len(models), "digest", req.EvalDigest)
	scores, err := Builtin{}.Score(ctx, set, models)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	out, err := json.Marshal(EvalReport{SchemaVersion: EvalSchemaVersion, EvalDigest: req.EvalDigest, Evaluator: EvaluatorBuiltin, Scores: scores})
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(outDir, EvalReportFile), out, 0o644); err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	logger.Info("report written", "path", filepath.Join(outDir, EvalReportFile))
	return nil
}
