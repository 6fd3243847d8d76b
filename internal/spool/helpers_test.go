package spool

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// testConfig is the default configuration with the timer-driven group commit out of the way,
// so that tests decide when records are synced.
func testConfig() Config {
	c := DefaultConfig()
	c.SyncInterval = time.Hour
	c.SyncRecords = 1 << 30
	c.MaxAge = 0
	return c
}

func mustOpen(t testing.TB, dir string, cfg Config, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, cfg, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spool, data []byte) uint64 {
	t.Helper()
	seq, err := s.Append(context.Background(), data)
	if err != nil {
		t.Fatalf("Append(%d bytes): %v", len(data), err)
	}
	return seq
}

// peekAll returns every stored record.
func peekAll(t testing.TB, s *Spool) []Record {
	t.Helper()
	recs, err := s.Peek(1<<30, 0)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return recs
}

// payload is n deterministic bytes that differ by seed.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// segmentFiles lists the segment files in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if _, ok := parseSegmentName(de.Name()); ok {
			out = append(out, filepath.Join(dir, de.Name()))
		}
	}
	return out
}

// crashKind is how a test's simulated crash leaves the disk.
type crashKind int

const (
	// killed: the process died; every write it made is in the files.
	killed crashKind = iota
	// powerCut: the machine lost power; the files hold what was fsynced.
	powerCut
	// powerCutTorn: as powerCut, and part of the unsynced tail made it to disk, possibly
	// with a damaged byte.
	powerCutTorn
)

// crashCopy copies the spool's directory into dst as the disk would hold it after a crash of
// the given kind at this instant, and returns the newest sequence number that must survive a
// power cut. The spool is left running; the caller closes it and opens dst.
func crashCopy(t testing.TB, s *Spool, dst string, kind crashKind, rng *rand.Rand) uint64 {
	t.Helper()
	// The spool's own lock order: nothing can write, sync or delete while we look.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.posMu.Lock()
	defer s.posMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	segs := map[string]*segment{}
	for _, seg := range s.segs {
		segs[filepath.Base(seg.path)] = seg
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".tmp-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if seg := segs[name]; seg != nil && (kind == powerCut || kind == powerCutTorn) {
			if !seg.dirSynced {
				continue // its directory entry never reached the disk
			}
			keep := b[:seg.synced]
			if kind == powerCutTorn && int64(len(b)) > seg.synced {
				tail := b[seg.synced:]
				part := bytes.Clone(tail[:rng.IntN(len(tail)+1)])
				if len(part) > 0 && rng.IntN(2) == 0 {
					part[rng.IntN(len(part))] ^= byte(1 + rng.IntN(255))
				}
				keep = append(bytes.Clone(keep), part...)
			}
			b = keep
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s.syncedSeq
}

// fastDisk skips fsyncs, for tests whose crashes are simulated by crashCopy from the spool's
// own bookkeeping: they need no real durability, and a thousand fsyncs would slow them.
type fastDisk struct{ fsutil.OS }

func (fastDisk) OpenFile(name string, flag int, perm os.FileMode) (fsutil.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

func (fastDisk) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-fast")
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (fastDisk) SyncDir(string) error { return nil }

type noSyncFile struct{ *os.File }

func (noSyncFile) Sync() error { return nil }

// faultyDisk makes segment writes, file creations and position writes fail on cue.
type faultyDisk struct {
	fsutil.OS    // what it does not make fail
	mu           sync.Mutex
	failWrites   bool // WriteAt writes half, then fails with ENOSPC
	failTruncate bool // and the truncation that should undo it fails too
	failCreate   bool // creating a segment fails with ENOSPC
	failPosition bool // writing the position file fails with ENOSPC
}

func (d *faultyDisk) set(f func(d *faultyDisk)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *faultyDisk) get() faultyDisk {
	d.mu.Lock()
	defer d.mu.Unlock()
	return faultyDisk{failWrites: d.failWrites, failTruncate: d.failTruncate, failCreate: d.failCreate, failPosition: d.failPosition}
}

func (d *faultyDisk) OpenFile(name string, flag int, perm os.FileMode) (fsutil.File, error) {
	if flag&os.O_CREATE != 0 && d.get().failCreate {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: f, d: d}, nil
}

func (d *faultyDisk) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if d.get().failPosition {
		return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
	}
	return os.WriteFile(path, data, perm)
}

func (d *faultyDisk) SyncDir(dir string) error { return fsutil.SyncDir(dir) }

type faultyFile struct {
	*os.File
	d *faultyDisk
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.d.get().failWrites {
		return f.File.WriteAt(p, off)
	}
	n, _ := f.File.WriteAt(p[:len(p)/2], off)
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *faultyFile) Truncate(size int64) error {
	if f.d.get().failTruncate {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}
