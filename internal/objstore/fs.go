package objstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// fsBucket stores each object as a plain file under a root directory, at the path its key
// names, so the directory can be read by other tools too (Triton can serve a model repository
// kept this way).
//
// Every file operation goes through an os.Root, which refuses any path that would leave the
// directory, through ".." or through a symbolic link pointing outside it. Keys are validated
// before that, so the os.Root is the second line of defence, against links placed in the
// directory by someone else.
type fsBucket struct {
	root *os.Root
	dir  string

	// etags caches the content hash of files by path; an entry is valid only while the file's
	// identity, size and modification time are unchanged. Writes replace files by rename (a
	// new identity), so a stale hash is never served for a Put.
	mu    sync.Mutex
	etags map[string]etagEntry
}

type etagEntry struct {
	info fs.FileInfo
	etag string
}

// maxETagCache bounds the ETag cache; when full it is simply emptied, and hashes are
// recomputed as files are read again.
const maxETagCache = 4096

// NewFS returns a Bucket over the directory dir, creating it if needed.
//
// Writes are atomic and durable: the content goes to a temporary file in the target's directory
// (named ".objstore-tmp-*", which listings skip and keys may not use), is fsynced, renamed over
// the target and the directory is fsynced. The ETag is the lowercase hex SHA-256 of the
// content. Symbolic links inside dir are followed only while they stay inside it, and are not
// listed. An object and a "directory" cannot share a name here ("a" and "a/b"), unlike on S3.
func NewFS(dir string) (Bucket, error) {
	if dir == "" {
		return nil, errors.New("objstore: filesystem: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: filesystem: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: filesystem: %w", err)
	}
	return &fsBucket{root: root, dir: dir, etags: map[string]etagEntry{}}, nil
}

const tmpPrefix = reservedPrefix + "tmp-"

func (b *fsBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return opError("put", key, err)
	}
	if size < -1 {
		return opError("put", key, fmt.Errorf("invalid size %d", size))
	}
	if err := ctx.Err(); err != nil {
		return opError("put", key, err)
	}
	if err := b.put(ctx, key, r, size); err != nil {
		return opError("put", key, err)
	}
	return nil
}

func (b *fsBucket) put(ctx context.Context, key string, r io.Reader, size int64) error {
	dir := path.Dir(key)
	f, tmp, err := b.createTemp(dir)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			b.root.Remove(tmp)
		}
	}()
	h := sha256.New()
	src := io.Reader(ctxReader{ctx, r})
	if size >= 0 {
		src = io.LimitReader(src, size)
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("reader ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := b.root.Rename(tmp, key); err != nil {
		return err
	}
	committed = true
	if err := b.syncDir(dir); err != nil {
		return err
	}
	// Seed the cache so that the Attributes or conditional Get that usually follows a Put
	// does not read the file again.
	if info, err := b.root.Stat(key); err == nil {
		b.remember(key, info, hex.EncodeToString(h.Sum(nil)))
	}
	return nil
}

// createTemp creates a new temporary file in dir, creating dir first. A concurrent Delete may
// remove an emptied directory between the two steps, hence the retries.
func (b *fsBucket) createTemp(dir string) (*os.File, string, error) {
	var err error
	for range 5 {
		if dir != "." {
			if err = b.root.MkdirAll(dir, 0o755); err != nil {
				continue
			}
		}
		tmp := path.Join(dir, tmpPrefix+rand.Text())
		var f *os.File
		f, err = b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return f, tmp, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	return nil, "", err
}

// syncDir makes a rename or removal in dir durable.
func (b *fsBucket) syncDir(dir string) error {
	d, err := b.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (b *fsBucket) Get(ctx context.Context, key string) (io.ReadCloser, Attributes, error) {
	return b.get(ctx, "get", key, "")
}

func (b *fsBucket) GetIfNoneMatch(ctx context.Context, key, etag string) (io.ReadCloser, Attributes, error) {
	return b.get(ctx, "get", key, etag)
}

func (b *fsBucket) get(ctx context.Context, op, key, ifNoneMatch string) (io.ReadCloser, Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Attributes{}, opError(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, Attributes{}, opError(op, key, err)
	}
	f, attrs, err := b.open(key)
	if err != nil {
		return nil, Attributes{}, opError(op, key, err)
	}
	if ifNoneMatch != "" && attrs.ETag == ifNoneMatch {
		f.Close()
		return nil, attrs, opError(op, key, ErrNotModified)
	}
	return f, attrs, nil
}

// open opens the object at key and describes the file it opened, so that the attributes
// always belong to the content the caller reads even if a Put replaces the file meanwhile.
func (b *fsBucket) open(key string) (*os.File, Attributes, error) {
	f, err := b.root.Open(key)
	if err != nil {
		return nil, Attributes{}, notFound(err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Attributes{}, err
	}
	if !info.Mode().IsRegular() {
		// A "directory" is not an object, as on S3.
		f.Close()
		return nil, Attributes{}, ErrNotFound
	}
	etag, err := b.etag(key, f, info)
	if err != nil {
		f.Close()
		return nil, Attributes{}, err
	}
	return f, Attributes{Size: info.Size(), ETag: etag, LastModified: info.ModTime()}, nil
}

// notFound maps a missing file, or a path through a regular file ("a/b" when "a" is an
// object), to ErrNotFound; other errors, such as a path escaping the root, stay as they are.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	return err
}

// etag returns the SHA-256 of the open file f, from the cache when the file is the one the
// cache saw.
func (b *fsBucket) etag(key string, f *os.File, info fs.FileInfo) (string, error) {
	b.mu.Lock()
	e, ok := b.etags[key]
	b.mu.Unlock()
	if ok && os.SameFile(e.info, info) && e.info.Size() == info.Size() && e.info.ModTime().Equal(info.ModTime()) {
		return e.etag, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	etag := hex.EncodeToString(h.Sum(nil))
	b.remember(key, info, etag)
	return etag, nil
}

func (b *fsBucket) remember(key string, info fs.FileInfo, etag string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.etags) >= maxETagCache {
		clear(b.etags)
	}
	b.etags[key] = etagEntry{info: info, etag: etag}
}

func (b *fsBucket) Attributes(ctx context.Context, key string) (Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	f, attrs, err := b.open(key)
	if err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	f.Close()
	return attrs, nil
}

func (b *fsBucket) Exists(ctx context.Context, key string) (bool, error) {
	if err := ValidateKey(key); err != nil {
		return false, opError("exists", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, opError("exists", key, err)
	}
	info, err := b.root.Stat(key)
	switch {
	case err == nil:
		return info.Mode().IsRegular(), nil
	case IsNotFound(notFound(err)):
		return false, nil
	default:
		return false, opError("exists", key, err)
	}
}

func (b *fsBucket) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return opError("delete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return opError("delete", key, err)
	}
	info, err := b.root.Lstat(key)
	switch {
	case IsNotFound(notFound(err)):
		return nil
	case err != nil:
		return opError("delete", key, err)
	case info.IsDir():
		return nil // a "directory" is not an object; S3 would find nothing to delete either
	}
	if err := b.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opError("delete", key, err)
	}
	b.mu.Lock()
	delete(b.etags, key)
	b.mu.Unlock()
	dir := path.Dir(key)
	if err := b.syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opError("delete", key, err)
	}
	// Remove directories the deletion emptied, as S3 has no empty "directories" to list.
	// Remove fails on a non-empty directory, which ends the climb.
	for ; dir != "."; dir = path.Dir(dir) {
		if b.root.Remove(dir) != nil {
			break
		}
	}
	return nil
}

func (b *fsBucket) Iter(ctx context.Context, prefix string, recursive bool, f func(key string) error) error {
	if err := ValidatePrefix(prefix); err != nil {
		return opError("iter", prefix, err)
	}
	keys, err := b.list(ctx, prefix, recursive)
	if err != nil {
		return opError("iter", prefix, err)
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return opError("iter", prefix, err)
		}
		if err := f(k); err != nil {
			return err
		}
	}
	return nil
}

// list collects the keys under prefix and sorts them: a directory walk visits "a/b" before
// "a-c", but S3 orders by bytes ('-' < '/'), and the backends must agree.
func (b *fsBucket) list(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	dir, namePrefix := ".", prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir, namePrefix = prefix[:i], prefix[i+1:]
	}
	fsys := b.root.FS()
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		if IsNotFound(notFound(err)) {
			return nil, nil
		}
		return nil, err
	}
	var keys []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) || strings.HasPrefix(name, reservedPrefix) {
			continue
		}
		full := name
		if dir != "." {
			full = dir + "/" + name
		}
		switch {
		case e.Type().IsRegular():
			keys = append(keys, full)
		case e.IsDir() && recursive:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if keys, err = walkObjects(fsys, full, keys); err != nil {
				return nil, err
			}
		case e.IsDir():
			found, err := hasObject(fsys, full)
			if err != nil {
				return nil, err
			}
			if found {
				keys = append(keys, full+"/")
			}
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// walkObjects appends the regular files below dir, skipping temporary files and symlinks.
func walkObjects(fsys fs.FS, dir string, keys []string) ([]string, error) {
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), reservedPrefix) {
			keys = append(keys, p)
		}
		return nil
	})
	return keys, err
}

// errFound ends a walk early.
var errFound = errors.New("found")

// hasObject reports whether an object lies anywhere below dir: a directory holding only empty
// directories or temporary files is not listed, as S3 would not know it.
func hasObject(fsys fs.FS, dir string) (bool, error) {
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), reservedPrefix) {
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

func (b *fsBucket) Close() error { return b.root.Close() }

// String names the bucket in logs.
func (b *fsBucket) String() string { return "file://" + b.dir }
