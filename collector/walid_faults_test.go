package collector

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/fsutil/fsfault"
)

// TestWALIDDiskFaults makes each file operation of the write-ahead log's id file fail once
// (fsfault.Enumerate): creating it at the first start, reading it at the next. A fault is
// an error from New (so the collector does not start and says why); once it ends the id is
// created or read, and an id returned is the one on disk, durably: a later start reads it.
func TestWALIDDiskFaults(t *testing.T) {
	rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{}, func(t *testing.T, fsys *fsfault.FS, root string) {
		dir := filepath.Join(root, "wal")
		var errs []error
		first, err := loadWALID(fsys, dir)
		if err != nil {
			errs = append(errs, err)
			if first, err = loadWALID(fsys, dir); err != nil {
				t.Fatalf("first start after the fault: %v", err)
			}
		}
		again, err := loadWALID(fsys, dir)
		if err != nil {
			errs = append(errs, err)
			if again, err = loadWALID(fsys, dir); err != nil {
				t.Fatalf("second start after the fault: %v", err)
			}
		}
		if fired := fsys.Fired(); len(fired) > 0 && len(errs) == 0 {
			t.Errorf("%s: no error returned", fired[0])
		}
		fsys.Heal()
		onDisk, err := loadWALID(fsutil.OS{}, dir)
		if err != nil || onDisk != first || again != first {
			t.Errorf("ids %q, then %q, on disk %q (%v): want one id (errors %v)", first, again, onDisk, err, errs)
		}
	})
	var got []string
	for _, sc := range rep.Sites {
		got = append(got, sc.Site.OpPath())
	}
	for _, w := range []string{"mkdir wal", "readfile wal/id", "new.create wal/id", "new.write wal/id", "new.fsync wal/id", "new.syncdir wal"} {
		if !slices.Contains(got, w) {
			t.Errorf("call site %q not reached; reached %q", w, got)
		}
	}
	if rep.Runs < 10 || rep.Fired != rep.Runs {
		t.Errorf("%d runs, %d fired: want at least 10, every fault fired", rep.Runs, rep.Fired)
	}
}
