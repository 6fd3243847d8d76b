package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxAnswerBytes bounds an answer read from the collector or the controller: the largest is
// a Label Studio task export of 10,000 samples (a few MiB).
const maxAnswerBytes = 64 << 20

// api is one edgeloop server's operator API: its base URL and the operator token sent with
// every request.
type api struct {
	name   string // "collector" or "controller", for messages
	base   string
	token  string
	client *http.Client
}

// APIError is a failed answer of an edgeloop server: its status and the message of its
// {"error": ...} body. The message is the server's, which names no secret of ours.
type APIError struct {
	// Server is "collector" or "controller".
	Server string
	// Status is the HTTP status the server answered.
	Status int
	// Message is the server's error message.
	Message string
	// Body is the answer's body as it came, for actions that pass it on.
	Body []byte
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s answered %d: %s", e.Server, e.Status, e.Message)
}

// newHTTPClient returns the client the plugin reaches edgeloop's servers with: the CA bundle
// of secureJsonData.tlsCACert when set, and a bound on each request.
func newHTTPClient(caPEM string, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM)) // checked by Validate
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// do sends a request and returns the answer's status and body; an answer that is not 2xx is
// an *APIError. Transport errors are wrapped without the request's headers, which hold the
// token.
func (a *api) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if a == nil {
		return 0, nil, errors.New("not configured")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", a.name, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", a.name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: read answer: %w", a.name, err)
	}
	if len(data) > maxAnswerBytes {
		return resp.StatusCode, nil, fmt.Errorf("%s: answer larger than %d bytes", a.name, maxAnswerBytes)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, data, &APIError{Server: a.name, Status: resp.StatusCode, Message: errorMessage(data), Body: data}
	}
	return resp.StatusCode, data, nil
}

// getJSON GETs path and decodes the answer into out.
func (a *api) getJSON(ctx context.Context, path string, out any) error {
	_, data, err := a.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: GET %s: answer is not the expected JSON: %w", a.name, path, err)
	}
	return nil
}

// errorMessage reads the message of an {"error": ...} answer (internal/httpjson), or the
// start of any other body.
func errorMessage(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(no message)"
	}
	return s
}
