package retrain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	ds "github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// A job's directory in state_dir/jobs/<id>/ holds data/ (the dataset, downloaded, with its
// manifest.json), output/ (the candidate), serving/ (the serving version, for the gate) and,
// for the local backend, the job's log.
const (
	dataDir    = "data"
	outputDir  = "output"
	servingDir = "serving"
)

// retryDelay is the wait between attempts of a step that failed on something transient (the
// bucket, the collector); stepAttempts bounds the attempts before the job ends in error.
const (
	retryDelay   = 5 * time.Second
	stepAttempts = 5
)

// startDriver runs the job's remaining phases in the background.
func (c *Controller) startDriver(j *Job) {
	ctx := c.runCtx
	if ctx == nil { // admitted before Run (tests); Run resumes it
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.drive(ctx, j.ID)
	}()
}

// drive moves a job through its phases until it ends or ctx ends (shutdown: the phase stays,
// and the next start resumes from it).
func (c *Controller) drive(ctx context.Context, id string) {
	var span trace.Span // the job's span: one per drive, so a restart starts another
	defer func() {
		if span != nil {
			span.End()
		}
	}()
	for {
		j := c.snapshot(id)
		if j == nil || j.Phase.Done() {
			if span != nil && j != nil {
				span.SetAttributes(attribute.String("edgeloop.job.result", string(j.Phase)))
			}
			return
		}
		if span == nil {
			ctx, span = c.tracer.Start(ctx, "retrain.job", trace.WithAttributes(attribute.String("edgeloop.job.id", id),
				attribute.String("edgeloop.model", j.Model), attribute.String("edgeloop.job.resumed_phase", string(j.Phase))))
		}
		logger := c.logger.With("job", id, "model", j.Model)
		if c.isCancelled(id) && j.Phase != PhaseRunning {
			c.finish(id, PhaseCancelled, "cancelled by an operator", nil)
			continue
		}
		var err error
		pctx, pspan := c.tracer.Start(ctx, phaseSpan(j.Phase))
		ctx := pctx
		switch j.Phase {
		case PhasePreparing:
			err = c.retry(ctx, logger, "prepare", func() error { return c.prepare(ctx, j, logger) })
		case PhaseRunning:
			// The backend could not be asked (its API is down): ask again; the job's own
			// timeout still bounds it.
			if err = c.wait(ctx, j, logger); err != nil && ctx.Err() == nil {
				logger.Warn("cannot learn the job's state; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(retryDelay):
				}
				err = nil
			}
		case PhaseEvaluating:
			err = c.retry(ctx, logger, "evaluate", func() error { return c.evaluate(ctx, j, logger) })
		case PhasePublishing:
			err = c.retry(ctx, logger, "publish", func() error { return c.publish(ctx, j, logger) })
		case PhaseSoaking:
			err = c.soak(ctx, j, logger)
		}
		if err != nil {
			pspan.RecordError(err)
			pspan.SetStatus(codes.Error, "phase failed")
		}
		pspan.End()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.finish(id, PhaseError, err.Error(), nil)
		}
	}
}

// phaseSpan names the span of each phase a job is driven through (docs/tracing.md).
func phaseSpan(p Phase) string {
	switch p {
	case PhasePreparing:
		return "retrain.job.dataset"
	case PhaseRunning:
		return "retrain.job.train"
	case PhaseEvaluating:
		return "retrain.job.gate"
	case PhasePublishing:
		return "retrain.job.publish"
	case PhaseSoaking:
		return "retrain.job.soak"
	}
	return "retrain.job." + string(p)
}

// maxSpanShards bounds the shard keys a job's dataset span lists.
const maxSpanShards = 64

// retry runs a step up to stepAttempts times.
func (c *Controller) retry(ctx context.Context, logger *slog.Logger, step string, f func() error) error {
	var err error
	for attempt := 1; attempt <= stepAttempts; attempt++ {
		if err = f(); err == nil || ctx.Err() != nil || errors.Is(err, errPermanent) {
			return err
		}
		logger.Warn("step failed; retrying", "step", step, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryDelay):
		}
	}
	return fmt.Errorf("%s: %w", step, err)
}

// errPermanent marks step errors that retrying cannot fix.
var errPermanent = errors.New("permanent")

func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPermanent, fmt.Sprintf(format, args...))
}

// snapshot returns a copy of the job, or nil.
func (c *Controller) snapshot(id string) *Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.st.job(id)
	if j == nil {
		return nil
	}
	cp := *j
	return &cp
}

// update changes the job under the lock and saves the state.
func (c *Controller) update(id string, f func(j *Job)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.st.job(id); j != nil {
		f(j)
		c.save()
	}
}

func (c *Controller) isCancelled(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled[id]
}

func (c *Controller) jobDir(id string) string { return filepath.Join(c.cfg.StateDir, "jobs", id) }

// prepare resolves the serving version, fetches the dataset and starts the backend's job.
func (c *Controller) prepare(ctx context.Context, j *Job, logger *slog.Logger) error {
	base, err := c.servingVersion(ctx, j.Model)
	if err != nil {
		return err
	}
	m, err := c.data.manifest(ctx, j.Model)
	if err != nil {
		return err
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.Int("edgeloop.dataset.shards", len(m.Shards)),
		attribute.StringSlice("edgeloop.dataset.shard_keys", m.Shards[:min(len(m.Shards), maxSpanShards)]),
		attribute.Int("edgeloop.dataset.label_files", len(m.Labels)))
	dir := c.jobDir(j.ID)
	local, err := c.data.download(ctx, m, filepath.Join(dir, dataDir))
	if err != nil {
		return err
	}
	_, watermark := newLabels(m, 0)
	labels, err := c.data.countLabels(ctx, m.Labels)
	if err != nil {
		return err
	}
	spec := jobs.Spec{ID: j.ID, Model: j.Model, BaseVersion: base, Timeout: c.cfg.Policy.JobTimeout}
	if c.out == nil {
		spec.DatasetManifest = filepath.Join(dir, dataDir, manifestFile)
		spec.Output = filepath.Join(dir, outputDir)
	} else if spec.DatasetManifest, spec.Output, err = c.remoteIO(ctx, j, m); err != nil {
		return err
	}
	if base > 0 {
		if spec.BaseModel, err = c.baseModel(ctx, j, base); err != nil {
			return err
		}
	}
	logger.Info("dataset ready", "serving_version", base, "shards", len(local.Shards), "label_files", len(local.Labels),
		"labels", labels, "manifest", spec.DatasetManifest)
	if c.isCancelled(j.ID) {
		return nil // drive ends it before anything starts
	}
	ref, err := c.backend.Start(ctx, spec)
	if err != nil {
		return fmt.Errorf("start job: %w", err)
	}
	now := c.now()
	c.update(j.ID, func(j *Job) {
		j.Spec, j.Ref, j.BaseVersion, j.LabelWatermark, j.Started, j.Phase = &spec, &ref, base, watermark, now, PhaseRunning
		j.Dataset.Shards, j.Dataset.LabelFiles, j.Dataset.Labels = len(local.Shards), len(local.Labels), labels
	})
	logger.Info("job running", "backend", ref.Backend, "ref", ref.ID)
	if c.isCancelled(j.ID) { // cancelled while it was being started
		if err := c.backend.Cancel(ctx, ref); err != nil {
			logger.Error("cannot cancel the job", "err", err)
		}
	}
	return nil
}

// baseModel is where a job fine-tuning from version base finds its files (jobs.Spec.BaseModel):
// for the local backend, the job's verified copy of the version (which the gate reuses as the
// serving version); for remote backends, the version's object URL prefix in the repository
// bucket, with the bucket URL's query as remoteIO's URLs have it.
func (c *Controller) baseModel(ctx context.Context, j *Job, base int64) (string, error) {
	if c.out != nil {
		return objstore.ObjectURL(c.cfg.Repository.Bucket, modelrepo.VersionPrefix(j.Model, base))
	}
	sdir := filepath.Join(c.jobDir(j.ID), servingDir)
	os.RemoveAll(sdir)
	if _, err := c.repo.Download(ctx, j.Model, base, sdir, c.verifier); err != nil {
		return "", fmt.Errorf("base version %d: %w", base, err)
	}
	// The job runs in a directory of its own: a relative state_dir would not find the files.
	return filepath.Abs(sdir)
}

// remoteIO puts the dataset manifest where a remote job can read it and returns its URL and
// the output prefix's.
func (c *Controller) remoteIO(ctx context.Context, j *Job, m any) (manifestURL, outputURL string, err error) {
	prefix := "jobs/" + j.Model + "/" + j.ID + "/"
	data, err := jsonIndent(m)
	if err != nil {
		return "", "", err
	}
	if err := c.out.Put(ctx, prefix+"dataset.json", bytes.NewReader(data), int64(len(data))); err != nil {
		return "", "", fmt.Errorf("put dataset manifest: %w", err)
	}
	if manifestURL, err = objstore.ObjectURL(c.outURL, prefix+"dataset.json"); err != nil {
		return "", "", err
	}
	outputURL, err = objstore.ObjectURL(c.outURL, prefix+"output/")
	return manifestURL, outputURL, err
}

// servingVersion is the version the model's candidates are compared with: models[].serving,
// else stable when it exists and publish.stable is set, else latest; 0 when the model has no
// version yet.
func (c *Controller) servingVersion(ctx context.Context, model string) (int64, error) {
	sel := c.models[model].Serving
	if sel == "" {
		sel = modelrepo.SelectorLatest
		if c.cfg.Publish.Stable {
			if _, err := c.repo.Alias(ctx, model, publish.AliasStable); err == nil {
				sel = publish.AliasStable
			}
		}
	}
	v, err := c.repo.Resolve(ctx, model, sel)
	if errors.Is(err, modelrepo.ErrVersionNotFound) && sel == modelrepo.SelectorLatest {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("serving version of %s (%s): %w", model, sel, err)
	}
	return v, nil
}

// wait waits for the backend's job, cancelling it past the timeout.
func (c *Controller) wait(ctx context.Context, j *Job, logger *slog.Logger) error {
	if j.Ref == nil || j.Spec == nil {
		return permanent("running without a backend reference")
	}
	// The time left, from the controller's clock: a job resumed after a restart keeps its
	// original deadline.
	left := max(c.cfg.Policy.JobTimeout-c.now().Sub(j.Started), time.Millisecond)
	wctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	st, err := c.backend.Wait(wctx, *j.Ref)
	if ctx.Err() != nil {
		return nil // shutdown: re-attach on the next start
	}
	timedOut := err != nil && wctx.Err() != nil
	if timedOut {
		logger.Warn("job timed out; cancelling it", "timeout", c.cfg.Policy.JobTimeout)
		if cerr := c.backend.Cancel(ctx, *j.Ref); cerr != nil {
			logger.Error("cannot cancel the timed-out job", "err", cerr)
		}
		// Collect what the backend says of the cancelled job (its log tail), briefly.
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		st, err = c.backend.Wait(fctx, *j.Ref)
		fcancel()
		if err != nil {
			st = jobs.Status{State: jobs.Failed}
		}
		c.finish(j.ID, PhaseTimedOut, fmt.Sprintf("ran longer than policy.job_timeout (%s)", c.cfg.Policy.JobTimeout), &st)
		return nil
	}
	if err != nil {
		return fmt.Errorf("wait for job: %w", err)
	}
	if c.isCancelled(j.ID) {
		c.finish(j.ID, PhaseCancelled, "cancelled by an operator", &st)
		return nil
	}
	if st.State != jobs.Succeeded {
		msg := st.Message
		if msg == "" {
			msg = "the job failed"
		}
		c.finish(j.ID, PhaseFailed, msg, &st)
		return nil
	}
	if err := c.retry(ctx, logger, "fetch outputs", func() error { return c.fetchOutputs(ctx, j) }); err != nil {
		c.finish(j.ID, PhaseFailed, err.Error(), &st)
		return nil
	}
	c.update(j.ID, func(j *Job) { j.Status, j.Phase = &st, PhaseEvaluating })
	logger.Info("job succeeded; evaluating the candidate")
	return nil
}

// Bounds on what fetchOutputs brings from a remote job's output prefix: far above a model,
// its metrics and a checkpoint, low enough that a job writing garbage cannot fill the
// controller's disk.
const (
	maxOutputFiles = 64
	maxOutputBytes = 8 << 30
)

// fetchOutputs brings a remote job's outputs (every file under its output prefix: model.onnx,
// metrics.json and extra files such as checkpoint.pt, which publish includes in the version)
// to the job's output directory, and checks that the contract's model.onnx is there.
func (c *Controller) fetchOutputs(ctx context.Context, j *Job) error {
	dir := filepath.Join(c.jobDir(j.ID), outputDir)
	if c.out != nil {
		prefix := "jobs/" + j.Model + "/" + j.ID + "/output/"
		var names []string
		var total int64
		err := c.out.Iter(ctx, prefix, false, func(key string) error {
			name := strings.TrimPrefix(key, prefix)
			if strings.HasSuffix(name, "/") {
				return nil // a subdirectory: versions are flat, so it is not published
			}
			if err := modelrepo.ValidateFileName(name); err != nil {
				return permanent("the job wrote %q under its output prefix: %v", name, err)
			}
			if len(names) >= maxOutputFiles {
				return permanent("the job wrote more than %d files under its output prefix", maxOutputFiles)
			}
			a, err := c.out.Attributes(ctx, key)
			if err != nil {
				return err
			}
			if total += a.Size; total > maxOutputBytes {
				return permanent("the job wrote more than %d bytes under its output prefix", int64(maxOutputBytes))
			}
			names = append(names, name)
			return nil
		})
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := objstore.Download(ctx, c.out, prefix+name, filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, modelrepo.ModelFile)); err != nil {
		return permanent("the job exited 0 but wrote no %s under its output prefix", modelrepo.ModelFile)
	}
	return nil
}

// gateFile is the gate's record in the job's directory: a gate.Result.
const gateFile = "gate.json"

// evaluate runs the gate on the candidate and the serving version: the evaluation set is
// built for the serving version's input spec (the candidate's for a first model) from the
// model's evaluation sets and the held-out side of the job's labelled samples, both versions
// are scored on it by the model's evaluator, and the model's rule decides.
func (c *Controller) evaluate(ctx context.Context, j *Job, logger *slog.Logger) error {
	dir := c.jobDir(j.ID)
	mc := c.models[j.Model]
	gcfg := c.cfg.modelGate(mc)
	candDir := filepath.Join(dir, outputDir)
	var current *gate.Model
	var spec ds.Spec
	if j.BaseVersion > 0 {
		sdir, m, err := c.servingCopy(ctx, j)
		if err != nil {
			return err
		}
		if spec, err = ds.SpecOf(m); err != nil {
			return permanent("serving version: %v", err)
		}
		cm, err := gate.NewModel(gate.RoleCurrent, sdir, m)
		if err != nil {
			return permanent("serving version %d: %v", j.BaseVersion, err)
		}
		current = &cm
	} else {
		var err error
		if spec, err = gate.SpecForFirstModel(candDir, mc.Classes); err != nil {
			return permanent("first model: %v", err)
		}
	}
	cand, err := gate.NewModel(gate.RoleCandidate, candDir, nil)
	if err != nil {
		return permanent("%v", err)
	}
	data, err := ds.ReadManifest(filepath.Join(dir, dataDir, manifestFile))
	if err != nil {
		return permanent("%v", err)
	}
	var held *ds.Labelled
	if len(data.Shards) > 0 {
		all, err := ds.ReadLabelled(data.Shards, data.Labels, spec, logger)
		if err != nil {
			return permanent("held-out samples: %v", err)
		}
		_, held = all.Split()
	}
	var bucket objstore.Bucket
	if len(gcfg.EvalSets) > 0 {
		bucket = c.repo.Bucket()
	}
	set, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: bucket, Model: j.Model, EvalSets: gcfg.EvalSets, HeldOut: held}, logger)
	if err != nil {
		return err // the bucket failed: retried
	}
	c.m.countRefused(j.Model, set)
	if set.Len() == 0 {
		d := gate.Decision{Reason: fmt.Sprintf("refused: the evaluation set is empty (%d samples refused); list evaluation sets in eval_sets or label captured samples", set.RefusedSamples())}
		if err := writeJSON(filepath.Join(dir, gateFile), gate.Result{Set: set.Summarize(), Decision: d}); err != nil {
			return err
		}
		c.m.gate.WithLabelValues(j.Model, "refuse").Inc()
		c.update(j.ID, func(j *Job) { j.Gate = &d })
		c.finish(j.ID, PhaseRejected, "the gate refused the candidate: "+d.Reason, nil)
		return nil
	}
	ev, err := c.evaluator(j, gcfg, logger)
	if err != nil {
		return permanent("%v", err)
	}
	res, err := gate.Run(ctx, ev, set, cand, current, gate.Options{Rules: gcfg.Rules, Calibrate: gcfg.Calibrate})
	if err != nil {
		if errors.Is(err, gate.ErrUnavailable) {
			return err // the inference server or the job backend: retried
		}
		return permanent("%v", err)
	}
	d := res.Decision
	decision := "refuse"
	if d.Promote {
		decision = "promote"
	}
	c.m.gate.WithLabelValues(j.Model, decision).Inc()
	logger.Info("gate decided", "promote", d.Promote, "reason", d.Reason, "evaluator", ev.Name(), "primary_metric", d.PrimaryMetric,
		"candidate", d.Candidate.Primary, "serving", servingPrimary(d), "eval_samples", set.Len(),
		"refused_samples", set.RefusedSamples(), "eval_digest", set.Digest)
	if err := writeJSON(filepath.Join(dir, gateFile), res); err != nil {
		return err
	}
	if !d.Promote {
		c.update(j.ID, func(j *Job) { j.Gate, j.Dataset.EvalSamples = &d, set.Len() })
		c.finish(j.ID, PhaseRejected, "the gate refused the candidate: "+d.Reason, nil)
		return nil
	}
	c.update(j.ID, func(j *Job) { j.Gate, j.Dataset.EvalSamples, j.Phase = &d, set.Len(), PhasePublishing })
	return nil
}

// servingCopy returns the job's verified copy of the serving version, downloading it unless
// prepare already did (for a job that fine-tunes from it) and it still verifies.
func (c *Controller) servingCopy(ctx context.Context, j *Job) (string, *modelrepo.Manifest, error) {
	sdir := filepath.Join(c.jobDir(j.ID), servingDir)
	if m, err := modelrepo.VerifyDir(sdir, c.verifier, j.Model, j.BaseVersion); err == nil {
		return sdir, m, nil
	}
	os.RemoveAll(sdir)
	m, err := c.repo.Download(ctx, j.Model, j.BaseVersion, sdir, c.verifier)
	if err != nil {
		return "", nil, fmt.Errorf("serving version %d: %w", j.BaseVersion, err)
	}
	return sdir, m, nil
}

// evaluator builds the model's evaluator.
func (c *Controller) evaluator(j *Job, g gate.Config, logger *slog.Logger) (gate.Evaluator, error) {
	switch g.Evaluator {
	case gate.EvaluatorOIP:
		return gate.NewOIP(g.OIP, c.signer, logger)
	case gate.EvaluatorJob:
		backend, stage, err := c.evalBackend(j, g.Job, logger)
		if err != nil {
			return nil, err
		}
		return gate.NewJobEvaluator(g.Job, backend, stage, j.ID, j.Model, filepath.Join(c.jobDir(j.ID), "eval"), logger)
	default:
		return gate.Builtin{}, nil
	}
}

// evalBackend is the backend that runs the model's evaluation jobs (gate.job.backend) and, for
// a remote one, where their files are staged: the remote jobs' output bucket when training
// runs remotely too, else the dataset bucket, under jobs/<model>/<job>/eval/. The local
// backend is nil: the evaluator makes its own in the job's directory.
func (c *Controller) evalBackend(j *Job, cfg gate.JobConfig, logger *slog.Logger) (jobs.Backend, *gate.Stage, error) {
	if c.opts.EvalBackend != nil {
		return c.opts.EvalBackend, c.evalStage(j), nil
	}
	logger = logger.With("part", "eval-backend")
	var b jobs.Backend
	switch cfg.Backend {
	case gate.JobBackendKubernetes:
		client, err := kubejob.Client(cfg.Kubernetes)
		if err != nil {
			return nil, nil, fmt.Errorf("gate.job.kubernetes: %w", err)
		}
		if b, err = kubejob.New(cfg.Kubernetes, client, logger); err != nil {
			return nil, nil, fmt.Errorf("gate.job.kubernetes: %w", err)
		}
	case gate.JobBackendHTTP:
		h, err := httpjob.New(cfg.HTTP, c.externalURL(), logger)
		if err != nil {
			return nil, nil, fmt.Errorf("gate.job.http: %w", err)
		}
		b = h
	default:
		return nil, nil, nil
	}
	return b, c.evalStage(j), nil
}

// evalStage is where a remote evaluation job of j finds its files.
func (c *Controller) evalStage(j *Job) *gate.Stage {
	b, u := c.out, c.outURL
	if b == nil {
		b, u = c.data.bucket, c.dataURL
	}
	return &gate.Stage{Bucket: b, URL: u, Prefix: "jobs/" + j.Model + "/" + j.ID + "/eval/"}
}

func servingPrimary(d gate.Decision) any {
	if d.Current == nil {
		return "none"
	}
	return d.Current.Primary
}

// publish publishes a promoted candidate. It is idempotent: when the model's latest version
// already is this candidate (a restart after the publish, before the state was saved), it
// adopts that version instead of publishing a second copy.
func (c *Controller) publish(ctx context.Context, j *Job, logger *slog.Logger) error {
	dir := c.jobDir(j.ID)
	var rec gate.Result
	if err := readJSON(filepath.Join(dir, gateFile), &rec); err != nil {
		return permanent("%v", err)
	}
	if rec.Candidate == nil {
		return permanent("%s has no candidate report", gateFile)
	}
	if v, ok := c.alreadyPublished(ctx, j, rec.Candidate.ModelSHA256); ok {
		logger.Info("candidate already published; adopting it", "version", v)
		return c.published(ctx, j, v, logger)
	}
	// The manifest records the data as bucket URLs: the job's local copies are deleted.
	datasets := []string{}
	if m, err := ds.ReadManifest(filepath.Join(dir, dataDir, manifestFile)); err == nil {
		base := c.cfg.Dataset.Bucket
		if base == "" {
			base = c.cfg.Repository.Bucket
		}
		for _, p := range append(append([]string(nil), m.Shards...), m.Labels...) {
			rel, err := filepath.Rel(filepath.Join(dir, dataDir), p)
			if err != nil {
				continue
			}
			if u, err := objstore.ObjectURL(base, filepath.ToSlash(rel)); err == nil {
				datasets = append(datasets, u)
			}
		}
	}
	soak := c.cfg.Publish.Soak > 0
	m, err := publish.Publish(ctx, c.repo, c.signer, publish.Input{
		Model: j.Model, CandidateDir: filepath.Join(dir, outputDir), ParentVersion: j.BaseVersion,
		Datasets: datasets, Report: rec.Candidate, Decision: &rec.Decision, Set: &rec.Set,
		Canary: c.cfg.Publish.Canary, Stable: c.cfg.Publish.Stable && !soak,
	})
	if err != nil && m == nil {
		return err
	}
	if err != nil {
		logger.Error("published, but an alias was not set", "version", m.Version, "err", err)
	}
	return c.published(ctx, j, m.Version, logger)
}

// alreadyPublished reports whether the model's latest version is the candidate.
func (c *Controller) alreadyPublished(ctx context.Context, j *Job, sha string) (int64, bool) {
	v, err := c.repo.Latest(ctx, j.Model)
	if err != nil || v <= j.BaseVersion {
		return 0, false
	}
	m, err := c.repo.Manifest(ctx, j.Model, v, c.verifier)
	if err != nil {
		return 0, false
	}
	d, ok := m.Files[modelrepo.ModelFile]
	return v, ok && d.SHA256 == sha && m.ParentVersion == j.BaseVersion
}

// published records a published version: the job ends promoted, or soaks first.
func (c *Controller) published(ctx context.Context, j *Job, v int64, logger *slog.Logger) error {
	now := c.now()
	c.mu.Lock()
	ms := c.st.model(j.Model)
	ms.LastSuccess, ms.Version = now, v
	c.mu.Unlock()
	c.m.published.WithLabelValues(j.Model).Set(float64(v))
	c.m.lastSuccess.WithLabelValues(j.Model).Set(float64(now.Unix()))
	logger.Info("published", "version", v, "parent", j.BaseVersion, "canary", c.cfg.Publish.Canary,
		"stable", c.cfg.Publish.Stable, "soak", c.cfg.Publish.Soak)
	if c.cfg.Publish.Soak > 0 {
		c.update(j.ID, func(j *Job) { j.Version, j.Phase, j.SoakUntil = v, PhaseSoaking, now.Add(c.cfg.Publish.Soak) })
		return nil
	}
	c.update(j.ID, func(j *Job) { j.Version = v })
	c.finish(j.ID, PhasePromoted, "", nil)
	return nil
}

// soak waits until the job's soak ends, then moves stable to its version.
func (c *Controller) soak(ctx context.Context, j *Job, logger *slog.Logger) error {
	for {
		wait := j.SoakUntil.Sub(c.now())
		if wait <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(wait, time.Second)): // short: the clock may be moved (tests)
		}
	}
	err := c.retry(ctx, logger, "promote to stable", func() error {
		err := publish.PromoteAfterSoak(ctx, c.repo, c.verifier, c.signer, j.Model, j.Version)
		if errors.Is(err, publish.ErrCanaryMoved) {
			return fmt.Errorf("%w: %v", errPermanent, err)
		}
		return err
	})
	note := ""
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		note = "published to canary; stable not moved: " + err.Error()
		logger.Warn("stable not moved after the soak", "version", j.Version, "err", err)
	} else {
		logger.Info("soak over; stable moved", "version", j.Version)
	}
	c.finish(j.ID, PhasePromoted, note, nil)
	return nil
}

// finish ends a job in a final phase and updates the policy's memory and the metrics.
func (c *Controller) finish(id string, phase Phase, msg string, st *jobs.Status) {
	now := c.now()
	var done Job
	c.mu.Lock()
	j := c.st.job(id)
	if j == nil || j.Phase.Done() {
		c.mu.Unlock()
		return
	}
	j.Phase, j.Finished, j.Error = phase, now, msg
	if st != nil {
		j.Status = st
	}
	ms := c.st.model(j.Model)
	ms.LastEnd = now
	// The labels a finished training saw are no longer new; a job that failed trained on
	// nothing, so the next trigger may use the same labels.
	if phase == PhasePromoted || phase == PhaseRejected {
		ms.LabelWatermark = max(ms.LabelWatermark, j.LabelWatermark)
	}
	delete(c.cancelled, id)
	c.save()
	done = *j
	c.mu.Unlock()
	// The dataset copy and the serving version are big and can be fetched again; the
	// candidate, the gate's report and the log stay until the job is pruned (keep_jobs).
	for _, sub := range []string{dataDir, servingDir} {
		os.RemoveAll(filepath.Join(c.jobDir(id), sub))
	}
	c.m.jobs.WithLabelValues(done.Model, string(phase)).Inc()
	c.m.duration.WithLabelValues(done.Model).Observe(now.Sub(done.Created).Seconds())
	c.m.active.WithLabelValues(done.Model).Set(0)
	level := slog.LevelInfo
	if phase != PhasePromoted && phase != PhaseRejected {
		level = slog.LevelWarn
	}
	c.logger.Log(context.Background(), level, "job ended", "job", id, "model", done.Model, "result", phase,
		"version", done.Version, "took", now.Sub(done.Created).Round(time.Second), "error", msg)
	if c.opts.OnJobEnd != nil {
		c.opts.OnJobEnd(done)
	}
}
