// Package modelsync keeps the models the exporter serves in step with the signed model
// repository: it polls for the version each model selects (latest, a pinned number or an
// alias), downloads it into a local cache, verifies it against the trusted keys, and swaps it
// into the inference front without failing a request. Whatever fails keeps the old version
// serving, is logged and counted, and is retried with backoff.
package modelsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/web"
)

// listEvery is how many polls of the latest hint may pass before the versions are listed
// anyway, which catches a retired (deleted) newest version and a hint that failed to update.
const listEvery = 10

// Options are what a Syncer works with besides its configuration.
type Options struct {
	// Server is the inference front whose models are swapped.
	Server *infer.Server
	// Observe registers each loaded version's telemetry.
	Observe *observe.Core
	// Registerer takes the sync metrics.
	Registerer prometheus.Registerer
	// Readiness is held at "not ready" for a model until a version of it serves.
	Readiness *web.Readiness
	// Tracing is passed to upstream clients; nil is allowed.
	Tracing *telemetry.Tracing
	// Logger receives the sync's logs; nil discards them.
	Logger *slog.Logger
}

// Syncer syncs a set of models. Build it with New, then Run it.
type Syncer struct {
	cfg      Config
	repo     *modelrepo.Repository
	verifier *modelrepo.Verifier
	opts     Options
	logger   *slog.Logger
	metrics  *metrics
	models   []*model
}

// model is one synced model's state. Only its own sync goroutine touches it.
type model struct {
	cfg      infer.ModelConfig // as configured: an empty Output means "the manifest's"
	selector string            // latest, a number, or an alias
	cacheDir string            // CacheDir/<name>
	upstream *upstream.Client  // runtime upstream only; shared by the model's versions

	serving    int64 // version serving now; 0 for none
	servingSHA string
	pointerTag string       // ETag of the alias or latest hint last read
	pointerVer int64        // the version it named
	pointer    pointerState // the signed pointer last accepted (persisted)
	polls      int          // polls since the versions were last listed
	failures   int          // consecutive failed attempts
	// retired holds the Backends swapped out whose requests may still run, by version: the
	// telemetry core refuses a second handle for a version until the first is closed.
	retired map[int64]*infer.Backend
}

// New prepares the sync of models, which must have been validated; static upstream models
// (ModelConfig.Static) are left out. It opens the repository, loads the trusted keys and
// creates the cache directory, so configuration mistakes surface before anything runs.
func New(ctx context.Context, cfg Config, models []infer.ModelConfig, opts Options) (*Syncer, error) {
	s := &Syncer{cfg: cfg, opts: opts, logger: opts.Logger}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Repository == "" {
		return nil, errors.New("modelsync: no repository configured")
	}
	// The rule is checked again here, with the environment the bucket is opened with, so a
	// caller that skipped Validate cannot send the token in clear text either.
	target, err := objstore.ParseURL(cfg.Repository, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("modelsync: repository: %w", err)
	}
	if err := cfg.checkToken(target); err != nil {
		return nil, fmt.Errorf("modelsync: %w", err)
	}
	bucket, err := target.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("modelsync: repository: %w", err)
	}
	s.repo = modelrepo.New(bucket)
	if s.verifier, err = modelrepo.LoadVerifier(cfg.TrustedKeys...); err != nil {
		bucket.Close()
		return nil, fmt.Errorf("modelsync: trusted keys: %w", err)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		bucket.Close()
		return nil, fmt.Errorf("modelsync: cache: %w", err)
	}
	s.metrics = newMetrics(opts.Registerer)
	for _, mc := range models {
		if mc.Static() {
			continue
		}
		m := &model{cfg: mc, selector: mc.WithDefaults().Version, cacheDir: cacheDirOf(cfg.CacheDir, mc.Name), retired: map[int64]*infer.Backend{}}
		if m.pointer, err = loadPointerState(m); err != nil {
			// Guessing would either forget the rollback floor or lock the model out; the
			// operator decides (removing the file forgets the floor).
			s.Close()
			return nil, fmt.Errorf("modelsync: model %s: pointer state: %w", mc.Name, err)
		}
		if mc.Runtime == infer.RuntimeUpstream {
			if m.upstream, err = upstream.New(mc.Upstream.WithDefaults(), mc.Name, opts.Tracing); err != nil {
				s.Close()
				return nil, fmt.Errorf("modelsync: model %s: %w", mc.Name, err)
			}
		}
		s.models = append(s.models, m)
		s.metrics.init(mc.Name)
		opts.Readiness.NotReady(readinessKey(mc.Name), "no version loaded yet")
	}
	return s, nil
}

func readinessKey(model string) string { return "model " + model }

// Run syncs every model until ctx is done: first from the local cache, so a restart serves at
// once even without the repository, then by polling the repository.
func (s *Syncer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range s.models {
		wg.Go(func() { s.run(ctx, m) })
	}
	wg.Wait()
}

// Close releases the repository and the upstream clients. Call it after Run has returned.
func (s *Syncer) Close() {
	for _, m := range s.models {
		if m.upstream != nil {
			m.upstream.Close()
		}
	}
	s.repo.Bucket().Close()
}

func (s *Syncer) run(ctx context.Context, m *model) {
	log := s.logger.With("model", m.cfg.Name, "selector", m.selector)
	if v, err := s.loadCached(ctx, m); err != nil {
		log.Warn("cannot serve the cached version; waiting for the repository", "err", err)
	} else if v > 0 {
		log.Info("serving the cached version", "version", v)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := s.attempt(ctx, m)
		if ctx.Err() != nil {
			return
		}
		next := s.delay(m, err)
		timer.Reset(next)
		if err != nil {
			log.Warn("model sync failed; the serving version stays", "serving", m.serving, "reason", Reason(err), "err", err, "retry_in", next.Round(time.Millisecond))
		}
	}
}

// delay is the time to the next attempt: the poll interval with jitter after a success, and
// a doubling backoff from one second, capped at max_backoff and the poll interval's jitter
// range, after failures.
func (s *Syncer) delay(m *model, err error) time.Duration {
	if err == nil {
		return jitter(s.cfg.PollInterval, s.cfg.Jitter)
	}
	d := s.cfg.MaxBackoff
	if m.failures < 30 {
		d = min(d, initialBackoff<<(m.failures-1))
	}
	return jitter(d, s.cfg.Jitter)
}

func jitter(d time.Duration, share float64) time.Duration {
	if share == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + share*(2*rand.Float64()-1)))
}

// attempt makes one attempt to bring m to the version its selector names, and counts it.
func (s *Syncer) attempt(parent context.Context, m *model) error {
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	err := s.syncOnce(ctx, m)
	if err != nil && parent.Err() != nil {
		return err // shutting down: not a failure
	}
	if err != nil {
		m.failures++
		s.metrics.failure(m.cfg.Name, Reason(err))
		if m.serving == 0 {
			s.opts.Readiness.NotReady(readinessKey(m.cfg.Name), "no version loaded: "+err.Error())
		}
		return err
	}
	m.failures = 0
	s.metrics.success(m.cfg.Name)
	return nil
}

func (s *Syncer) syncOnce(ctx context.Context, m *model) error {
	target, err := s.resolve(ctx, m)
	if err != nil {
		return err
	}
	if target == m.serving {
		return nil
	}
	return s.load(ctx, m, target)
}

// resolve returns the version m's selector names now. A pinned number costs no request; an
// alias one conditional GET; latest one conditional GET of the latest hint, and a listing
// when the hint changed, is missing, or every listEvery polls.
func (s *Syncer) resolve(ctx context.Context, m *model) (int64, error) {
	if v, err := strconv.ParseInt(m.selector, 10, 64); err == nil {
		return v, nil
	}
	name := m.cfg.Name
	if m.selector != modelrepo.SelectorLatest {
		p, etag, err := s.repo.Pointer(ctx, modelrepo.AliasKey(name, m.selector), m.pointerTag)
		switch {
		case objstore.IsNotModified(err):
			return m.pointerVer, nil
		case err != nil:
			return 0, err
		}
		if err := s.checkPointer(m, p); err != nil {
			return 0, err
		}
		m.pointerTag, m.pointerVer = etag, p.Version
		return p.Version, nil
	}
	m.polls++
	hint, etag, err := s.repo.Pointer(ctx, modelrepo.LatestKey(name), m.pointerTag)
	if err == nil {
		if err := s.checkPointer(m, hint); err != nil {
			return 0, err
		}
	}
	unchanged := objstore.IsNotModified(err)
	if unchanged && m.polls < listEvery && m.pointerVer > 0 {
		return m.pointerVer, nil
	}
	if err != nil && !unchanged && !errors.Is(err, modelrepo.ErrAliasNotFound) {
		return 0, err
	}
	// The hint only says that something changed; the listing is the truth.
	v, lerr := s.repo.Latest(ctx, name)
	if lerr != nil {
		return 0, lerr
	}
	// A signed hint vouches that its version exists; a listing below it means newer versions
	// were deleted from under the hint, which rolls nodes back as surely as an old hint would.
	// Only in strict mode: by default deleting a manifest retires a version (docs/model-sync.md);
	// strict mode retires with a signed hint instead (modelrepo.Repository.Retire).
	if s.cfg.RequireSignedPointers && m.pointer.Signed && v < m.pointer.Version {
		s.metrics.rollback(name)
		s.logger.Error("refused a rollback: the repository lists no version as high as the signed latest hint", "model", name,
			"listed", v, "hint_version", m.pointer.Version, "hint_sequence", m.pointer.Sequence, "serving", m.serving)
		return 0, fmt.Errorf("%w: %s lists version %d as its newest, below the signed latest hint's version %d (sequence %d)",
			modelrepo.ErrPointerRollback, name, v, m.pointer.Version, m.pointer.Sequence)
	}
	if !unchanged {
		m.pointerTag = etag // "" when there is no hint: read it whole next time
	}
	m.polls, m.pointerVer = 0, v
	return v, nil
}
