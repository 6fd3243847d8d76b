// Package objstoretest is the conformance suite every objstore.Bucket implementation passes:
// the same behaviour on a local directory as on S3, down to the error for an invalid key.
package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// Run runs the conformance suite as subtests. newBucket returns an empty bucket for one
// subtest; it is called once per subtest, so each starts from nothing. A bucket with a
// configurable part size should use a small one (5 MiB), so that the 10 MiB case exercises
// multipart uploads.
func Run(t *testing.T, newBucket func(t *testing.T) objstore.Bucket) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, b objstore.Bucket)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"ConditionalGet", testConditionalGet},
		{"NotFound", testNotFound},
		{"List", testList},
		{"IterStops", testIterStops},
		{"Delete", testDelete},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"UnknownSize", testUnknownSize},
		{"ShortReader", testShortReader},
		{"Concurrent", testConcurrent},
		{"InvalidKeys", testInvalidKeys},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBucket(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			c.run(t, b)
		})
	}
}

func put(t *testing.T, b objstore.Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, b objstore.Bucket, key string) ([]byte, objstore.Attributes) {
	t.Helper()
	rc, attrs, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): reading: %v", key, err)
	}
	return data, attrs
}

func list(t *testing.T, b objstore.Bucket, prefix string, recursive bool) []string {
	t.Helper()
	keys, err := objstore.List(context.Background(), b, prefix, recursive)
	if err != nil {
		t.Fatalf("Iter(%q, recursive=%v): %v", prefix, recursive, err)
	}
	return keys
}

func testPutGet(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	before := time.Now().Add(-time.Minute) // S3 keeps whole seconds; leave room for clock skew
	content := []byte("hello, edge")
	put(t, b, "dir/sub/hello.txt", content)
	data, attrs := get(t, b, "dir/sub/hello.txt")
	if !bytes.Equal(data, content) {
		t.Fatalf("Get = %q, want %q", data, content)
	}
	if attrs.Size != int64(len(content)) || attrs.ETag == "" {
		t.Fatalf("Get attributes = %+v, want size %d and an ETag", attrs, len(content))
	}
	if attrs.LastModified.Before(before) || attrs.LastModified.After(time.Now().Add(time.Minute)) {
		t.Fatalf("LastModified = %v, not around now", attrs.LastModified)
	}
	got, err := b.Attributes(ctx, "dir/sub/hello.txt")
	if err != nil {
		t.Fatalf("Attributes: %v", err)
	}
	if got.Size != attrs.Size || got.ETag != attrs.ETag || !got.LastModified.Equal(attrs.LastModified) {
		t.Fatalf("Attributes = %+v, Get said %+v", got, attrs)
	}
	ok, err := b.Exists(ctx, "dir/sub/hello.txt")
	if err != nil || !ok {
		t.Fatalf("Exists = %v, %v; want true", ok, err)
	}
	// A key's parent "directory" is not an object.
	for _, k := range []string{"dir", "dir/sub"} {
		if ok, err := b.Exists(ctx, k); err != nil || ok {
			t.Fatalf("Exists(%q) = %v, %v; want false: a prefix is not an object", k, ok, err)
		}
		if _, _, err := b.Get(ctx, k); !objstore.IsNotFound(err) {
			t.Fatalf("Get(%q) error = %v, want not found", k, err)
		}
	}
}

func testOverwrite(t *testing.T, b objstore.Bucket) {
	put(t, b, "obj", []byte("version one"))
	_, first := get(t, b, "obj")
	put(t, b, "obj", []byte("version two, longer"))
	data, second := get(t, b, "obj")
	if string(data) != "version two, longer" {
		t.Fatalf("after overwrite Get = %q", data)
	}
	if second.ETag == first.ETag {
		t.Fatalf("ETag %q unchanged after the content changed", first.ETag)
	}
	if second.Size != int64(len("version two, longer")) {
		t.Fatalf("Size = %d after overwrite", second.Size)
	}
}

func testConditionalGet(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	put(t, b, "poll/manifest.json", []byte(`{"version":1}`))
	_, attrs := get(t, b, "poll/manifest.json")

	rc, got, err := b.GetIfNoneMatch(ctx, "poll/manifest.json", attrs.ETag)
	if !errors.Is(err, objstore.ErrNotModified) || !objstore.IsNotModified(err) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("GetIfNoneMatch(current ETag) = %+v, %v; want ErrNotModified", got, err)
	}
	if rc != nil {
		t.Fatal("GetIfNoneMatch returned a reader with ErrNotModified")
	}

	put(t, b, "poll/manifest.json", []byte(`{"version":2}`))
	rc, got, err = b.GetIfNoneMatch(ctx, "poll/manifest.json", attrs.ETag)
	if err != nil {
		t.Fatalf("GetIfNoneMatch(old ETag): %v", err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != `{"version":2}` {
		t.Fatalf("GetIfNoneMatch(old ETag) read %q, %v", data, err)
	}
	if got.ETag == attrs.ETag || got.ETag == "" {
		t.Fatalf("GetIfNoneMatch(old ETag) returned ETag %q, want the new one", got.ETag)
	}

	rc, _, err = b.GetIfNoneMatch(ctx, "poll/manifest.json", "")
	if err != nil {
		t.Fatalf("GetIfNoneMatch(\"\") = %v, want a plain get", err)
	}
	rc.Close()

	if _, _, err := b.GetIfNoneMatch(ctx, "poll/missing.json", attrs.ETag); !objstore.IsNotFound(err) {
		t.Fatalf("GetIfNoneMatch(missing) = %v, want not found", err)
	}
}

func testNotFound(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	put(t, b, "present", []byte("x"))
	if rc, _, err := b.Get(ctx, "absent/key"); !objstore.IsNotFound(err) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("Get(absent) error = %v, want ErrNotFound", err)
	}
	if _, err := b.Attributes(ctx, "absent"); !objstore.IsNotFound(err) {
		t.Fatalf("Attributes(absent) error = %v, want ErrNotFound", err)
	}
	// "present/x" passes through an object as if it were a directory.
	if _, err := b.Attributes(ctx, "present/x"); !objstore.IsNotFound(err) {
		t.Fatalf("Attributes(present/x) error = %v, want ErrNotFound", err)
	}
	if ok, err := b.Exists(ctx, "absent"); err != nil || ok {
		t.Fatalf("Exists(absent) = %v, %v; want false, nil", ok, err)
	}
	if err := b.Delete(ctx, "absent"); err != nil {
		t.Fatalf("Delete(absent) = %v, want nil (deleting nothing is not an error)", err)
	}
	if keys := list(t, b, "absent/", true); len(keys) != 0 {
		t.Fatalf("Iter(absent/) = %q, want nothing", keys)
	}
}

func testList(t *testing.T, b objstore.Bucket) {
	for _, k := range []string{"dir/a", "dir/b/c", "dir/b/d", "dir/e", "dir-x", "other", "dir/b/deeper/f"} {
		put(t, b, k, []byte(k))
	}
	for _, c := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"", true, []string{"dir-x", "dir/a", "dir/b/c", "dir/b/d", "dir/b/deeper/f", "dir/e", "other"}},
		{"", false, []string{"dir-x", "dir/", "other"}},
		{"dir/", true, []string{"dir/a", "dir/b/c", "dir/b/d", "dir/b/deeper/f", "dir/e"}},
		{"dir/", false, []string{"dir/a", "dir/b/", "dir/e"}},
		{"dir/b/", false, []string{"dir/b/c", "dir/b/d", "dir/b/deeper/"}},
		{"di", false, []string{"dir-x", "dir/"}},
		{"dir", true, []string{"dir-x", "dir/a", "dir/b/c", "dir/b/d", "dir/b/deeper/f", "dir/e"}},
		{"dir/b/d", false, []string{"dir/b/d", "dir/b/deeper/"}},
		{"dir/b/d", true, []string{"dir/b/d", "dir/b/deeper/f"}},
		{"nothing/", false, nil},
		{"dir/a", false, []string{"dir/a"}},
	} {
		if got := list(t, b, c.prefix, c.recursive); !slices.Equal(got, c.want) {
			t.Errorf("Iter(%q, recursive=%v) = %q, want %q", c.prefix, c.recursive, got, c.want)
		}
	}
}

func testIterStops(t *testing.T, b objstore.Bucket) {
	for i := range 5 {
		put(t, b, fmt.Sprintf("k/%d", i), []byte("x"))
	}
	stop := errors.New("enough")
	var seen []string
	err := b.Iter(context.Background(), "k/", true, func(key string) error {
		seen = append(seen, key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Iter returned %v, want the callback's error", err)
	}
	if !slices.Equal(seen, []string{"k/0", "k/1"}) {
		t.Fatalf("Iter visited %q after the callback stopped it", seen)
	}
}

func testDelete(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	put(t, b, "del/only/one", []byte("1"))
	put(t, b, "del/keep", []byte("2"))
	if err := b.Delete(ctx, "del/only/one"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := b.Get(ctx, "del/only/one"); !objstore.IsNotFound(err) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	// The emptied "directory" disappears with its last object, as on S3.
	if got := list(t, b, "del/", false); !slices.Equal(got, []string{"del/keep"}) {
		t.Fatalf("Iter(del/) after Delete = %q, want [del/keep]", got)
	}
	if got := list(t, b, "", false); !slices.Equal(got, []string{"del/"}) {
		t.Fatalf("Iter(\"\") after Delete = %q, want [del/]", got)
	}
	// The name can be used again.
	put(t, b, "del/only/one", []byte("again"))
	if data, _ := get(t, b, "del/only/one"); string(data) != "again" {
		t.Fatalf("Get after re-Put = %q", data)
	}
}

func testEmpty(t *testing.T, b objstore.Bucket) {
	put(t, b, "empty", nil)
	data, attrs := get(t, b, "empty")
	if len(data) != 0 || attrs.Size != 0 || attrs.ETag == "" {
		t.Fatalf("empty object: %d bytes, attributes %+v", len(data), attrs)
	}
	if got := list(t, b, "", true); !slices.Equal(got, []string{"empty"}) {
		t.Fatalf("Iter = %q, want [empty]", got)
	}
}

func testLarge(t *testing.T, b objstore.Bucket) {
	content := make([]byte, 10<<20)
	_, _ = rand.Read(content)
	put(t, b, "large/blob.bin", content)
	data, attrs := get(t, b, "large/blob.bin")
	if attrs.Size != int64(len(content)) {
		t.Fatalf("Size = %d, want %d", attrs.Size, len(content))
	}
	if sha256.Sum256(data) != sha256.Sum256(content) {
		t.Fatalf("10 MiB object came back different (%d bytes)", len(data))
	}
}

func testUnknownSize(t *testing.T, b objstore.Bucket) {
	content := bytes.Repeat([]byte("0123456789"), 1000)
	// io.MultiReader hides the length, as a pipe or a network stream would.
	if err := b.Put(context.Background(), "unknown", io.MultiReader(bytes.NewReader(content)), -1); err != nil {
		t.Fatalf("Put(size -1): %v", err)
	}
	data, attrs := get(t, b, "unknown")
	if !bytes.Equal(data, content) || attrs.Size != int64(len(content)) {
		t.Fatalf("Get = %d bytes (size %d), want %d", len(data), attrs.Size, len(content))
	}
}

func testShortReader(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	err := b.Put(ctx, "short", strings.NewReader("12345"), 10)
	if err == nil {
		t.Fatal("Put with a reader shorter than size succeeded")
	}
	if ok, err := b.Exists(ctx, "short"); err != nil || ok {
		t.Fatalf("after a failed Put, Exists = %v, %v; want false", ok, err)
	}
	if got := list(t, b, "", true); len(got) != 0 {
		t.Fatalf("after a failed Put, Iter = %q, want nothing", got)
	}
	// A reader longer than size stores exactly size bytes.
	put(t, b, "long", nil)
	if err := b.Put(ctx, "long", strings.NewReader("1234567890"), 4); err != nil {
		t.Fatalf("Put with a longer reader: %v", err)
	}
	if data, _ := get(t, b, "long"); string(data) != "1234" {
		t.Fatalf("Get = %q, want the first 4 bytes", data)
	}
}

func testConcurrent(t *testing.T, b objstore.Bucket) {
	const writers = 8
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10+i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Go(func() {
			ctx := context.Background()
			// Each writer has its own key in a shared directory, and all race on one key.
			key := fmt.Sprintf("conc/own/%d", i)
			if err := b.Put(ctx, key, bytes.NewReader(contents[i]), int64(len(contents[i]))); err != nil {
				errs <- err
			}
			if err := b.Put(ctx, "conc/shared", bytes.NewReader(contents[i]), int64(len(contents[i]))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put: %v", err)
	}
	for i := range writers {
		if data, _ := get(t, b, fmt.Sprintf("conc/own/%d", i)); !bytes.Equal(data, contents[i]) {
			t.Errorf("conc/own/%d holds %d bytes of something else", i, len(data))
		}
	}
	// The shared key holds one writer's object whole, never a mix of two.
	data, attrs := get(t, b, "conc/shared")
	if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, data) }) {
		t.Errorf("conc/shared holds %d bytes that no single writer wrote", len(data))
	}
	if attrs.Size != int64(len(data)) {
		t.Errorf("conc/shared: Size %d for %d bytes", attrs.Size, len(data))
	}
	if got := list(t, b, "conc/", true); len(got) != writers+1 {
		t.Errorf("Iter(conc/) = %q, want %d keys", got, writers+1)
	}
}

// InvalidKeys are keys every backend refuses; exported so that a backend's own tests can
// check them against lower layers too.
var InvalidKeys = []string{
	"",
	"/leading",
	"trailing/",
	"double//slash",
	"..",
	"../escape",
	"a/../../escape",
	"a/./b",
	".",
	"ctrl\x00nul",
	"ctrl\nnewline",
	"ctrl\x7fdel",
	"bad\xffutf8",
	"a/.objstore-tmp-x",
	strings.Repeat("k", objstore.MaxKeyLen+1),
}

func testInvalidKeys(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	// The longest valid key works, so the limit is the same everywhere.
	longest := strings.Repeat("k/", objstore.MaxKeyLen/2-1) + "kk"
	if len(longest) != objstore.MaxKeyLen {
		t.Fatalf("test bug: longest key is %d bytes", len(longest))
	}
	put(t, b, longest, []byte("x"))
	if err := b.Delete(ctx, longest); err != nil {
		t.Fatalf("Delete(longest): %v", err)
	}

	for _, key := range InvalidKeys {
		want := objstore.ValidateKey(key)
		if want == nil {
			t.Fatalf("ValidateKey(%q) accepted an invalid key", key)
		}
		check := func(op string, err error, wantOp string) {
			t.Helper()
			if !errors.Is(err, objstore.ErrInvalidKey) {
				t.Errorf("%s(%q) error = %v, want ErrInvalidKey", op, key, err)
				return
			}
			// Identical wording on every backend: the op, the key, the rule.
			if exp := fmt.Sprintf("objstore: %s %q: %v", wantOp, key, want); err.Error() != exp {
				t.Errorf("%s(%q) error:\n got %q\nwant %q", op, key, err, exp)
			}
		}
		check("Put", b.Put(ctx, key, strings.NewReader("x"), 1), "put")
		rc, _, err := b.Get(ctx, key)
		if rc != nil {
			rc.Close()
		}
		check("Get", err, "get")
		rc, _, err = b.GetIfNoneMatch(ctx, key, "etag")
		if rc != nil {
			rc.Close()
		}
		check("GetIfNoneMatch", err, "get")
		_, err = b.Attributes(ctx, key)
		check("Attributes", err, "attributes")
		_, err = b.Exists(ctx, key)
		check("Exists", err, "exists")
		check("Delete", b.Delete(ctx, key), "delete")
	}
	for _, prefix := range []string{"/abs", "a//b/", "../", "a/../", "ctrl\x01/"} {
		err := b.Iter(ctx, prefix, true, func(string) error { return nil })
		if !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Iter(%q) error = %v, want ErrInvalidKey", prefix, err)
		}
	}
	// Nothing was written by any refused call.
	if got := list(t, b, "", true); len(got) != 0 {
		t.Fatalf("Iter after invalid keys = %q, want nothing", got)
	}
}
