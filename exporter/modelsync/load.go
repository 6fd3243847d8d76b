package modelsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
)

// currentFile, in a model's cache directory, names the version last swapped in, so that a
// restart serves it again before the repository answers.
const currentFile = "current"

// loadError is a failure to turn a verified version into a serving one (the model does not
// compile, names an output it lacks, the upstream refuses it): reason "load".
type loadError struct{ err error }

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// Reason names the class of a sync error for edgeloop_model_sync_failures_total{reason}:
// "load" for a version that verified but would not load, else modelrepo.Reason's label.
func Reason(err error) string {
	if le := (*loadError)(nil); errors.As(err, &le) {
		return "load"
	}
	return modelrepo.Reason(err)
}

func cacheDirOf(root, model string) string { return filepath.Join(root, model) }

func versionDir(root string, version int64) string {
	return filepath.Join(root, strconv.FormatInt(version, 10))
}

// loadCached serves the version the cache says was serving before a restart, and returns it
// (0 when the cache has none, or a pinned selector names another version).
func (s *Syncer) loadCached(ctx context.Context, m *model) (int64, error) {
	data, err := os.ReadFile(filepath.Join(m.cacheDir, currentFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%s: not a version number: %q", filepath.Join(m.cacheDir, currentFile), data)
	}
	if pinned, err := strconv.ParseInt(m.selector, 10, 64); err == nil && pinned != v {
		return 0, nil
	}
	if _, err := os.Stat(versionDir(m.cacheDir, v)); err != nil {
		return 0, err
	}
	if err := s.load(ctx, m, v); err != nil {
		s.metrics.failure(m.cfg.Name, Reason(err))
		return 0, err
	}
	return v, nil
}

// load fetches version v into the cache unless a verified copy is there, builds its Backend
// and swaps it in. Any failure leaves the serving version as it was.
func (s *Syncer) load(ctx context.Context, m *model, v int64) error {
	name := m.cfg.Name
	dir := versionDir(m.cacheDir, v)
	man, err := modelrepo.VerifyDir(dir, s.verifier, name, v)
	if err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			// A cached copy that no longer verifies (a disk error, or someone with access to
			// the node) is never served; fetch it again.
			s.logger.Warn("cached model version fails verification; downloading it again", "model", name, "version", v, "err", err)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(m.cacheDir, 0o700); err != nil {
			return err
		}
		if man, err = s.repo.Download(ctx, name, v, dir, s.verifier); err != nil {
			return err
		}
	}
	if err := m.drained(ctx, v); err != nil {
		return err
	}
	b, err := s.backend(ctx, m, dir, man)
	if err != nil {
		return &loadError{fmt.Errorf("version %d: %w", v, err)}
	}
	sha := man.Files[modelrepo.ModelFile].SHA256
	// Swap retires the old Backend: it finishes its requests in flight, then closes its
	// telemetry. Only loading that same version again has to wait for it (drained).
	if old := s.opts.Server.Swap(name, b); old != nil {
		m.retired[m.serving] = old
	}
	s.metrics.serving(name, m.serving, m.servingSHA, v, sha)
	s.opts.Readiness.Ready(readinessKey(name))
	s.logger.Info("model version loaded", "model", name, "version", v, "previous", m.serving, "sha256", sha, "runtime", m.cfg.WithDefaults().Runtime)
	previous := m.serving
	m.serving, m.servingSHA = v, sha
	if err := fsutil.WriteFileAtomic(filepath.Join(m.cacheDir, currentFile), []byte(strconv.FormatInt(v, 10)+"\n"), 0o644); err != nil {
		s.logger.Warn("cannot record the serving version in the cache; a restart waits for the repository", "model", name, "err", err)
	}
	// The cache and an upstream model directory keep the serving version and the one before
	// it, for a fast rollback. The upstream server has already unloaded the others: its
	// version policy names v alone.
	keep := []int64{v, previous}
	prune(m.cacheDir, keep, s.logger.With("model", name))
	if m.upstream != nil {
		prune(filepath.Join(m.cfg.Upstream.ModelRepository, upstreamName(m.cfg)), keep, s.logger.With("model", name))
	}
	return nil
}

// drained waits until no retired Backend of version v still runs requests (a rollback and
// forward again within a slow request's time), and forgets the retired Backends that are done.
func (m *model) drained(ctx context.Context, v int64) error {
	for version, b := range m.retired {
		select {
		case <-b.Done():
			delete(m.retired, version)
		default:
		}
	}
	if b, ok := m.retired[v]; ok {
		select {
		case <-b.Done():
			delete(m.retired, v)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// backend builds the Backend serving the verified version in dir.
func (s *Syncer) backend(ctx context.Context, m *model, dir string, man *modelrepo.Manifest) (*infer.Backend, error) {
	output, kind, err := scoredOutput(m.cfg, man)
	if err != nil {
		return nil, err
	}
	classes := m.cfg.Classes
	if len(classes) == 0 {
		classes = man.Classes
	}
	if len(classes) == 0 {
		return nil, errors.New("no class names: neither the manifest nor the model's classes list has them")
	}
	version := strconv.FormatInt(man.Version, 10)
	cfg := infer.BackendConfig{Version: version, Output: output, OutputKind: kind, Classes: classes}
	if e := man.EmbeddingOutput; e != nil && e.Name != output {
		cfg.Embedding = e.Name
	}
	if m.upstream != nil {
		if err := installUpstream(m.cfg, dir, man); err != nil {
			return nil, err
		}
		if err := m.upstream.LoadModel(ctx); err != nil {
			return nil, fmt.Errorf("upstream load: %w", err)
		}
		cfg.Upstream = m.upstream
	} else {
		data, err := os.ReadFile(filepath.Join(dir, modelrepo.ModelFile))
		if err != nil {
			return nil, err
		}
		if cfg.Builtin, err = builtin.Load(data); err != nil {
			return nil, err
		}
	}
	if cfg.Observe, err = s.observe(m, man, version, classes, kind); err != nil {
		return nil, err
	}
	b, err := infer.NewBackend(cfg)
	if err != nil {
		cfg.Observe.Close()
		return nil, err
	}
	return b, nil
}

// observe registers the version's telemetry with the manifest's reference histogram, or, when
// that does not fit the exporter's drift settings (other bin count or scorer), with one learned
// from the first predictions.
func (s *Syncer) observe(m *model, man *modelrepo.Manifest, version string, classes []string, kind observe.OutputKind) (*observe.Model, error) {
	spec := observe.ModelSpec{Name: m.cfg.Name, Version: version, Classes: classes, Output: kind,
		Reference: man.ReferenceHistogram, ReferenceScorer: observe.Scorer(man.ReferenceScorer),
		DriftReference: man.DriftReference}
	if c := man.Calibration; c != nil {
		spec.Temperature = c.Temperature
	}
	if sh := man.Input.Shape; len(sh) > 1 {
		spec.InputShape = sh[1:] // without the batch dimension
	}
	h, err := s.opts.Observe.Model(spec)
	if err == nil || (spec.Reference == nil && spec.DriftReference == nil) {
		return h, err
	}
	s.logger.Warn("the manifest's drift references do not fit the drift settings or the model; learning the confidence reference from the first predictions, the other drift signals stay absent", "model", m.cfg.Name, "version", version, "err", err)
	spec.Reference, spec.ReferenceScorer, spec.DriftReference = nil, "", nil
	return s.opts.Observe.Model(spec)
}

// scoredOutput picks the output tensor to score: the configured one, else the manifest's.
func scoredOutput(cfg infer.ModelConfig, man *modelrepo.Manifest) (string, observe.OutputKind, error) {
	outputs := []modelrepo.Output{man.Output}
	if man.SecondOutput != nil {
		outputs = append(outputs, *man.SecondOutput)
	}
	name, kind := cfg.Output, cfg.OutputKind
	if name == "" {
		name = man.Output.Name
	}
	if kind == "" {
		kind = infer.DefaultOutputKind
		for _, o := range outputs {
			if o.Name == name {
				kind = o.Kind
			}
		}
	}
	switch kind {
	case modelrepo.OutputLogits:
		return name, observe.Logits, nil
	case modelrepo.OutputProbabilities:
		return name, observe.Probabilities, nil
	}
	return "", 0, fmt.Errorf("output %q: kind %q is neither logits nor probabilities", name, kind)
}

func upstreamName(cfg infer.ModelConfig) string {
	if cfg.Upstream.Model != "" {
		return cfg.Upstream.Model
	}
	return cfg.Name
}

// installUpstream writes the verified version in dir into the upstream server's model
// repository as <repo>/<model>/<version>/, and the model-level config.pbtxt that Triton reads:
// the version's signed one without its name line (Triton then takes the directory's name)
// and with a version policy that serves exactly this version, so a rollback to a lower
// number is honoured too.
func installUpstream(cfg infer.ModelConfig, dir string, man *modelrepo.Manifest) error {
	modelDir := filepath.Join(cfg.Upstream.ModelRepository, upstreamName(cfg))
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		return err
	}
	conf, err := os.ReadFile(filepath.Join(dir, modelrepo.ConfigFile))
	if err != nil {
		return err
	}
	if bytes.Contains(conf, []byte("version_policy")) {
		return errors.New("config.pbtxt sets version_policy, which model sync sets itself")
	}
	var out []string
	for line := range strings.SplitSeq(string(conf), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "name:") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			out = append(out, line)
		}
	}
	conf = []byte(strings.TrimRight(strings.Join(out, "\n"), "\n") +
		fmt.Sprintf("\nversion_policy: { specific: { versions: [ %d ] } }\n", man.Version))

	target := versionDir(modelDir, man.Version)
	if _, err := os.Stat(target); errors.Is(err, fs.ErrNotExist) {
		if err := copyVersion(dir, target, man); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(modelDir, modelrepo.ConfigFile), conf, 0o644)
}

// copyVersion copies the files of a version into target through a temporary directory
// beside it, renamed into place once complete, so the server never sees half a version.
func copyVersion(dir, target string, man *modelrepo.Manifest) error {
	tmp, err := os.MkdirTemp(filepath.Dir(target), ".edgeloop-tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name := range man.Files {
		if err := fsutil.CopyNew(filepath.Join(dir, name), filepath.Join(tmp, name), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(target))
}

// prune removes the version directories of dir other than keep, and what a crash left of
// temporary directories. Failures are logged: a full cache is a nuisance, not an outage.
func prune(dir string, keep []int64, log interface{ Warn(string, ...any) }) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("cannot prune old model versions", "dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, err := strconv.ParseInt(e.Name(), 10, 64)
		// Hidden ".*tmp-*" directories are what a crash left of a download or a copy.
		tmp := strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), "tmp-")
		stale := tmp || (err == nil && !slices.Contains(keep, v))
		if !stale {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			log.Warn("cannot prune old model version", "dir", filepath.Join(dir, e.Name()), "err", err)
		}
	}
}
