package fsfault

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		op   string
		want []Kind
	}{
		{OpWrite, []Kind{ENOSPC, EIO, ShortWrite}},
		{"atomic.write", []Kind{ENOSPC, EIO, ShortWrite}},
		{OpCreate, []Kind{ENOSPC, EIO}},
		{"new.create", []Kind{ENOSPC, EIO}},
		{OpRename, []Kind{ENOSPC, EIO}},
		{OpFsync, []Kind{FsyncError}},
		{"atomic.syncdir", []Kind{FsyncError}},
		{OpRead, []Kind{EIO}},
		{OpRemove, []Kind{EIO}},
		{OpStat, []Kind{EIO}},
	} {
		if got := Kinds(tc.op); !slices.Equal(got, tc.want) {
			t.Errorf("Kinds(%q) = %v, want %v", tc.op, got, tc.want)
		}
	}
}

func TestOccurrences(t *testing.T) {
	for _, tc := range []struct {
		count, max int
		want       []int
	}{
		{1, 6, []int{1}},
		{4, 6, []int{1, 2, 3, 4}},
		{24, 6, []int{1, 2, 3, 12, 23, 24}},
		{24, 2, []int{1, 12}},
		{3, 2, []int{1, 2}},
	} {
		if got := occurrences(tc.count, tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("occurrences(%d, %d) = %v, want %v", tc.count, tc.max, got, tc.want)
		}
	}
}

func TestDefaultPattern(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/r/spool/00000000000000000012.seg", "spool/N.seg"},
		{"/r/spool/.tmp-position-17", "spool/.tmp-position-N"},
		{"/r", "."},
		{"/elsewhere/x1", "xN"},
	} {
		if got := DefaultPattern("/r", tc.path); got != tc.want {
			t.Errorf("DefaultPattern(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestFaults checks each kind of fault where it is injected: the error it returns, what it
// leaves on disk, and that it fires once, at its occurrence.
func TestFaults(t *testing.T) {
	dir := t.TempDir()
	fsys := New(dir, Options{})
	path := filepath.Join(dir, "f1")
	site := func(op string) Site {
		for _, sc := range fsys.Sites() {
			if sc.Site.Op == op {
				return sc.Site
			}
		}
		t.Fatalf("no site %s in %v", op, fsys.Sites())
		return Site{}
	}
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("abcd"), 0); err != nil {
		t.Fatal(err)
	}
	w := site(OpWrite)
	if w.Path != "fN" || w.Caller != "fsfault.TestFaults" {
		t.Errorf("site %+v, want path fN called from fsfault.TestFaults", w)
	}

	// A short write: half the bytes land, then ENOSPC.
	fsys.Arm(Fault{Site: w, Kind: ShortWrite, N: 2})
	n, err := f.WriteAt([]byte("efgh"), 4)
	if n != 2 || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrInjected) {
		t.Errorf("short write = %d, %v; want 2, ENOSPC (injected)", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "abcdef" {
		t.Errorf("file %q after a short write, want abcdef", b)
	}
	// Fired once: the next write passes.
	if _, err := f.WriteAt([]byte("gh"), 6); err != nil {
		t.Errorf("write after the fault: %v", err)
	}

	// An fsync error, at the first fsync.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	fsys.Arm(Fault{Site: site(OpFsync), Kind: FsyncError, N: 2})
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync = %v, want EIO", err)
	}

	// A failed rename of an atomic write leaves the old content and no temporary file.
	if err := fsys.WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fsys.Arm(Fault{Site: site("atomic.rename"), Kind: ENOSPC, N: 2})
	if err := fsys.WriteFileAtomic(path, []byte("newer"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("atomic write = %v, want ENOSPC", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("file %q after a failed atomic write, want new", b)
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("%d files after a failed atomic write, want 1", len(des))
	}

	// Two faults armed at once both fire; Heal stops counting.
	fsys.Arm(Fault{Site: site(OpWrite), Kind: EIO, N: 4})
	fsys.Arm(Fault{Site: site(OpWrite), Kind: ENOSPC, N: 5})
	_, err1 := f.WriteAt([]byte("x"), 0)
	_, err2 := f.WriteAt([]byte("x"), 0)
	if !errors.Is(err1, syscall.EIO) || !errors.Is(err2, syscall.ENOSPC) {
		t.Errorf("writes = %v, %v; want EIO, ENOSPC", err1, err2)
	}
	if got := len(fsys.Fired()); got != 5 {
		t.Errorf("%d faults fired, want 5", got)
	}
	before := fsys.Sites()
	fsys.Heal()
	f.WriteAt([]byte("x"), 0)
	if after := fsys.Sites(); !slices.Equal(before, after) {
		t.Errorf("sites counted after Heal: %v, then %v", before, after)
	}
}
