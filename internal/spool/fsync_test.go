package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// pageLossDisk models what Linux does when writeback fails: the fsync that meets the error
// fails, the pages it could not write are marked clean and may be dropped, and a later fsync
// of the same file succeeds without writing them. It keeps each file's durable image, what a
// power cut would leave: a write becomes durable only through a successful fsync of its file.
type pageLossDisk struct {
	fsutil.OS  // what it does not model
	mu         sync.Mutex
	durable    map[string][]byte // path → what survives a power cut
	failSyncs  int               // the next this many segment fsyncs fail
	failCreate int               // the next this many segment creations fail
	syncFails  int               // fsyncs failed so far
	open       []*pageLossFile   // handles, renamed with their files
}

func newPageLossDisk() *pageLossDisk { return &pageLossDisk{durable: map[string][]byte{}} }

func (d *pageLossDisk) OpenFile(name string, flag int, perm os.FileMode) (fsutil.File, error) {
	d.mu.Lock()
	if flag&os.O_CREATE != 0 && d.failCreate > 0 {
		d.failCreate--
		d.mu.Unlock()
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
	}
	d.mu.Unlock()
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if _, ok := d.durable[name]; !ok {
		b, _ := os.ReadFile(name) // a file from before this disk (recovery): durable as it is
		d.durable[name] = b
	}
	d.mu.Unlock()
	h := &pageLossFile{File: f, d: d, name: name}
	d.mu.Lock()
	d.open = append(d.open, h)
	d.mu.Unlock()
	return h, nil
}

// Rename moves a file's durable image, and its open handles, to newpath (directory
// operations are durable at once in this model).
func (d *pageLossDisk) Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.durable[newpath] = d.durable[oldpath]
	delete(d.durable, oldpath)
	for _, h := range d.open {
		if h.name == oldpath {
			h.name = newpath
		} else if h.name == newpath {
			h.name = "" // the file replaced: no longer reachable
		}
	}
	return nil
}

// Remove forgets a file's durable image, so that a new file of the same name starts empty.
func (d *pageLossDisk) Remove(name string) error {
	if err := os.Remove(name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.durable, name)
	for _, h := range d.open {
		if h.name == name {
			h.name = ""
		}
	}
	return nil
}

func (d *pageLossDisk) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := fsutil.WriteFileAtomic(path, data, perm); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.durable[path] = slices.Clone(data)
	return nil
}

func (d *pageLossDisk) SyncDir(string) error { return nil }

// crash writes the durable image of dir to dst: files the disk saw as their fsyncs left them,
// others (written before the disk was in use) as they are.
func (d *pageLossDisk) crash(t *testing.T, dir, dst string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		b, ok := d.durable[path]
		if !ok {
			if b, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

type pageLossFile struct {
	*os.File
	d     *pageLossDisk
	name  string
	dirty [][2]int64 // ranges written since the last fsync
}

func (f *pageLossFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.d.mu.Lock()
	f.dirty = append(f.dirty, [2]int64{off, off + int64(n)})
	f.d.mu.Unlock()
	return n, err
}

func (f *pageLossFile) Truncate(size int64) error {
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if b := f.d.durable[f.name]; int64(len(b)) > size {
		f.d.durable[f.name] = b[:size]
	}
	return nil
}

func (f *pageLossFile) Sync() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	dirty := f.dirty
	f.dirty = nil // written, or marked clean after the error: a later fsync skips them
	if f.d.failSyncs > 0 {
		f.d.failSyncs--
		f.d.syncFails++
		return &os.PathError{Op: "sync", Path: f.name, Err: syscall.EIO}
	}
	img := f.d.durable[f.name]
	for _, r := range dirty {
		if int64(len(img)) < r[1] {
			img = append(img, make([]byte, r[1]-int64(len(img)))...)
		}
		if _, err := f.File.ReadAt(img[r[0]:r[1]], r[0]); err != nil {
			return err
		}
	}
	f.d.durable[f.name] = img
	return nil
}

// TestFsyncErrorPoisonsSegment: after an fsync of a segment fails, the records it held
// unsynced are never reported durable on the strength of a later fsync of that segment (which
// Linux lets succeed with the pages lost); they are written again, from memory, to a new
// segment, and fsynced there. Every record Sync reported durable survives a power cut.
func TestFsyncErrorPoisonsSegment(t *testing.T) {
	for _, tt := range []struct {
		name         string
		syncedBefore int // records synced before the failure: the segment keeps them
		during       int // records appended after the failed fsync, before the next Sync
	}{
		{"fresh segment", 0, 0},
		{"segment with synced records", 5, 0},
		{"appends after the failure", 5, 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			disk := newPageLossDisk()
			s := mustOpen(t, dir, testConfig(), Options{FS: disk})
			ctx := context.Background()
			var want [][]byte
			add := func(n int) {
				for range n {
					data := []byte(fmt.Sprintf("record %d", len(want)))
					if _, err := s.Append(ctx, data); err != nil {
						t.Fatal(err)
					}
					want = append(want, data)
				}
			}
			add(tt.syncedBefore)
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			add(10)
			disk.mu.Lock()
			disk.failSyncs = 1
			disk.mu.Unlock()
			_ = s.Sync() // fails, or succeeds having written the records again
			add(tt.during)
			var err error
			for range 3 {
				if err = s.Sync(); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("Sync after the disk recovered: %v", err)
			}
			if disk.syncFails != 1 {
				t.Fatalf("%d fsyncs failed, want 1", disk.syncFails)
			}
			if st := s.Stats(); st.Unsynced != 0 || st.Records != len(want) || st.FsyncErrors != 1 || st.Rewritten != 10 {
				t.Fatalf("stats %+v, want %d records, none unsynced, 1 fsync error, 10 rewritten", st, len(want))
			}
			got := peekAll(t, s)
			if !equalData(got, want) {
				t.Fatalf("before the crash Peek returns %d records, want %d", len(got), len(want))
			}
			crashed := filepath.Join(t.TempDir(), "crashed")
			disk.crash(t, dir, crashed)
			s2 := mustOpen(t, crashed, testConfig(), Options{})
			got = peekAll(t, s2)
			if !equalData(got, want) {
				t.Fatalf("after a power cut %d records survive, want the %d reported durable", len(got), len(want))
			}
			if c := s2.Stats().Corrupt; c != 0 {
				t.Errorf("recovery counted %d damaged records", c)
			}
		})
	}
}

// TestFsyncErrorRewriteFails: when the records of a poisoned segment cannot be written again
// (the disk refuses a new segment too), the spool refuses appends, says so, and reports
// nothing durable; once the disk works, the records are written again and synced.
func TestFsyncErrorRewriteFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	disk := newPageLossDisk()
	s := mustOpen(t, dir, testConfig(), Options{FS: disk})
	ctx := context.Background()
	var want [][]byte
	for i := range 10 {
		data := []byte(fmt.Sprintf("record %d", i))
		if _, err := s.Append(ctx, data); err != nil {
			t.Fatal(err)
		}
		want = append(want, data)
	}
	disk.mu.Lock()
	disk.failSyncs, disk.failCreate = 1, 100
	disk.mu.Unlock()
	if err := s.Sync(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Sync = %v, want ErrUnavailable", err)
	}
	if _, err := s.Append(ctx, []byte("more")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append with records waiting to be written again = %v, want ErrUnavailable", err)
	}
	if st := s.Stats(); !st.Paused || st.Unsynced != 10 {
		t.Fatalf("stats %+v, want paused with 10 unsynced", st)
	}
	if err := s.Sync(); err == nil {
		t.Fatal("Sync succeeded while the records are only in memory")
	}
	disk.mu.Lock()
	disk.failCreate = 0
	disk.mu.Unlock()
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync once the disk works: %v", err)
	}
	if st := s.Stats(); st.Paused || st.Unsynced != 0 {
		t.Fatalf("stats %+v, want resumed, none unsynced", st)
	}
	if _, err := s.Append(ctx, []byte("more")); err != nil {
		t.Fatalf("Append after recovery: %v", err)
	}
	want = append(want, []byte("more"))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	disk.crash(t, dir, crashed)
	if got := peekAll(t, mustOpen(t, crashed, testConfig(), Options{})); !equalData(got, want) {
		t.Fatalf("after a power cut %d records survive, want %d", len(got), len(want))
	}
}

func equalData(got []Record, want [][]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if string(got[i].Data) != string(want[i]) {
			return false
		}
	}
	return true
}

// TestStaleReadIsNotDamage: a reader that picked a record before it was written again to a new
// segment, and fails to read it where it was, does not mark it damaged: the record lives on.
func TestStaleReadIsNotDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	disk := newPageLossDisk()
	s := mustOpen(t, dir, testConfig(), Options{FS: disk})
	for i := range 5 {
		if _, err := s.Append(context.Background(), []byte(fmt.Sprintf("record %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	stale := s.idx[s.idxStart+2] // as PeekAfter copies it before reading outside the lock
	s.mu.Unlock()
	disk.mu.Lock()
	disk.failSyncs = 1
	disk.mu.Unlock()
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v (the records should have been written again and synced)", err)
	}
	s.mu.Lock()
	killed := s.killLocked(stale)
	s.mu.Unlock()
	if killed {
		t.Fatal("a record read from where it no longer lives was marked damaged")
	}
	if st := s.Stats(); st.Corrupt != 0 || st.Records != 5 {
		t.Fatalf("stats %+v, want 5 records, none damaged", st)
	}
	if got := peekAll(t, s); len(got) != 5 || string(got[2].Data) != "record 2" {
		t.Fatalf("Peek returns %d records", len(got))
	}
}
