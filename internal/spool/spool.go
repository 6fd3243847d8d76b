// Package spool is a durable, crash-safe, bounded on-disk FIFO queue of opaque records: the
// exporter's capture spool (the capture pipeline appends samples; the sender peeks the oldest,
// ships them and acks them once the collector holds them) and the collector's write-ahead log
// (ingest appends batches; the shard builder acks them once their shard is uploaded).
//
// A record is written to its segment file before Append returns, so it survives the process
// being killed; it is fsynced by the next group commit, at most Config.SyncInterval or
// Config.SyncRecords later, which bounds what a power cut can take. Ack returns once the ack
// position is on disk, so an acked record never comes back; a record whose ack did not
// complete is delivered again (at least once). A failed fsync poisons its segment: the
// unsynced records are written again from memory, never reported durable. Recovery skips and
// counts damaged records, but an I/O error is not damage: a segment it cannot read is tried
// again and, if it stays unreadable, moved aside; Open fails while it can do neither.
// docs/spool.md has the guarantees and the file format, docs/faults.md what each disk fault does.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// Errors that callers tell apart with errors.Is.
var (
	// ErrFull is Append's answer under the drop_newest policy when the record does not fit.
	ErrFull = errors.New("spool full")
	// ErrUnavailable wraps disk errors (a full disk, an I/O error): the record was not stored,
	// and later Appends try again.
	ErrUnavailable = errors.New("spool disk unavailable")
	// ErrClosed is returned by every method but Stats and Close once Close has begun.
	ErrClosed = errors.New("spool closed")
	// ErrTooLarge is Append's answer for a record above Config.MaxRecordBytes.
	ErrTooLarge = errors.New("record too large")
)

// The reasons of edgeloop_spool_dropped_records_total and Stats.Dropped.
const (
	// ReasonFull counts the oldest records dropped to make room (drop_oldest).
	ReasonFull = "full"
	// ReasonFullNewest counts the records refused with ErrFull (drop_newest).
	ReasonFullNewest = "full_newest"
	// ReasonAge counts the records dropped for being older than MaxAge.
	ReasonAge = "age"
)

// DefaultMetricPrefix prefixes the spool's metric names unless Options.MetricPrefix is set.
const DefaultMetricPrefix = "edgeloop_spool"

// Options are what a Spool works with besides its configuration.
type Options struct {
	// Registerer takes the spool's metrics; nil registers none. Close unregisters them, so
	// a spool can be reopened on the same registry.
	Registerer prometheus.Registerer
	// Logger receives the spool's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of record times and of MaxAge; nil means time.Now.
	Now func() time.Time
	// SyncEachAppend makes Append return only once its record is fsynced: no power-loss
	// window, at the price of an fsync per Append (appenders that overlap share one). It is
	// the baseline the benchmarks compare group commit with.
	SyncEachAppend bool
	// MetricPrefix names the metrics: "<prefix>_records" and so on. Default "edgeloop_spool"
	// (the exporter's capture spool); the collector's write-ahead log uses its own.
	MetricPrefix string
	// FS does every one of the spool's file operations; nil means fsutil.OS. Tests pass one
	// that fails (internal/fsutil/fsfault): creating the directory, creating and opening
	// segments and every read, write, truncation, fsync and close of them; recovery's listing,
	// whole-file reads, the truncation of a torn tail and the renaming aside of an unreadable
	// segment; writing the position file (atomically, or in place on a full disk); removing
	// files; fsyncing the directory. docs/faults.md lists the call sites.
	FS fsutil.FS
}

// Record is one stored record as Peek returns it.
type Record struct {
	// Seq numbers the record; numbers increase across restarts and drops, with gaps.
	Seq uint64
	// Time is when Append stored the record, by Options.Now.
	Time time.Time
	// Data is the record as appended, in a slice of its own.
	Data []byte
}

// Stats is a snapshot of the spool's state, what its metrics report.
type Stats struct {
	// Records is the number of unacked records.
	Records int
	// Bytes is their size on disk, framing included: what MaxBytes bounds.
	Bytes int64
	// OldestTime is the oldest unacked record's Time; zero when there is none.
	OldestTime time.Time
	// Unsynced counts records written but not yet fsynced: what a power cut would take now.
	Unsynced int
	// Dropped counts the records dropped since Open, by reason (ReasonFull, ...).
	Dropped map[string]uint64
	// Corrupt counts damaged records skipped since Open: each stretch of damaged bytes in a
	// segment, each record that failed its check when read back, each unreadable file.
	Corrupt uint64
	// Paused is true while appends fail on disk errors.
	Paused bool
	// Segments is the number of segment files held.
	Segments int
	// FsyncErrors counts the segment fsyncs that failed since Open.
	FsyncErrors uint64
	// Rewritten counts the records written again to a new segment after a failed fsync.
	Rewritten uint64
	// DiskErrors counts the file operations that failed since Open, at every call site (a
	// full disk, an I/O error, a failed fsync, one that could not be removed...):
	// docs/faults.md lists them.
	DiskErrors uint64
}

// file is what the spool needs of an open segment.
type file = fsutil.File

// segment is one segment file. Its fields are guarded by Spool.mu.
type segment struct {
	first     uint64 // the sequence number in its name; its records are >= first
	path      string
	f         file
	size      int64 // bytes of whole records written
	synced    int64 // bytes known to be fsynced
	dirSynced bool  // its directory entry is durable
	broken    bool  // a write or fsync failed: never append to it again
	poisoned  bool  // an fsync failed: never fsynced again, its unsynced records go elsewhere
	refs      int   // readers and fsyncs in flight outside the lock
	detached  bool  // no longer held: close when refs drop to 0
	// tail holds the bytes [synced, size): the frames written but not yet fsynced, kept so
	// that they can be written again elsewhere when an fsync fails (commit.go). It is the
	// buffers the writes wrote, each kept as it is: copying them into one growing buffer
	// cost a copy of every byte, held up to twice the unsynced bytes, and under a steady
	// stream of appends kept its largest size.
	tail [][]byte
}

// entry indexes one stored record.
type entry struct {
	seq   uint64
	nanos int64
	seg   *segment
	off   int64
	n     int32 // data bytes
	dead  bool  // failed its check when read back: skipped and no longer counted
}

// signal wakes every goroutine waiting for a change; its zero value is ready, and it costs
// nothing while nobody waits. Guarded by Spool.mu.
type signal struct{ ch chan struct{} }

func (g *signal) wait() <-chan struct{} {
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	return g.ch
}

func (g *signal) broadcast() {
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

// Spool is the durable queue. It is safe for concurrent use: any number of appenders, and
// peekers and ackers (normally the one sender).
type Spool struct {
	dir      string
	cfg      Config
	logger   *slog.Logger
	now      func() time.Time
	syncEach bool
	fs       fsutil.FS
	reg      prometheus.Registerer
	metrics  *metrics

	// syncMu serialises group commits, so that one fsync covers every append before it.
	// Lock order: syncMu, then posMu, then mu.
	syncMu sync.Mutex
	// posMu serialises writes of the position file and the deletions that follow them.
	posMu sync.Mutex

	mu            sync.Mutex
	closed        bool
	segs          []*segment // oldest first
	active        *segment   // the last of segs, appended to; nil until one can be created
	idx           []entry    // records from idx[idxStart] on, in seq order
	idxStart      int
	head          uint64 // every seq below it is acked or dropped
	persistedHead uint64 // the head the position file holds
	nextSeq       uint64
	records       int   // live entries
	bytes         int64 // their framed bytes
	unsynced      int
	syncedSeq     uint64 // records up to it are durable
	dirDirty      bool   // a segment was created since the directory was last fsynced
	paused        bool
	rewrite       []*segment // poisoned segments whose unsynced records are not written again yet
	dropped       map[string]uint64
	corrupt       uint64
	fsyncErrors   uint64
	rewritten     uint64
	diskErrors    atomic.Uint64 // not under mu: some call sites are outside it
	readFailures  int           // Peeks in a row whose reads the disk failed
	notEmpty      signal        // for Wait
	freed         signal        // for the block policy

	pending chan struct{} // a record became unsynced, or the head moved: commit within SyncInterval
	full    chan struct{} // SyncRecords records are unsynced: commit now
	stop    chan struct{}
	done    chan struct{}
}

// Open opens the spool in dir, creating dir (mode 0700) if needed, and recovers what a crash
// left: damaged records are skipped and counted, never a reason to fail. It fails only when
// the directory cannot be created, listed or written. When the disk is full it opens paused
// and Append creates its segment once space returns.
func Open(dir string, cfg Config, opts Options) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("spool: config: %w", err)
	}
	s := &Spool{
		dir:      dir,
		cfg:      cfg,
		logger:   opts.Logger,
		now:      opts.Now,
		syncEach: opts.SyncEachAppend,
		fs:       opts.FS,
		reg:      opts.Registerer,
		dropped:  map[string]uint64{ReasonFull: 0, ReasonFullNewest: 0, ReasonAge: 0},
		pending:  make(chan struct{}, 1),
		full:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.fs = fsutil.Or(s.fs)
	if err := s.fs.MkdirAll(dir, 0o700); err != nil {
		s.logger.Error("spool: cannot create the directory", "dir", dir, "err", err)
		return nil, fmt.Errorf("spool: open: %w", err)
	}
	if err := s.recoverDir(); err != nil {
		s.closeFiles()
		s.logger.Error("spool: cannot open", "dir", dir, "err", err)
		return nil, err
	}
	s.metrics = newMetrics(s, opts.MetricPrefix)
	if s.reg != nil {
		if err := s.metrics.register(s.reg); err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("spool: open: register metrics: %w", err)
		}
	}
	go s.syncLoop()
	return s, nil
}

// Append stores data as the newest record and returns its sequence number. On a nil error the
// record is in its segment file (it survives the process being killed) and is fsynced by the
// next group commit, or before Append returns under Options.SyncEachAppend.
//
// When the record does not fit in MaxBytes, FullPolicy decides: drop_oldest drops the oldest
// records, drop_newest returns ErrFull, block waits for acks until ctx ends; ctx bounds only
// that wait. Disk errors return an error wrapping ErrUnavailable and pause the spool until an
// Append succeeds again; what was stored stays consistent.
func (s *Spool) Append(ctx context.Context, data []byte) (uint64, error) {
	if int64(len(data)) > s.cfg.MaxRecordBytes {
		return 0, fmt.Errorf("spool: append: %w: %d bytes, max_record_bytes is %d", ErrTooLarge, len(data), s.cfg.MaxRecordBytes)
	}
	size := frameSize(len(data))
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return 0, fmt.Errorf("spool: append: %w", ErrClosed)
		}
		s.dropExpiredLocked()
		if s.bytes+size <= s.cfg.MaxBytes {
			break
		}
		switch s.cfg.FullPolicy {
		case PolicyDropNewest:
			s.dropped[ReasonFullNewest]++
			held := s.bytes
			s.mu.Unlock()
			return 0, fmt.Errorf("spool: append: %w: %d of %d bytes held", ErrFull, held, s.cfg.MaxBytes)
		case PolicyBlock:
			freed := s.freed.wait()
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("spool: append: waiting for room: %w", ctx.Err())
			case <-freed:
			}
			s.mu.Lock()
			continue
		}
		// drop_oldest: Validate made sure the record fits once everything else is gone.
		for s.bytes+size > s.cfg.MaxBytes && s.records > 0 {
			if s.popLocked() {
				s.dropped[ReasonFull]++
			}
		}
		s.headMovedLocked()
		break
	}
	seqs, err := s.writeLocked([][]byte{data})
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	seq := seqs[0]
	if s.syncEach {
		if err := s.commit(seq); err != nil {
			return 0, fmt.Errorf("spool: append: record %d stored but not synced: %w", seq, err)
		}
	}
	return seq, nil
}

// AppendBatch appends records in order, as one Append per record would, and returns the
// sequence numbers of those stored (the first ones; on an error the rest were not). When the spool has room for
// all of them it writes the frames of consecutive records with one write per segment: a
// batch of 500 small samples costs one system call instead of 500 (the collector's ingest).
// Without room it falls back to Append per record, so FullPolicy applies to each.
func (s *Spool) AppendBatch(ctx context.Context, records [][]byte) ([]uint64, error) {
	var total int64
	for _, r := range records {
		total += frameSize(len(r))
		if int64(len(r)) > s.cfg.MaxRecordBytes {
			total = -1 // let Append report it, at its place in the batch
			break
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("spool: append: %w", ErrClosed)
	}
	s.dropExpiredLocked()
	if total < 0 || s.bytes+total > s.cfg.MaxBytes {
		s.mu.Unlock()
		seqs := make([]uint64, 0, len(records))
		for _, r := range records {
			seq, err := s.Append(ctx, r)
			if err != nil {
				return seqs, err
			}
			seqs = append(seqs, seq)
		}
		return seqs, nil
	}
	seqs, err := s.writeLocked(records)
	s.mu.Unlock()
	if err != nil {
		return seqs, err
	}
	if s.syncEach && len(seqs) > 0 {
		if err := s.commit(seqs[len(seqs)-1]); err != nil {
			return nil, fmt.Errorf("spool: append: records to %d stored but not synced: %w", seqs[len(seqs)-1], err)
		}
	}
	return seqs, nil
}

// writeLocked writes records to the active segment (rolling to new ones as they fill), the
// frames of those that share a segment with one write, and returns how many it stored and the
// sequence numbers of those stored. A failed write is cut back off the file, or, when that fails
// too, the segment is retired so that nothing follows the torn bytes; either way the records
// stored stay readable.
func (s *Spool) writeLocked(records [][]byte) ([]uint64, error) {
	if len(s.rewrite) > 0 {
		// Records whose fsync failed are only in memory until written again: take no more
		// before they are safe.
		return nil, s.diskErrorLocked("append", errRewritePending)
	}
	seqs, wasSynced := make([]uint64, 0, len(records)), s.unsynced == 0
	stored := 0
	for stored < len(records) {
		seg, err := s.activeLocked(frameSize(len(records[stored])))
		if err != nil {
			s.diskErrors.Add(1)
			return seqs, s.diskErrorLocked("append: new segment", err)
		}
		// The run of records that fit this segment, encoded back to back into one buffer of
		// its size, which the write then hands to the segment's unsynced tail as it is.
		nanos := s.now().UnixNano()
		end, off := stored, seg.size
		for end < len(records) {
			size := frameSize(len(records[end]))
			if end > stored && off+size > s.cfg.SegmentBytes {
				break
			}
			off += size
			end++
		}
		buf := make([]byte, off-seg.size)
		at := 0
		for i, data := range records[stored:end] {
			at += len(encodeFrame(buf[at:], s.nextSeq+uint64(i), nanos, data)) // in place: the room is there
		}
		_, err = seg.f.WriteAt(buf, seg.size)
		if err == nil {
			seg.tail = append(seg.tail, buf)
		}
		if err != nil {
			s.diskErrors.Add(1)
			if terr := seg.f.Truncate(seg.size); terr != nil {
				s.diskErrors.Add(1)
				seg.broken = true
				s.logger.Warn("spool: cannot cut a failed write off its segment; starting a new one", "segment", seg.path, "err", terr)
			}
			return seqs, s.diskErrorLocked("append", err)
		}
		if s.paused {
			s.paused = false
			s.logger.Info("spool: appends succeed again; capture resumed", "dir", s.dir)
		}
		for _, data := range records[stored:end] {
			size := frameSize(len(data))
			seqs = append(seqs, s.nextSeq)
			s.idx = append(s.idx, entry{seq: s.nextSeq, nanos: nanos, seg: seg, off: seg.size, n: int32(len(data))})
			seg.size += size
			s.nextSeq++
			s.records++
			s.bytes += size
			s.unsynced++
		}
		stored = end
	}
	if wasSynced && stored > 0 {
		kick(s.pending)
	}
	if s.unsynced >= s.cfg.SyncRecords {
		kick(s.full)
	}
	s.notEmpty.broadcast()
	return seqs, nil
}

// activeLocked returns the segment to append size bytes to, rolling to a new one when the
// active one is full or retired.
func (s *Spool) activeLocked(size int64) (*segment, error) {
	if a := s.active; a != nil && !a.broken && (a.size == 0 || a.size+size <= s.cfg.SegmentBytes) {
		return a, nil
	}
	return s.rollLocked()
}

// rollLocked creates the next segment, named by the next sequence number. A name that is
// taken (a retired segment that never got a record) moves the number on: gaps are allowed,
// reuse is not.
func (s *Spool) rollLocked() (*segment, error) {
	for range 4 {
		path := filepath.Join(s.dir, segmentName(s.nextSeq))
		f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			s.nextSeq++
			continue
		}
		if err != nil {
			return nil, err
		}
		seg := &segment{first: s.nextSeq, path: path, f: f}
		s.segs = append(s.segs, seg)
		s.active = seg
		s.dirDirty = true
		return seg, nil
	}
	return nil, fmt.Errorf("segment names from %d on are taken", s.nextSeq)
}

// diskErrorLocked pauses the spool on a disk error and wraps it for the caller.
func (s *Spool) diskErrorLocked(op string, err error) error {
	if !s.paused {
		s.paused = true
		s.logger.Warn("spool: disk error; capture paused until appends succeed again", "dir", s.dir, "err", err)
	}
	return fmt.Errorf("spool: %s: %w: %w", op, ErrUnavailable, err)
}

// kick sends on a buffered channel of one without waiting: a wake-up already pending covers
// this one.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// popLocked removes the oldest entry and moves the head past it; it reports whether the entry
// was a live record (rather than one already skipped as damaged).
func (s *Spool) popLocked() bool {
	e := s.idx[s.idxStart]
	s.idx[s.idxStart] = entry{} // let a deleted segment be collected
	s.idxStart++
	if !e.dead {
		s.records--
		s.bytes -= frameSize(int(e.n))
	}
	s.head = max(s.head, e.seq+1)
	switch {
	case s.idxStart == len(s.idx):
		s.idx, s.idxStart = s.idx[:0], 0
	case s.idxStart >= 1024 && s.idxStart*2 >= len(s.idx):
		n := copy(s.idx, s.idx[s.idxStart:])
		clear(s.idx[n:])
		s.idx, s.idxStart = s.idx[:n], 0
	}
	return !e.dead
}

// frontLocked returns the oldest live entry, or nil.
func (s *Spool) frontLocked() *entry {
	for s.idxStart < len(s.idx) {
		if e := &s.idx[s.idxStart]; !e.dead {
			return e
		}
		s.popLocked()
	}
	return nil
}

// headMovedLocked follows drops: room was freed, and the new head is persisted (and the
// segments below it deleted) by the next group commit, off the append path. Until then a
// crash may bring dropped records back, which is harmless.
func (s *Spool) headMovedLocked() {
	s.freed.broadcast()
	if s.head > s.persistedHead {
		kick(s.pending)
	}
}

// dropExpiredLocked drops the records older than MaxAge. Records are in append order, so it
// looks only at the oldest.
func (s *Spool) dropExpiredLocked() {
	if s.cfg.MaxAge <= 0 {
		return
	}
	cutoff := s.now().Add(-s.cfg.MaxAge).UnixNano()
	n := 0
	for e := s.frontLocked(); e != nil && e.nanos < cutoff; e = s.frontLocked() {
		if s.popLocked() {
			n++
		}
	}
	if n > 0 {
		s.dropped[ReasonAge] += uint64(n)
		s.headMovedLocked()
	}
}

// Peek returns the oldest unacked records in Seq order without removing them: at most max
// records, whose Data add up to at most maxBytes (maxBytes <= 0: no byte bound). It returns
// at least one record whenever one is stored, however large, and none (nil) when none is. Each
// record's Data is its own, read from disk and checked against its CRC; a record that fails
// the check is skipped and counted as corrupt.
func (s *Spool) Peek(max int, maxBytes int64) ([]Record, error) {
	return s.PeekAfter(0, max, maxBytes)
}

// PeekAfter is Peek for the records with Seq > after: a reader that keeps records unacked
// while it works on them (the collector's shard builder) reads on from where it was instead of
// from the oldest record again. PeekAfter(0, ...) is Peek.
func (s *Spool) PeekAfter(after uint64, max int, maxBytes int64) ([]Record, error) {
	if max < 1 {
		return nil, fmt.Errorf("spool: peek: max must be at least 1, got %d", max)
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("spool: peek: %w", ErrClosed)
		}
		s.dropExpiredLocked()
		var picks []entry
		var total int64
		start := s.idxStart
		if after > 0 {
			// The index is in seq order: find the first record past after.
			lo, hi := s.idxStart, len(s.idx)
			for lo < hi {
				m := int(uint(lo+hi) >> 1)
				if s.idx[m].seq <= after {
					lo = m + 1
				} else {
					hi = m
				}
			}
			start = lo
		}
		for i := start; i < len(s.idx) && len(picks) < max; i++ {
			e := s.idx[i]
			if e.dead {
				continue
			}
			if len(picks) > 0 && maxBytes > 0 && total+int64(e.n) > maxBytes {
				break
			}
			total += int64(e.n)
			e.seg.refs++ // reads happen outside the lock; the file stays open until released
			picks = append(picks, e)
		}
		s.mu.Unlock()
		if len(picks) == 0 {
			return nil, nil
		}
		recs, bad, unread, rerr := s.read(picks)
		s.mu.Lock()
		for _, e := range picks {
			s.releaseLocked(e.seg)
		}
		if rerr != nil {
			// Not damage: the disk failed the read, and an error that passes must not let a
			// sender ack past records it never sent. The records stay for the next Peek;
			// only when reading them fails readAttempts times in a row are they skipped as
			// damaged, so that a bad sector cannot stop delivery for good.
			s.diskErrors.Add(1)
			if s.readFailures++; s.readFailures < readAttempts {
				s.mu.Unlock()
				s.logger.Warn("spool: cannot read stored records; they stay for the next peek", "err", rerr)
				return nil, fmt.Errorf("spool: peek: %w: %w", ErrUnavailable, rerr)
			}
			s.logger.Error("spool: stored records failed to read again and again; skipping them as damaged", "records", len(unread), "attempts", s.readFailures, "err", rerr)
			bad = append(bad, unread...)
		}
		s.readFailures = 0
		var moved uint64 // the lowest record that failed where it was read but lives elsewhere now
		for _, e := range bad {
			if !s.killLocked(e) && (moved == 0 || e.seq < moved) {
				moved = e.seq
			}
		}
		s.mu.Unlock()
		if moved != 0 {
			// Written again to a new segment after a failed fsync while it was being read
			// from the old one: return what precedes it, never a batch with a hole that an
			// ack through a later record would lose.
			recs = recs[:sort.Search(len(recs), func(i int) bool { return recs[i].Seq >= moved })]
			if len(recs) == 0 {
				continue
			}
			return recs, nil
		}
		if len(recs) > 0 || len(bad) == 0 {
			return recs, nil
		}
		// Every record picked was damaged and is now skipped: look again.
	}
}

// read reads the picked records' frames, in runs of adjacent frames with one read each, and
// returns the records that check out and the picks that do not. A read that the disk fails
// (other than at the end of the file, which is damage) is no verdict on its records: they are
// returned apart, in unread, with the first such error.
func (s *Spool) read(picks []entry) (recs []Record, bad, unread []entry, ioErr error) {
	recs = make([]Record, 0, len(picks))
	for i := 0; i < len(picks); {
		j := i + 1
		end := picks[i].off + frameSize(int(picks[i].n))
		for j < len(picks) && picks[j].seg == picks[i].seg && picks[j].off == end {
			end += frameSize(int(picks[j].n))
			j++
		}
		buf := make([]byte, end-picks[i].off)
		_, err := picks[i].seg.f.ReadAt(buf, picks[i].off)
		if err != nil && !errors.Is(err, io.EOF) {
			if ioErr == nil {
				ioErr = fmt.Errorf("read %s: %w", picks[i].seg.path, err)
			}
			unread = append(unread, picks[i:j]...)
			i = j
			continue
		}
		for _, e := range picks[i:j] {
			size := frameSize(int(e.n))
			var fr frame
			if err == nil {
				b := buf[e.off-picks[i].off:][:size]
				fr, _, err = decodeFrame(b, int64(e.n))
				if err == nil && (fr.seq != e.seq || len(fr.data) != int(e.n)) {
					err = errBadSeq
				}
			}
			if err != nil {
				s.logger.Error("spool: a stored record failed its check when read back; skipping it", "seq", e.seq, "segment", e.seg.path, "err", err)
				bad = append(bad, e)
				err = nil
				continue
			}
			recs = append(recs, Record{Seq: e.seq, Time: time.Unix(0, e.nanos), Data: fr.data})
		}
		i = j
	}
	return recs, bad, unread, ioErr
}

// killLocked marks the record picked as p damaged: skipped from now on, no longer counted as
// stored. It reports false, killing nothing, when the record was moved to another segment
// since it was picked (written again after a failed fsync).
func (s *Spool) killLocked(p entry) bool {
	seq := p.seq
	lo, hi := s.idxStart, len(s.idx)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.idx[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(s.idx) || s.idx[lo].seq != seq || s.idx[lo].dead {
		return true // acked or dropped meanwhile
	}
	e := &s.idx[lo]
	if e.seg != p.seg || e.off != p.off {
		return false
	}
	e.dead = true
	s.records--
	s.bytes -= frameSize(int(e.n))
	s.corrupt++
	s.freed.broadcast()
	return true
}

// releaseLocked ends a use of seg outside the lock.
func (s *Spool) releaseLocked(seg *segment) {
	seg.refs--
	if seg.refs == 0 && seg.detached {
		seg.f.Close()
	}
}

// Ack removes every record with Seq <= through and returns once that is durable: after a
// crash, none of them comes back. Acking what is already acked (or dropped) is a no-op;
// acking past the newest record is an error. Segment files wholly acked are deleted.
func (s *Spool) Ack(through uint64) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool: ack: %w", ErrClosed)
	}
	if newest := s.nextSeq - 1; through > newest {
		s.mu.Unlock()
		return fmt.Errorf("spool: ack %d: beyond the newest record, %d", through, newest)
	}
	if through < s.persistedHead {
		s.mu.Unlock()
		return nil
	}
	for s.idxStart < len(s.idx) && s.idx[s.idxStart].seq <= through {
		s.popLocked()
	}
	s.head = max(s.head, through+1)
	s.freed.broadcast()
	s.mu.Unlock()
	if err := s.persistPosition(); err != nil {
		return fmt.Errorf("spool: ack %d: %w", through, err)
	}
	return nil
}

// persistPosition writes the head to the position file, then deletes the segments wholly
// below it. In that order a crash between the two leaves segments that the next Open sees
// are acked and deletes; the set of segments is the directory listing, so no reference to a
// deleted file can remain.
func (s *Spool) persistPosition() error {
	s.posMu.Lock()
	defer s.posMu.Unlock()
	s.mu.Lock()
	head, done := s.head, s.head <= s.persistedHead
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.writePosition(head); err != nil {
		s.diskErrors.Add(1)
		s.logger.Warn("spool: cannot persist the ack position; acked records may be delivered again after a restart", "err", err)
		return fmt.Errorf("persist position: %w: %w", ErrUnavailable, err)
	}
	s.mu.Lock()
	s.persistedHead = head
	gone := s.detachLocked()
	s.mu.Unlock()
	for _, seg := range gone {
		// The removal itself need not be durable: a segment that comes back is wholly
		// below the persisted head, and Open deletes it again.
		if err := s.fs.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.diskErrors.Add(1)
			s.logger.Warn("spool: cannot delete an acked segment", "segment", seg.path, "err", err)
		}
	}
	return nil
}

// writePosition replaces the position file with head. On a full disk, where the temporary
// file of an atomic replacement cannot be created, it overwrites the file in place instead:
// that needs no new block, so acks can still free space, and a torn overwrite fails its CRC,
// which only means records are delivered again.
func (s *Spool) writePosition(head uint64) error {
	path := filepath.Join(s.dir, positionName)
	data := encodePosition(head)
	err := s.fs.WriteFileAtomic(path, data, 0o600)
	if err == nil || !isDiskFull(err) {
		return err
	}
	f, oerr := s.fs.OpenFile(path, os.O_WRONLY, 0)
	if oerr != nil {
		return errors.Join(err, oerr)
	}
	_, werr := f.WriteAt(data, 0)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return errors.Join(err, werr)
	}
	s.diskErrors.Add(1) // the atomic replacement failed, though the position is on disk
	s.logger.Warn("spool: disk full; overwrote the position file in place", "file", path, "err", err)
	return nil
}

// detachLocked lets go of the oldest segments whose records are all below the persisted
// head: a segment holds the numbers from its own up to the next segment's.
func (s *Spool) detachLocked() []*segment {
	var gone []*segment
	for len(s.segs) > 1 && s.segs[0] != s.active && s.segs[1].first <= s.persistedHead {
		seg := s.segs[0]
		s.segs[0] = nil
		s.segs = s.segs[1:]
		seg.detached = true
		if seg.refs == 0 {
			seg.f.Close()
		}
		gone = append(gone, seg)
	}
	return gone
}

// Wait returns nil as soon as at least one unacked record exists (at once if one does), and
// ctx's error if ctx ends first.
func (s *Spool) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return fmt.Errorf("spool: wait: %w", ErrClosed)
		}
		if s.records > 0 {
			s.mu.Unlock()
			return nil
		}
		ch := s.notEmpty.wait()
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Sync makes every record appended so far durable now, instead of at the next group commit.
func (s *Spool) Sync() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("spool: sync: %w", ErrClosed)
	}
	return s.commit(0)
}

// Stats returns a snapshot of the spool's state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Records:  s.records,
		Bytes:    s.bytes,
		Unsynced: s.unsynced,
		Dropped:  make(map[string]uint64, len(s.dropped)),
		Corrupt:  s.corrupt,
		Paused:   s.paused,
		Segments: len(s.segs),

		FsyncErrors: s.fsyncErrors,
		Rewritten:   s.rewritten,
		DiskErrors:  s.diskErrors.Load(),
	}
	for r, n := range s.dropped {
		st.Dropped[r] = n
	}
	if !s.closed {
		if e := s.frontLocked(); e != nil {
			st.OldestTime = time.Unix(0, e.nanos)
		}
	}
	return st
}

// Close makes everything appended durable, persists the head, and releases the files. It is
// idempotent; the methods called after it return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.notEmpty.broadcast()
	s.freed.broadcast()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.commit(0)
	s.posMu.Lock() // waits for an Ack persisting the position
	s.closeFiles()
	s.posMu.Unlock()
	if s.reg != nil {
		s.metrics.unregister(s.reg)
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// closeFiles closes every segment file not in use; the rest close when released.
func (s *Spool) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		seg.detached = true
		if seg.refs == 0 {
			seg.f.Close()
		}
	}
	s.segs, s.active = nil, nil
}

// isDiskFull tells a full disk or quota, which may pass, from errors that will not.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
