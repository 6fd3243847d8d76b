package modelrepo_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func TestRepositoryFS(t *testing.T) {
	runRepository(t, func(t *testing.T) objstore.Bucket {
		b, err := objstore.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestRepositoryMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	n := 0
	runRepository(t, func(t *testing.T) objstore.Bucket {
		n++
		cfg := objstore.S3Config{Endpoint: endpoint, Bucket: fmt.Sprintf("repo-%d", n), AccessKey: access, SecretKey: secret,
			Insecure: true, PartSize: objstore.DefaultPartSize, Prefix: "edge"}
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

// fixture is a repository with a trusted signer and a verifier.
type fixture struct {
	repo     *modelrepo.Repository
	bucket   objstore.Bucket
	signer   *modelrepo.Signer
	verifier *modelrepo.Verifier
	model    []byte
}

func newFixture(t *testing.T, b objstore.Bucket) *fixture {
	key := seedKey(9)
	return &fixture{
		repo:     modelrepo.New(b),
		bucket:   b,
		signer:   modelrepo.NewSigner(key),
		verifier: modelrepo.NewVerifier(key.Public().(ed25519.PublicKey)),
		model:    tinyONNX(t, `["zero","one","two"]`),
	}
}

func draft() modelrepo.Manifest {
	return modelrepo.Manifest{
		Classes:  []string{"zero", "one", "two"},
		Input:    modelrepo.Tensor{Name: "pixels", Datatype: "FP32", Shape: []int64{-1, 4}},
		Output:   modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
		Metrics:  map[string]float64{"accuracy": 0.9},
		Datasets: []string{"s3://edgeloop/samples/tiny/1/"},
	}
}

func (f *fixture) publish(t *testing.T, model string, opts modelrepo.PublishOptions) *modelrepo.Manifest {
	t.Helper()
	m, err := f.repo.Publish(context.Background(), model, draft(),
		[]modelrepo.File{modelrepo.BytesFile("model.onnx", f.model)}, f.signer, opts)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return m
}

func runRepository(t *testing.T, newBucket func(t *testing.T) objstore.Bucket) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"PublishListResolve", testPublishListResolve},
		{"Aliases", testAliases},
		{"Download", testDownload},
		{"Refusals", testRefusals},
		{"FailedPublish", testFailedPublish},
		{"Pointers", testPointers},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, newFixture(t, newBucket(t))) })
	}
}

func testPublishListResolve(t *testing.T, f *fixture) {
	ctx := context.Background()
	if _, err := f.repo.Latest(ctx, "tiny"); !errors.Is(err, modelrepo.ErrVersionNotFound) {
		t.Fatalf("Latest of an empty repository = %v, want ErrVersionNotFound", err)
	}
	m1 := f.publish(t, "tiny", modelrepo.PublishOptions{})
	m2 := f.publish(t, "tiny", modelrepo.PublishOptions{})
	m7 := f.publish(t, "tiny", modelrepo.PublishOptions{Version: 7})
	f.publish(t, "other", modelrepo.PublishOptions{})
	if m1.Version != 1 || m2.Version != 2 || m7.Version != 7 {
		t.Fatalf("versions %d, %d, %d; want 1, 2, 7", m1.Version, m2.Version, m7.Version)
	}
	if _, err := f.repo.Publish(ctx, "tiny", draft(), []modelrepo.File{modelrepo.BytesFile("model.onnx", f.model)}, f.signer, modelrepo.PublishOptions{Version: 2}); !errors.Is(err, modelrepo.ErrVersionExists) {
		t.Fatalf("republishing version 2 = %v, want ErrVersionExists", err)
	}
	if next := f.publish(t, "tiny", modelrepo.PublishOptions{}); next.Version != 8 {
		t.Fatalf("next version after 7 = %d, want 8", next.Version)
	}

	versions, err := f.repo.Versions(ctx, "tiny")
	if err != nil || !slices.Equal(versions, []int64{1, 2, 7, 8}) {
		t.Fatalf("Versions = %v, %v", versions, err)
	}
	models, err := f.repo.Models(ctx)
	if err != nil || !slices.Equal(models, []string{"other", "tiny"}) {
		t.Fatalf("Models = %v, %v", models, err)
	}
	for sel, want := range map[string]int64{"latest": 8, "": 8, "2": 2, "7": 7} {
		if got, err := f.repo.Resolve(ctx, "tiny", sel); err != nil || got != want {
			t.Errorf("Resolve(%q) = %d, %v; want %d", sel, got, err, want)
		}
	}
	for _, sel := range []string{"3", "05", "0"} {
		if _, err := f.repo.Resolve(ctx, "tiny", sel); !errors.Is(err, modelrepo.ErrVersionNotFound) {
			t.Errorf("Resolve(%q) = %v, want ErrVersionNotFound", sel, err)
		}
	}
	if _, err := f.repo.Resolve(ctx, "../x", "latest"); !errors.Is(err, modelrepo.ErrInvalidName) {
		t.Errorf("Resolve with a bad model name = %v", err)
	}

	// The layout is Triton's, with the manifest beside the model and config.pbtxt generated.
	keys, err := objstore.List(ctx, f.bucket, "models/tiny/", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"models/tiny/1/model.onnx", "models/tiny/1/config.pbtxt", "models/tiny/1/edgeloop.json", "models/tiny/config.pbtxt"} {
		if !slices.Contains(keys, want) {
			t.Errorf("missing %s in %q", want, keys)
		}
	}
	cfg, _, err := objstore.ReadAll(ctx, f.bucket, "models/tiny/config.pbtxt", 0)
	if err != nil || !bytes.Contains(cfg, []byte("tiny version 8")) || !bytes.Contains(cfg, []byte(`name: "pixels"`)) {
		t.Fatalf("model-level config.pbtxt is not the newest version's:\n%s (%v)", cfg, err)
	}

	got, err := f.repo.Manifest(ctx, "tiny", 2, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "tiny" || got.Version != 2 || got.Files["model.onnx"].Size != int64(len(f.model)) || got.Created.IsZero() || got.Signature == nil {
		t.Fatalf("Manifest = %+v", got)
	}
	if !reflect.DeepEqual(got, m2) {
		t.Fatalf("stored manifest differs from the one Publish returned:\n%+v\n%+v", got, m2)
	}
}

func testAliases(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	if _, err := f.repo.Resolve(ctx, "tiny", "stable"); !errors.Is(err, modelrepo.ErrAliasNotFound) {
		t.Fatalf("Resolve(stable) before it is set = %v, want ErrAliasNotFound", err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "stable", 1); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "canary", 2); err != nil {
		t.Fatal(err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "stable", 9); !errors.Is(err, modelrepo.ErrVersionNotFound) {
		t.Fatalf("SetAlias to a missing version = %v, want ErrVersionNotFound", err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "latest", 1); !errors.Is(err, modelrepo.ErrInvalidName) {
		t.Fatalf("SetAlias(latest) = %v, want ErrInvalidName", err)
	}
	if v, err := f.repo.Resolve(ctx, "tiny", "stable"); err != nil || v != 1 {
		t.Fatalf("Resolve(stable) = %d, %v; want 1", v, err)
	}
	aliases, err := f.repo.Aliases(ctx, "tiny")
	if err != nil || !reflect.DeepEqual(aliases, map[string]int64{"stable": 1, "canary": 2}) {
		t.Fatalf("Aliases = %v, %v", aliases, err)
	}
	// The alias object is small JSON that a poller can fetch conditionally.
	data, attrs, err := objstore.ReadAll(ctx, f.bucket, modelrepo.AliasKey("tiny", "stable"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := modelrepo.ParseAlias(data); err != nil || a.Version != 1 {
		t.Fatalf("ParseAlias = %+v, %v", a, err)
	}
	if _, _, err := f.bucket.GetIfNoneMatch(ctx, modelrepo.AliasKey("tiny", "stable"), attrs.ETag); !objstore.IsNotModified(err) {
		t.Fatalf("conditional get of an unchanged alias = %v", err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "stable", 2); err != nil {
		t.Fatal(err)
	}
	if rc, _, err := f.bucket.GetIfNoneMatch(ctx, modelrepo.AliasKey("tiny", "stable"), attrs.ETag); err != nil {
		t.Fatalf("conditional get of a moved alias = %v", err)
	} else {
		rc.Close()
	}
	// An alias left pointing at a version whose manifest vanished resolves to an error.
	if err := f.bucket.Delete(ctx, modelrepo.ManifestKey("tiny", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Resolve(ctx, "tiny", "canary"); !errors.Is(err, modelrepo.ErrVersionNotFound) {
		t.Fatalf("Resolve(canary) at a vanished version = %v, want ErrVersionNotFound", err)
	}
	if err := f.repo.DeleteAlias(ctx, "tiny", "canary"); err != nil {
		t.Fatal(err)
	}
	if aliases, _ := f.repo.Aliases(ctx, "tiny"); len(aliases) != 1 {
		t.Fatalf("Aliases after delete = %v", aliases)
	}
}

func testDownload(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	cache := t.TempDir()
	dest := filepath.Join(cache, "tiny", "1")
	m, err := f.repo.Download(ctx, "tiny", 1, dest, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 {
		t.Fatalf("manifest version %d", m.Version)
	}
	data, err := os.ReadFile(filepath.Join(dest, "model.onnx"))
	if err != nil || !bytes.Equal(data, f.model) {
		t.Fatalf("downloaded model.onnx: %d bytes, %v", len(data), err)
	}
	entries, _ := os.ReadDir(dest)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"config.pbtxt", "edgeloop.json", "model.onnx"}) {
		t.Fatalf("downloaded files %q", names)
	}
	// The download verifies again on its own, as an exporter does with its cache at start.
	if _, err := modelrepo.VerifyDir(dest, f.verifier, "tiny", 1); err != nil {
		t.Fatalf("VerifyDir(download): %v", err)
	}
	if _, err := f.repo.Download(ctx, "tiny", 1, dest, f.verifier); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Download over an existing directory = %v, want ErrExist", err)
	}
	assertOnly(t, filepath.Join(cache, "tiny"), "1")
}

// assertOnly checks that dir holds exactly the named entries: no temporary directory left.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func testRefusals(t *testing.T, f *fixture) {
	ctx := context.Background()
	put := func(key string, data []byte) {
		t.Helper()
		if err := f.bucket.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	read := func(key string) []byte {
		t.Helper()
		data, _, err := objstore.ReadAll(ctx, f.bucket, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for range 6 {
		f.publish(t, "tiny", modelrepo.PublishOptions{})
	}

	// 1: one byte of the model changed after publishing, size unchanged.
	model := read("models/tiny/1/model.onnx")
	model[len(model)/2] ^= 0x01
	put("models/tiny/1/model.onnx", model)
	// 2: signed by a key the verifier does not trust.
	stranger := modelrepo.NewSigner(seedKey(66))
	m2, _ := f.repo.UnverifiedManifest(ctx, "tiny", 2)
	if err := stranger.Sign(m2); err != nil {
		t.Fatal(err)
	}
	data, _ := m2.Marshal()
	put(modelrepo.ManifestKey("tiny", 2), data)
	// 3: no manifest at all (an interrupted upload).
	if err := f.bucket.Delete(ctx, modelrepo.ManifestKey("tiny", 3)); err != nil {
		t.Fatal(err)
	}
	// 4: the manifest without its signature.
	m4, _ := f.repo.UnverifiedManifest(ctx, "tiny", 4)
	m4.Signature = nil
	data, _ = m4.Marshal()
	put(modelrepo.ManifestKey("tiny", 4), data)
	// 5: the manifest edited after signing (accuracy inflated).
	m5 := read(modelrepo.ManifestKey("tiny", 5))
	put(modelrepo.ManifestKey("tiny", 5), bytes.Replace(m5, []byte(`"accuracy": 0.9`), []byte(`"accuracy": 0.99`), 1))
	// 6: version 1's genuine manifest replayed as version 6.
	put(modelrepo.ManifestKey("tiny", 6), read(modelrepo.ManifestKey("tiny", 1)))

	cache := t.TempDir()
	for _, c := range []struct {
		version int64
		want    error
		reason  string
	}{
		{1, modelrepo.ErrDigestMismatch, "digest_mismatch"},
		{2, modelrepo.ErrUnknownKey, "unknown_key"},
		{3, modelrepo.ErrNoManifest, "no_manifest"},
		{4, modelrepo.ErrNoSignature, "no_signature"},
		{5, modelrepo.ErrBadSignature, "bad_signature"},
		{6, modelrepo.ErrManifestMismatch, "manifest_mismatch"},
	} {
		dest := filepath.Join(cache, fmt.Sprint(c.version))
		_, err := f.repo.Download(ctx, "tiny", c.version, dest, f.verifier)
		if !errors.Is(err, c.want) {
			t.Errorf("version %d: Download error = %v, want %v", c.version, err, c.want)
		}
		if got := modelrepo.Reason(err); got != c.reason {
			t.Errorf("version %d: Reason = %q, want %q", c.version, got, c.reason)
		}
		if c.version != 1 {
			if _, err := f.repo.Manifest(ctx, "tiny", c.version, f.verifier); !errors.Is(err, c.want) {
				t.Errorf("version %d: Manifest error = %v, want %v", c.version, err, c.want)
			}
		}
	}
	// Nothing at any destination, and no temporary directory beside them.
	assertOnly(t, cache)
	// Version 3 no longer exists at all.
	if versions, _ := f.repo.Versions(ctx, "tiny"); slices.Contains(versions, 3) {
		t.Errorf("Versions = %v still lists the version without a manifest", versions)
	}
}

// failingBucket fails Put for keys with a given suffix, as a store that dies mid-publish.
type failingBucket struct {
	objstore.Bucket
	suffix string
}

func (b failingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.HasSuffix(key, b.suffix) {
		io.CopyN(io.Discard, r, size/2) // fail part-way, as a dropped connection does
		return fmt.Errorf("injected failure writing %s", key)
	}
	return b.Bucket.Put(ctx, key, r, size)
}

func testFailedPublish(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	before, err := objstore.List(ctx, f.bucket, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"/2/config.pbtxt", "/2/model.onnx", "/2/edgeloop.json", "tiny/config.pbtxt"} {
		repo := modelrepo.New(failingBucket{Bucket: f.bucket, suffix: suffix})
		_, err := repo.Publish(ctx, "tiny", draft(), []modelrepo.File{modelrepo.BytesFile("model.onnx", f.model)}, f.signer, modelrepo.PublishOptions{})
		if err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("failing %s: Publish = %v, want the injected failure", suffix, err)
		}
		versions, err := f.repo.Versions(ctx, "tiny")
		if err != nil || !slices.Equal(versions, []int64{1}) {
			t.Fatalf("failing %s: Versions = %v, %v; want only 1", suffix, versions, err)
		}
		if v, err := f.repo.Latest(ctx, "tiny"); err != nil || v != 1 {
			t.Fatalf("failing %s: Latest = %d, %v", suffix, v, err)
		}
		// The uploaded files were removed again.
		after, _ := objstore.List(ctx, f.bucket, "", true)
		if !slices.Equal(after, before) {
			t.Fatalf("failing %s: objects %q, want %q as before", suffix, after, before)
		}
	}
	// A file shorter than declared fails the publish too.
	short := modelrepo.File{Name: "model.onnx", Size: 100, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("tiny")), nil
	}}
	if _, err := f.repo.Publish(ctx, "tiny", draft(), []modelrepo.File{short}, f.signer, modelrepo.PublishOptions{}); err == nil {
		t.Fatal("Publish of a short file succeeded")
	}
	if versions, _ := f.repo.Versions(ctx, "tiny"); !slices.Equal(versions, []int64{1}) {
		t.Fatalf("after a short file: Versions = %v", versions)
	}
	// An invalid draft is refused before anything is uploaded.
	bad := draft()
	bad.Output.Kind = "scores"
	if _, err := f.repo.Publish(ctx, "tiny", bad, []modelrepo.File{modelrepo.BytesFile("model.onnx", f.model)}, f.signer, modelrepo.PublishOptions{}); !errors.Is(err, modelrepo.ErrInvalidManifest) {
		t.Fatalf("Publish of an invalid draft = %v, want ErrInvalidManifest", err)
	}
	if after, _ := objstore.List(ctx, f.bucket, "", true); !slices.Equal(after, before) {
		t.Fatalf("an invalid draft left objects: %q", after)
	}
}

// testPointers checks the conditional reads pollers rely on: the latest hint follows the
// highest version (not an older one published later), an unchanged pointer answers
// ErrNotModified, a changed one its new version.
func testPointers(t *testing.T, f *fixture) {
	ctx := context.Background()
	key := modelrepo.LatestKey("tiny")
	if _, _, err := f.repo.Pointer(ctx, key, ""); !errors.Is(err, modelrepo.ErrAliasNotFound) {
		t.Fatalf("Pointer before any publish = %v, want ErrAliasNotFound", err)
	}
	f.publish(t, "tiny", modelrepo.PublishOptions{Version: 2})
	p, etag, err := f.repo.Pointer(ctx, key, "")
	if err != nil || p.Version != 2 || etag == "" {
		t.Fatalf("Pointer = %+v, %q, %v; want version 2 and an ETag", p, etag, err)
	}
	if _, again, err := f.repo.Pointer(ctx, key, etag); !objstore.IsNotModified(err) || again != etag {
		t.Fatalf("unchanged Pointer = %q, %v; want ErrNotModified and the same ETag", again, err)
	}
	f.publish(t, "tiny", modelrepo.PublishOptions{Version: 1})
	if _, _, err := f.repo.Pointer(ctx, key, etag); !objstore.IsNotModified(err) {
		t.Fatalf("after publishing a lower version, Pointer = %v; want ErrNotModified", err)
	}
	f.publish(t, "tiny", modelrepo.PublishOptions{})
	p, etag3, err := f.repo.Pointer(ctx, key, etag)
	if err != nil || p.Version != 3 || etag3 == etag {
		t.Fatalf("after publishing version 3, Pointer = %+v, %q, %v; want version 3 and a new ETag", p, etag3, err)
	}
	if err := f.repo.SetAlias(ctx, "tiny", "stable", 1); err != nil {
		t.Fatal(err)
	}
	if p, _, err := f.repo.Pointer(ctx, modelrepo.AliasKey("tiny", "stable"), ""); err != nil || p.Version != 1 {
		t.Fatalf("alias Pointer = %+v, %v; want version 1", p, err)
	}
}
