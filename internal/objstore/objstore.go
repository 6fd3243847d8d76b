// Package objstore is edgeloop's object-store interface: a small Bucket interface with two
// implementations, S3 (on minio-go, for AWS S3, MinIO and other S3-compatible stores) and a local
// directory, in the manner of thanos-io/objstore. Both pass the same conformance suite
// (package objstoretest), the S3 one against a real MinIO server.
//
// Keys are slash-separated paths such as "models/fashion/3/model.onnx". Both backends accept and
// refuse exactly the same keys (see ValidateKey), so a layout that works on a developer's
// directory works on S3 and back.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bucket is one flat namespace of objects. Implementations are safe for concurrent use.
type Bucket interface {
	// Put stores size bytes read from r under key, replacing any object there. Readers see
	// either the old object or the new one, never a part. size must be known (≥ 0) or -1 when
	// unknown (the S3 backend then buffers one part at a time); a reader that ends before size
	// bytes is an error and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object at key; the caller closes the reader. A missing object is
	// ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, Attributes, error)
	// GetIfNoneMatch is Get unless the object's ETag equals etag, in which case it returns
	// ErrNotModified and no reader: the conditional request that pollers use to learn cheaply
	// that nothing changed. An empty etag makes it a plain Get.
	GetIfNoneMatch(ctx context.Context, key, etag string) (io.ReadCloser, Attributes, error)
	// Attributes returns the object's size, ETag and modification time without its content.
	Attributes(ctx context.Context, key string) (Attributes, error)
	// Exists reports whether an object is stored at key.
	Exists(ctx context.Context, key string) (bool, error)
	// Delete removes the object at key. Deleting a missing object is not an error, as in S3.
	Delete(ctx context.Context, key string) error
	// Iter calls f for each key that starts with prefix, in lexical (byte) order. Recursive
	// lists every object below prefix; otherwise keys stop at the next "/" after prefix and
	// such a "directory" is reported once, with its trailing "/" (S3's common prefixes).
	// An error from f stops the iteration and is returned.
	Iter(ctx context.Context, prefix string, recursive bool, f func(key string) error) error
	// Close releases what the bucket holds.
	Close() error
}

// Attributes describe a stored object.
type Attributes struct {
	// Size is the object's length in bytes.
	Size int64
	// ETag identifies the object's content: it changes whenever the content does. Treat it as
	// opaque and compare it only for equality; the two backends compute it differently.
	ETag string
	// LastModified is when the object was last written (S3 keeps whole seconds).
	LastModified time.Time
}

var (
	// ErrNotFound is returned (wrapped) when no object is stored at a key.
	ErrNotFound = errors.New("object not found")
	// ErrNotModified is returned (wrapped) by GetIfNoneMatch when the ETag still matches.
	ErrNotModified = errors.New("object not modified")
	// ErrInvalidKey is returned (wrapped) for a key or prefix that ValidateKey refuses.
	ErrInvalidKey = errors.New("invalid object key")
)

// IsNotFound reports whether err says that an object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsNotModified reports whether err says that a conditional get found the same ETag.
func IsNotModified(err error) bool { return errors.Is(err, ErrNotModified) }

// MaxKeyLen is the longest key accepted, in bytes: S3's own limit.
const MaxKeyLen = 1024

// reservedPrefix starts the names of the filesystem backend's temporary files. Keys whose
// segments start with it are refused by every backend, so that listing a directory never
// shows a half-written file and the backends stay interchangeable.
const reservedPrefix = ".objstore-"

// ValidateKey reports why key cannot name an object, or nil. A key is 1 to MaxKeyLen bytes of
// UTF-8 without control characters, made of "/"-separated segments that are neither empty
// (no leading, trailing or doubled "/") nor "." or "..", and none starting with ".objstore-".
// These rules keep a key meaning the same object on S3 and in a directory, where "a//b",
// "a/./b" and "../b" would otherwise alias or escape.
func ValidateKey(key string) error {
	if err := validatePath(key); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidKey, err.Error())
	}
	return nil
}

func validatePath(key string) error {
	switch {
	case key == "":
		return errors.New("empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("longer than %d bytes (%d)", MaxKeyLen, len(key))
	case !utf8.ValidString(key):
		return errors.New("not valid UTF-8")
	}
	for i, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
	}
	if strings.HasPrefix(key, "/") {
		return errors.New("must not start with \"/\"")
	}
	if strings.HasSuffix(key, "/") {
		return errors.New("must not end with \"/\"")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return errors.New("empty path segment (\"//\")")
		case seg == "." || seg == "..":
			return fmt.Errorf("path segment %q is not allowed", seg)
		case strings.HasPrefix(seg, reservedPrefix):
			return fmt.Errorf("path segment %q starts with the reserved %q", seg, reservedPrefix)
		}
	}
	return nil
}

// ValidatePrefix reports why prefix cannot select keys for Iter, or nil. The empty prefix
// selects everything; otherwise the prefix, without one trailing "/", must be a valid key
// (it may end in the middle of a segment, as in "models/fa").
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := validatePath(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("%w: prefix: %s", ErrInvalidKey, err.Error())
	}
	return nil
}

// opError wraps err from operation op on key the same way in every backend, so that the same
// mistake reads the same on S3 and on a directory.
func opError(op, key string, err error) error {
	return fmt.Errorf("objstore: %s %q: %w", op, key, err)
}

// List returns the keys Iter reports for prefix, in the same order.
func List(ctx context.Context, b Bucket, prefix string, recursive bool) ([]string, error) {
	var keys []string
	err := b.Iter(ctx, prefix, recursive, func(key string) error {
		keys = append(keys, key)
		return nil
	})
	return keys, err
}

// ReadAll reads the whole object at key, refusing one larger than limit bytes (limit ≤ 0 means
// no limit) so that a hostile or corrupt store cannot exhaust memory.
func ReadAll(ctx context.Context, b Bucket, key string, limit int64) ([]byte, Attributes, error) {
	rc, attrs, err := b.Get(ctx, key)
	if err != nil {
		return nil, attrs, err
	}
	defer rc.Close()
	if limit > 0 && attrs.Size > limit {
		return nil, attrs, opError("read", key, fmt.Errorf("object is %d bytes, more than the limit of %d", attrs.Size, limit))
	}
	var r io.Reader = rc
	if limit > 0 {
		r = io.LimitReader(rc, limit+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, attrs, opError("read", key, err)
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, attrs, opError("read", key, fmt.Errorf("object is more than the limit of %d bytes", limit))
	}
	return data, attrs, nil
}

// Download copies the object at key to the file path, creating its directory. It writes a
// temporary file beside it and renames it into place, so a file with the final name is always
// whole, and removes the temporary file on error.
func Download(ctx context.Context, b Bucket, key, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return opError("download", key, err)
	}
	rc, _, err := b.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return opError("download", key, err)
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return opError("download", key, err)
	}
	return nil
}

// ctxReader stops a long copy when ctx is cancelled; the S3 client watches its context itself,
// the filesystem does not.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
