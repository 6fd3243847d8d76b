// Package upstream forwards Open Inference Protocol requests unchanged to an upstream V2
// server (Triton, KServe, MLServer) and returns its responses unchanged, so the exporter can
// front a GPU server it does not run itself. It also drives Triton's model repository API,
// which model sync uses to load a version it has written into Triton's model directory.
//
// A request body is streamed to the upstream as the client sends it; the response is read
// whole, because the inference front scores the output tensor in it before passing it on
// byte for byte.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// Client sends one model's requests to its upstream server over a pool of keep-alive
// connections. It is safe for concurrent use; share one Client between the versions of a
// model so that a hot swap keeps the pool.
type Client struct {
	cfg       Config
	base      string // scheme://host[/prefix], no trailing slash
	model     string // the model's name at the upstream, path-escaped
	client    *http.Client
	transport *http.Transport
	tracing   *telemetry.Tracing
}

// New returns a client for model (the name the exporter serves it under) at the server cfg
// names. tracing, when not nil, injects the caller's span into every request as W3C trace
// context; when nil, the client's own traceparent and tracestate headers pass through.
func New(cfg Config, model string, tracing *telemetry.Tracing) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if cfg.Model != "" {
		model = cfg.Model
	}
	if model == "" {
		return nil, errors.New("upstream: model name is empty")
	}
	t := &http.Transport{
		// No proxy from the environment: the upstream is a server next to the exporter, and
		// an HTTP_PROXY meant for the uplink must not capture inference traffic.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   cfg.ConnectTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout: cfg.ConnectTimeout,
		MaxIdleConns:        cfg.MaxIdleConns,
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
		// Below Triton's and uvicorn's keep-alive timeouts would be ideal, but they vary; the
		// transport retries a request whose reused connection turns out closed before the body
		// was sent, which covers the race.
		IdleConnTimeout: 90 * time.Second,
		// The body must reach the client unchanged and be scored here: no transparent gzip.
		DisableCompression: true,
		ReadBufferSize:     32 << 10,
		WriteBufferSize:    32 << 10,
	}
	return &Client{
		cfg:       cfg,
		base:      strings.TrimRight(cfg.URL, "/"),
		model:     url.PathEscape(model),
		transport: t,
		client: &http.Client{
			Transport: t,
			// A redirect cannot replay a streamed body; report it as the upstream's answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		tracing: tracing,
	}, nil
}

// Close closes the pooled idle connections. Requests in flight are not affected.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Response is an upstream server's answer, read whole.
type Response struct {
	// StatusCode is the upstream's HTTP status.
	StatusCode int
	// Header holds the upstream's response headers.
	Header http.Header
	// Body is the response body as the upstream sent it.
	Body []byte
}

// Error is a request that got no answer from the upstream server: Status is 504 when it did
// not answer within the timeout and 502 when it could not be reached or sent something that
// is not an HTTP response.
type Error struct {
	// Status is the HTTP status the front answers with: 502 or 504.
	Status int
	// Err is the cause.
	Err error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ErrRequestBody is wrapped by errors reading the client's request body while streaming it
// (the client went away, or the body broke the size limit: then the error also wraps the
// *http.MaxBytesError).
var ErrRequestBody = errors.New("read request body")

// Infer forwards an inference request body to the model (at version, unless empty) and
// returns the upstream's response, whatever its status. body is streamed; contentLength is
// the client's Content-Length (-1 when unknown). header holds the client's request headers;
// end-to-end ones are forwarded. Errors are an *Error, an error wrapping ErrRequestBody, or
// the context's error when ctx ended first.
func (c *Client) Infer(ctx context.Context, version, rawQuery string, body io.Reader, contentLength int64, header http.Header) (*Response, error) {
	return c.do(ctx, http.MethodPost, c.modelPath(version)+"/infer", rawQuery, body, contentLength, header)
}

// Metadata forwards a model metadata request (GET /v2/models/{m}[/versions/{v}]).
func (c *Client) Metadata(ctx context.Context, version string, header http.Header) (*Response, error) {
	return c.do(ctx, http.MethodGet, c.modelPath(version), "", nil, 0, header)
}

// Ready forwards a model readiness request (GET /v2/models/{m}[/versions/{v}]/ready).
func (c *Client) Ready(ctx context.Context, version string, header http.Header) (*Response, error) {
	return c.do(ctx, http.MethodGet, c.modelPath(version)+"/ready", "", nil, 0, header)
}

func (c *Client) modelPath(version string) string {
	p := "/v2/models/" + c.model
	if version != "" {
		p += "/versions/" + url.PathEscape(version)
	}
	return p
}

// trackedBody remembers the error of the client's body, which the transport may report as
// something else (or not at all, when the upstream answered before reading it).
type trackedBody struct {
	r   io.Reader
	err error
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (c *Client) do(ctx context.Context, method, path, rawQuery string, body io.Reader, contentLength int64, header http.Header) (*Response, error) {
	tctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	target := c.base + path
	if rawQuery != "" {
		target += "?" + rawQuery
	}
	var tb *trackedBody
	var reqBody io.Reader
	if body != nil {
		tb = &trackedBody{r: body}
		reqBody = tb
	}
	req, err := http.NewRequestWithContext(tctx, method, target, reqBody)
	if err != nil {
		return nil, &Error{Status: http.StatusBadGateway, Err: fmt.Errorf("upstream: build request: %w", err)}
	}
	if body != nil {
		req.ContentLength = contentLength
	}
	copyHeader(req.Header, header, requestSkip(c.tracing != nil))
	if c.tracing != nil {
		c.tracing.Inject(ctx, req.Header)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.failure(ctx, tctx, tb, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, c.failure(ctx, tctx, tb, fmt.Errorf("read response: %w", err))
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, &Error{Status: http.StatusBadGateway, Err: fmt.Errorf("upstream %s: response larger than max_response_bytes (%d)", c.base, c.cfg.MaxResponseBytes)}
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// failure classifies a failed exchange: the client's body first (a 413 or a client that went
// away is not the upstream's fault), then the client's own context, then our timeout.
func (c *Client) failure(ctx, tctx context.Context, tb *trackedBody, err error) error {
	if tb != nil && tb.err != nil {
		return fmt.Errorf("upstream: %w: %w", ErrRequestBody, tb.err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("upstream: %w", ctx.Err())
	}
	if errors.Is(tctx.Err(), context.DeadlineExceeded) {
		return &Error{Status: http.StatusGatewayTimeout, Err: fmt.Errorf("upstream %s did not answer within %s", c.base, c.cfg.Timeout)}
	}
	return &Error{Status: http.StatusBadGateway, Err: fmt.Errorf("upstream %s: %w", c.base, unwrapURL(err))}
}

// unwrapURL drops url.Error's `Post "http://...":` prefix, which repeats the base URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// LoadModel asks the upstream server to load (or reload) the model from its model repository:
// Triton's POST /v2/repository/models/{m}/load. Model sync calls it after writing a new
// version into the repository directory the server watches.
func (c *Client) LoadModel(ctx context.Context) error {
	return c.repository(ctx, "load")
}

// UnloadModel asks the upstream server to unload the model: POST /v2/repository/models/{m}/unload.
func (c *Client) UnloadModel(ctx context.Context) error {
	return c.repository(ctx, "unload")
}

func (c *Client) repository(ctx context.Context, action string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v2/repository/models/"+c.model+"/"+action, "", strings.NewReader("{}"), 2,
		http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return fmt.Errorf("upstream: %s model %s: %w", action, c.model, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream: %s model %s: %s: %s", action, c.model, resp.Status(), httpjson.Message(resp.Body))
	}
	return nil
}

// Status returns the status line's text, such as "400 Bad Request".
func (r *Response) Status() string {
	return fmt.Sprintf("%d %s", r.StatusCode, http.StatusText(r.StatusCode))
}

// hopByHop are the headers of one connection, never forwarded (RFC 9110 section 7.6.1).
func hopByHop(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// requestSkip says which client headers not to forward: the hop-by-hop ones, those the
// transport sets itself, Accept-Encoding (the response must stay identity-encoded to be
// scored), and, when this client injects its own span, the client's trace context.
func requestSkip(ownTrace bool) func(string) bool {
	return func(name string) bool {
		switch name {
		case "Host", "Content-Length", "Accept-Encoding", "Expect":
			return true
		case "Traceparent", "Tracestate":
			return ownTrace
		}
		return hopByHop(name)
	}
}

// CopyResponseHeader copies an upstream response's end-to-end headers to the front's response:
// everything except the hop-by-hop headers and Content-Length, which the front sets.
func CopyResponseHeader(dst, src http.Header) {
	copyHeader(dst, src, func(name string) bool { return name == "Content-Length" || hopByHop(name) })
}

func copyHeader(dst, src http.Header, skip func(string) bool) {
	var listed []string // headers named by Connection are hop-by-hop too
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			listed = append(listed, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
	}
	for name, vs := range src {
		if skip(name) || slices.Contains(listed, name) {
			continue
		}
		dst[name] = slices.Clone(vs)
	}
}
