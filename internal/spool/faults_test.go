package spool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/fsutil/fsfault"
)

// TestDiskFaultsAtEveryCallSite runs a day of the spool's life — recovery of a directory a
// crash left (a stale acked segment, a temporary position file, a torn tail), appends that
// roll segments, a group commit, reads, an ack that deletes segments, close — once per call
// site, fault kind and occurrence, with one fault injected (fsfault.Enumerate). For each: no
// record whose Append returned nil is lost, none whose Ack returned nil comes back, the fault
// shows as an error to the caller or in DiskErrors (edgeloop_spool_disk_errors_total) and in
// the log, and once it ends the spool opens, stores and delivers again. Both uses of the
// spool: the exporter's capture spool (Append) and the collector's write-ahead log
// (AppendBatch, drop_newest, its metric prefix).
func TestDiskFaultsAtEveryCallSite(t *testing.T) {
	for _, wal := range []bool{false, true} {
		name := "capture"
		if wal {
			name = "wal"
		}
		t.Run(name, func(t *testing.T) {
			rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{MaxPerSite: 10}, func(t *testing.T, fsys *fsfault.FS, dir string) {
				faultScenario(t, fsys, dir, wal, false)
			})
			// The sites the scenario must reach, so that a change that routes one around the
			// seam, or a scenario that stops reaching it, fails here.
			want := []string{
				"mkdir spool", "readfile spool/position", "readdir spool", "remove spool/.tmp-position-N",
				"readfile spool/N.seg", "truncate spool/N.seg", "open spool/N.seg", "fsync spool/N.seg",
				"create spool/N.seg", "syncdir spool", "remove spool/N.seg", "write spool/N.seg",
				"read spool/N.seg", "atomic.create spool/.tmp-position-N", "atomic.write spool/.tmp-position-N",
				"atomic.fsync spool/.tmp-position-N", "atomic.rename spool/position", "atomic.syncdir spool",
			}
			var got []string
			for _, sc := range rep.Sites {
				got = append(got, sc.Site.OpPath())
			}
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("call site %q not reached; reached %q", w, got)
				}
			}
			if len(rep.Sites) < len(want) || rep.Runs < 40 || rep.Fired != rep.Runs {
				t.Errorf("%d call sites, %d runs, %d fired: want at least %d sites, 40 runs, every fault fired", len(rep.Sites), rep.Runs, rep.Fired, len(want))
			}
			for _, k := range []fsfault.Kind{fsfault.ENOSPC, fsfault.EIO, fsfault.ShortWrite, fsfault.FsyncError} {
				if rep.ByKind[k] == 0 {
					t.Errorf("no run injected %s", k)
				}
			}
		})
	}
}

// faultLedger tracks what the scenario was told: records stored, records acked.
type faultLedger struct {
	seqOf   map[string]uint64 // data → seq, of every record Append stored (nil error)
	maybe   map[string]bool   // data of every record ever offered: what may be found
	acked   map[string]bool   // data of records whose Ack returned nil
	peeked  map[string]bool   // data of records Peek returned: what a sender delivered
	skipped map[uint64]string // data of records acked past without Peek returning them
	errs    []error           // errors the spool returned
	nextRec int
}

func (l *faultLedger) data(i int) []byte {
	return fmt.Appendf(nil, "record-%04d-%s", i, strings.Repeat("x", 300))
}

// offer returns the next record's data and notes it as possibly stored.
func (l *faultLedger) offer() []byte {
	l.nextRec++
	d := l.data(l.nextRec)
	l.maybe[string(d)] = true
	return d
}

func (l *faultLedger) err(err error) {
	if err != nil {
		l.errs = append(l.errs, err)
	}
}

// TestPersistentDiskFaults is TestDiskFaultsAtEveryCallSite with a disk that keeps failing:
// from the first call of each site on, every call of it fails until the fault ends. The
// spool may then give up on a segment it cannot read (moved aside as .unreadable, counted
// corrupt, logged at ERROR): its records count as kept, not lost, only there.
func TestPersistentDiskFaults(t *testing.T) {
	rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{MaxPerSite: 1, Repeat: fsfault.Persistent}, func(t *testing.T, fsys *fsfault.FS, dir string) {
		faultScenario(t, fsys, dir, false, true)
	})
	if len(rep.Sites) < 18 || rep.Runs < 30 || rep.Fired != rep.Runs {
		t.Errorf("%d call sites, %d runs, %d fired: want at least 18 sites, 30 runs, every fault fired", len(rep.Sites), rep.Runs, rep.Fired)
	}
}

// faultScenario is the spool's day under one fault (persistent: one that lasts until Heal).
func faultScenario(t *testing.T, fsys *fsfault.FS, root string, wal, persistent bool) {
	dir := filepath.Join(root, "spool")
	cfg := testConfig()
	cfg.SegmentBytes = 4 << 10 // a dozen records each: the scenario rolls segments
	opts := Options{}
	if wal {
		cfg.FullPolicy = PolicyDropNewest
		opts.MetricPrefix = "edgeloop_collector_wal"
	}
	l := &faultLedger{seqOf: map[string]uint64{}, maybe: map[string]bool{}, acked: map[string]bool{}, peeked: map[string]bool{}, skipped: map[uint64]string{}}

	// What a crash left, made on the real disk: records 1..30 stored, 1..14 acked; the first
	// segment, wholly acked, back as if its deletion was lost; a temporary position file;
	// a torn tail after the last record.
	seed := mustOpen(t, dir, cfg, Options{FS: fsutil.OS{}})
	for range 30 {
		d := l.offer()
		l.seqOf[string(d)] = mustAppend(t, seed, d)
	}
	if err := seed.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	firstSeg, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Ack(14); err != nil {
		t.Fatal(err)
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
	for d, seq := range l.seqOf {
		if seq <= 14 {
			delete(l.seqOf, d)
			l.acked[d] = true
		}
	}
	if err := os.WriteFile(segs[0], firstSeg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".tmp-"+positionName+"-123"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	tail, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Write(encodeFrame(make([]byte, frameSize(40)), 999, 0, make([]byte, 40))[:30]); err != nil {
		t.Fatal(err)
	}
	tail.Close()

	// The day, through the faulty disk.
	logs := &fsfault.Logs{}
	opts.FS, opts.Logger = fsys, logs.Logger()
	s, err := Open(dir, cfg, opts)
	for try := 0; err != nil && try < 2; try++ {
		l.err(err)
		s, err = Open(dir, cfg, opts) // a fault that has passed
	}
	if err != nil && !persistent {
		t.Fatalf("Open after the fault: %v", err)
	}
	if err != nil {
		l.err(err)
		s = nil // a disk that keeps failing Open: nothing to do until it heals
	}
	ctx := context.Background()
	if s != nil {
		faultDay(t, s, l, wal)
	}
	var st Stats
	if s != nil {
		l.err(s.Close())
		st = s.Stats()
	}

	if fired := fsys.Fired(); len(fired) > 0 {
		if len(l.errs) == 0 && st.DiskErrors == 0 {
			t.Errorf("%s: no error returned and DiskErrors is 0: the fault is invisible", fired[0])
		}
		if !logs.Injected() {
			t.Errorf("%s: not logged; logs: %q", fired[0], logs.Records())
		}
	} else if len(l.errs) > 0 || st.DiskErrors > 0 {
		t.Errorf("clean run: errors %v, DiskErrors %d", l.errs, st.DiskErrors)
	}

	// The fault is over: reopened, the spool holds every record it stored and not acked,
	// no record acked, and stores and delivers again.
	fsys.Heal()
	aside := map[string]bool{}
	if persistent {
		aside = recordsAside(t, dir)
	}
	s2, err := Open(dir, cfg, Options{FS: fsys})
	if err != nil {
		t.Fatalf("Open after the fault: %v", err)
	}
	defer s2.Close()
	all := peekAll(t, s2)
	seen := map[string]bool{}
	for _, r := range all {
		d := string(r.Data)
		switch {
		case seen[d]:
			t.Errorf("record %.11s found twice", d)
		case l.acked[d] && !persistent:
			// Under a persistent fault an unreadable position file is taken as damaged:
			// acked records come back, at least once, and the collector deduplicates them.
			t.Errorf("record %.11s (seq %d) came back after its Ack returned nil", d, r.Seq)
		case !l.maybe[d]:
			t.Errorf("record %.11s was never appended", d)
		}
		seen[d] = true
	}
	for seq, d := range l.skipped {
		if !aside[d] {
			t.Errorf("record %.11s (seq %d) lost: acked past without Peek ever returning it", d, seq)
		}
	}
	for d, seq := range l.seqOf {
		if !seen[d] && !aside[d] {
			t.Errorf("record %.11s (seq %d) lost: its Append returned nil and it was never acked (errors %v)", d, seq, l.errs)
		}
	}
	seq, err := s2.Append(ctx, []byte("after the fault"))
	if err == nil {
		err = s2.Sync()
	}
	if err != nil {
		t.Fatalf("append after the fault: %v", err)
	}
	if all = peekAll(t, s2); len(all) == 0 || string(all[len(all)-1].Data) != "after the fault" {
		t.Fatalf("the record appended after the fault is not delivered")
	}
	if err := s2.Ack(seq); err != nil {
		t.Fatalf("ack after the fault: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("close after the fault: %v", err)
	}
}

// recordsAside returns the data of the good records in the segments recovery moved aside.
func recordsAside(t *testing.T, dir string) map[string]bool {
	out := map[string]bool{}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".unreadable")
		if !ok {
			continue
		}
		first, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		recs, _, _ := scanSegment(b, first, math.MaxUint64)
		for _, r := range recs {
			off := int(r.off) + headerSize
			out[string(b[off:off+int(r.n)])] = true
		}
	}
	return out
}

// faultDay is the scenario's work on the opened spool: appends that roll segments, a group
// commit, reads, an ack that deletes segments, more appends, a commit, a read.
func faultDay(t *testing.T, s *Spool, l *faultLedger, wal bool) {
	ctx := context.Background()
	appendSome := func(n int) {
		if wal {
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = l.offer()
			}
			seqs, err := s.AppendBatch(ctx, batch)
			l.err(err)
			for i, seq := range seqs {
				l.seqOf[string(batch[i])] = seq
			}
			return
		}
		for range n {
			d := l.offer()
			seq, err := s.Append(ctx, d)
			l.err(err)
			if err == nil {
				l.seqOf[string(d)] = seq
			}
		}
	}
	appendSome(10)
	l.err(s.Sync())
	recs, err := s.Peek(12, 0)
	l.err(err)
	checkRecords(t, l, recs)
	if len(recs) > 0 {
		through := recs[len(recs)-1].Seq
		if err := s.Ack(through); err != nil {
			// Not acked: the records may come back, or not (a later commit persists the head).
			l.err(err)
			for d, seq := range l.seqOf {
				if seq <= through {
					delete(l.seqOf, d)
				}
			}
		} else {
			for d, seq := range l.seqOf {
				if seq <= through {
					if !l.peeked[d] {
						// A sender acks through the last record of the batch it delivered:
						// one that Peek skipped is gone unsent, unless kept aside.
						l.skipped[seq] = d
					}
					delete(l.seqOf, d)
					l.acked[d] = true
				}
			}
		}
	}
	appendSome(14)
	l.err(s.Sync())
	recs, err = s.Peek(5, 0)
	l.err(err)
	checkRecords(t, l, recs)
}

// checkRecords checks that what Peek returned is what was appended.
func checkRecords(t *testing.T, l *faultLedger, recs []Record) {
	t.Helper()
	for _, r := range recs {
		if !l.maybe[string(r.Data)] {
			t.Errorf("Peek returned a record never appended: seq %d, %.20q", r.Seq, r.Data)
		}
		l.peeked[string(r.Data)] = true
	}
}

// TestPeekReadErrors: a read the disk fails is no damage: Peek returns the error and the
// records stay, for as long as it fails fewer than readAttempts Peeks in a row; then they are
// skipped as damaged (counted, logged), so a bad sector cannot stop delivery for good.
func TestPeekReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // Peeks in a row whose read fails
		corrupt  uint64
	}{
		{"once", 1, 0},
		{"twice", readAttempts - 1, 0},
		{"persistent", 1 << 30, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fsys := fsfault.New(dir, fsfault.Options{})
			logs := &fsfault.Logs{}
			s := mustOpen(t, dir, testConfig(), Options{FS: fsys, Logger: logs.Logger()})
			for i := range 3 {
				mustAppend(t, s, payload(uint64(i), 100))
			}
			fsys.Arm(fsfault.Fault{Site: fsfault.Site{Op: fsfault.OpRead, Path: "N.seg", Caller: "spool.(*Spool).read"}, Kind: fsfault.EIO, N: 1, Repeat: tc.failures})
			var got []Record
			for try := 1; try <= readAttempts; try++ {
				recs, err := s.Peek(10, 0)
				if try <= min(tc.failures, readAttempts-1) {
					if !errors.Is(err, ErrUnavailable) || len(recs) > 0 {
						t.Fatalf("Peek %d = %d records, %v; want ErrUnavailable", try, len(recs), err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Peek %d: %v", try, err)
				}
				got = recs
				break
			}
			st := s.Stats()
			if st.Corrupt != tc.corrupt || st.DiskErrors == 0 || !logs.Injected() {
				t.Errorf("corrupt %d (want %d), disk errors %d, logged %v", st.Corrupt, tc.corrupt, st.DiskErrors, logs.Injected())
			}
			if want := 3 - int(tc.corrupt); len(got) != want {
				t.Errorf("Peek returned %d records, want %d", len(got), want)
			}
		})
	}
}
