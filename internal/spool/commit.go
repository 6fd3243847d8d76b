package spool

import (
	"errors"
	"fmt"
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

// commit fsyncs every segment written since its last fsync, and the directory when a segment
// was created, then persists the head if drops moved it. A commit covers every record
// written before it began, so when through is already durable there is nothing to do:
// appenders waiting under SyncEachAppend share one fsync.
func (s *Spool) commit(through uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if through != 0 && s.syncedSeq >= through {
		s.mu.Unlock()
		return nil
	}
	var targets []commitTarget
	var newSegs []*segment
	for _, seg := range s.segs {
		if seg.size > seg.synced {
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

	var errs []error
	for i := range targets {
		t := &targets[i]
		start := time.Now()
		t.err = t.seg.f.Sync()
		s.metrics.fsync.Observe(time.Since(start).Seconds())
		if t.err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", t.seg.path, t.err))
		}
	}
	var dirErr error
	if dirDirty {
		if dirErr = s.fs.SyncDir(s.dir); dirErr != nil {
			errs = append(errs, fmt.Errorf("fsync directory: %w", dirErr))
		}
	}

	s.mu.Lock()
	for _, t := range targets {
		if t.err == nil {
			t.seg.synced = max(t.seg.synced, t.size)
		} else {
			// Linux may have dropped the pages that failed, and a later fsync would report
			// success: never append to this segment again.
			t.seg.broken = true
		}
		s.releaseLocked(t.seg)
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
	if err := errors.Join(errs...); err != nil {
		s.logger.Error("spool: group commit failed; the records since the last one may not survive a power cut", "records", n, "err", err)
		return fmt.Errorf("spool: sync: %w: %w", ErrUnavailable, err)
	}
	return nil
}
