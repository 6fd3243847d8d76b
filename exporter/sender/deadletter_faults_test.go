package sender

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/fsutil/fsfault"
)

// TestDeadLetterDiskFaults runs the dead-letter store's life — open a directory a crash left
// (entries and a temporary file), add an entry, replace one, add one that evicts the oldest —
// once per call site, fault kind and occurrence, with one fault injected (fsfault.Enumerate).
// For each run: a fault returns an error to the caller (the sender then keeps the sample in
// its spool, counts edgeloop_sender_dead_letter_failures_total{action="retained"} and logs
// it: Sender.keep), except the removal of a crash's temporary file, which is tried again at
// the next open; every entry whose add returned nil and that the cap did not evict is whole
// on disk; and once the fault ends, the adds that failed succeed when tried again.
func TestDeadLetterDiskFaults(t *testing.T) {
	t.Run("persistent", func(t *testing.T) {
		// A disk that keeps failing from a site's first call until the fault ends.
		rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{FS: fsfault.Options{Pattern: dlPattern}, MaxPerSite: 1, Repeat: fsfault.Persistent},
			func(t *testing.T, fsys *fsfault.FS, dir string) { deadLetterScenario(t, fsys, dir, true) })
		if rep.Runs < 20 || rep.Fired != rep.Runs {
			t.Errorf("%d runs, %d fired: want at least 20, every fault fired", rep.Runs, rep.Fired)
		}
	})
	rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{FS: fsfault.Options{Pattern: dlPattern}, MaxPerSite: 10},
		func(t *testing.T, fsys *fsfault.FS, dir string) { deadLetterScenario(t, fsys, dir, false) })
	want := []string{
		"mkdir dl", "readdir dl", "remove dl/.tmp-ID.json-N", "stat dl/ID.json", "remove dl/ID.json", "syncdir dl",
		"atomic.create dl/.tmp-ID.json-N", "atomic.write dl/.tmp-ID.json-N", "atomic.fsync dl/.tmp-ID.json-N",
		"atomic.rename dl/ID.json", "atomic.syncdir dl",
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
	if rep.Runs < 60 || rep.Fired != rep.Runs {
		t.Errorf("%d runs, %d fired: want at least 60, every fault fired", rep.Runs, rep.Fired)
	}
}

// dlPattern names a dead-letter file's call site by its kind, not its entry: "dl/ID.json".
func dlPattern(root, p string) string {
	dir, base := path.Split(fsfault.DefaultPattern(root, p))
	tmp := strings.HasPrefix(base, tmpPrefix)
	base = strings.TrimPrefix(base, tmpPrefix)
	if i := strings.Index(base, "."); i > 0 {
		base = "ID" + base[i:]
	}
	if tmp {
		base = tmpPrefix + base
	}
	return dir + base
}

func deadLetterScenario(t *testing.T, fsys *fsfault.FS, root string, persistent bool) {
	dir := filepath.Join(root, "dl")
	const capBytes = 1000
	seed, err := openDeadLetterFS(fsutil.OS{}, dir, capBytes)
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	files := map[string][]dlFile{}
	for _, id := range []string{"a", "b"} {
		at = at.Add(time.Second)
		files[id] = entry(id, 200)
		if err := seed.add(id, files[id], at); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+"c.json-123"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Distinct modification times, so that the order of the entries on disk is a and b's.
	os.Chtimes(filepath.Join(dir, "a.json"), t0, t0)
	os.Chtimes(filepath.Join(dir, "a.error.txt"), t0, t0)

	var errs []error
	d, err := openDeadLetterFS(fsys, dir, capBytes)
	if err != nil {
		errs = append(errs, err)
		if d, err = openDeadLetterFS(fsys, dir, capBytes); err != nil && !persistent {
			t.Fatalf("open after the fault: %v", err)
		}
	}
	good := map[string]bool{"a": true, "b": true} // entries whose add returned nil
	var failed []string
	add := func(id string, size int) {
		at = at.Add(time.Second)
		files[id] = entry(id, size)
		if d == nil {
			failed = append(failed, id) // the exporter did not start: nothing was refused
			return
		}
		if err := d.add(id, files[id], at); err != nil {
			errs = append(errs, err)
			delete(good, id)
			failed = append(failed, id)
			return
		}
		good[id] = true
	}
	add("c", 300)
	add("a", 250) // replaced: now the newest
	add("d", 400) // evicts b

	fired := fsys.Fired()
	switch {
	case len(fired) > 0 && len(errs) == 0 && !strings.HasPrefix(fired[0].Site.Path, "dl/"+tmpPrefix):
		t.Errorf("%s: no error returned", fired[0])
	case len(fired) == 0 && len(errs) > 0:
		t.Errorf("clean run: %v", errs)
	}

	if d == nil {
		// The disk kept failing the open: the exporter starts once it heals.
		fsys.Heal()
		if d, err = openDeadLetterFS(fsys, dir, capBytes); err != nil {
			t.Fatalf("open after the fault: %v", err)
		}
	}
	// The cap holds: what the store counts is at least what its entries hold on disk.
	var onDisk int64
	for _, e := range d.entries {
		for _, name := range e.files {
			if info, err := os.Stat(filepath.Join(dir, name)); err == nil {
				onDisk += info.Size()
			}
		}
	}
	if d.size < onDisk {
		t.Errorf("%s: the store counts %d bytes, its entries hold %d: the cap can be passed", fired, d.size, onDisk)
	}

	// The fault is over: the adds that failed succeed when tried again (the sender sends
	// the sample again, is refused again, and dead-letters it again).
	fsys.Heal()
	for _, id := range failed {
		at = at.Add(time.Second)
		if err := d.add(id, files[id], at); err != nil {
			t.Fatalf("add %s after the fault: %v", id, err)
		}
		good[id] = true
	}
	back, err := openDeadLetterFS(fsutil.OS{}, dir, capBytes)
	if err != nil {
		t.Fatalf("open after the fault: %v", err)
	}
	if back.size > capBytes {
		t.Errorf("%d bytes held, cap %d", back.size, capBytes)
	}
	for id := range good {
		if d.byID[id] == nil {
			continue // evicted by the cap
		}
		for _, f := range files[id] {
			b, err := os.ReadFile(filepath.Join(dir, f.name))
			if err != nil || !bytes.Equal(b, f.data) {
				t.Errorf("entry %s: file %s: %d bytes, %v; want its %d bytes (errors %v)", id, f.name, len(b), err, len(f.data), errs)
			}
		}
	}
	if d.byID["d"] == nil || back.byID["d"] == nil {
		t.Errorf("entry d is not held after the fault (errors %v)", errs)
	}
}
