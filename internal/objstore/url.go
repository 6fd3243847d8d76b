package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Target is the place a bucket URL names: a local directory (Dir), an S3 bucket (S3) or a
// collector's read-only repository API (HTTP), exactly one of them.
type Target struct {
	// Dir is the directory of a file:// URL.
	Dir string
	// S3 is the bucket of an s3:// URL.
	S3 *S3Config
	// HTTP is the read-only bucket of an http:// or https:// URL.
	HTTP *HTTPConfig
}

// Environment variables holding the credentials of an s3:// URL, named as the AWS tools name
// them so that existing setups carry over.
const (
	EnvAccessKey = "AWS_ACCESS_KEY_ID"
	EnvSecretKey = "AWS_SECRET_ACCESS_KEY"
)

// ParseURL reads a bucket URL:
//
//	file:///var/lib/edgeloop/models          a local directory (absolute path)
//	s3://bucket[/prefix][?endpoint=host:port][&region=r][&insecure=true][&part_size=bytes]
//	https://collector:9751/v1/repo[?ca_file=/etc/edgeloop/ca.pem]   read-only (NewHTTP)
//
// The endpoint defaults to s3.amazonaws.com. Credentials never travel in the URL (it ends up in
// logs and process lists): they come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY through
// lookupEnv, and requests are anonymous when both are unset. An http(s) URL's bearer token is
// read from the file that EDGELOOP_TOKEN_FILE names, if set.
func ParseURL(rawURL string, lookupEnv func(string) (string, bool)) (Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Target{}, fmt.Errorf("objstore: bucket URL: %w", err)
	}
	if u.User != nil {
		if u.Scheme == "http" || u.Scheme == "https" {
			return Target{}, fmt.Errorf("objstore: bucket URL %q: credentials in the URL are not accepted; set %s to a token file", u.Redacted(), EnvTokenFile)
		}
		return Target{}, fmt.Errorf("objstore: bucket URL %q: credentials in the URL are not accepted; set %s and %s", u.Redacted(), EnvAccessKey, EnvSecretKey)
	}
	switch u.Scheme {
	case "file":
		return parseFileURL(u)
	case "s3":
		return parseS3URL(u, lookupEnv)
	case "http", "https":
		return parseHTTPURL(u, lookupEnv)
	case "":
		return Target{}, fmt.Errorf("objstore: bucket URL %q has no scheme: use file:///path, s3://bucket/prefix or https://collector/v1/repo", rawURL)
	default:
		return Target{}, fmt.Errorf("objstore: bucket URL %q: unsupported scheme %q (use file, s3, http or https)", rawURL, u.Scheme)
	}
}

func parseFileURL(u *url.URL) (Target, error) {
	if u.Host != "" && u.Host != "localhost" {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: a file URL names a local path (file:///path), not host %q", u.String(), u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: a file URL takes no query or fragment", u.String())
	}
	if u.Path == "" || !filepath.IsAbs(filepath.FromSlash(u.Path)) {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: needs an absolute path (file:///path)", u.String())
	}
	return Target{Dir: filepath.Clean(filepath.FromSlash(u.Path))}, nil
}

func parseS3URL(u *url.URL, lookupEnv func(string) (string, bool)) (Target, error) {
	cfg := DefaultS3Config()
	cfg.Bucket = u.Host
	cfg.Prefix = strings.Trim(u.Path, "/")
	cfg.Endpoint = "s3.amazonaws.com"
	if u.Fragment != "" {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: an s3 URL takes no fragment", u.String())
	}
	for name, values := range u.Query() {
		if len(values) != 1 {
			return Target{}, fmt.Errorf("objstore: bucket URL %q: parameter %s given %d times", u.String(), name, len(values))
		}
		v := values[0]
		switch name {
		case "endpoint":
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "insecure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Target{}, fmt.Errorf("objstore: bucket URL %q: insecure must be true or false, got %q", u.String(), v)
			}
			cfg.Insecure = b
		case "part_size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Target{}, fmt.Errorf("objstore: bucket URL %q: part_size must be a number of bytes, got %q", u.String(), v)
			}
			cfg.PartSize = n
		default:
			return Target{}, fmt.Errorf("objstore: bucket URL %q: unknown parameter %q (known: endpoint, region, insecure, part_size)", u.String(), name)
		}
	}
	if lookupEnv != nil {
		cfg.AccessKey, _ = lookupEnv(EnvAccessKey)
		cfg.SecretKey, _ = lookupEnv(EnvSecretKey)
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: %s and %s must be set together (or both unset for anonymous access)", u.String(), EnvAccessKey, EnvSecretKey)
	}
	if err := cfg.Validate(); err != nil {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: %w", u.String(), err)
	}
	return Target{S3: &cfg}, nil
}

// Open returns the Bucket the target names.
func (t Target) Open(ctx context.Context) (Bucket, error) {
	n := 0
	for _, set := range []bool{t.S3 != nil, t.Dir != "", t.HTTP != nil} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, errors.New("objstore: target names more than one of a directory, an S3 bucket and an HTTP bucket")
	case t.S3 != nil:
		return NewS3(*t.S3)
	case t.Dir != "":
		return NewFS(t.Dir)
	case t.HTTP != nil:
		return NewHTTP(*t.HTTP)
	}
	return nil, errors.New("objstore: empty target")
}

// Open returns the Bucket a URL names (see ParseURL), taking S3 credentials from the process
// environment.
func Open(ctx context.Context, rawURL string) (Bucket, error) {
	t, err := ParseURL(rawURL, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return t.Open(ctx)
}

// CheckWritableURL checks a bucket URL that a component writes to, as configuration
// validation does: set, parseable (without credentials, which come from the environment at
// start), and not an http(s) URL, which is another collector's read-only model repository.
// The error is a field message ("must be ...").
func CheckWritableURL(rawURL string) error {
	if rawURL == "" {
		return errors.New("must be set: s3://bucket?endpoint=host:port or file:///dir")
	}
	t, err := ParseURL(rawURL, nil)
	if err != nil {
		return err
	}
	if t.HTTP != nil {
		return fmt.Errorf("must be s3:// or file://: an http(s) bucket is another collector's read-only model repository, got %q", rawURL)
	}
	return nil
}

// ObjectURL is the URL of key in the bucket bucketURL names: the key joins the URL's path and
// the query (endpoint, region) stays, so a job handed the URL opens it with the same rules as
// edgeloop. A key ending in '/' (a prefix) keeps its slash, except in a file:// URL, which names
// a directory.
func ObjectURL(bucketURL, key string) (string, error) {
	u, err := url.Parse(bucketURL)
	if err != nil {
		return "", fmt.Errorf("objstore: bucket URL: %w", err)
	}
	if u.Scheme == "file" {
		return "file://" + filepath.ToSlash(filepath.Join(filepath.FromSlash(u.Path), filepath.FromSlash(key))), nil
	}
	u.Path = path.Join("/", u.Path, key)
	if strings.HasSuffix(key, "/") {
		u.Path += "/"
	}
	return u.String(), nil
}

// IsObjectURL reports whether p is an object URL of a remote bucket (s3://...) rather than a
// local path or a file:// URL.
func IsObjectURL(p string) bool {
	u, err := url.Parse(p)
	return err == nil && len(u.Scheme) > 1 && u.Scheme != "file"
}

// SplitObjectURL splits an s3:// object URL, as ObjectURL makes them, into its bucket's URL
// (same query, no path) and the key (the whole path: a bucket URL's prefix is part of the key).
func SplitObjectURL(raw string) (bucketURL, key string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("objstore: object URL: %w", err)
	}
	if u.Scheme != "s3" {
		return "", "", fmt.Errorf("objstore: object URL %q: want s3://bucket/key", u.Redacted())
	}
	key = strings.TrimPrefix(u.Path, "/")
	u.Path, u.RawPath = "", ""
	return u.String(), key, nil
}
