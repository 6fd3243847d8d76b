// Package fsfault is a file system (fsutil.FS) that fails on cue, for tests of the durable
// stores. It counts the call sites a scenario reaches — an operation and the pattern of the
// path it works on, such as "write N.seg" — in a clean run; Enumerate then runs the scenario
// again once per call site, fault kind and occurrence, injecting exactly one fault each time:
// the systematic enumeration of CrashMonkey and ALICE, applied to errors instead of crashes.
//
// The faults are the ones disks give: ENOSPC (a full disk or quota), EIO (a bad sector, a
// pulled cable), a short write (part of the bytes reach the file, then ENOSPC) and an fsync
// that fails. fsutil.WriteFileAtomic and fsutil.WriteNew are done here step by step (create
// the file, write, fsync, rename, fsync the directory), so each step is a call site of its
// own. docs/faults.md lists the sites of each store.
package fsfault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// Kind is a kind of fault.
type Kind string

// The kinds of fault.
const (
	// ENOSPC fails the operation with "no space left on device".
	ENOSPC Kind = "enospc"
	// EIO fails the operation with an I/O error.
	EIO Kind = "eio"
	// ShortWrite writes the first half of the bytes, then fails with ENOSPC, as a write
	// that fills the disk midway does.
	ShortWrite Kind = "short-write"
	// FsyncError fails an fsync with EIO (of a file or of a directory).
	FsyncError Kind = "fsync-error"
)

// The operations, as call sites name them. Those of fsutil.WriteFileAtomic's steps start
// "atomic.", those of fsutil.WriteNew's "new.".
const (
	OpOpen      = "open"      // OpenFile without O_CREATE
	OpCreate    = "create"    // OpenFile with O_CREATE
	OpRead      = "read"      // File.ReadAt
	OpWrite     = "write"     // File.WriteAt
	OpFtruncate = "ftruncate" // File.Truncate
	OpFsync     = "fsync"     // File.Sync
	OpReadFile  = "readfile"  // FS.ReadFile
	OpReadDir   = "readdir"   // FS.ReadDir
	OpStat      = "stat"      // DirEntry.Info of an entry ReadDir returned
	OpMkdir     = "mkdir"     // FS.MkdirAll
	OpRemove    = "remove"    // FS.Remove
	OpRename    = "rename"    // FS.Rename
	OpTruncate  = "truncate"  // FS.Truncate
	OpSyncDir   = "syncdir"   // FS.SyncDir

	atomicPrefix = "atomic."
	newPrefix    = "new."
)

// Kinds returns the fault kinds that an operation can meet on a real disk: only what
// allocates can find the disk full, only what writes can be short, only an fsync fails as
// one.
func Kinds(op string) []Kind {
	base := op
	if i := len(atomicPrefix); len(op) > i && op[:i] == atomicPrefix {
		base = op[i:]
	} else if i := len(newPrefix); len(op) > i && op[:i] == newPrefix {
		base = op[i:]
	}
	switch base {
	case OpCreate, OpMkdir, OpRename:
		return []Kind{ENOSPC, EIO}
	case OpWrite:
		return []Kind{ENOSPC, EIO, ShortWrite}
	case OpFsync, OpSyncDir:
		return []Kind{FsyncError}
	default: // open, read, readfile, readdir, stat, ftruncate, truncate, remove
		return []Kind{EIO}
	}
}

// ErrInjected is wrapped by every error the FS injects, beside the errno it carries.
var ErrInjected = errors.New("injected fault")

// injected is the Err of an injected *os.PathError: errors.Is finds both the errno (so a
// store's syscall.ENOSPC check works) and ErrInjected.
type injected struct{ errno syscall.Errno }

func (e injected) Error() string   { return e.errno.Error() + " (injected)" }
func (e injected) Unwrap() []error { return []error{e.errno, ErrInjected} }

// Site is a call site: an operation, the pattern of its path, and the function that called
// the FS (package-qualified, without the module path), so that the same operation on the
// same file from two places in the code — a segment written by an append and written again
// after a failed fsync — are two sites.
type Site struct {
	Op     string
	Path   string
	Caller string
}

// OpPath is the site without its caller: "write spool/N.seg".
func (s Site) OpPath() string { return s.Op + " " + s.Path }

func (s Site) String() string { return s.Op + " " + s.Path + " @" + s.Caller }

// Fault is one fault to inject: at the N-th call (from 1) of Site, and at the Repeat-1 calls
// of Site after it (Repeat 0 or 1: once), as a disk that stays full or failing does.
type Fault struct {
	Site   Site
	Kind   Kind
	N      int
	Repeat int
}

func (f Fault) String() string {
	if f.Repeat > 1 {
		return fmt.Sprintf("%s %s #%d and on", f.Kind, f.Site, f.N)
	}
	return fmt.Sprintf("%s %s #%d", f.Kind, f.Site, f.N)
}

// last is the number of the last call the fault fails.
func (f Fault) last() int { return f.N + max(1, f.Repeat) - 1 }

// SiteCount is a call site and how many times a run reached it.
type SiteCount struct {
	Site  Site
	Count int
}

// Options configure an FS.
type Options struct {
	// Pattern turns a path under root into the path part of its call site; nil means
	// DefaultPattern.
	Pattern func(root, path string) string
}

var digits = regexp.MustCompile(`[0-9]+`)

// DefaultPattern returns path relative to root (its base name when outside root), with every
// run of digits replaced by N: all segments of a spool are one call site.
func DefaultPattern(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || (len(rel) > 2 && rel[:3] == "../") {
		rel = filepath.Base(path)
	}
	return digits.ReplaceAllString(filepath.ToSlash(rel), "N")
}

// FS is the faulty file system. It passes every call to the real one (fsutil.OS) unless the
// call is the armed fault's; it counts every call by site. Safe for concurrent use.
type FS struct {
	inner   fsutil.FS
	pattern func(string) string

	mu     sync.Mutex
	counts map[Site]int
	order  []Site // in the order first reached
	armed  []Fault
	fired  []Fault
	healed bool
	tmpSeq int
	files  []*file // open files, which follow their renames
}

// New returns an FS over the real file system whose call sites are named relative to root.
func New(root string, opts Options) *FS {
	p := opts.Pattern
	if p == nil {
		p = DefaultPattern
	}
	return &FS{inner: fsutil.OS{}, pattern: func(path string) string { return p(root, path) }, counts: map[Site]int{}}
}

// Arm makes the FS inject ft at the N-th call of its site counted from New (and the Repeat-1
// after it). Several faults may be armed at once.
func (f *FS) Arm(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = append(f.armed, ft)
}

// Heal ends the part of a scenario under test: the fault is disarmed, fired or not, and
// calls from now on pass and are not counted, so that a scenario's checks after the fault
// are no call sites of its own.
func (f *FS) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.healed = nil, true
}

// Fired returns the faults injected so far, each once however often it repeated.
func (f *FS) Fired() []Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Fault(nil), f.fired...)
}

// Sites returns every call site reached so far and its count, in the order first reached.
func (f *FS) Sites() []SiteCount {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]SiteCount, len(f.order))
	for i, s := range f.order {
		out[i] = SiteCount{Site: s, Count: f.counts[s]}
	}
	return out
}

// hit counts a call and returns the kind of fault to inject into it, if any.
func (f *FS) hit(op, path string) (Kind, bool) {
	s := Site{Op: op, Path: f.pattern(path), Caller: caller()}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed {
		return "", false
	}
	n, seen := f.counts[s]
	if !seen {
		f.order = append(f.order, s)
	}
	n++
	f.counts[s] = n
	for i, a := range f.armed {
		if a.Site == s && n >= a.N && n <= a.last() {
			if n == a.N {
				f.fired = append(f.fired, a)
			}
			if n == a.last() {
				f.armed = append(f.armed[:i:i], f.armed[i+1:]...)
			}
			return a.Kind, true
		}
	}
	return "", false
}

// caller returns the first function on the stack outside this package, without its
// module path: "spool.(*Spool).writeLocked".
func caller() string {
	var pcs [16]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		fr, more := frames.Next()
		if !isInternal(fr.Function) {
			return fr.Function[strings.LastIndex(fr.Function, "/")+1:]
		}
		if !more {
			return "?"
		}
	}
}

// thisPackage prefixes the names of this package's functions.
const thisPackage = "github.com/edgeloop/edgeloop/internal/fsutil/fsfault."

// isInternal tells the FS's own methods, which are no call site, from their callers.
func isInternal(fn string) bool {
	rest, ok := strings.CutPrefix(fn, thisPackage)
	return ok && (strings.HasPrefix(rest, "(*FS).") || strings.HasPrefix(rest, "(*file).") || strings.HasPrefix(rest, "dirEntry."))
}

// fault returns the error of kind for op on path.
func fault(op, path string, k Kind) error {
	errno := syscall.EIO
	if k == ENOSPC || k == ShortWrite {
		errno = syscall.ENOSPC
	}
	return &os.PathError{Op: op, Path: path, Err: injected{errno}}
}

// check counts a call that cannot be short and returns its injected error, if any.
func (f *FS) check(op, path string) error {
	if k, ok := f.hit(op, path); ok {
		return fault(op, path, k)
	}
	return nil
}

// OpenFile opens name; its site is "create" when flag has O_CREATE, else "open".
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (fsutil.File, error) {
	return f.openFile("", name, flag, perm)
}

func (f *FS) openFile(prefix, name string, flag int, perm os.FileMode) (fsutil.File, error) {
	op := OpOpen
	if flag&os.O_CREATE != 0 {
		op = OpCreate
	}
	if err := f.check(prefix+op, name); err != nil {
		return nil, err
	}
	h, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fh := &file{File: h, fs: f, path: name, prefix: prefix}
	f.mu.Lock()
	f.files = append(f.files, fh)
	f.mu.Unlock()
	return fh, nil
}

// ReadFile reads name whole.
func (f *FS) ReadFile(name string) ([]byte, error) {
	if err := f.check(OpReadFile, name); err != nil {
		return nil, err
	}
	return f.inner.ReadFile(name)
}

// ReadDir lists name; the entries' Info is a call site too ("stat").
func (f *FS) ReadDir(name string) ([]os.DirEntry, error) {
	if err := f.check(OpReadDir, name); err != nil {
		return nil, err
	}
	des, err := f.inner.ReadDir(name)
	for i, de := range des {
		des[i] = dirEntry{DirEntry: de, fs: f, path: filepath.Join(name, de.Name())}
	}
	return des, err
}

// MkdirAll creates path and its parents.
func (f *FS) MkdirAll(path string, perm os.FileMode) error {
	if err := f.check(OpMkdir, path); err != nil {
		return err
	}
	return f.inner.MkdirAll(path, perm)
}

// Remove removes name.
func (f *FS) Remove(name string) error {
	if err := f.check(OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

// Rename renames oldpath to newpath; the site is named by newpath.
func (f *FS) Rename(oldpath, newpath string) error {
	if err := f.check(OpRename, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errors.Unwrap(err)}
	}
	if err := f.inner.Rename(oldpath, newpath); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.files {
		if h.path == oldpath {
			h.path = newpath // its later calls are the renamed file's sites
		}
	}
	return nil
}

// Truncate truncates name to size.
func (f *FS) Truncate(name string, size int64) error {
	if err := f.check(OpTruncate, name); err != nil {
		return err
	}
	return f.inner.Truncate(name, size)
}

// SyncDir fsyncs dir.
func (f *FS) SyncDir(dir string) error { return f.syncDir("", dir) }

func (f *FS) syncDir(prefix, dir string) error {
	if err := f.check(prefix+OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// WriteFileAtomic does what fsutil.WriteFileAtomic does, each step a call site of its own
// ("atomic.create", "atomic.write", "atomic.fsync", "atomic.rename", "atomic.syncdir"); a
// failed step leaves the old content, and the temporary file is removed as the real one is.
func (f *FS) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f.mu.Lock()
	f.tmpSeq++
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-"+strconv.Itoa(f.tmpSeq))
	f.mu.Unlock()
	h, err := f.openFile(atomicPrefix, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer f.inner.Remove(tmp) // after the rename, a no-op
	_, err = h.WriteAt(data, 0)
	if err == nil {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := f.check(atomicPrefix+OpRename, path); err != nil {
		return err
	}
	if err := f.inner.Rename(tmp, path); err != nil {
		return err
	}
	return f.syncDir(atomicPrefix, filepath.Dir(path))
}

// WriteNew does what fsutil.WriteNew does, each step a call site of its own ("new.create",
// "new.write", "new.fsync", "new.syncdir"); on failure nothing is left.
func (f *FS) WriteNew(path string, data []byte, perm os.FileMode) error {
	h, err := f.openFile(newPrefix, path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = h.WriteAt(data, 0)
	if err == nil {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.syncDir(newPrefix, filepath.Dir(path))
	}
	if err != nil {
		f.inner.Remove(path)
	}
	return err
}

// file is an open file of the FS. Close is not a call site: on a local file system it
// reports nothing that fsync does not.
type file struct {
	fsutil.File
	fs     *FS
	path   string // guarded by fs.mu: Rename changes it
	prefix string
}

func (h *file) name() string {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	return h.path
}

func (h *file) ReadAt(p []byte, off int64) (int, error) {
	if err := h.fs.check(h.prefix+OpRead, h.name()); err != nil {
		return 0, err
	}
	return h.File.ReadAt(p, off)
}

func (h *file) WriteAt(p []byte, off int64) (int, error) {
	path := h.name()
	k, ok := h.fs.hit(h.prefix+OpWrite, path)
	if !ok {
		return h.File.WriteAt(p, off)
	}
	if k != ShortWrite {
		return 0, fault("write", path, k)
	}
	n, err := h.File.WriteAt(p[:len(p)/2], off)
	if err != nil {
		return n, err
	}
	return n, fault("write", path, k)
}

func (h *file) Truncate(size int64) error {
	if err := h.fs.check(h.prefix+OpFtruncate, h.name()); err != nil {
		return err
	}
	return h.File.Truncate(size)
}

func (h *file) Sync() error {
	if err := h.fs.check(h.prefix+OpFsync, h.name()); err != nil {
		return err
	}
	return h.File.Sync()
}

// dirEntry is an entry of ReadDir whose Info is a call site.
type dirEntry struct {
	fs.DirEntry
	fs   *FS
	path string
}

func (d dirEntry) Info() (fs.FileInfo, error) {
	if err := d.fs.check(OpStat, d.path); err != nil {
		return nil, err
	}
	return d.DirEntry.Info()
}

var _ fsutil.FS = (*FS)(nil)
