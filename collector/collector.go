package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/collector/models"
	"github.com/edgeloop/edgeloop/collector/shard"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
	"github.com/edgeloop/edgeloop/internal/web"
)

// TracerName is the instrumentation scope of the collector's spans (docs/tracing.md).
const TracerName = "github.com/edgeloop/edgeloop/collector"

// WALMetricPrefix names the write-ahead log's metrics (the spool's, renamed).
const WALMetricPrefix = "edgeloop_collector_wal"

// Options are what a Server works with besides its configuration.
type Options struct {
	// Logger is the base logger; parts add component=collector, ingest, shard, auth.
	Logger *slog.Logger
	// Tracing continues the nodes' traces; nil means off.
	Tracing *telemetry.Tracing
	// Bucket replaces the one Config.Bucket names (tests, or a caller sharing one).
	Bucket objstore.Bucket
	// OnShard is called after each shard and its index are uploaded (see shard.Options).
	OnShard func(ctx context.Context, key string, entries []sample.IndexEntry)
	// Routes mounts more endpoints on the collector's mux (catalog, labels, datasets), with
	// the Auth that guards them: wrap handlers in a.RequireOperator or a.RequireNode.
	Routes func(mux *http.ServeMux, a *auth.Auth)
	// FS does the file operations of the write-ahead log (spool.Options.FS), its id file and
	// the shard journal (shard.Options.FS); nil means the real file system. Tests pass one
	// that fails.
	FS fsutil.FS
	// Now is the wall clock under the log's stamps (see walClock); nil means time.Now.
	Now func() time.Time
}

// walClock is the clock the write-ahead log stamps records with and the shard builder cuts
// shards by: the wall clock, never going back. A shard boundary must be a function of the
// log (docs/collector.md), but the builder also cuts a shard when it finds nothing newer and
// the shard is due by the clock; a record appended after that is then stamped no earlier than
// the cut, so a replay of the log cuts before it too. With the raw wall clock, a step back
// (NTP, a VM resumed) would stamp it earlier, and a replay after a crash would put it in the
// old shard as well as in the one it went to.
type walClock struct {
	now  func() time.Time
	mu   sync.Mutex
	last time.Time
}

// Now returns the wall time, or the last time returned if that is later.
func (c *walClock) Now() time.Time {
	t := c.now().Round(0) // the wall reading only: the monotonic one would hide a step back
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Before(c.last) {
		return c.last
	}
	c.last = t
	return t
}

// floor makes the clock return nothing earlier than t: the newest stamp in the log at start.
func (c *walClock) floor(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.last) {
		c.last = t.Round(0)
	}
}

// Server is one collector instance. Build it with New, then Run it.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	ready    *web.Readiness
	auth     *auth.Auth
	bucket   objstore.Bucket
	ownsBkt  bool
	wal      *spool.Spool
	ingest   *ingest.Handler
	builder  *shard.Builder
	catalog  *catalog.Catalog
	mux      *http.ServeMux
	web      *web.Server
	instance string
}

// errCatalogNotRead answers a batch that arrives before the catalog's first read of the
// bucket (docs/collector.md, no sample stored twice).
var errCatalogNotRead = errors.New("the catalog has not read the bucket since the collector started: a resend cannot be told from a new batch yet")

// catalogStartTimeout bounds the catalog's first read of the bucket in New; Run goes on
// retrying after it.
const catalogStartTimeout = 30 * time.Second

// New opens the bucket and the write-ahead log (recovering what a crash left), seeds the
// duplicate set from the log, and binds the listener.
func New(cfg Config, opts Options) (*Server, error) {
	base := opts.Logger
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, logger: base.With("component", "collector"), registry: prometheus.NewRegistry(), ready: web.NewReadiness()}
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("collector"),
	)
	var err error
	if s.auth, err = auth.New(cfg.Auth, base.With("component", "auth")); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.bucket = opts.Bucket
	if s.bucket == nil {
		if s.bucket, err = objstore.Open(context.Background(), cfg.Bucket); err != nil {
			return nil, fmt.Errorf("collector: bucket: %w", err)
		}
		s.ownsBkt = true
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	fsys := fsutil.Or(opts.FS)
	walID, err := loadWALID(fsys, cfg.WAL.Dir)
	if err != nil {
		return nil, err
	}
	s.instance = cfg.Instance + "-" + walID
	clock := &walClock{now: opts.Now}
	if clock.now == nil {
		clock.now = time.Now
	}
	s.wal, err = spool.Open(filepath.Join(cfg.WAL.Dir, "records"), s.spoolConfig(), spool.Options{
		Registerer: s.registry, Logger: base.With("component", "wal"), MetricPrefix: WALMetricPrefix,
		FS: fsys, Now: clock.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("collector: write-ahead log: %w", err)
	}
	var tracer trace.Tracer // nil: the parts make none
	if opts.Tracing != nil {
		tracer = opts.Tracing.Provider.Tracer(TracerName)
	}
	dedup := ingest.NewDedup(cfg.Ingest.DedupKeys)
	seeded, newest, err := seedDedup(s.wal, dedup)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	clock.floor(newest)
	if s.catalog, err = catalog.New(catalog.Options{Bucket: s.bucket, Logger: base.With("component", "catalog")}); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.registry.MustRegister(s.catalog)
	// Keys in uploaded shards are duplicates too, not only those still in the log. Until the
	// catalog has read the bucket, a resend of a batch uploaded before a restart cannot be
	// told from a new one: such batches are answered 503 and sent again, not stored twice.
	dedup.SetKnown(func(key string) (bool, error) {
		if _, ok := s.catalog.Locate(key); ok {
			return true, nil
		}
		if !s.catalog.Synced() {
			return false, errCatalogNotRead
		}
		return false, nil
	})
	// The catalog's first read of the bucket, before the listener serves, so that ingest does
	// not start with 503s; Run retries one that failed.
	rctx, cancel := context.WithTimeout(context.Background(), catalogStartTimeout)
	if err := s.catalog.Rebuild(rctx); err != nil {
		s.logger.Warn("catalog: cannot read the bucket at start; ingest answers 503 until it can", "err", err)
	}
	cancel()
	onShard := s.catalog.AddShard
	if opts.OnShard != nil {
		onShard = func(ctx context.Context, key string, entries []sample.IndexEntry) {
			s.catalog.AddShard(ctx, key, entries)
			opts.OnShard(ctx, key, entries)
		}
	}
	s.builder, err = shard.New(cfg.Shards, shard.Options{
		Instance: s.instance, Bucket: s.bucket, Log: s.wal, JournalPath: filepath.Join(cfg.WAL.Dir, "uploaded-shards"), FS: fsys,
		OnShard: onShard, Readiness: s.ready, Registerer: s.registry, Logger: base.With("component", "shard"),
		Now: clock.Now, Peers: s.catalog, Tracer: tracer,
	})
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.ingest, err = ingest.New(cfg.Ingest, ingest.Options{WAL: s.wal, Dedup: dedup, Appended: s.builder.Notify,
		Registerer: s.registry, Logger: base.With("component", "ingest"), Tracer: tracer})
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.mux = web.NewMux(s.registry, s.registry, s.ready, cfg.Web.Pprof, s.logger)
	var h http.Handler = s.mux
	if opts.Tracing != nil {
		h = traced(opts.Tracing, h)
	}
	s.ingest.Register(s.mux, s.auth)
	if err := s.mountOperatorAPI(base); err != nil {
		return nil, err
	}
	if opts.Routes != nil {
		opts.Routes(s.mux, s.auth)
	}
	if s.web, err = web.Listen(cfg.Web, h, s.logger); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.logger.Info("write-ahead log recovered", "records", s.wal.Stats().Records, "bytes", s.wal.Stats().Bytes, "keys_seeded", seeded)
	ok = true
	return s, nil
}

// mountOperatorAPI mounts the catalog, the labelling API (labels, dataset manifests, Label
// Studio, sample images) for operators, and the read-only model repository for nodes.
func (s *Server) mountOperatorAPI(base *slog.Logger) error {
	var key []byte
	if f := s.cfg.Labels.SigningKeyFile; f != "" {
		var err error
		if key, err = os.ReadFile(f); err != nil {
			return fmt.Errorf("collector: labels.signing_key_file: %w", err)
		}
	}
	bucketURL := s.cfg.Labels.BucketURL
	if bucketURL == "" {
		bucketURL = s.cfg.Bucket
	}
	lab, err := labels.New(labels.Options{Bucket: s.bucket, Catalog: s.catalog, Instance: s.instance,
		BucketURL: bucketURL, PublicURL: s.cfg.Labels.PublicURL, SigningKey: key,
		RequireOperator: s.auth.RequireOperator, Logger: base.With("component", "labels")})
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	cat := s.catalog.Handler(s.auth.RequireOperator)
	s.mux.Handle("/v1/catalog", cat)
	s.mux.Handle("/v1/catalog/", cat)
	s.mux.Handle("GET /v1/samples", cat) // ?request_id=; POST is ingest, /v1/samples/ the labels' PNGs
	for _, p := range []string{"/v1/labels", "/v1/datasets/", "/v1/labelstudio/", "/v1/samples/"} {
		s.mux.Handle(p, lab.Handler())
	}
	repo := models.NewHandler(s.bucket, models.Root, s.auth.RequireNode, base.With("component", "models"))
	s.mux.Handle(models.PathPrefix, repo)
	s.mux.Handle(models.ModelsPath, repo)
	return nil
}

// traced continues the caller's trace (traceparent) in the request's context.
func traced(t *telemetry.Tracing, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(t.Extract(r.Context(), r.Header)))
	})
}

// spoolConfig is the log's configuration: never drop a record; refuse (503) rather than
// exceed the disk budget. Ingest reserves each batch's bytes under max_wal_bytes before it
// appends, so the spool's own bound, one record above, is a backstop it never reaches.
func (s *Server) spoolConfig() spool.Config {
	c := spool.DefaultConfig()
	c.MaxBytes = s.cfg.Ingest.MaxWALBytes + spool.FrameSize(sample.MaxRecordBytes)
	c.MaxAge = 0
	c.FullPolicy = spool.PolicyDropNewest
	c.SegmentBytes = s.cfg.WAL.SegmentBytes
	c.SyncInterval = s.cfg.WAL.SyncInterval
	c.MaxRecordBytes = sample.MaxRecordBytes
	return c
}

var walIDRE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// loadWALID returns the log's random id, creating it with the directory. It joins the instance
// in shard names: a collector whose log disk is replaced starts its sequence numbers again,
// and must not overwrite the shards its old log made.
func loadWALID(fsys fsutil.FS, dir string) (string, error) {
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("collector: write-ahead log: %w", err)
	}
	path := filepath.Join(dir, "id")
	b, err := fsys.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !walIDRE.MatchString(id) {
			return "", fmt.Errorf("collector: write-ahead log id %s: want 8 lowercase hex digits, got %.32q", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("collector: write-ahead log id: %w", err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("collector: write-ahead log id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	// WriteNew fsyncs the directory too: a power cut must not lose the id of a log whose
	// records survive, or the next start would name shards as another log's.
	if err := fsys.WriteNew(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("collector: write-ahead log id: %w", err)
	}
	return id, nil
}

// seedDedup remembers the keys of every record in the log: a resend of a batch whose answer a
// crash cut off is a duplicate. It also returns the newest stamp in the log.
func seedDedup(wal *spool.Spool, d *ingest.Dedup) (int, time.Time, error) {
	var after uint64
	var newest time.Time
	n := 0
	for {
		recs, err := wal.PeekAfter(after, 4096, 64<<20)
		if err != nil {
			return n, newest, fmt.Errorf("seed duplicates from the write-ahead log: %w", err)
		}
		if len(recs) == 0 {
			return n, newest, nil
		}
		for _, r := range recs {
			after = r.Seq
			if r.Time.After(newest) {
				newest = r.Time
			}
			if st, err := sample.ParseStored(r.Data); err == nil {
				d.Seed(st.Entry.Key)
				n++
			}
		}
	}
}

// Addr is the address the collector listens on.
func (s *Server) Addr() string { return s.web.Addr() }

// Auth is the collector's authenticator, for handlers mounted with Handle.
func (s *Server) Auth() *auth.Auth { return s.auth }

// Handle mounts h on the collector's mux (see Options.Routes); call it before Run.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Bucket is the object store the shards go to.
func (s *Server) Bucket() objstore.Bucket { return s.bucket }

// Registry is the collector's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Readiness lets mounted parts hold /readyz at 503.
func (s *Server) Readiness() *web.Readiness { return s.ready }

// Instance is the name shards carry: the configured instance and the log's id.
func (s *Server) Instance() string { return s.instance }

// WALStats is a snapshot of the write-ahead log.
func (s *Server) WALStats() spool.Stats { return s.wal.Stats() }

// Reload re-reads the token files and the client CA (SIGHUP); on error the old ones stay.
func (s *Server) Reload() error { return s.auth.Reload() }

// Run serves and builds shards until ctx is done, then stops, leaving what is not uploaded in
// the log for the next start.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// instance is the configured name; shard and label file names carry it with the WAL's id
	// appended (shard_prefix), so a wiped WAL never reuses an old shard's name.
	s.logger.Info("collector started", "listen", s.web.Addr(), "instance", s.cfg.Instance,
		"wal_id", strings.TrimPrefix(s.instance, s.cfg.Instance+"-"), "shard_prefix", s.instance, "bucket", fmt.Sprint(s.bucket))
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := s.web.Serve(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { s.catalog.Run(ctx, s.cfg.Catalog.RebuildInterval) })
	wg.Go(func() {
		if err := s.builder.Run(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Wait()
	close(errc)
	errs := []error{}
	for err := range errc {
		errs = append(errs, err)
	}
	errs = append(errs, s.close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	s.logger.Info("collector stopped")
	return nil
}

func (s *Server) close() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.ownsBkt && s.bucket != nil {
		errs = append(errs, s.bucket.Close())
	}
	return errors.Join(errs...)
}
