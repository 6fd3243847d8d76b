package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// syncLoop is the group commit: appends only write, and this goroutine fsyncs what they wrote
// at most SyncInterval after the first unsynced record, or at once when SyncRecords are
// waiting. It also drops expired records while nothing else looks at them.
func (s *Spool) syncLoop() {
	defer close(s.done)
	var ageTick <-chan time.Time
	if s.cfg.MaxAge > 0 {
		t := time.NewTicker(ageCheckEvery(s.cfg.MaxAge))
		defer t.Stop()
		ageTick = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-ageTick:
			s.mu.Lock()
			s.dropExpiredLocked()
			s.mu.Unlock()
			continue
		case <-s.full:
		case <-s.pending:
			// Wait for more appends to share the fsync, but no longer than SyncInterval.
			timer := time.NewTimer(s.cfg.SyncInterval)
			select {
			case <-s.stop:
				timer.Stop()
				return // Close commits
			case <-s.full:
			case <-timer.C:
			}
			timer.Stop()
		}
		// Errors are logged by commit and returned to Sync's callers; here there is none.
		_ = s.commit(0)
	}
}

// ageCheckEvery is how often the loop drops expired records: often enough that a record
// outlives MaxAge by at most about 1 %, and at least every minute.
func ageCheckEvery(maxAge time.Duration) time.Duration {
	return min(max(maxAge/100, time.Second), time.Minute)
}

// commitTarget is a segment fsynced by a commit and its size when the commit began.
type commitTarget struct {
	seg  *segment
	size int64
	err  error
}

// errRewritePending refuses appends while the records of a segment whose fsync failed are
// only in memory.
var errRewritePending = errors.New("records whose fsync failed are not written again yet")

// rewriteSuffix names the file a poisoned segment's replacement is written to before it is
// renamed over it; recovery deletes one a crash left.
const rewriteSuffix = ".rewrite"

// commit fsyncs every segment written since its last fsync, and the directory when a segment
// was created, then persists the head if drops moved it. A commit covers every record
// written before it began, so when through is already durable there is nothing to do:
// appenders waiting under SyncEachAppend share one fsync.
//
// An fsync that fails poisons its segment: Linux may have dropped the pages it could not
// write and marked them clean, so a later fsync of the same file would succeed without them.
// The segment is never fsynced again; its unsynced records are written again, from the
// copies kept in memory, to a new segment, whose fsync — tried once more within this commit —
// is what makes them durable.
func (s *Spool) commit(through uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	rewrote, err := s.commitOnce(through)
	if err != nil && rewrote {
		_, err2 := s.commitOnce(through)
		if err2 == nil {
			s.logger.Warn("spool: an fsync failed; the records it left unsynced were written again to a new segment and synced", "err", err)
			return nil
		}
		err = errors.Join(err, err2)
	}
	if err != nil {
		s.logger.Error("spool: group commit failed; the records since the last one are not durable", "err", err)
		return fmt.Errorf("spool: sync: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// commitOnce is one round of commit; rewrote reports that records of a poisoned segment were
// written again to a new one, which a further round can make durable.
func (s *Spool) commitOnce(through uint64) (rewrote bool, err error) {
	s.mu.Lock()
	if through != 0 && s.syncedSeq >= through && len(s.rewrite) == 0 {
		s.mu.Unlock()
		return false, nil
	}
	var errs []error
	if len(s.rewrite) > 0 {
		if err := s.rewriteLocked(); err != nil {
			errs = append(errs, err)
		} else {
			rewrote = true
		}
	}
	var targets []commitTarget
	var newSegs []*segment
	for _, seg := range s.segs {
		if seg.size > seg.synced && !seg.poisoned {
			seg.refs++
			targets = append(targets, commitTarget{seg: seg, size: seg.size})
		}
		if !seg.dirSynced {
			newSegs = append(newSegs, seg)
		}
	}
	n, last, dirDirty := s.unsynced, s.nextSeq-1, s.dirDirty
	s.dirDirty = false
	s.mu.Unlock()

	for i := range targets {
		t := &targets[i]
		start := time.Now()
		t.err = t.seg.f.Sync()
		s.metrics.fsync.Observe(time.Since(start).Seconds())
		if t.err != nil {
			s.diskErrors.Add(1)
			errs = append(errs, fmt.Errorf("fsync %s: %w", t.seg.path, t.err))
		}
	}
	var dirErr error
	if dirDirty {
		if dirErr = s.fs.SyncDir(s.dir); dirErr != nil {
			s.diskErrors.Add(1)
			errs = append(errs, fmt.Errorf("fsync directory: %w", dirErr))
		}
	}

	s.mu.Lock()
	poisoned := false
	for _, t := range targets {
		if t.err == nil {
			s.syncedLocked(t.seg, t.size)
		} else {
			t.seg.broken, t.seg.poisoned = true, true
			s.fsyncErrors++
			s.rewrite = append(s.rewrite, t.seg)
			poisoned = true
		}
		s.releaseLocked(t.seg)
	}
	if poisoned {
		if err := s.rewriteLocked(); err != nil {
			errs = append(errs, err)
		} else {
			rewrote = true
		}
	}
	if dirDirty {
		if dirErr == nil {
			for _, seg := range newSegs {
				seg.dirSynced = true
			}
		} else {
			s.dirDirty = true
		}
	}
	if len(errs) == 0 {
		s.unsynced -= n
		s.syncedSeq = max(s.syncedSeq, last)
	}
	if s.unsynced > 0 {
		kick(s.pending)
	}
	s.mu.Unlock()

	if err := s.persistPosition(); err != nil {
		errs = append(errs, err)
	}
	return rewrote, errors.Join(errs...)
}

// syncedLocked records that seg is fsynced through size, letting go of the copies of the
// frames before it.
func (s *Spool) syncedLocked(seg *segment, size int64) {
	if size <= seg.synced {
		return
	}
	// A commit's size is the segment's at a moment between writes, so whole buffers go; a
	// part of one, should that change, is cut off its front.
	n, i := size-seg.synced, 0
	for ; i < len(seg.tail) && n >= int64(len(seg.tail[i])); i++ {
		n -= int64(len(seg.tail[i]))
	}
	if n > 0 && i < len(seg.tail) {
		seg.tail[i] = seg.tail[i][n:]
	}
	k := copy(seg.tail, seg.tail[i:])
	clear(seg.tail[k:]) // let the synced buffers go
	seg.tail = seg.tail[:k]
	seg.synced = size
}

// rewriteLocked writes the unsynced records of every poisoned segment again, each to a new
// segment. While one cannot be (the disk refuses that too), appends are refused and the spool
// reports paused: the records are only in memory, and nothing reports them durable.
func (s *Spool) rewriteLocked() error {
	for len(s.rewrite) > 0 {
		if err := s.rewriteSegmentLocked(s.rewrite[0]); err != nil {
			s.diskErrors.Add(1)
			if !s.paused {
				s.paused = true
				s.logger.Error("spool: cannot write again the records of a segment whose fsync failed; appends refused until it succeeds", "dir", s.dir, "err", err)
			}
			return err
		}
		s.rewrite = s.rewrite[1:]
	}
	s.rewrite = nil
	if s.paused && s.active != nil {
		s.paused = false
		s.logger.Info("spool: records of a failed fsync written again; appends resumed", "dir", s.dir)
	}
	return nil
}

// rewriteSegmentLocked moves the live records of poisoned segment seg that its last good
// fsync did not cover to a new segment, named by the first of them so that the directory's
// order of names stays the order of numbers (recovery relies on it). seg keeps its synced
// records, and is cut back to them; a segment with none is replaced, its name reused.
func (s *Spool) rewriteSegmentLocked(seg *segment) error {
	var moved []int // positions in s.idx
	var total int64
	for i := s.idxStart; i < len(s.idx); i++ {
		if e := &s.idx[i]; e.seg == seg && !e.dead && e.off >= seg.synced {
			moved = append(moved, i)
			total += frameSize(int(e.n))
		}
	}
	if len(moved) > 0 {
		first := s.idx[moved[0]].seq
		buf := make([]byte, 0, total)
		unsynced := bytes.Join(seg.tail, nil) // the bytes [synced, size), once, on this rare path
		for _, i := range moved {
			e := s.idx[i]
			from := e.off - seg.synced
			buf = append(buf, unsynced[from:from+frameSize(int(e.n))]...)
		}
		replace := first == seg.first // then seg holds no synced record: its name is free
		path := filepath.Join(s.dir, segmentName(first))
		// A replacement is written under another name and renamed over the poisoned segment
		// only once written: until then that segment still holds the records, so a rewrite
		// that fails, then a close, leaves them where recovery finds them.
		dst := path
		if replace {
			dst = path + rewriteSuffix
			if err := s.fs.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("rewrite %s: %w", seg.path, err)
			}
		}
		f, err := s.fs.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("rewrite %s: new segment: %w", seg.path, err)
		}
		_, err = f.WriteAt(buf, 0)
		if err == nil && replace {
			err = s.fs.Rename(dst, path)
		}
		if err != nil {
			f.Close()
			s.fs.Remove(dst)
			return fmt.Errorf("rewrite %s: %w", seg.path, err)
		}
		u := &segment{first: first, path: path, f: f, size: int64(len(buf)), tail: [][]byte{buf}}
		var off int64
		for _, i := range moved {
			e := &s.idx[i]
			e.seg, e.off = u, off
			off += frameSize(int(e.n))
		}
		at := slices.Index(s.segs, seg)
		if replace {
			s.segs[at] = u
			seg.detached = true
			if seg.refs == 0 {
				seg.f.Close()
			}
		} else {
			s.segs = slices.Insert(s.segs, at+1, u)
		}
		if s.active == seg {
			s.active = u // the last segment: appends may follow its records
		}
		s.dirDirty = true
		s.rewritten += uint64(len(moved))
		s.logger.Warn("spool: an fsync failed; its unsynced records are written again to a new segment", "failed", seg.path, "segment", path, "records", len(moved))
	}
	if seg.size > seg.synced && !seg.detached {
		// Cut off the copies, so that recovery finds only what the segment's name covers.
		if err := seg.f.Truncate(seg.synced); err != nil {
			s.diskErrors.Add(1)
			s.logger.Warn("spool: cannot cut the unsynced records off a segment whose fsync failed; recovery will", "segment", seg.path, "err", err)
		}
	}
	seg.size, seg.tail = seg.synced, nil
	return nil
}
