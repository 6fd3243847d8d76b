package gate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
	"github.com/edgeloop/edgeloop/retrain/jobs/localjob"
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

// DefaultJobConfig is the job evaluator's default: `edgeloop evaluate` as a local job; on
// Kubernetes, the same command in the configured image.
func DefaultJobConfig() JobConfig {
	local := localjob.DefaultConfig()
	local.Command = []string{"{{.Edgeloop}}", "evaluate", "--request", "{{.DatasetManifest}}", "--out", "{{.Output}}"}
	kube := kubejob.DefaultConfig()
	kube.Command = []string{"edgeloop", "evaluate"}
	return JobConfig{Timeout: 30 * time.Minute, Backend: JobBackendLocal, Local: local, Kubernetes: kube, HTTP: httpjob.DefaultConfig()}
}

// JobEvaluator runs an evaluation job on a job backend and reads back its report.
type JobEvaluator struct {
	cfg     JobConfig
	backend jobs.Backend
	stage   *Stage
	id      string
	model   string
	dir     string
	logger  *slog.Logger
}

// Stage is where an evaluation job on a remote backend (kubernetes, http) finds its request,
// the set's inputs and the models, and writes its report: a bucket both the controller and the
// job reach. The local backend needs none: the job reads the controller's files.
type Stage struct {
	// Bucket is the bucket, open; URL is its URL as the job opens it (objstore.Open).
	Bucket objstore.Bucket
	URL    string
	// Prefix is the key prefix of this training job's evaluations, ending in '/'.
	Prefix string
}

// Keys under a stage's prefix, per evaluation (a directory named after the request).
const (
	stageRequestDir = "request/"
	stageOutputDir  = "output/"
	stageModelsDir  = "models/"
)

// maxReportBytes bounds a report read from a bucket: one float32 per sample and class, as JSON.
const maxReportBytes = 1 << 30

// NewJobEvaluator returns the job evaluator for the training job jobID of model. dir is a
// local directory it owns (emptied on each Score) for the request, the set and the report;
// backend runs the job, nil meaning the local backend with cfg.Local. stage, when not nil, is
// where a remote job's files go; it is required when backend runs jobs elsewhere.
func NewJobEvaluator(cfg JobConfig, backend jobs.Backend, stage *Stage, jobID, model, dir string, logger *slog.Logger) (*JobEvaluator, error) {
	if backend == nil {
		b, err := localjob.New(cfg.Local, filepath.Join(dir, "jobs"), logger)
		if err != nil {
			return nil, fmt.Errorf("job evaluator: %w", err)
		}
		backend = b
	}
	if stage != nil && !strings.HasSuffix(stage.Prefix, "/") {
		return nil, fmt.Errorf("job evaluator: stage prefix %q must end in '/'", stage.Prefix)
	}
	return &JobEvaluator{cfg: cfg, backend: backend, stage: stage, id: jobID, model: model, dir: dir, logger: logger.With("evaluator", EvaluatorJob)}, nil
}

// Name returns "job".
func (e *JobEvaluator) Name() string { return EvaluatorJob }

// evalID names one evaluation: the training job's ID and a digest of what is evaluated (the
// set and the models' bytes). A retried Score of the same request re-attaches to the job a
// backend already has by that name (Kubernetes adopts it); a different request never does.
func (e *JobEvaluator) evalID(set *Set, models []Model) string {
	h := sha256.New()
	h.Write([]byte(set.Digest))
	for _, m := range models {
		h.Write([]byte{0})
		h.Write([]byte(m.Role + "/" + m.SHA256))
	}
	suffix := "-eval-" + hex.EncodeToString(h.Sum(nil))[:8]
	id := e.id
	if len(id) > 63-len(suffix) {
		id = strings.TrimRight(id[:63-len(suffix)], "-")
	}
	return id + suffix
}

// Score writes the request and the set (staged in the bucket for a remote backend), runs the
// job and checks its report: made on this set (its digest), for these models (role and
// SHA-256), with one row of scores per sample.
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
	id := e.evalID(set, models)
	spec := jobs.Spec{ID: id, Model: e.model, DatasetManifest: filepath.Join(reqDir, EvalRequestFile), Output: outDir, Timeout: e.cfg.Timeout}
	if e.stage == nil {
		if err := WriteEvalRequest(reqDir, set, models); err != nil {
			return nil, fmt.Errorf("job evaluator: %w", err)
		}
	} else {
		var err error
		if spec.DatasetManifest, spec.Output, err = e.stageRequest(ctx, id, reqDir, set, models); err != nil {
			return nil, err
		}
	}
	ref, err := e.backend.Start(ctx, spec)
	if err != nil {
		return nil, unavailable("job evaluator: start: %v", err)
	}
	e.logger.Info("evaluation job started", "backend", ref.Backend, "ref", ref.ID, "samples", set.Len(), "models", len(models), "request", spec.DatasetManifest)
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
	if e.stage != nil {
		key := e.stage.Prefix + id + "/" + stageOutputDir + EvalReportFile
		if err := e.fetch(ctx, key, filepath.Join(outDir, EvalReportFile)); err != nil {
			return nil, err
		}
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

// stageRequest puts what a remote evaluation job reads under the stage's prefix, <id>/:
// models/<role>/model.onnx, then request/inputs.npy, and request/request.json last (naming
// the models by paths relative to it), and returns the URLs of the request and the output
// prefix. The models are the controller's verified copies, so the bytes the job scores are
// those the SHA-256 in the request names.
func (e *JobEvaluator) stageRequest(ctx context.Context, id, reqDir string, set *Set, models []Model) (requestURL, outputURL string, err error) {
	base := e.stage.Prefix + id + "/"
	staged := slices.Clone(models)
	for i, m := range staged {
		key := base + stageModelsDir + m.Role + "/" + modelrepo.ModelFile
		if err := e.put(ctx, filepath.Join(m.Dir, modelrepo.ModelFile), key); err != nil {
			return "", "", err
		}
		staged[i].Dir = "../" + stageModelsDir + m.Role
	}
	// The output prefix may hold the report of an earlier try of this request; the job
	// writes it anew, and a stale one must not pass for it.
	if err := e.stage.Bucket.Delete(ctx, base+stageOutputDir+EvalReportFile); err != nil && !objstore.IsNotFound(err) {
		return "", "", unavailable("job evaluator: stage: %v", err)
	}
	if err := WriteEvalRequest(reqDir, set, staged); err != nil {
		return "", "", fmt.Errorf("job evaluator: %w", err)
	}
	for _, name := range []string{EvalInputsFile, EvalRequestFile} {
		if err := e.put(ctx, filepath.Join(reqDir, name), base+stageRequestDir+name); err != nil {
			return "", "", err
		}
	}
	if requestURL, err = objstore.ObjectURL(e.stage.URL, base+stageRequestDir+EvalRequestFile); err != nil {
		return "", "", fmt.Errorf("job evaluator: %w", err)
	}
	if outputURL, err = objstore.ObjectURL(e.stage.URL, base+stageOutputDir); err != nil {
		return "", "", fmt.Errorf("job evaluator: %w", err)
	}
	return requestURL, outputURL, nil
}

// put uploads the file at path to key; a failure is the bucket's, retried.
func (e *JobEvaluator) put(ctx context.Context, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("job evaluator: stage: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("job evaluator: stage: %w", err)
	}
	if err := e.stage.Bucket.Put(ctx, key, f, fi.Size()); err != nil {
		return unavailable("job evaluator: stage %s: %v", key, err)
	}
	return nil
}

// fetch downloads the report at key to path. A job that succeeded without writing one broke
// the contract: that is final, not retried.
func (e *JobEvaluator) fetch(ctx context.Context, key, path string) error {
	data, _, err := objstore.ReadAll(ctx, e.stage.Bucket, key, maxReportBytes)
	switch {
	case objstore.IsNotFound(err):
		return fmt.Errorf("job evaluator: the evaluation job succeeded but wrote no %s under its output prefix", EvalReportFile)
	case err != nil:
		return unavailable("job evaluator: read the report: %v", err)
	}
	return fsutil.WriteFileAtomic(path, data, 0o644)
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

// maxRequestBytes bounds an evaluation request read from a bucket.
const maxRequestBytes = 16 << 20

// RunEvalJob is the reference evaluation job (`edgeloop evaluate`): it reads the request at
// requestPath, scores every model with the builtin evaluator and writes EvalReportFile into
// outDir. requestPath and outDir are local paths, or object URLs (s3://...) for a job on a
// remote backend: the request, its inputs and its models are then downloaded first (the
// models' directories are relative to the request's), and the report uploaded under outDir.
// Each model's model.onnx must have the SHA-256 the request names.
func RunEvalJob(ctx context.Context, requestPath, outDir string, logger *slog.Logger) error {
	if objstore.IsObjectURL(requestPath) || objstore.IsObjectURL(outDir) {
		tmp, err := os.MkdirTemp("", "edgeloop-evaluate-")
		if err != nil {
			return fmt.Errorf("evaluate: %w", err)
		}
		defer os.RemoveAll(tmp)
		if objstore.IsObjectURL(requestPath) {
			if requestPath, err = fetchEvalRequest(ctx, requestPath, tmp, logger); err != nil {
				return fmt.Errorf("evaluate: %w", err)
			}
		}
		if objstore.IsObjectURL(outDir) {
			local := filepath.Join(tmp, "output")
			if err := evaluate(ctx, requestPath, local, logger); err != nil {
				return err
			}
			if err := uploadEvalReport(ctx, filepath.Join(local, EvalReportFile), outDir); err != nil {
				return fmt.Errorf("evaluate: %w", err)
			}
			logger.Info("report uploaded", "output", outDir)
			return nil
		}
	}
	return evaluate(ctx, requestPath, outDir, logger)
}

// readEvalRequest reads and checks a request.
func readEvalRequest(data []byte, name string) (*EvalRequest, error) {
	var req EvalRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("request %s: %w", name, err)
	}
	if req.SchemaVersion != EvalSchemaVersion {
		return nil, fmt.Errorf("request schema_version %d, this edgeloop reads %d", req.SchemaVersion, EvalSchemaVersion)
	}
	for _, m := range req.Models {
		if m.Dir == "" {
			return nil, errors.New("a model of the request has no directory")
		}
	}
	return &req, nil
}

// fetchEvalRequest downloads the request at requestURL, its inputs and every model it names
// (directories relative to the request's) below dir, keeping their relative layout, and
// returns the local request's path.
func fetchEvalRequest(ctx context.Context, requestURL, dir string, logger *slog.Logger) (string, error) {
	bucketURL, key, err := objstore.SplitObjectURL(requestURL)
	if err != nil {
		return "", err
	}
	b, err := objstore.Open(ctx, bucketURL)
	if err != nil {
		return "", err
	}
	defer b.Close()
	data, _, err := objstore.ReadAll(ctx, b, key, maxRequestBytes)
	if err != nil {
		return "", fmt.Errorf("request: %w", err)
	}
	req, err := readEvalRequest(data, requestURL)
	if err != nil {
		return "", err
	}
	localReq := filepath.Join(dir, "request", EvalRequestFile)
	if err := os.MkdirAll(filepath.Dir(localReq), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(localReq, data, 0o644); err != nil {
		return "", err
	}
	// Each file the request names, as a path relative to the request's directory: the same
	// relative path below dir locally and below the request's key prefix in the bucket.
	rels := []string{path.Base(req.Inputs)}
	for _, m := range req.Models {
		if path.IsAbs(m.Dir) {
			return "", fmt.Errorf("request: the %s's directory %q must be relative to the request in a bucket", m.Role, m.Dir)
		}
		rels = append(rels, path.Join(m.Dir, modelrepo.ModelFile))
	}
	for _, rel := range rels {
		k := path.Join(path.Dir(key), rel)
		local := filepath.Join(filepath.Dir(localReq), filepath.FromSlash(rel))
		if !strings.HasPrefix(local, dir+string(filepath.Separator)) || objstore.ValidateKey(k) != nil {
			return "", fmt.Errorf("request: %q leaves the request's prefix", rel)
		}
		if err := objstore.Download(ctx, b, k, local); err != nil {
			return "", err
		}
	}
	logger.Info("request fetched", "request", requestURL, "files", len(rels))
	return localReq, nil
}

// uploadEvalReport puts the report file under the output prefix outputURL.
func uploadEvalReport(ctx context.Context, file, outputURL string) error {
	bucketURL, prefix, err := objstore.SplitObjectURL(outputURL)
	if err != nil {
		return err
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	b, err := objstore.Open(ctx, bucketURL)
	if err != nil {
		return err
	}
	defer b.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return b.Put(ctx, prefix+EvalReportFile, bytes.NewReader(data), int64(len(data)))
}

// evaluate runs a local request: relative model directories are relative to the request's.
func evaluate(ctx context.Context, requestPath, outDir string, logger *slog.Logger) error {
	data, err := os.ReadFile(requestPath)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	req, err := readEvalRequest(data, requestPath)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
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
	for i, m := range models {
		if !filepath.IsAbs(m.Dir) {
			models[i].Dir = filepath.Join(filepath.Dir(requestPath), filepath.FromSlash(m.Dir))
		}
		sum, err := fileSHA256(filepath.Join(models[i].Dir, modelrepo.ModelFile))
		if err != nil {
			return fmt.Errorf("evaluate: %s: %w", m.Role, err)
		}
		if sum != m.SHA256 {
			return fmt.Errorf("evaluate: the %s's model.onnx has SHA-256 %s, the request names %s", m.Role, sum, m.SHA256)
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
