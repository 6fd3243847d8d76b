package sender

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// tmpPrefix starts the names of fsutil.WriteFileAtomic's temporary files, which a crash can
// leave behind.
const tmpPrefix = ".tmp-"

// errorSuffix names an entry's message file: "<id>.error.txt".
const errorSuffix = ".error.txt"

// deadLetter is the dead-letter directory: entries of files sharing an id (the sample's key,
// or a spool sequence number for a record that does not decode) and a total size cap, kept by
// removing the oldest entries first. Only the sender's goroutine uses it.
type deadLetter struct {
	fs       fsutil.FS
	dir      string
	maxBytes int64
	entries  []*dlEntry // oldest first
	byID     map[string]*dlEntry
	size     int64
}

// errEntryTooLarge is add's answer for an entry larger than the cap on its own: no retry
// can store it.
var errEntryTooLarge = errors.New("dead letter: entry larger than dead_letter_max_bytes")

// dlEntry is one dead-lettered sample or record.
type dlEntry struct {
	id    string
	files []string
	size  int64
	mtime time.Time
}

// dlFile is one file of an entry to write.
type dlFile struct {
	name string
	data []byte
}

// openDeadLetter creates dir if needed and indexes the entries already there, oldest first by
// modification time, so the cap holds across restarts. maxBytes 0 disables the directory.
func openDeadLetter(dir string, maxBytes int64) (*deadLetter, error) {
	return openDeadLetterFS(fsutil.OS{}, dir, maxBytes)
}

// openDeadLetterFS is openDeadLetter doing every file operation through fsys, which tests
// make fail (docs/faults.md).
func openDeadLetterFS(fsys fsutil.FS, dir string, maxBytes int64) (*deadLetter, error) {
	d := &deadLetter{fs: fsys, dir: dir, maxBytes: maxBytes, byID: map[string]*dlEntry{}}
	if maxBytes == 0 {
		return d, nil
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	files, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	for _, f := range files {
		name := f.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			fsys.Remove(filepath.Join(dir, name)) // a write a crash interrupted; tried again at the next open
			continue
		}
		if !f.Type().IsRegular() {
			continue
		}
		info, err := f.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter: %w", err)
		}
		id, _, _ := strings.Cut(name, ".")
		e := d.byID[id]
		if e == nil {
			e = &dlEntry{id: id}
			d.byID[id] = e
			d.entries = append(d.entries, e)
		}
		e.files = append(e.files, name)
		e.size += info.Size()
		if info.ModTime().After(e.mtime) {
			e.mtime = info.ModTime()
		}
		d.size += info.Size()
	}
	slices.SortFunc(d.entries, func(a, b *dlEntry) int {
		return cmp.Or(a.mtime.Compare(b.mtime), cmp.Compare(a.id, b.id))
	})
	return d, d.evict(0)
}

// add writes an entry, replacing one with the same id and first removing the oldest entries
// as the cap requires. An entry larger than the cap on its own is not written.
func (d *deadLetter) add(id string, files []dlFile, now time.Time) error {
	if d.maxBytes == 0 {
		return errors.New("dead letter: disabled (dead_letter_max_bytes is 0)")
	}
	var size int64
	for _, f := range files {
		size += int64(len(f.data))
	}
	if size > d.maxBytes {
		return fmt.Errorf("%w: %s of %d bytes, cap %d", errEntryTooLarge, id, size, d.maxBytes)
	}
	if old := d.byID[id]; old != nil {
		if err := d.remove(old); err != nil {
			return err
		}
	}
	if err := d.evict(size); err != nil {
		return err
	}
	e := &dlEntry{id: id, mtime: now}
	d.byID[id] = e
	d.entries = append(d.entries, e)
	for _, f := range files {
		// Indexed and counted before it is written, so that a failed entry's files are
		// removed with it when it is evicted, and the cap holds even when a write fails
		// after its rename (a failed directory fsync): a failed write counts too much, never
		// too little.
		e.files = append(e.files, f.name)
		e.size += int64(len(f.data))
		d.size += int64(len(f.data))
		if err := d.fs.WriteFileAtomic(filepath.Join(d.dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
	}
	return nil
}

// evict removes the oldest entries until room more bytes fit under the cap.
func (d *deadLetter) evict(room int64) error {
	for len(d.entries) > 0 && d.size+room > d.maxBytes {
		if err := d.remove(d.entries[0]); err != nil {
			return err
		}
	}
	return nil
}

func (d *deadLetter) remove(e *dlEntry) error {
	for _, name := range e.files {
		if err := d.fs.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("dead letter: evict %s: %w", e.id, err)
		}
	}
	d.size -= e.size
	delete(d.byID, e.id)
	d.entries = slices.DeleteFunc(d.entries, func(x *dlEntry) bool { return x == e })
	if err := d.fs.SyncDir(d.dir); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return nil
}
