// Package fsutil holds the durable file operations that edge nodes need, where power fails and
// disks fill: a file is either wholly written or absent, and a rename survives a crash.
//
// FS is the seam through which durable stores (internal/spool, and so the collector's
// write-ahead log) do their file operations, so that tests can make them fail as disks do: a
// full disk, an I/O error, an fsync that fails and loses the pages it could not write.
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

// FS is the file system seam. It holds the operations whose failures decide durability —
// opening and creating files (then writing, reading, truncating and fsyncing them), replacing
// a small file atomically, and fsyncing a directory — and is meant to grow, one operation at a
// time, until every call site of a store goes through it (listing, reading whole files,
// renaming and removing do not yet; their users say which). OS is the real one.
type FS interface {
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// WriteFileAtomic is the package's WriteFileAtomic.
	WriteFileAtomic(path string, data []byte, perm os.FileMode) error
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

// WriteFileAtomic calls the package's WriteFileAtomic.
func (OS) WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomic(path, data, perm)
}

// SyncDir calls the package's SyncDir.
func (OS) SyncDir(dir string) error { return SyncDir(dir) }

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
