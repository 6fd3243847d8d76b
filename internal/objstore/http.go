package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/token"
)

// ErrReadOnly is returned (wrapped) by Put and Delete of a read-only bucket: the HTTP backend
// reads a model repository that the collector serves; publishing goes to the store itself.
var ErrReadOnly = errors.New("read-only bucket")

// EnvTokenFile names the environment variable holding the path of the file whose content is the
// bearer token of an http(s):// bucket URL. The token itself never goes in the URL, which ends
// up in logs and process lists.
const EnvTokenFile = "EDGELOOP_TOKEN_FILE"

// maxListing bounds a listing answer read from the server, so a confused or hostile server
// cannot exhaust memory.
const maxListing = 64 << 20

// HTTPConfig is a read-only bucket served over HTTP by an edgeloop collector
// (collector/models): objects at URL/<key>, listings at URL/?prefix=<p>&recursive=<bool>.
type HTTPConfig struct {
	// URL is the bucket's base URL, such as https://collector:9751/v1/repo: key K is fetched
	// from URL + "/" + K, each path segment escaped. No query, fragment or user info.
	URL string
	// TokenFile, when set, is a file whose content (surrounding white space trimmed) is sent as
	// "Authorization: Bearer <token>". It is read at every request, so a rotated token is
	// used without a restart.
	TokenFile string
	// CAFile, when set, is a PEM bundle of the certificate authorities trusted for https,
	// instead of the system's.
	CAFile string
	// Timeout bounds one request's headers (the body of a large object may take longer);
	// zero means 30 seconds.
	Timeout time.Duration
	// Client, when set, is the HTTP client used (tests); CAFile and Timeout are then ignored.
	Client *http.Client
}

// httpBucket implements Bucket's read operations over the collector's repository API.
type httpBucket struct {
	base      *url.URL
	tokenFile string
	client    *http.Client
}

// NewHTTP returns a read-only Bucket over the collector's repository API at cfg.URL. Nothing
// is contacted until the first operation.
func NewHTTP(cfg HTTPConfig) (Bucket, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("objstore: http: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("objstore: http: URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("objstore: http: URL %q: no host", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("objstore: http: URL %q: user info, query and fragment are not accepted", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	client := cfg.Client
	if client == nil {
		timeout := cfg.Timeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = timeout
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("objstore: http: ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("objstore: http: ca_file %s: no PEM certificate found", cfg.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		client = &http.Client{Transport: tr}
	}
	return &httpBucket{base: u, tokenFile: cfg.TokenFile, client: client}, nil
}

// objectURL is the URL of key: the base path, then the key's segments, each escaped, so that
// "?" or "%" in a key stay part of the path.
func (b *httpBucket) objectURL(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u := *b.base
	u.RawPath = u.EscapedPath() + "/" + strings.Join(segs, "/")
	u.Path += "/" + key
	return u.String()
}

// request sends one request with the bearer token, if any.
func (b *httpBucket) request(ctx context.Context, method, target string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if b.tokenFile != "" {
		tok, err := readToken(b.tokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return b.client.Do(req)
}

// readToken reads a bearer token file by internal/token's rules: one raw token (a hash
// list, the server's side, is refused with a message saying so).
func readToken(name string) (string, error) { return token.ReadSecret(name) }

// statusError turns an unexpected answer into an error carrying the server's message (the
// collector answers {"error": "..."}), without echoing an unbounded body.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	msg := httpjson.Message(body)
	if msg == "" {
		return fmt.Errorf("server answered %s", resp.Status)
	}
	return fmt.Errorf("server answered %s: %s", resp.Status, msg)
}

// attributesOf reads an object's attributes from a response's headers.
func attributesOf(resp *http.Response) (Attributes, error) {
	a := Attributes{Size: resp.ContentLength, ETag: unquoteETag(resp.Header.Get("ETag"))}
	if a.ETag == "" {
		return a, errors.New("server sent no ETag")
	}
	if a.Size < 0 {
		// HEAD answers carry the length in the header only.
		n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
		if err != nil {
			return a, errors.New("server sent no Content-Length")
		}
		a.Size = n
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		t, err := http.ParseTime(lm)
		if err != nil {
			return a, fmt.Errorf("bad Last-Modified %q", lm)
		}
		a.LastModified = t
	}
	return a, nil
}

// unquoteETag strips the quotes (and a weak validator's W/) HTTP puts around an entity tag.
func unquoteETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// QuoteETag is the HTTP form of an Attributes.ETag, for ETag and If-None-Match headers.
func QuoteETag(etag string) string { return `"` + etag + `"` }

func (b *httpBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return opError("put", key, err)
	}
	return opError("put", key, ErrReadOnly)
}

func (b *httpBucket) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return opError("delete", key, err)
	}
	return opError("delete", key, ErrReadOnly)
}

func (b *httpBucket) Get(ctx context.Context, key string) (io.ReadCloser, Attributes, error) {
	return b.get(ctx, key, "")
}

func (b *httpBucket) GetIfNoneMatch(ctx context.Context, key, etag string) (io.ReadCloser, Attributes, error) {
	return b.get(ctx, key, etag)
}

func (b *httpBucket) get(ctx context.Context, key, etag string) (io.ReadCloser, Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Attributes{}, opError("get", key, err)
	}
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", QuoteETag(etag))
	}
	resp, err := b.request(ctx, http.MethodGet, b.objectURL(key), h)
	if err != nil {
		return nil, Attributes{}, opError("get", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		resp.Body.Close()
		return nil, Attributes{ETag: etag}, opError("get", key, ErrNotModified)
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, Attributes{}, opError("get", key, ErrNotFound)
	default:
		defer resp.Body.Close()
		return nil, Attributes{}, opError("get", key, statusError(resp))
	}
	attrs, err := attributesOf(resp)
	if err != nil {
		resp.Body.Close()
		return nil, Attributes{}, opError("get", key, err)
	}
	return &sizedBody{rc: resp.Body, left: attrs.Size}, attrs, nil
}

// sizedBody reports a body that ends before its announced length as an error: a connection
// cut mid-object must not look like a shorter object.
type sizedBody struct {
	rc   io.ReadCloser
	left int64
}

func (s *sizedBody) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		return n, fmt.Errorf("objstore: http: body ended %d bytes early: %w", s.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (s *sizedBody) Close() error { return s.rc.Close() }

func (b *httpBucket) Attributes(ctx context.Context, key string) (Attributes, error) {
	if err := ValidateKey(key); err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	a, err := b.head(ctx, key)
	if err != nil {
		return Attributes{}, opError("attributes", key, err)
	}
	return a, nil
}

func (b *httpBucket) head(ctx context.Context, key string) (Attributes, error) {
	resp, err := b.request(ctx, http.MethodHead, b.objectURL(key), nil)
	if err != nil {
		return Attributes{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return attributesOf(resp)
	case http.StatusNotFound:
		return Attributes{}, ErrNotFound
	default:
		return Attributes{}, fmt.Errorf("server answered %s", resp.Status)
	}
}

func (b *httpBucket) Exists(ctx context.Context, key string) (bool, error) {
	if err := ValidateKey(key); err != nil {
		return false, opError("exists", key, err)
	}
	_, err := b.head(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, opError("exists", key, err)
}

// Listing is the JSON answer of a listing request: the keys Iter reports, in order.
type Listing struct {
	// Keys are the keys (and, when not recursive, "directories" ending in "/") under the prefix.
	Keys []string `json:"keys"`
}

func (b *httpBucket) Iter(ctx context.Context, prefix string, recursive bool, f func(key string) error) error {
	if err := ValidatePrefix(prefix); err != nil {
		return opError("iter", prefix, err)
	}
	u := *b.base
	u.Path += "/"
	u.RawPath = ""
	u.RawQuery = url.Values{"prefix": {prefix}, "recursive": {strconv.FormatBool(recursive)}}.Encode()
	resp, err := b.request(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return opError("iter", prefix, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return opError("iter", prefix, statusError(resp))
	}
	var l Listing
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxListing)).Decode(&l); err != nil {
		return opError("iter", prefix, fmt.Errorf("listing: %w", err))
	}
	last := ""
	for i, k := range l.Keys {
		// The contract (prefix, byte order) is checked, not trusted: callers such as the model
		// repository parse these keys.
		if !strings.HasPrefix(k, prefix) || (i > 0 && k <= last) {
			return opError("iter", prefix, fmt.Errorf("listing: server sent key %q out of order or outside the prefix", k))
		}
		last = k
		if err := f(k); err != nil {
			return err
		}
	}
	return nil
}

func (b *httpBucket) Close() error {
	b.client.CloseIdleConnections()
	return nil
}

// parseHTTPURL reads an http(s):// bucket URL: the collector's repository API, read-only.
// The only query parameter is ca_file; the bearer token's file comes from EDGELOOP_TOKEN_FILE.
func parseHTTPURL(u *url.URL, lookupEnv func(string) (string, bool)) (Target, error) {
	if u.Host == "" {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: no host", u.String())
	}
	if u.Fragment != "" {
		return Target{}, fmt.Errorf("objstore: bucket URL %q: an http URL takes no fragment", u.String())
	}
	cfg := HTTPConfig{}
	for name, values := range u.Query() {
		if len(values) != 1 {
			return Target{}, fmt.Errorf("objstore: bucket URL %q: parameter %s given %d times", u.String(), name, len(values))
		}
		switch name {
		case "ca_file":
			cfg.CAFile = values[0]
		default:
			return Target{}, fmt.Errorf("objstore: bucket URL %q: unknown parameter %q (known: ca_file; the token file comes from %s)", u.String(), name, EnvTokenFile)
		}
	}
	base := *u
	base.RawQuery = ""
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	cfg.URL = base.String()
	if lookupEnv != nil {
		cfg.TokenFile, _ = lookupEnv(EnvTokenFile)
	}
	return Target{HTTP: &cfg}, nil
}
