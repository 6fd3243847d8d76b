// Package fsutil holds the durable file operations that edge nodes need, where power fails and
// disks fill: a file is either wholly written or absent, and a rename survives a crash.
//
// FS is the seam through which durable stores (internal/spool and so the collector's
// write-ahead log, the collector's shard journal, the exporter's dead-letter directory) do
// every file operation, so that tests can make each one fail as disks do: a full disk, an I/O
// error, a short write, an fsync that fails and loses the pages it could not write
// (internal/fsutil/fsfault enumerates them; docs/faults.md lists the call sites).
package fsutil

import (
	"io"
	"os"
	"path/filepath"
)

// File is what a durable store does with an open file: *os.File, or a test's faulty one.
type File interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
}

// FS is the file system seam: every operation whose failure a durable store must survive —
// opening and creating files (then writing, reading, truncating and fsyncing them), reading
// whole files and directories, creating directories, removing, renaming and truncating by
// name, replacing a small file atomically, writing a new file durably, and fsyncing a
// directory. OS is the real one; a store takes an FS and uses nothing else for its files.
type FS interface {
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// ReadFile is os.ReadFile.
	ReadFile(name string) ([]byte, error)
	// ReadDir is os.ReadDir.
	ReadDir(name string) ([]os.DirEntry, error)
	// MkdirAll is os.MkdirAll.
	MkdirAll(path string, perm os.FileMode) error
	// Remove is os.Remove.
	Remove(name string) error
	// Rename is os.Rename.
	Rename(oldpath, newpath string) error
	// Truncate is os.Truncate.
	Truncate(name string, size int64) error
	// WriteFileAtomic is the package's WriteFileAtomic.
	WriteFileAtomic(path string, data []byte, perm os.FileMode) error
	// WriteNew is the package's WriteNew.
	WriteNew(path string, data []byte, perm os.FileMode) error
	// SyncDir is the package's SyncDir.
	SyncDir(dir string) error
}

// OS is the FS of the operating system.
type OS struct{}

// OpenFile opens name with os.OpenFile.
func (OS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

// ReadFile calls os.ReadFile.
func (OS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// ReadDir calls os.ReadDir.
func (OS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// MkdirAll calls os.MkdirAll.
func (OS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// Remove calls os.Remove.
func (OS) Remove(name string) error { return os.Remove(name) }

// Rename calls os.Rename.
func (OS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Truncate calls os.Truncate.
func (OS) Truncate(name string, size int64) error { return os.Truncate(name, size) }

// WriteFileAtomic calls the package's WriteFileAtomic.
func (OS) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomic(path, data, perm)
}

// WriteNew calls the package's WriteNew.
func (OS) WriteNew(path string, data []byte, perm os.FileMode) error {
	return WriteNew(path, data, perm)
}

// SyncDir calls the package's SyncDir.
func (OS) SyncDir(dir string) error { return SyncDir(dir) }

// Or returns fsys, or OS when fsys is nil: the default of a store's FS option.
func Or(fsys FS) FS {
	if fsys == nil {
		return OS{}
	}
	return fsys
}

// SyncDir makes a creation, rename or removal in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteNew writes a file that must not exist yet, durably — its content and its directory
// entry, so that a power cut cannot leave the name missing or empty; on failure nothing is
// left.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return writeNew(path, data, perm, SyncDir)
}

// writeNew is WriteNew with the directory fsync passed in, for its test.
func writeNew(path string, data []byte, perm os.FileMode, syncDir func(string) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// WriteFileAtomic replaces path with data: a reader sees the old content or the new, and a
// crash leaves one of them, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// CopyNew copies src to dst, which must not exist yet, durably (content and directory entry);
// on failure nothing is left.
func CopyNew(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = SyncDir(filepath.Dir(dst))
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}
