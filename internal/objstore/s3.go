package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Part sizes of multipart uploads: S3 allows 5 MiB to 5 GiB per part and 10,000 parts.
const (
	// DefaultPartSize is the part size used unless configured: 16 MiB holds a typical ONNX
	// classifier in one PUT, and an upload of unknown size buffers at most this much at once.
	DefaultPartSize = 16 << 20
	minPartSize     = 5 << 20
	maxPartSize     = 5 << 30
)

// S3Config is an S3 (or S3-compatible, such as MinIO) bucket: the `s3:` section of a component's
// object-store configuration. Use ${ENV} references for the keys.
type S3Config struct {
	// Endpoint is the server's host[:port], without a scheme (for example
	// "s3.eu-west-1.amazonaws.com" or "minio.dc1:9000").
	Endpoint string `yaml:"endpoint"`
	// Bucket is the bucket's name.
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region; empty lets the client discover it (MinIO ignores it).
	Region string `yaml:"region"`
	// AccessKey and SecretKey are the credentials; both empty means anonymous requests.
	AccessKey string `yaml:"access_key"`
	// SecretKey is the secret matching AccessKey.
	SecretKey string `yaml:"secret_key"`
	// Insecure speaks plain HTTP instead of HTTPS, for a MinIO on a trusted network or in tests.
	Insecure bool `yaml:"insecure"`
	// Prefix places every key under this path in the bucket ("edgeloop" stores
	// "models/x" as "edgeloop/models/x"), so that several deployments can share a bucket.
	Prefix string `yaml:"prefix"`
	// PartSize is the size in bytes of each part of a multipart upload (5 MiB to 5 GiB); objects
	// up to this size are uploaded with one PUT. Default 16 MiB.
	PartSize int64 `yaml:"part_size"`
}

// DefaultS3Config returns the defaults that a configuration file overlays.
func DefaultS3Config() S3Config { return S3Config{PartSize: DefaultPartSize} }

// Validate reports every invalid field, named relative to the S3 section.
func (c S3Config) Validate() error {
	var errs []error
	switch {
	case c.Endpoint == "":
		errs = append(errs, config.Errorf("endpoint", "must be set (host or host:port, like s3.amazonaws.com or minio:9000)"))
	case strings.Contains(c.Endpoint, "://"):
		errs = append(errs, config.Errorf("endpoint", "must be host or host:port without a scheme, got %q (set insecure: true for http)", c.Endpoint))
	case strings.ContainsAny(c.Endpoint, "/?#@ "):
		errs = append(errs, config.Errorf("endpoint", "must be host or host:port, got %q", c.Endpoint))
	default:
		if _, _, err := net.SplitHostPort(c.Endpoint); err != nil && strings.Contains(err.Error(), "too many colons") {
			errs = append(errs, config.Errorf("endpoint", "must be host or host:port (IPv6 in brackets), got %q", c.Endpoint))
		}
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		errs = append(errs, config.Errorf("bucket", "%v, got %q", lowerFirst(err.Error()), c.Bucket))
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		errs = append(errs, config.Errorf("access_key", "access_key and secret_key must be set together (or both left empty for anonymous access)"))
	}
	if c.Prefix != "" {
		if err := validatePath(c.Prefix); err != nil {
			errs = append(errs, config.Errorf("prefix", "%v, got %q", err, c.Prefix))
		}
	}
	if c.PartSize < minPartSize || c.PartSize > maxPartSize {
		errs = append(errs, config.Errorf("part_size", "must be between %d (5 MiB) and %d (5 GiB) bytes, got %d", minPartSize, int64(maxPartSize), c.PartSize))
	}
	return errors.Join(errs...)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// s3Bucket is a Bucket in an S3 bucket, through minio-go.
type s3Bucket struct {
	client   *minio.Client
	core     minio.Core // for single-request GETs: Client.GetObject is lazy and HEADs first
	bucket   string
	prefix   string // "" or the configured prefix with a trailing "/"
	partSize uint64
}

// NewS3 returns a Bucket in the S3 bucket cfg names. It does not contact the server: an edge
// node may start while its uplink is down, and the first request says what is wrong.
func NewS3(cfg S3Config) (Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("objstore: s3: %w", err)
	}
	client, err := newMinioClient(cfg)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if cfg.Prefix != "" {
		prefix = cfg.Prefix + "/"
	}
	return &s3Bucket{
		client:   client,
		core:     minio.Core{Client: client},
		bucket:   cfg.Bucket,
		prefix:   prefix,
		partSize: uint64(cfg.PartSize),
	}, nil
}

func newMinioClient(cfg S3Config) (*minio.Client, error) {
	creds := credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  creds,
		Secure: !cfg.Insecure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: s3: %w", err)
	}
	return client, nil
}

// CreateS3Bucket creates the bucket cfg names unless it exists already: for tests, the demo and
// first-time setup; services expect their bucket to exist.
func CreateS3Bucket(ctx context.Context, cfg S3Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("objstore: s3: %w", err)
	}
	client, err := newMinioClient(cfg)
	if err != nil {
		return err
	}
	err = client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou || code == minio.BucketAlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("objstore: s3: create bucket %s: %w", cfg.Bucket, err)
	}
	return nil
}

// s3Error maps minio-go's errors onto the package's sentinel errors.
func s3Error(err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	switch {
	case resp.Code == minio.NoSuchKey:
		return ErrNotFound
	case resp.StatusCode == http.StatusNotModified:
		return ErrNotModified
	}
	return err
}

func (b *s3Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return opError("put", key, err)
	}
	if size < -1 {
		return opError("put", key, fmt.Errorf("invalid size %d", size))
	}
	if size >= 0 {
		// minio-go sends a short body and lets the server refuse it; say what happened instead.
		r = &exactReader{r: r, want: size}
	}
	_, err := b.client.PutObject(ctx, b.bucket, b.prefix+key, r, size, minio.PutObjectOptions{
		PartSize:    b.partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return opError("put", key, s3Error(err))
	}
	return nil
}

// exactReader turns a reader that ends before want bytes into io.ErrUnexpectedEOF.
type exactReader struct {
	r    io.Reader
	want int64
	n    int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if rest := e.want - e.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	e.n += int64(n)
	if errors.Is(err, io.EOF) && e.n < e.want {
		return n, fmt.Errorf("reader ended after %d of %d bytes: %w", e.n, e.want, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (b *s3Bucket) Get(ctx context.Context, key string) (io.ReadCloser, Attributes, error) {
	return b.GetIfNoneMatch(ctx, key, "")
}

func (b *s3Bucket) GetIfNoneMatch(ctx context.Context, key, etag string) (io.ReadCloser, Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Attributes{}, opError("get", key, err)
	}
	var opts minio.GetObjectOptions
	if etag != "" {
		if err := opts.SetMatchETagExcept(etag); err != nil {
			return nil, Attributes{}, opError("get", key, err)
		}
	}
	body, info, _, err := b.core.GetObject(ctx, b.bucket, b.prefix+key, opts)
	if err != nil {
		return nil, Attributes{}, opError("get", key, s3Error(err))
	}
	return body, attributes(info), nil
}

func attributes(info minio.ObjectInfo) Attributes {
	return Attributes{Size: info.Size, ETag: info.ETag, LastModified: info.LastModified}
}

func (b *s3Bucket) Attributes(ctx context.Context, key string) (Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	info, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return Attributes{}, opError("attributes", key, s3Error(err))
	}
	return attributes(info), nil
}

func (b *s3Bucket) Exists(ctx context.Context, key string) (bool, error) {
	if err := ValidateKey(key); err != nil {
		return false, opError("exists", key, err)
	}
	_, err := b.client.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	switch err = s3Error(err); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, opError("exists", key, err)
	}
}

func (b *s3Bucket) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return opError("delete", key, err)
	}
	if err := b.client.RemoveObject(ctx, b.bucket, b.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return opError("delete", key, s3Error(err))
	}
	return nil
}

func (b *s3Bucket) Iter(ctx context.Context, prefix string, recursive bool, f func(key string) error) error {
	if err := ValidatePrefix(prefix); err != nil {
		return opError("iter", prefix, err)
	}
	// Cancelling stops minio-go's listing goroutine when f ends the iteration early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: recursive})
	if !recursive {
		// minio-go reports each page's objects before its common prefixes; one level of a
		// listing is small, so collect and sort it into the byte order the interface promises.
		var keys []string
		for obj := range objects {
			if obj.Err != nil {
				return opError("iter", prefix, s3Error(obj.Err))
			}
			keys = append(keys, strings.TrimPrefix(obj.Key, b.prefix))
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := f(k); err != nil {
				return err
			}
		}
		return nil
	}
	for obj := range objects {
		if obj.Err != nil {
			return opError("iter", prefix, s3Error(obj.Err))
		}
		if err := f(strings.TrimPrefix(obj.Key, b.prefix)); err != nil {
			return err
		}
	}
	return nil
}

// Close releases nothing: minio-go's pooled connections close when idle.
func (b *s3Bucket) Close() error { return nil }

// String names the bucket in logs, without credentials.
func (b *s3Bucket) String() string {
	return "s3://" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/") + " at " + b.client.EndpointURL().Host
}

// ErrPreconditionFailed is returned (wrapped) by PutIf when the object's state does not meet
// the condition: it exists (ifNoneMatch), or its ETag is not ifMatch.
var ErrPreconditionFailed = errors.New("object precondition failed")

// PutIf is Put with an S3 conditional write (If-None-Match: * when ifNoneMatch, else If-Match:
// ifMatch), for locks kept in the bucket: of two writers racing to create an object, one gets
// ErrPreconditionFailed. It returns the new object's ETag. Only the S3 backend has it; callers
// find it with a type assertion and say what they do without it.
func (b *s3Bucket) PutIf(ctx context.Context, key string, data []byte, ifNoneMatch bool, ifMatch string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", opError("put", key, err)
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if ifNoneMatch {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifMatch)
	}
	info, err := b.client.PutObject(ctx, b.bucket, b.prefix+key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed" {
			return "", opError("put", key, ErrPreconditionFailed)
		}
		return "", opError("put", key, s3Error(err))
	}
	return info.ETag, nil
}
