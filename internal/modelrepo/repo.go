// Package modelrepo is edgeloop's model repository: Triton's layout in an object store, plus
// a signed manifest per version.
//
//	models/<model>/<version>/model.onnx      the model
//	models/<model>/<version>/config.pbtxt    its Triton configuration (generated unless given)
//	models/<model>/<version>/edgeloop.json   the manifest: digests of every file, classes,
//	                                         tensors, eval metrics, signature; written last
//	models/<model>/config.pbtxt              copy of the newest version's, for Triton
//	models/<model>/aliases/<alias>.json      {"version": N}: a name such as "stable"
//
// A version exists only once its manifest does, so a reader never sees half a version. An
// exporter trusts a version only after Download (or VerifyDir) has checked the manifest's
// ed25519 signature against its trusted keys and every file's size and SHA-256 against the
// manifest. docs/model-repository.md describes the layout, the manifest and the signing.
package modelrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// Names in the layout.
const (
	// ModelFile is the ONNX model of a version.
	ModelFile = "model.onnx"
	// ConfigFile is a version's Triton configuration.
	ConfigFile = "config.pbtxt"
	// ManifestFile is a version's signed manifest.
	ManifestFile = "edgeloop.json"
	// SelectorLatest selects a model's highest version in Resolve.
	SelectorLatest = "latest"

	modelsPrefix = "models/"
	aliasesDir   = "aliases"
	maxAliasSize = 64 << 10
)

// ModelPrefix is the key prefix of everything stored for model.
func ModelPrefix(model string) string { return modelsPrefix + model + "/" }

// VersionPrefix is the key prefix of one version's files.
func VersionPrefix(model string, version int64) string {
	return ModelPrefix(model) + strconv.FormatInt(version, 10) + "/"
}

// FileKey is the key of one file of a version.
func FileKey(model string, version int64, name string) string {
	return VersionPrefix(model, version) + name
}

// ManifestKey is the key of a version's manifest: poll it with a conditional get to learn
// cheaply whether a pinned version changed.
func ManifestKey(model string, version int64) string {
	return FileKey(model, version, ManifestFile)
}

// AliasKey is the key of an alias: poll it with a conditional get to follow the alias.
func AliasKey(model, alias string) string {
	return ModelPrefix(model) + aliasesDir + "/" + alias + ".json"
}

// LatestKey is the key of the "latest" hint: an object like an alias that Publish rewrites
// whenever a version becomes the highest, so that pollers learn of a new version with one
// conditional GET instead of a listing. It is a hint, not the truth: Latest lists.
func LatestKey(model string) string { return ModelPrefix(model) + "latest.json" }

// Alias is the content of an alias object or of the latest hint. A version's manifest is
// signed, so whoever can write the bucket cannot make an exporter load an unsigned version;
// but an unsigned pointer could still roll exporters back to an old signed version. So
// pointers are signed too (SetSignedAlias, and Publish's latest hint), with a sequence that
// only grows: an exporter refuses a signed pointer older than one it accepted. Pointers
// written by SetAlias, or before signing existed, carry only Version and Updated.
type Alias struct {
	// Version is the version the alias points at.
	Version int64 `json:"version"`
	// Updated is when the alias was last set.
	Updated time.Time `json:"updated"`
	// Model is the model the pointer was signed for.
	Model string `json:"model,omitempty"`
	// Name is the alias the pointer was signed for, or "latest" for the latest hint.
	Name string `json:"name,omitempty"`
	// Sequence orders the signed pointers of one name: each one written is higher than the
	// one before, and at least its Unix time in milliseconds.
	Sequence int64 `json:"sequence,omitempty"`
	// Signature signs everything above; see PointerSigningBytes.
	Signature *Signature `json:"signature,omitempty"`
}

// Repository reads and writes model versions in a bucket. It is safe for concurrent use, but
// publishing is meant for one writer per model at a time (retrain is a single active
// instance): two publishers choosing "the next version" at once could pick the same number.
type Repository struct {
	bucket objstore.Bucket
	now    func() time.Time
}

// New returns a Repository over b. The caller keeps ownership of b.
func New(b objstore.Bucket) *Repository {
	return &Repository{bucket: b, now: time.Now}
}

// Bucket returns the repository's bucket, for conditional polling of ManifestKey and AliasKey.
func (r *Repository) Bucket() objstore.Bucket { return r.bucket }

// File is one file to publish.
type File struct {
	// Name is the file's name in the version directory (see ValidateFileName).
	Name string
	// Size is its length in bytes.
	Size int64
	// Open returns its content; it is called once.
	Open func() (io.ReadCloser, error)
}

// BytesFile returns a File holding data.
func BytesFile(name string, data []byte) File {
	return File{Name: name, Size: int64(len(data)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

// DirFiles returns the files of a local version directory: every regular file except
// edgeloop.json and names starting with "." (editor and OS droppings). A subdirectory is an
// error: a version is one flat directory.
func DirFiles(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("version directory: %w", err)
	}
	var files []File
	for _, e := range entries {
		name := e.Name()
		if name == ManifestFile || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path) // follows links, as a user linking a model file expects
		if err != nil {
			return nil, fmt.Errorf("version directory: %w", err)
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("version directory %s: %s is not a regular file (a version is one flat directory)", dir, name)
		}
		if err := ValidateFileName(name); err != nil {
			return nil, fmt.Errorf("version directory %s: %w", dir, err)
		}
		files = append(files, File{Name: name, Size: info.Size(), Open: func() (io.ReadCloser, error) { return os.Open(path) }})
	}
	return files, nil
}

// PublishOptions tune Publish.
type PublishOptions struct {
	// Version is the version number to publish as; 0 means one above the highest existing.
	Version int64
	// MaxBatchSize goes into a generated config.pbtxt; 0 means DefaultMaxBatchSize.
	MaxBatchSize int
}

// Publish stores files as a new version of model and returns its signed manifest. The
// manifest is draft with Model, Version, Files and (when zero) Created filled in; files must
// include model.onnx and, unless they include config.pbtxt, one is generated from the draft.
//
// The files are uploaded first, with their SHA-256 computed as they stream; then the newest
// version's config.pbtxt is copied to the model level for Triton; the signed manifest is
// written last. Until then the version does not exist; on failure the uploaded files are
// removed again (best effort: leftovers are invisible without a manifest and are overwritten
// by the next publish of that number). Publishing a version that has a manifest is
// ErrVersionExists: versions are immutable.
func (r *Repository) Publish(ctx context.Context, model string, draft Manifest, files []File, signer *Signer, opts PublishOptions) (*Manifest, error) {
	m, err := r.publish(ctx, model, draft, files, signer, opts)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", model, err)
	}
	return m, nil
}

func (r *Repository) publish(ctx context.Context, model string, draft Manifest, files []File, signer *Signer, opts PublishOptions) (*Manifest, error) {
	if err := ValidateModelName(model); err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, errors.New("no signing key")
	}
	if opts.Version < 0 {
		return nil, fmt.Errorf("version must be positive, got %d", opts.Version)
	}
	names := map[string]bool{}
	for _, f := range files {
		if f.Name == ManifestFile {
			return nil, fmt.Errorf("%s is written by publish, not uploaded", ManifestFile)
		}
		if err := ValidateFileName(f.Name); err != nil {
			return nil, err
		}
		if names[f.Name] {
			return nil, fmt.Errorf("file %s given twice", f.Name)
		}
		names[f.Name] = true
	}

	versions, err := r.Versions(ctx, model)
	if err != nil {
		return nil, err
	}
	version := opts.Version
	switch {
	case version == 0 && len(versions) == 0:
		version = 1
	case version == 0:
		version = versions[len(versions)-1] + 1
	case slices.Contains(versions, version):
		return nil, fmt.Errorf("%w: version %d", ErrVersionExists, version)
	}

	m := draft
	m.SchemaVersion = SchemaVersion
	m.Model = model
	m.Version = version
	m.Signature = nil
	if m.Created.IsZero() {
		m.Created = r.now().UTC().Truncate(time.Second)
	}
	if !names[ConfigFile] {
		files = append(slices.Clone(files), BytesFile(ConfigFile, TritonConfig(&m, opts.MaxBatchSize)))
	}
	// Check everything but the digests before uploading what may be a large model.
	m.Files = map[string]FileDigest{}
	for _, f := range files {
		m.Files[f.Name] = FileDigest{SHA256: strings.Repeat("0", 64), Size: f.Size}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}

	var uploaded []string
	ok := false
	defer func() {
		if !ok {
			r.removeKeys(ctx, uploaded)
		}
	}()
	for _, f := range files {
		key := FileKey(model, version, f.Name)
		d, err := r.upload(ctx, key, f)
		uploaded = append(uploaded, key)
		if err != nil {
			return nil, err
		}
		m.Files[f.Name] = d
	}
	if err := signer.Sign(&m); err != nil {
		return nil, err
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 || version > versions[len(versions)-1] {
		if err := r.copyConfig(ctx, model, version); err != nil {
			return nil, err
		}
	}
	if err := r.bucket.Put(ctx, ManifestKey(model, version), bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, err
	}
	ok = true
	if len(versions) == 0 || version > versions[len(versions)-1] {
		// The hint only spares pollers a listing; they list anyway when it is missing and
		// every few polls, so a failure to write it delays nothing for long and the version,
		// already published, stands.
		_ = r.putPointer(ctx, LatestKey(model), model, SelectorLatest, version, signer)
	}
	return &m, nil
}

// upload stores one file and returns its digest, computed from the bytes actually sent.
func (r *Repository) upload(ctx context.Context, key string, f File) (FileDigest, error) {
	rc, err := f.Open()
	if err != nil {
		return FileDigest{}, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer rc.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(rc, h)}
	if err := r.bucket.Put(ctx, key, cr, f.Size); err != nil {
		return FileDigest{}, err
	}
	if cr.n != f.Size {
		return FileDigest{}, fmt.Errorf("%s: read %d bytes, expected %d", f.Name, cr.n, f.Size)
	}
	return FileDigest{SHA256: hex.EncodeToString(h.Sum(nil)), Size: f.Size}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// copyConfig copies the version's config.pbtxt to the model level, where Triton reads it when
// it serves the repository directly. That copy is a convenience and is not signed; exporters
// use the signed one inside the version.
func (r *Repository) copyConfig(ctx context.Context, model string, version int64) error {
	data, _, err := objstore.ReadAll(ctx, r.bucket, FileKey(model, version, ConfigFile), MaxManifestSize)
	if err != nil {
		return err
	}
	return r.bucket.Put(ctx, ModelPrefix(model)+ConfigFile, bytes.NewReader(data), int64(len(data)))
}

// removeKeys deletes what a failed publish uploaded. It runs even when ctx was cancelled
// (often the reason for the failure), within a bounded time of its own.
func (r *Repository) removeKeys(ctx context.Context, keys []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		_ = r.bucket.Delete(ctx, k)
	}
}

// parseVersion reads a version directory name: a positive decimal integer without leading
// zeros, so that "3" and "03" cannot both name version 3.
func parseVersion(s string) (int64, bool) {
	if !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, false
	}
	return v, true
}

// Models lists the models in the repository, sorted.
func (r *Repository) Models(ctx context.Context) ([]string, error) {
	var models []string
	err := r.bucket.Iter(ctx, modelsPrefix, false, func(key string) error {
		name := strings.TrimSuffix(strings.TrimPrefix(key, modelsPrefix), "/")
		if strings.HasSuffix(key, "/") && ValidateModelName(name) == nil {
			models = append(models, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return models, nil
}

// Versions lists the versions of model that exist (have a manifest), in ascending order.
// One listing request, however many versions there are.
func (r *Repository) Versions(ctx context.Context, model string) ([]int64, error) {
	if err := ValidateModelName(model); err != nil {
		return nil, err
	}
	prefix := ModelPrefix(model)
	var versions []int64
	err := r.bucket.Iter(ctx, prefix, true, func(key string) error {
		dir, name, ok := strings.Cut(strings.TrimPrefix(key, prefix), "/")
		if !ok || name != ManifestFile {
			return nil
		}
		if v, ok := parseVersion(dir); ok {
			versions = append(versions, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", model, err)
	}
	slices.Sort(versions)
	return versions, nil
}

// Latest returns the highest version of model; ErrVersionNotFound when it has none.
func (r *Repository) Latest(ctx context.Context, model string) (int64, error) {
	versions, err := r.Versions(ctx, model)
	if err != nil {
		return 0, err
	}
	if len(versions) == 0 {
		return 0, fmt.Errorf("%w: model %s has no versions", ErrVersionNotFound, model)
	}
	return versions[len(versions)-1], nil
}

// Resolve turns a selector into a version of model that exists: "latest" (or "") is the
// highest version, a number is that version, anything else names an alias.
func (r *Repository) Resolve(ctx context.Context, model, selector string) (int64, error) {
	if selector == "" || selector == SelectorLatest {
		return r.Latest(ctx, model)
	}
	if err := ValidateModelName(model); err != nil {
		return 0, err
	}
	if isDigits(selector) {
		v, ok := parseVersion(selector)
		if !ok {
			return 0, fmt.Errorf("%w: %q is not a version number (a positive integer without leading zeros)", ErrVersionNotFound, selector)
		}
		return v, r.mustExist(ctx, model, v, "")
	}
	a, err := r.Alias(ctx, model, selector)
	if err != nil {
		return 0, err
	}
	return a.Version, r.mustExist(ctx, model, a.Version, selector)
}

func (r *Repository) mustExist(ctx context.Context, model string, version int64, alias string) error {
	ok, err := r.bucket.Exists(ctx, ManifestKey(model, version))
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case alias != "":
		return fmt.Errorf("%w: alias %s of %s points at version %d, which does not exist", ErrVersionNotFound, alias, model, version)
	default:
		return fmt.Errorf("%w: %s version %d", ErrVersionNotFound, model, version)
	}
}

// Alias reads an alias of model; ErrAliasNotFound when it is not set.
func (r *Repository) Alias(ctx context.Context, model, alias string) (Alias, error) {
	if err := ValidateModelName(model); err != nil {
		return Alias{}, err
	}
	if err := ValidateAliasName(alias); err != nil {
		return Alias{}, err
	}
	data, _, err := objstore.ReadAll(ctx, r.bucket, AliasKey(model, alias), maxAliasSize)
	if objstore.IsNotFound(err) {
		return Alias{}, fmt.Errorf("%w: %s has no alias %q", ErrAliasNotFound, model, alias)
	}
	if err != nil {
		return Alias{}, err
	}
	return ParseAlias(data)
}

// ParseAlias decodes an alias object.
func ParseAlias(data []byte) (Alias, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var a Alias
	if err := dec.Decode(&a); err != nil {
		return Alias{}, fmt.Errorf("alias: %w", err)
	}
	if a.Version < 1 {
		return Alias{}, fmt.Errorf("alias: version must be a positive integer, got %d", a.Version)
	}
	return a, nil
}

// SetAlias points alias of model at version, which must exist, with an unsigned pointer as
// before pointers were signed. Exporters accept it only until they have accepted a signed
// pointer of that name (or never, with require_signed_pointers); SetSignedAlias is the one to
// use where the signing key is at hand.
func (r *Repository) SetAlias(ctx context.Context, model, alias string, version int64) error {
	return r.setAlias(ctx, model, alias, version, nil)
}

// setAlias is SetAlias and SetSignedAlias: the pointer is signed when signer is set.
func (r *Repository) setAlias(ctx context.Context, model, alias string, version int64, signer *Signer) error {
	if err := ValidateModelName(model); err != nil {
		return err
	}
	if err := ValidateAliasName(alias); err != nil {
		return err
	}
	if err := r.mustExist(ctx, model, version, ""); err != nil {
		return fmt.Errorf("set alias %s: %w", alias, err)
	}
	if err := r.putPointer(ctx, AliasKey(model, alias), model, alias, version, signer); err != nil {
		return fmt.Errorf("set alias %s: %w", alias, err)
	}
	return nil
}

// Pointer reads the alias or latest hint at key (AliasKey, LatestKey) with a conditional GET:
// when its ETag is still etag the answer is objstore.ErrNotModified and costs no data. It
// returns the pointer and its ETag, for the next call. A missing pointer is ErrAliasNotFound.
func (r *Repository) Pointer(ctx context.Context, key, etag string) (Alias, string, error) {
	rc, attrs, err := r.bucket.GetIfNoneMatch(ctx, key, etag)
	switch {
	case objstore.IsNotModified(err):
		return Alias{}, etag, err
	case objstore.IsNotFound(err):
		return Alias{}, "", fmt.Errorf("%w: %s", ErrAliasNotFound, key)
	case err != nil:
		return Alias{}, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxAliasSize+1))
	if err != nil {
		return Alias{}, "", err
	}
	if len(data) > maxAliasSize {
		return Alias{}, "", fmt.Errorf("%s: larger than %d bytes", key, maxAliasSize)
	}
	a, err := ParseAlias(data)
	if err != nil {
		return Alias{}, "", fmt.Errorf("%s: %w", key, err)
	}
	return a, attrs.ETag, nil
}

// DeleteAlias removes an alias of model; removing one that is not set is not an error.
func (r *Repository) DeleteAlias(ctx context.Context, model, alias string) error {
	if err := ValidateModelName(model); err != nil {
		return err
	}
	if err := ValidateAliasName(alias); err != nil {
		return err
	}
	return r.bucket.Delete(ctx, AliasKey(model, alias))
}

// Aliases returns every alias of model and the version it points at.
func (r *Repository) Aliases(ctx context.Context, model string) (map[string]int64, error) {
	if err := ValidateModelName(model); err != nil {
		return nil, err
	}
	keys, err := objstore.List(ctx, r.bucket, ModelPrefix(model)+aliasesDir+"/", false)
	if err != nil {
		return nil, fmt.Errorf("list aliases of %s: %w", model, err)
	}
	out := map[string]int64{}
	for _, k := range keys {
		name, ok := strings.CutSuffix(k[strings.LastIndex(k, "/")+1:], ".json")
		if !ok || ValidateAliasName(name) != nil {
			continue
		}
		a, err := r.Alias(ctx, model, name)
		if err != nil {
			return nil, err
		}
		out[name] = a.Version
	}
	return out, nil
}

// UnverifiedManifest reads a version's manifest without checking its signature or files: for
// listings and tools, never for deciding what to load.
func (r *Repository) UnverifiedManifest(ctx context.Context, model string, version int64) (*Manifest, error) {
	data, err := r.manifestBytes(ctx, model, version)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", model, version, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", model, version, err)
	}
	return m, nil
}

// Manifest reads a version's manifest and verifies it (see VerifyManifest); it does not check
// the files (Download does).
func (r *Repository) Manifest(ctx context.Context, model string, version int64, v *Verifier) (*Manifest, error) {
	data, err := r.manifestBytes(ctx, model, version)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", model, version, err)
	}
	m, err := VerifyManifest(data, v, model, version)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", model, version, err)
	}
	return m, nil
}

func (r *Repository) manifestBytes(ctx context.Context, model string, version int64) ([]byte, error) {
	if err := ValidateModelName(model); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: version must be positive, got %d", ErrVersionNotFound, version)
	}
	data, _, err := objstore.ReadAll(ctx, r.bucket, ManifestKey(model, version), MaxManifestSize)
	if objstore.IsNotFound(err) {
		return nil, ErrNoManifest
	}
	return data, err
}

// VerifyManifest parses a manifest and checks, in this order: that it is signed
// (ErrNoSignature), by a trusted key (ErrUnknownKey), correctly (ErrBadSignature); that it
// follows the schema (ErrInvalidManifest); and that it names model and version
// (ErrManifestMismatch; an empty model or a zero version skips that check), so that a signed
// manifest copied to another place is refused.
func VerifyManifest(data []byte, v *Verifier, model string, version int64) (*Manifest, error) {
	if v == nil {
		return nil, errors.New("verify: no trusted keys")
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	if err := v.Verify(m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if (model != "" && m.Model != model) || (version != 0 && m.Version != version) {
		var want []string
		if model != "" {
			want = append(want, "model "+model)
		}
		if version != 0 {
			want = append(want, "version "+strconv.FormatInt(version, 10))
		}
		return nil, fmt.Errorf("%w: expected %s, it names model %s version %d", ErrManifestMismatch, strings.Join(want, " "), m.Model, m.Version)
	}
	return m, nil
}

// Download fetches a version into destDir, which must not exist, and returns its verified
// manifest. Everything lands first in a temporary directory beside destDir: the manifest is
// verified before any file is fetched, each file's size and SHA-256 are checked as it
// streams, and only then is the directory renamed to destDir. On any failure (ErrNoManifest,
// ErrNoSignature, ErrUnknownKey, ErrBadSignature, ErrDigestMismatch, ...) nothing is left at
// destDir or beside it. Only the files the manifest lists are fetched.
func (r *Repository) Download(ctx context.Context, model string, version int64, destDir string, v *Verifier) (*Manifest, error) {
	m, err := r.download(ctx, model, version, destDir, v)
	if err != nil {
		return nil, fmt.Errorf("download %s version %d: %w", model, version, err)
	}
	return m, nil
}

func (r *Repository) download(ctx context.Context, model string, version int64, destDir string, v *Verifier) (*Manifest, error) {
	if _, err := os.Lstat(destDir); err == nil {
		return nil, fmt.Errorf("%s: %w", destDir, fs.ErrExist)
	}
	data, err := r.manifestBytes(ctx, model, version)
	if err != nil {
		return nil, err
	}
	m, err := VerifyManifest(data, v, model, version)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(destDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(destDir)+".tmp-")
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	for _, name := range sortedKeys(m.Files) {
		if err := r.fetch(ctx, FileKey(model, version, name), filepath.Join(tmp, name), name, m.Files[name]); err != nil {
			return nil, err
		}
	}
	if err := fsutil.WriteNew(filepath.Join(tmp, ManifestFile), data, 0o644); err != nil {
		return nil, err
	}
	// MkdirTemp makes the directory private; a local Triton may run as another user.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := fsutil.SyncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, destDir); err != nil {
		return nil, err
	}
	committed = true
	return m, fsutil.SyncDir(parent)
}

// fetch streams one file into path, checking it against d as it goes.
func (r *Repository) fetch(ctx context.Context, key, path, name string, d FileDigest) error {
	rc, _, err := r.bucket.Get(ctx, key)
	if objstore.IsNotFound(err) {
		return fmt.Errorf("%w: %s is missing from the repository", ErrDigestMismatch, name)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	// One byte more than expected is enough to tell a longer file; no more is read.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, d.Size+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := checkDigest(name, n, h, d); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func checkDigest(name string, n int64, h hash.Hash, d FileDigest) error {
	if n != d.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrDigestMismatch, name, n, d.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrDigestMismatch, name, got, d.SHA256)
	}
	return nil
}

// VerifyDir checks a local version directory, such as an exporter's cached download or the
// output of `edgeloop model sign`: the manifest's signature (see VerifyManifest, with the
// same model and version checks) and every file against it. A regular file the manifest does
// not list is ErrDigestMismatch too: nothing unsigned may ride along into a model directory.
func VerifyDir(dir string, v *Verifier, model string, version int64) (*Manifest, error) {
	m, err := verifyDir(dir, v, model, version)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	return m, nil
}

func verifyDir(dir string, v *Verifier, model string, version int64) (*Manifest, error) {
	data, err := readLimited(filepath.Join(dir, ManifestFile), MaxManifestSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoManifest
	}
	if err != nil {
		return nil, err
	}
	m, err := VerifyManifest(data, v, model, version)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if _, listed := m.Files[name]; !listed && name != ManifestFile && !e.IsDir() {
			return nil, fmt.Errorf("%w: %s is not listed in the manifest", ErrDigestMismatch, name)
		}
	}
	for _, name := range sortedKeys(m.Files) {
		if err := checkFile(filepath.Join(dir, name), name, m.Files[name]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func checkFile(path, name string, d FileDigest) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s is missing", ErrDigestMismatch, name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, d.Size+1))
	if err != nil {
		return err
	}
	return checkDigest(name, n, h, d)
}

// DigestFile returns the size and SHA-256 of a local file.
func DigestFile(path string) (FileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileDigest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileDigest{}, err
	}
	return FileDigest{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
