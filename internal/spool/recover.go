package spool

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentSuffix = ".seg"
	// segmentDigits is the width of a segment's zero-padded name, so that names sort as
	// their numbers do.
	segmentDigits = 20
	// maxResyncChecks bounds the CRCs computed while looking for the next good record after
	// damage: sane-looking headers inside damaged bytes are rare, so past this many the rest
	// of the segment is given up rather than scanned at quadratic cost.
	maxResyncChecks = 1024
	// readAttempts is how many times recovery tries to read a file before it takes an I/O
	// error for damage: an error that passes (a cable, a controller reset) must not make it
	// give up acked positions or move a segment of stored records aside.
	readAttempts = 3
)

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, first, segmentSuffix)
}

// parseSegmentName returns the first sequence number a segment's file name holds.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != segmentDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	return first, err == nil
}

// scanned is a record found by scanSegment.
type scanned struct {
	seq   uint64
	nanos int64
	off   int64
	n     int32
}

// scanSegment returns the good records of a segment's bytes b, whose numbers must lie in
// [first, next) and increase, and how many damaged stretches it skipped. After damage it
// resynchronises on the next offset that holds a whole good frame. end is where the last
// good frame ends when only damage follows it (a torn tail that can be cut off), else len(b).
func scanSegment(b []byte, first, next uint64) (recs []scanned, damaged, end int) {
	lo := first
	end = len(b)
	good := 0 // end of the last good frame
	for off := 0; off < len(b); {
		fr, n, err := decodeFrame(b[off:], maxRecordLimit)
		if err == nil && fr.seq >= lo && fr.seq < next {
			recs = append(recs, scanned{seq: fr.seq, nanos: fr.nanos, off: int64(off), n: int32(len(fr.data))})
			lo = fr.seq + 1
			off += n
			good = off
			continue
		}
		damaged++
		var gaveUp bool
		off, gaveUp = resync(b, off+1, lo, next)
		if off == len(b) && !gaveUp {
			end = good
		}
	}
	return recs, damaged, end
}

// resync returns the first offset at or after from where a good frame numbered in [lo, next)
// starts, or len(b) when there is none; gaveUp says the search stopped at its bound.
func resync(b []byte, from int, lo, next uint64) (off int, gaveUp bool) {
	checks := 0
	for i := from; i+headerSize <= len(b); i++ {
		j := bytes.IndexByte(b[i:len(b)-headerSize+1], frameMagic0)
		if j < 0 {
			break
		}
		i += j
		n, err := checkHeader(b[i:], maxRecordLimit)
		if err != nil {
			continue
		}
		if seq := binary.LittleEndian.Uint64(b[i+12:]); seq < lo || seq >= next {
			continue
		}
		if checks++; checks > maxResyncChecks {
			return len(b), true
		}
		if frameCRC(b[i:i+headerSize+n]) == binary.LittleEndian.Uint32(b[i+8:]) {
			return i, false
		}
	}
	return len(b), false
}

// segFile is a segment file found in the directory.
type segFile struct {
	first uint64
	path  string
}

// recoverDir rebuilds the spool's state from the directory: the head from the position file,
// the records from the segments, skipping what is damaged; then it starts a new segment for
// the appends to come, so that none lands after a torn tail.
func (s *Spool) recoverDir() error {
	posPath := filepath.Join(s.dir, positionName)
	posDamaged, posFound := false, true
	switch b, err := s.readFile(posPath); {
	case errors.Is(err, fs.ErrNotExist):
		posFound = false
	default:
		head, derr := decodePosition(b)
		if err != nil || derr != nil {
			// The records it would have hidden are delivered again: at least once.
			s.logger.Warn("spool: damaged position file; records acked before it may be delivered again", "file", posPath, "err", errors.Join(err, derr))
			s.corrupt++
			posDamaged = true
		}
		s.head, s.persistedHead = head, head
	}

	dirents, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: open: %w", err)
	}
	var files []segFile
	for _, de := range dirents {
		name := de.Name()
		if first, ok := parseSegmentName(name); ok {
			files = append(files, segFile{first: first, path: filepath.Join(s.dir, name)})
			continue
		}
		if strings.HasPrefix(name, ".tmp-"+positionName) || strings.HasSuffix(name, segmentSuffix+rewriteSuffix) {
			// A position write or a segment rewrite that a crash interrupted; the file it
			// would have replaced is intact. One that cannot be removed is tried again at the
			// next Open.
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.diskErrors.Add(1)
				s.logger.Warn("spool: cannot delete an interrupted write", "file", filepath.Join(s.dir, name), "err", err)
			}
			continue
		}
		if name != positionName {
			s.logger.Warn("spool: ignoring a file that is not the spool's", "file", filepath.Join(s.dir, name))
		}
	}
	slices.SortFunc(files, func(a, b segFile) int { return cmp.Compare(a.first, b.first) })

	var maxSeq, maxFirst uint64
	var stale []string // segments without a live record, deleted once the new one exists
	for i, sf := range files {
		maxFirst = max(maxFirst, sf.first)
		next := uint64(math.MaxUint64)
		if i+1 < len(files) {
			next = files[i+1].first
		}
		if next <= s.head {
			// Wholly acked: a deletion that a crash interrupted, or one undone by a power
			// cut before the directory was synced.
			stale = append(stale, sf.path)
			continue
		}
		seg, recs, err := s.recoverSegment(sf, next)
		if err != nil {
			// The bytes may be fine: keep them aside for a person rather than delete them,
			// and out of the listing so that their numbers can never mix with new ones.
			s.corrupt++
			aside := sf.path + ".unreadable"
			if rerr := s.fs.Rename(sf.path, aside); rerr != nil {
				// Left in the listing, its numbers could mix with new ones: refuse to open
				// until it can be read or moved.
				s.diskErrors.Add(1)
				return fmt.Errorf("spool: open: cannot read segment %s (%w) nor move it aside: %w", sf.path, err, rerr)
			}
			s.logger.Error("spool: cannot read a segment; moved it aside", "segment", sf.path, "moved_to", aside, "err", err)
			continue
		}
		if len(recs) > 0 {
			maxSeq = max(maxSeq, recs[len(recs)-1].seq)
		}
		live := 0
		for _, r := range recs {
			if r.seq < s.head {
				continue
			}
			s.idx = append(s.idx, entry{seq: r.seq, nanos: r.nanos, seg: seg, off: r.off, n: r.n})
			s.records++
			s.bytes += frameSize(int(r.n))
			live++
		}
		if live == 0 {
			seg.f.Close()
			stale = append(stale, sf.path)
			continue
		}
		s.segs = append(s.segs, seg)
	}

	s.nextSeq = max(1, s.head, maxSeq+1, maxFirst+1)
	s.syncedSeq = s.nextSeq - 1 // recoverSegment fsynced what it kept
	if _, err := s.rollLocked(); err != nil {
		s.diskErrors.Add(1)
		if !isDiskFull(err) {
			return fmt.Errorf("spool: open: create segment: %w", err)
		}
		s.paused = true
		s.logger.Warn("spool: disk full; opened paused, appends fail until space returns", "dir", s.dir, "err", err)
	} else if err := s.fs.SyncDir(s.dir); err != nil {
		s.diskErrors.Add(1)
		return fmt.Errorf("spool: open: %w", err)
	} else {
		s.active.dirSynced = true
		s.dirDirty = false
	}
	for _, path := range stale {
		if err := s.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.diskErrors.Add(1)
			s.logger.Warn("spool: cannot delete a segment without records", "segment", path, "err", err)
		}
	}
	if posDamaged || !posFound {
		// A position file always exists from now on, so that an ack on a full disk can
		// overwrite it in place (writePosition).
		if err := s.fs.WriteFileAtomic(posPath, encodePosition(s.head), 0o600); err != nil {
			s.diskErrors.Add(1)
			s.logger.Warn("spool: cannot write the position file", "file", posPath, "err", err)
		} else {
			s.persistedHead = s.head
		}
	}
	if s.cfg.FullPolicy == PolicyDropOldest && s.bytes > s.cfg.MaxBytes {
		// A smaller max_bytes than last time, or drops whose head a crash did not let
		// persist: the policy applies to what is stored as much as to what comes.
		n := s.records
		for s.bytes > s.cfg.MaxBytes && s.records > 0 {
			s.popLocked() // no damaged entries yet: every one is live
		}
		s.dropped[ReasonFull] += uint64(n - s.records)
		s.headMovedLocked()
	}
	s.dropExpiredLocked()
	if s.records > 0 || s.corrupt > 0 {
		s.logger.Info("spool: recovered", "dir", s.dir, "records", s.records, "bytes", s.bytes, "corrupt", s.corrupt, "next_seq", s.nextSeq)
	}
	return nil
}

// readFile reads a whole file, trying again after an I/O error (readAttempts in all); each
// failure is counted and logged. A file that does not exist is no failure.
func (s *Spool) readFile(path string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		b, err := s.fs.ReadFile(path)
		if err == nil || errors.Is(err, fs.ErrNotExist) || attempt == readAttempts {
			return b, err
		}
		s.diskErrors.Add(1)
		s.logger.Warn("spool: cannot read a file; trying again", "file", path, "attempt", attempt, "err", err)
	}
}

// recoverSegment reads one segment and opens it for Peek, trying again after an I/O error
// (readAttempts in all): only an error that persists makes the segment unreadable.
func (s *Spool) recoverSegment(sf segFile, next uint64) (*segment, []scanned, error) {
	for attempt := 1; ; attempt++ {
		seg, recs, damaged, err := s.recoverSegmentOnce(sf, next)
		if err == nil {
			if damaged > 0 {
				s.corrupt += uint64(damaged)
				s.logger.Warn("spool: skipped damaged records in a segment", "segment", sf.path, "stretches", damaged, "good_records", len(recs))
			}
			return seg, recs, nil
		}
		s.diskErrors.Add(1)
		if attempt == readAttempts {
			return nil, nil, err
		}
		s.logger.Warn("spool: cannot recover a segment; trying again", "segment", sf.path, "attempt", attempt, "err", err)
	}
}

// recoverSegmentOnce is one try of recoverSegment; it returns the damaged stretches for the
// caller to count once. The fsync makes durable what a killed predecessor wrote but did not
// sync, before new records are stored after it; when it fails, the pages it could not write
// may be gone (commit.go), so the segment is written again whole from the bytes just read.
func (s *Spool) recoverSegmentOnce(sf segFile, next uint64) (*segment, []scanned, int, error) {
	b, err := s.fs.ReadFile(sf.path)
	if err != nil {
		return nil, nil, 0, err
	}
	recs, damaged, end := scanSegment(b, sf.first, next)
	if end < len(b) {
		// A torn tail holds no good record: cut it off, so that it is counted once and not
		// again at every Open. Damage between good records stays until acks delete it.
		if err := s.fs.Truncate(sf.path, int64(end)); err != nil {
			s.diskErrors.Add(1)
			s.logger.Warn("spool: cannot cut a torn tail off a segment", "segment", sf.path, "err", err)
		} else {
			b = b[:end]
		}
	}
	f, err := s.fs.OpenFile(sf.path, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		s.diskErrors.Add(1)
		s.logger.Warn("spool: fsync of a recovered segment failed; writing it again from what was read", "segment", sf.path, "err", err)
		if err := s.fs.WriteFileAtomic(sf.path, b, 0o600); err != nil {
			return nil, nil, 0, fmt.Errorf("write again after a failed fsync: %w", err)
		}
		if f, err = s.fs.OpenFile(sf.path, os.O_RDONLY, 0); err != nil {
			return nil, nil, 0, err
		}
	}
	return &segment{first: sf.first, path: sf.path, f: f, size: int64(len(b)), synced: int64(len(b)), dirSynced: true}, recs, damaged, nil
}
