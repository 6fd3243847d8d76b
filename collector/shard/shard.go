// Package shard is the collector's shard builder: it reads the write-ahead log in order,
// groups samples by model, version and UTC hour of their prediction time into tar shards with
// a JSONL index, uploads them to the object store, and acks the log behind them.
//
// Shards are deterministic functions of the log, so that a crash never stores a sample twice:
// a shard is named by the sequence number of its first record, and the decisions to cut it
// depend only on the records (their order, sizes, and the times the log stamped on them).
// After a crash the records not yet acked are read again and make the same shards under the
// same names, overwriting what was uploaded; the records of shards uploaded in full but not yet
// acked (an older shard of another group held the ack back) are listed in a small journal and
// skipped. docs/collector.md explains the guarantees.
package shard

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
	"github.com/edgeloop/edgeloop/internal/web"
)

// Config is the collector's `shards:` section.
type Config struct {
	// TargetBytes cuts a shard once its samples' records add up to this many bytes. Default
	// 64 MiB: large enough that object-store requests cost little per sample, small enough
	// that a trainer can shuffle shards.
	TargetBytes int64 `yaml:"target_bytes"`
	// MaxAge cuts a shard once its oldest sample has waited this long in the log, so that a
	// quiet model's samples still reach the object store. Default 5m.
	MaxAge time.Duration `yaml:"max_age"`
	// UploadTimeout bounds one attempt to upload a shard and its index. Default 5m.
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	// UploadConcurrency is how many shards upload at once. Default 2.
	UploadConcurrency int `yaml:"upload_concurrency"`
	// Retry is the backoff between failed uploads.
	Retry RetryConfig `yaml:"retry"`
}

// RetryConfig is capped exponential backoff with full jitter.
type RetryConfig struct {
	// InitialBackoff is the first wait. Default 1s.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps the wait. Default 1m.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config {
	return Config{
		TargetBytes:       64 << 20,
		MaxAge:            5 * time.Minute,
		UploadTimeout:     5 * time.Minute,
		UploadConcurrency: 2,
		Retry:             RetryConfig{InitialBackoff: time.Second, MaxBackoff: time.Minute},
	}
}

// Validate checks the section, naming fields relative to it.
func (c Config) Validate() error {
	var errs []error
	if c.TargetBytes < 1<<10 || c.TargetBytes > 4<<30 {
		errs = append(errs, config.Errorf("target_bytes", "must be between 1024 and 4 GiB, got %d", c.TargetBytes))
	}
	if c.MaxAge <= 0 {
		errs = append(errs, config.Errorf("max_age", "must be positive, got %s", c.MaxAge))
	}
	if c.UploadTimeout <= 0 {
		errs = append(errs, config.Errorf("upload_timeout", "must be positive, got %s", c.UploadTimeout))
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 64 {
		errs = append(errs, config.Errorf("upload_concurrency", "must be between 1 and 64, got %d", c.UploadConcurrency))
	}
	if c.Retry.InitialBackoff <= 0 {
		errs = append(errs, config.Errorf("retry.initial_backoff", "must be positive, got %s", c.Retry.InitialBackoff))
	}
	if c.Retry.MaxBackoff < c.Retry.InitialBackoff {
		errs = append(errs, config.Errorf("retry.max_backoff", "must be at least retry.initial_backoff (%s), got %s", c.Retry.InitialBackoff, c.Retry.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Log is what the builder needs of the write-ahead log (a *spool.Spool).
type Log interface {
	PeekAfter(after uint64, max int, maxBytes int64) ([]spool.Record, error)
	Ack(through uint64) error
}

// Options are what a Builder works with besides its configuration.
type Options struct {
	// Instance names this collector (and its log) in shard names, so that collectors sharing
	// a bucket never write the same key.
	Instance string
	// Bucket receives the shards.
	Bucket objstore.Bucket
	// Log is the write-ahead log the shards are built from.
	Log Log
	// JournalPath is the file listing uploaded shards not yet acked (beside the log).
	JournalPath string
	// FS does the journal's file operations; nil means fsutil.OS. Tests pass one that fails.
	FS fsutil.FS
	// OnShard, when set, is called after a shard and its index are uploaded, with the shard's
	// key (".tar") and its index entries. The catalog subscribes here. It runs on an upload
	// goroutine: a slow OnShard slows uploads.
	OnShard func(ctx context.Context, key string, entries []sample.IndexEntry)
	// Readiness gets the reason "objstore" while uploads fail.
	Readiness *web.Readiness
	// Registerer takes the builder's metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock that ages open shards; nil means time.Now. It must be the log's clock.
	Now func() time.Time
	// Peers, when set, is the view of the shards other instances stored (the catalog): a
	// shard leaves out the samples another shard holds, under the hour's lock in the bucket
	// (docs/collector.md, "Dedup across collectors").
	Peers Peers
	// Tracer starts a trace per shard (docs/tracing.md); nil means none.
	Tracer trace.Tracer
}

// ReadinessKey is the Readiness condition the builder sets while the object store fails.
const ReadinessKey = "objstore"

// groupKey is what a shard holds samples of.
type groupKey struct {
	model, version string
	hour           int64 // Unix hours of the prediction time, UTC
}

// shard is an open or uploading shard.
type shard struct {
	group     groupKey
	first     uint64    // seq of its first record: its name
	firstTime time.Time // when the log stamped that record
	members   []member  // in the log's order
	keys      map[string]bool
	bytes     int64
	cut       time.Time // when it was cut, for its trace
	cutBy     string    // "size" or "age"
}

// Key returns the shard's object key without extension.
func (b *Builder) key(sh *shard) string {
	t := time.Unix(sh.group.hour*3600, 0).UTC()
	return fmt.Sprintf("samples/%s/%s/dt=%s/hour=%02d/%s-%020d", sh.group.model, sh.group.version, t.Format("2006-01-02"), t.Hour(), b.opts.Instance, sh.first)
}

// Builder builds and uploads shards. Run it once.
type Builder struct {
	cfg    Config
	opts   Options
	logger *slog.Logger
	m      *metrics
	wake   chan struct{}

	mu       sync.Mutex
	open     map[groupKey]*shard
	pending  map[uint64]*shard // open and cut shards not yet uploaded, by first seq
	lastRead uint64
	acked    uint64
	skip     map[uint64]bool // records of shards uploaded before a restart
	journal  *journal

	publishMu sync.Mutex        // one shard published at a time (see publish)
	lastSeq   map[string]uint64 // per hour lock: the Seq this builder left at its last release (under mu)
}

// New loads the journal; Run starts the work.
func New(cfg Config, opts Options) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("shard: config: %w", err)
	}
	if opts.Bucket == nil || opts.Log == nil || opts.Instance == "" || opts.JournalPath == "" {
		return nil, errors.New("shard: Bucket, Log, Instance and JournalPath are required")
	}
	j, err := loadJournal(fsutil.Or(opts.FS), opts.JournalPath)
	if err != nil {
		return nil, err
	}
	b := &Builder{cfg: cfg, opts: opts, logger: opts.Logger, wake: make(chan struct{}, 1),
		open: map[groupKey]*shard{}, pending: map[uint64]*shard{}, skip: j.skipSet(), journal: j,
		lastSeq: map[string]uint64{}}
	if b.logger == nil {
		b.logger = slog.New(slog.DiscardHandler)
	}
	if b.opts.Now == nil {
		b.opts.Now = time.Now
	}
	if b.opts.Tracer == nil {
		b.opts.Tracer = noop.NewTracerProvider().Tracer("")
	}
	b.m = newMetrics(b)
	if opts.Registerer != nil {
		if err := b.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("shard: register metrics: %w", err)
		}
	}
	return b, nil
}

// Notify wakes the builder: records were appended.
func (b *Builder) Notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Pending is the number of shards open or waiting for upload.
func (b *Builder) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// peekRecords and peekBytes bound one read of the log: small enough that the records of one
// read (which share a buffer) do not pin much memory after most are uploaded.
const (
	peekRecords = 512
	peekBytes   = 4 << 20
)

// Run builds and uploads shards until ctx is done. Open shards stay in the log for the next
// start.
func (b *Builder) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cuts := make(chan *shard)
	var wg sync.WaitGroup
	for range b.cfg.UploadConcurrency {
		wg.Go(func() {
			for sh := range cuts {
				b.upload(ctx, sh)
			}
		})
	}
	defer wg.Wait()
	defer close(cuts)
	send := func(list []*shard) bool {
		for _, sh := range list {
			select {
			case cuts <- sh:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := b.opts.Now()
		b.mu.Lock()
		after := b.lastRead
		b.mu.Unlock()
		recs, err := b.opts.Log.PeekAfter(after, peekRecords, peekBytes)
		if err != nil {
			if errors.Is(err, spool.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			b.logger.Error("shard: cannot read the write-ahead log", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		var ready []*shard
		b.mu.Lock()
		for _, r := range recs {
			ready = b.processLocked(r, ready)
		}
		var next time.Duration
		if len(recs) == 0 {
			// Everything appended before now has been read, so a shard due by now is cut
			// where a replay of the log would cut it too (before the first later record).
			ready = b.cutExpiredLocked(now, ready)
			next = b.nextDueLocked(now)
		}
		b.advanceLocked()
		b.mu.Unlock()
		if !send(ready) {
			return nil
		}
		if len(recs) > 0 {
			continue
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case <-timer.C:
		}
	}
}

// processLocked adds one record to its shard, cutting what it makes due.
func (b *Builder) processLocked(r spool.Record, ready []*shard) []*shard {
	ready = b.cutExpiredLocked(r.Time, ready)
	b.lastRead = r.Seq
	if b.skip[r.Seq] {
		delete(b.skip, r.Seq)
		return ready
	}
	// Ingest validated the sample before appending it and the log checked the record's CRC:
	// validating it again would cost most of the builder's time.
	s, err := sample.ParseStored(r.Data)
	if err != nil {
		// The log checked the record's CRC, so this is a bug or a format change: keep going,
		// loudly, rather than block every later sample.
		b.m.undecodable.Inc()
		b.logger.Error("shard: a write-ahead log record does not decode; skipping it", "seq", r.Seq, "err", err)
		return ready
	}
	e := &s.Entry
	g := groupKey{model: e.Model, version: e.Version, hour: e.Time.Unix() / 3600}
	if e.Time.Unix() < 0 {
		g.hour = (e.Time.Unix() - 3599) / 3600
	}
	sh := b.open[g]
	if sh == nil {
		sh = &shard{group: g, first: r.Seq, firstTime: r.Time, keys: map[string]bool{}}
		b.open[g] = sh
		b.pending[r.Seq] = sh
	}
	if sh.keys[e.Key] {
		// The same sample twice in the log (its first copy left the dedup window): one shard
		// holds it once.
		return ready
	}
	sh.keys[e.Key] = true
	sh.members = append(sh.members, newMember(r.Seq, s))
	sh.bytes += int64(len(r.Data))
	if sh.bytes >= b.cfg.TargetBytes {
		delete(b.open, g)
		sh.cut, sh.cutBy = time.Now(), "size"
		ready = append(ready, sh)
	}
	return ready
}

// cutExpiredLocked cuts the open shards whose first record is MaxAge old at t.
func (b *Builder) cutExpiredLocked(t time.Time, ready []*shard) []*shard {
	for g, sh := range b.open {
		if !t.Before(sh.firstTime.Add(b.cfg.MaxAge)) {
			delete(b.open, g)
			sh.cut, sh.cutBy = time.Now(), "age"
			ready = append(ready, sh)
		}
	}
	return ready
}

// nextDueLocked is how long until the next open shard is due.
func (b *Builder) nextDueLocked(now time.Time) time.Duration {
	next := b.cfg.MaxAge
	for _, sh := range b.open {
		next = min(next, sh.firstTime.Add(b.cfg.MaxAge).Sub(now))
	}
	return max(next, time.Millisecond)
}

// advanceLocked acks the log through the last record such that every record at or below it
// is in an uploaded shard (or needs none).
func (b *Builder) advanceLocked() {
	through := b.lastRead
	for first := range b.pending {
		through = min(through, first-1)
	}
	if through <= b.acked {
		return
	}
	if err := b.opts.Log.Ack(through); err != nil {
		if !errors.Is(err, spool.ErrClosed) {
			b.logger.Error("shard: cannot ack the write-ahead log", "through", through, "err", err)
		}
		return
	}
	b.acked = through
}

// upload puts the shard and its index, retrying until it succeeds or ctx ends, then records
// it in the journal and acks what it allows.
func (b *Builder) upload(ctx context.Context, sh *shard) {
	key := b.key(sh)
	tarSize := storedTarSize(sh.members)
	// One trace per shard, from its first record to its upload: the build as a child span
	// that ended when the shard was cut, each upload attempt as another.
	ctx, span := b.opts.Tracer.Start(ctx, "collector.shard", trace.WithNewRoot(), trace.WithTimestamp(sh.firstTime),
		trace.WithAttributes(attribute.String("edgeloop.shard.key", key+".tar"), attribute.String("edgeloop.model", sh.group.model),
			attribute.String("edgeloop.model.version", sh.group.version), attribute.Int("edgeloop.shard.samples", len(sh.members)),
			attribute.Int64("edgeloop.shard.bytes", tarSize)))
	defer span.End()
	if span.IsRecording() {
		linkSamples(span, sh.members)
		_, build := b.opts.Tracer.Start(ctx, "collector.shard.build", trace.WithTimestamp(sh.firstTime),
			trace.WithAttributes(attribute.String("edgeloop.shard.cut_by", sh.cutBy), attribute.Int("edgeloop.shard.samples", len(sh.members))))
		build.End(trace.WithTimestamp(sh.cut))
	}
	var kept []member
	seqs := make([]uint64, len(sh.members)) // every record the shard covers, for the journal
	for i, m := range sh.members {
		seqs[i] = m.seq
	}
	backoff := b.cfg.Retry.InitialBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		actx, aspan := b.opts.Tracer.Start(ctx, "collector.shard.upload", trace.WithAttributes(attribute.Int("edgeloop.shard.attempt", attempt)))
		var err error
		kept, err = b.put(actx, key, sh.members, tarSize)
		if err != nil {
			aspan.RecordError(err)
			aspan.SetStatus(codes.Error, "upload failed")
		}
		aspan.End()
		var lost *lostRecordError
		if errors.As(err, &lost) {
			// The disk damaged the record since the builder read it (the log skips it now):
			// the sample is gone, and the shard goes without it rather than never.
			b.m.lost.Inc()
			b.logger.Error("shard: a record of the shard can no longer be read from the write-ahead log; the shard is uploaded without it", "shard", key, "seq", lost.seq, "err", lost.err)
			sh.members = slices.DeleteFunc(sh.members, func(m member) bool { return m.seq == lost.seq })
			tarSize = storedTarSize(sh.members)
			if len(sh.members) == 0 {
				kept = nil // nothing left to upload; the journal and the ack below still go
				break
			}
			continue
		}
		if err == nil {
			span.SetAttributes(attribute.Int("edgeloop.shard.kept", len(kept)), attribute.Int("edgeloop.shard.attempts", attempt))
			b.m.duration.Observe(time.Since(start).Seconds())
			b.m.uploads.WithLabelValues("success").Inc()
			b.m.bytes.Add(float64(storedTarSize(kept) + indexSize(kept)))
			if b.opts.Readiness != nil {
				b.opts.Readiness.Ready(ReadinessKey)
			}
			break
		}
		if ctx.Err() != nil {
			return // stopping: the shard is rebuilt from the log at the next start
		}
		b.m.uploads.WithLabelValues("failure").Inc()
		b.m.objstoreErrors.Inc()
		if b.opts.Readiness != nil {
			b.opts.Readiness.NotReady(ReadinessKey, "object store unreachable: "+err.Error())
		}
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		b.logger.Warn("shard: upload failed; retrying", "shard", key, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, b.cfg.Retry.MaxBackoff)
	}
	entries := make([]sample.IndexEntry, len(kept))
	for i, m := range kept {
		entries[i] = m.entry
	}
	b.logger.Debug("shard: uploaded", "shard", key+".tar", "samples", len(kept), "bytes", tarSize)
	b.mu.Lock()
	delete(b.pending, sh.first)
	// The journal first: once the log is acked past a record, only the journal says where it
	// went. While it cannot be written, the ack is held back and the write tried again with
	// backoff (docs/faults.md); a restart meanwhile rebuilds the same shard.
	backoff = b.cfg.Retry.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := b.journal.add(sh.first, seqs, b.acked)
		if err == nil {
			break
		}
		b.pending[sh.first] = &shard{first: sh.first}
		b.m.journalErrors.Inc()
		b.mu.Unlock()
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		b.logger.Error("shard: cannot write the journal; the log is not acked past this shard until it is written", "shard", key, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, b.cfg.Retry.MaxBackoff)
		b.mu.Lock()
		delete(b.pending, sh.first)
	}
	before := b.acked
	b.advanceLocked()
	if b.acked != before {
		if err := b.journal.prune(b.acked); err != nil {
			b.m.journalErrors.Inc()
			b.logger.Warn("shard: cannot prune the journal", "err", err)
		}
	}
	b.mu.Unlock()
	if b.opts.OnShard != nil && len(kept) > 0 {
		b.opts.OnShard(ctx, key+".tar", entries)
	}
}

// member is one sample of a shard while the shard is open or uploading: its index entry and
// line, its sizes, its capture trace and its record's place in the log. Its metadata and input
// are read back from the log as the tar is written (readBack): a shard of 64 MiB of 4 KiB
// samples costs about 8 MB of memory this way, where holding its records cost the 64 MiB,
// with two shards uploading and one open per model the largest part of the collector's heap.
// The records stay in the log until the shard is uploaded (the builder acks no further).
type member struct {
	seq                   uint64
	entry                 sample.IndexEntry
	indexLine             []byte
	metaBytes, inputBytes int
	traceID               trace.TraceID // of the metadata's trace_id; zero when it has none
}

func newMember(seq uint64, s *sample.Stored) member {
	tid, _ := metaTraceID(s.Meta)
	return member{seq: seq, entry: s.Entry, indexLine: bytes.Clone(s.IndexLine), metaBytes: len(s.Meta), inputBytes: len(s.Input), traceID: tid}
}

// storedTarSize is the size of the tar writeTar makes of members.
func storedTarSize(members []member) int64 {
	n := int64(sample.StoredTarEnd)
	for _, m := range members {
		n += sample.StoredTarSize(m.metaBytes, m.inputBytes)
	}
	return n
}

// indexSize is the size of the index of members.
func indexSize(members []member) int64 {
	var n int64
	for _, m := range members {
		n += int64(len(m.indexLine)) + 1
	}
	return n
}

// put uploads the tar, then publishes the shard (its index): a reader that finds the index
// finds its tar. It returns the members the shard keeps (see publish).
func (b *Builder) put(ctx context.Context, key string, members []member, tarSize int64) ([]member, error) {
	tctx, cancel := context.WithTimeout(ctx, b.cfg.UploadTimeout)
	err := b.putTar(tctx, key, members, tarSize)
	cancel()
	if err != nil {
		return nil, err
	}
	return b.publish(ctx, key, members)
}

// putTar uploads the shard's tar, streamed as writeTar produces it.
func (b *Builder) putTar(ctx context.Context, key string, members []member, tarSize int64) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		// Buffered: a pipe write hands over to the reader, and a tar of small samples is
		// written in pieces of a few hundred bytes. Small enough that a large input, written
		// into an empty buffer, goes to the pipe without a copy.
		w := bufio.NewWriterSize(pw, 64<<10)
		err := b.writeTar(w, members)
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	err := b.opts.Bucket.Put(ctx, key+".tar", pr, tarSize)
	pr.CloseWithError(errors.New("upload ended")) // stops the writer if Put gave up early
	var lost *lostRecordError
	if werr := <-done; errors.As(werr, &lost) {
		return werr // the upload loop drops the member; Put failed on the cut stream
	}
	if err != nil {
		return fmt.Errorf("shard: upload: %w", err)
	}
	return nil
}

// writeTar writes the members' tar, reading their metadata and inputs back from the log.
func (b *Builder) writeTar(w io.Writer, members []member) error {
	tw := sample.NewStoredTarWriter(w)
	err := b.readBack(members, func(m *member, meta, input []byte) error {
		return tw.Write(&m.entry, meta, input)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// lostRecordError is a member whose record the log no longer holds or no longer matches: the
// disk damaged it since the builder read it.
type lostRecordError struct {
	seq uint64
	err error
}

func (e *lostRecordError) Error() string {
	return fmt.Sprintf("shard: write-ahead log record %d: %v", e.seq, e.err)
}

// readBack calls fn with each member's metadata and input, read from the log in the members'
// order (theirs is the log's). Records of other shards between them are read and passed over.
func (b *Builder) readBack(members []member, fn func(m *member, meta, input []byte) error) error {
	if len(members) == 0 {
		return nil
	}
	after, i := members[0].seq-1, 0
	for i < len(members) {
		recs, err := b.opts.Log.PeekAfter(after, peekRecords, peekBytes)
		if err != nil {
			return fmt.Errorf("shard: read the write-ahead log back: %w", err)
		}
		if len(recs) == 0 {
			return &lostRecordError{seq: members[i].seq, err: errors.New("not in the log")}
		}
		for _, r := range recs {
			after = r.Seq
			m := &members[i]
			if r.Seq < m.seq {
				continue // another shard's
			}
			if r.Seq > m.seq {
				return &lostRecordError{seq: m.seq, err: errors.New("not in the log")}
			}
			meta, input, err := sample.StoredMembers(r.Data)
			if err == nil && (len(meta) != m.metaBytes || len(input) != m.inputBytes) {
				err = fmt.Errorf("%d and %d bytes of metadata and input, %d and %d when first read", len(meta), len(input), m.metaBytes, m.inputBytes)
			}
			if err != nil {
				return &lostRecordError{seq: m.seq, err: err}
			}
			if err := fn(m, meta, input); err != nil {
				return err
			}
			if i++; i == len(members) {
				return nil
			}
		}
	}
	return nil
}

type metrics struct {
	uploads        *prometheus.CounterVec
	bytes          prometheus.Counter
	duration       prometheus.Histogram
	objstoreErrors prometheus.Counter
	journalErrors  prometheus.Counter
	undecodable    prometheus.Counter
	lost           prometheus.Counter
	pending        prometheus.GaugeFunc
	dropped        prometheus.Counter
	lockWait       prometheus.Histogram
	lockTakeovers  prometheus.Counter
}

func newMetrics(b *Builder) *metrics {
	m := &metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_shard_uploads_total",
			Help: "Shard upload attempts (tar and index), by outcome: success or failure."}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_shard_upload_bytes_total",
			Help: "Bytes of shards and indexes uploaded successfully."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edgeloop_collector_shard_upload_duration_seconds",
			Help: "Duration of successful shard uploads (tar and index).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		objstoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_objstore_errors_total",
			Help: "Failed object-store requests of the shard uploader."}),
		journalErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_shard_journal_errors_total",
			Help: "Failed writes of the shard journal; while the one after an upload fails, the write-ahead log is not acked past its shard."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_wal_undecodable_records_total",
			Help: "Write-ahead log records that passed their CRC but do not decode as samples (skipped)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_wal_lost_records_total",
			Help: "Write-ahead log records a shard could not read back for its upload (damaged on disk since the builder first read them): uploaded without them, each sample lost."}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgeloop_collector_shards_pending",
			Help: "Shards open or waiting for upload."}, func() float64 { return float64(b.Pending()) }),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_shard_duplicates_dropped_total",
			Help: "Samples left out of a shard when it was published because another shard in the bucket holds them (a resend stored by another instance)."}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edgeloop_collector_shard_lock_wait_seconds",
			Help: "Time a shard waited for its hour's lock in the bucket before it was published.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		lockTakeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_shard_lock_takeovers_total",
			Help: "Hour locks taken over because their holder let them expire (it died or stalled) or this instance left them in a crash."}),
	}
	m.uploads.WithLabelValues("success")
	m.uploads.WithLabelValues("failure")
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.uploads, m.bytes, m.duration, m.objstoreErrors, m.journalErrors, m.undecodable, m.lost, m.pending, m.dropped, m.lockWait, m.lockTakeovers} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
