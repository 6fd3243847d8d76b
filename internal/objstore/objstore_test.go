package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/objstore/objstoretest"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func TestFSConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		b, err := objstore.NewFS(filepath.Join(t.TempDir(), "bucket"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestS3Conformance runs the suite against a real MinIO server, one bucket per case.
func TestS3Conformance(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	n := 0
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		n++
		cfg := objstore.S3Config{
			Endpoint:  endpoint,
			Bucket:    fmt.Sprintf("conformance-%d", n),
			AccessKey: access,
			SecretKey: secret,
			Insecure:  true,
			PartSize:  5 << 20, // the smallest, so that the 10 MiB case uploads in parts
		}
		if n%2 == 0 {
			cfg.Prefix = "under/a/prefix" // every other case also checks prefix handling
		}
		if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		b, err := objstore.NewS3(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestS3Prefix checks that a configured prefix is applied on write and stripped on listing,
// by looking at the bucket through a second, unprefixed view.
func TestS3Prefix(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "prefixed", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := objstore.CreateS3Bucket(ctx, cfg); err != nil {
		t.Fatalf("CreateS3Bucket on an existing bucket: %v", err)
	}
	whole, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Prefix = "site-1"
	prefixed, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := prefixed.Put(ctx, "models/m/1/model.onnx", strings.NewReader("onnx"), 4); err != nil {
		t.Fatal(err)
	}
	if got, _ := objstore.List(ctx, whole, "", true); !slices.Equal(got, []string{"site-1/models/m/1/model.onnx"}) {
		t.Fatalf("unprefixed view lists %q", got)
	}
	if got, _ := objstore.List(ctx, prefixed, "models/", false); !slices.Equal(got, []string{"models/m/"}) {
		t.Fatalf("prefixed view lists %q", got)
	}
}

func TestS3Unreachable(t *testing.T) {
	b, err := objstore.NewS3(objstore.S3Config{Endpoint: "127.0.0.1:1", Bucket: "unreachable", Insecure: true, PartSize: objstore.DefaultPartSize})
	if err != nil {
		t.Fatalf("NewS3 contacted the server or failed: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.Get(ctx, "k"); err == nil || objstore.IsNotFound(err) {
		t.Fatalf("Get from an unreachable server = %v, want a transport error", err)
	}
}

// TestFSEscape places symbolic links inside the bucket's directory that point outside it:
// no operation may read or write through them.
func TestFSEscape(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	dir := filepath.Join(base, "bucket")
	for _, d := range []string{outside, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("do not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "filelink")); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	for _, key := range []string{"link/secret", "filelink"} {
		if rc, _, err := b.Get(ctx, key); err == nil {
			data, _ := readAll(rc)
			t.Fatalf("Get(%q) read %q from outside the bucket", key, data)
		}
		if _, err := b.Attributes(ctx, key); err == nil {
			t.Fatalf("Attributes(%q) succeeded through a link leaving the bucket", key)
		}
	}
	if err := b.Put(ctx, "link/planted", strings.NewReader("x"), 1); err == nil {
		t.Fatal("Put through a link leaving the bucket succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was written outside the bucket: %v", err)
	}
	if err := b.Delete(ctx, "link/secret"); err == nil {
		if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
			t.Fatal("Delete removed a file outside the bucket")
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Fatalf("file outside the bucket is gone: %v", err)
	}
	// Links are not listed, and listing through one fails instead of leaving the bucket.
	if got, err := objstore.List(ctx, b, "", true); err != nil || len(got) != 0 {
		t.Fatalf("List = %q, %v; want nothing", got, err)
	}
	if got, err := objstore.List(ctx, b, "link/", true); err == nil && len(got) > 0 {
		t.Fatalf("List(link/) = %q: listed outside the bucket", got)
	}
	// ".." never reaches the file system: the key is refused first.
	if _, _, err := b.Get(ctx, "../outside/secret"); !errors.Is(err, objstore.ErrInvalidKey) {
		t.Fatalf("Get(../outside/secret) = %v, want ErrInvalidKey", err)
	}
}

// TestFSLayout checks that objects are plain files at their key's path, so other tools (Triton)
// can read the directory, and that no temporary file is left behind.
func TestFSLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := objstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(ctx, "models/m/1/model.onnx", strings.NewReader("weights"), 7); err != nil {
		t.Fatal(err)
	}
	_ = b.Put(ctx, "models/m/1/short", strings.NewReader("x"), 2) // fails; must leave nothing
	data, err := os.ReadFile(filepath.Join(dir, "models", "m", "1", "model.onnx"))
	if err != nil || string(data) != "weights" {
		t.Fatalf("file = %q, %v", data, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "models", "m", "1"))
	if len(entries) != 1 {
		t.Fatalf("version directory holds %d entries, want only model.onnx", len(entries))
	}
	// The ETag is the content's SHA-256, also for a file changed behind the bucket's back.
	attrs, err := b.Attributes(ctx, "models/m/1/model.onnx")
	if err != nil || attrs.ETag != sha256Hex("weights") {
		t.Fatalf("ETag = %q, %v; want sha256 %s", attrs.ETag, err, sha256Hex("weights"))
	}
	if err := os.WriteFile(filepath.Join(dir, "models", "m", "1", "model.onnx"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	attrs, err = b.Attributes(ctx, "models/m/1/model.onnx")
	if err != nil || attrs.ETag != sha256Hex("tampered") {
		t.Fatalf("ETag after an in-place change = %q, %v; want %s", attrs.ETag, err, sha256Hex("tampered"))
	}
}

func TestValidateKey(t *testing.T) {
	for _, key := range objstoretest.InvalidKeys {
		if err := objstore.ValidateKey(key); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, c := range []struct{ key, want string }{
		{"", "invalid object key: empty"},
		{"a//b", `invalid object key: empty path segment ("//")`},
		{"a/../b", `invalid object key: path segment ".." is not allowed`},
		{"/a", `invalid object key: must not start with "/"`},
		{"a\tb", "invalid object key: control character U+0009 at byte 1"},
	} {
		if err := objstore.ValidateKey(c.key); err == nil || err.Error() != c.want {
			t.Errorf("ValidateKey(%q) = %v, want %q", c.key, err, c.want)
		}
	}
	for _, key := range []string{"a", "models/fashion/3/model.onnx", "dt=2026-01-02/hour=03/x.tar", "ünïcode/名前", ".hidden/..dots../x"} {
		if err := objstore.ValidateKey(key); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", key, err)
		}
	}
	for _, prefix := range []string{"", "models/", "models/fa", "a"} {
		if err := objstore.ValidatePrefix(prefix); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", prefix, err)
		}
	}
}

func TestS3ConfigInvalid(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		c := objstore.DefaultS3Config()
		return &c
	})
}

func TestParseURL(t *testing.T) {
	env := map[string]string{objstore.EnvAccessKey: "AK", objstore.EnvSecretKey: "SK"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct {
		url  string
		want objstore.Target
	}{
		{"file:///var/lib/edgeloop/models", objstore.Target{Dir: "/var/lib/edgeloop/models"}},
		{"file://localhost/srv/m/", objstore.Target{Dir: "/srv/m"}},
		{"s3://models", objstore.Target{S3: &objstore.S3Config{Endpoint: "s3.amazonaws.com", Bucket: "models", AccessKey: "AK", SecretKey: "SK", PartSize: objstore.DefaultPartSize}}},
		{"s3://models/edge/site-1/?endpoint=minio:9000&insecure=true&region=eu-1&part_size=5242880",
			objstore.Target{S3: &objstore.S3Config{Endpoint: "minio:9000", Bucket: "models", Prefix: "edge/site-1", Region: "eu-1", Insecure: true, AccessKey: "AK", SecretKey: "SK", PartSize: 5 << 20}}},
	} {
		got, err := objstore.ParseURL(c.url, lookup)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		if got.Dir != c.want.Dir || (got.S3 == nil) != (c.want.S3 == nil) || (got.S3 != nil && *got.S3 != *c.want.S3) {
			t.Errorf("ParseURL(%q) = %+v (s3 %+v), want %+v (s3 %+v)", c.url, got, got.S3, c.want, c.want.S3)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"/plain/path", "has no scheme"},
		{"gs://bucket", `unsupported scheme "gs"`},
		{"file://host/path", "names a local path"},
		{"file:relative", "needs an absolute path"},
		{"s3://AK:SK@bucket", "credentials in the URL are not accepted"},
		{"s3://bucket?endpoint=http://minio:9000", "without a scheme"},
		{"s3://bucket?insecure=maybe", "insecure must be true or false"},
		{"s3://bucket?colour=blue", `unknown parameter "colour"`},
		{"s3://bucket?part_size=1", "part_size: must be between"},
		{"s3://Bad_Bucket", "bucket: "},
		{"s3://bucket/a//b", "prefix: empty path segment"},
	} {
		_, err := objstore.ParseURL(c.url, lookup)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURL(%q) = %v, want an error containing %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "SK") && !strings.Contains(c.url, "SK") {
			t.Errorf("ParseURL(%q) error reveals the secret: %v", c.url, err)
		}
	}
	delete(env, objstore.EnvSecretKey)
	if _, err := objstore.ParseURL("s3://bucket", lookup); err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Errorf("ParseURL with only an access key = %v", err)
	}
}

func TestOpenFileURL(t *testing.T) {
	dir := t.TempDir()
	b, err := objstore.Open(context.Background(), "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(context.Background(), "k", bytes.NewReader([]byte("v")), 1); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(data) != "v" {
		t.Fatalf("file = %q, %v", data, err)
	}
}

func TestReadAllLimit(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(ctx, "k", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	if data, _, err := objstore.ReadAll(ctx, b, "k", 10); err != nil || string(data) != "0123456789" {
		t.Fatalf("ReadAll(limit 10) = %q, %v", data, err)
	}
	if _, _, err := objstore.ReadAll(ctx, b, "k", 9); err == nil {
		t.Fatal("ReadAll(limit 9) read a 10-byte object")
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func readAll(rc io.ReadCloser) ([]byte, error) {
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestDownload: an object lands whole under its file name, directories created, no temporary
// file left; a missing object leaves no file.
func TestDownload(t *testing.T) {
	ctx := context.Background()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("edgeloop"), 10000)
	if err := b.Put(ctx, "a/b.tar", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "x", "y", "b.tar")
	if err := objstore.Download(ctx, b, "a/b.tar", p); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, %v; want %d", len(got), err, len(data))
	}
	if _, err := os.Stat(p + ".part"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if err := objstore.Download(ctx, b, "nope", missing); !objstore.IsNotFound(err) {
		t.Errorf("missing object: %v, want not found", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a file exists for a missing object: %v", err)
	}
}

func TestObjectURLRoundTrip(t *testing.T) {
	for _, c := range []struct{ bucket, key, want string }{
		{"s3://b?endpoint=h:9000&insecure=true", "jobs/m/j/request.json", "s3://b/jobs/m/j/request.json?endpoint=h:9000&insecure=true"},
		{"s3://b/prefix?endpoint=h:9000", "jobs/m/output/", "s3://b/prefix/jobs/m/output/?endpoint=h:9000"},
		{"file:///var/lib/edgeloop", "jobs/m/output/", "file:///var/lib/edgeloop/jobs/m/output"},
	} {
		got, err := objstore.ObjectURL(c.bucket, c.key)
		if err != nil || got != c.want {
			t.Errorf("objstore.ObjectURL(%q, %q) = %q, %v; want %q", c.bucket, c.key, got, err, c.want)
			continue
		}
		if !objstore.IsObjectURL(got) {
			if c.bucket[:5] != "file:" {
				t.Errorf("objstore.IsObjectURL(%q) = false", got)
			}
			continue
		}
		b, k, err := objstore.SplitObjectURL(got)
		if err != nil {
			t.Errorf("objstore.SplitObjectURL(%q): %v", got, err)
			continue
		}
		// The key is the whole path: a bucket URL's prefix is part of it.
		if back, _ := objstore.ObjectURL(b, k); back != got {
			t.Errorf("objstore.SplitObjectURL(%q) = %q, %q, which joins back to %q", got, b, k, back)
		}
	}
	if objstore.IsObjectURL("/var/lib/x") || objstore.IsObjectURL("file:///x") || !objstore.IsObjectURL("s3://b/k") {
		t.Error("IsObjectURL: a local path or file URL is not an object URL; s3 is")
	}
	if _, _, err := objstore.SplitObjectURL("https://collector/v1/repo/x"); err == nil {
		t.Error("SplitObjectURL accepted an http URL, whose path is not a key")
	}
}
