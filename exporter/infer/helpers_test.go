package infer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// tinyRequest is the tiny model's two hand-computed rows: logits (2.5, 4, 6), class 2, and
// (6.5, 0, 0), class 0.
const tinyRequest = `{"id":"req-1","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[1,2,4,1],[3,-1,0,2]]}]}`

// testConfig is the front's defaults with the smallest body limit, so 413 is cheap to reach.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxRequestBytes = 1024
	cfg.MaxBatch = 8
	return cfg
}

func newCore(t testing.TB) (*observe.Core, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	core, err := observe.New(reg, observe.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return core, reg
}

func tinyModel(t testing.TB) *builtin.Model {
	t.Helper()
	m, err := builtin.Compile(builtintest.Tiny())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// observed returns version's telemetry handle for model "tiny", or nil without a core.
func observed(t testing.TB, core *observe.Core, version string) *observe.Model {
	t.Helper()
	if core == nil {
		return nil
	}
	om, err := core.Model(observe.ModelSpec{Name: "tiny", Version: version, Classes: builtintest.TinyClasses(), Output: observe.Probabilities})
	if err != nil {
		t.Fatal(err)
	}
	return om
}

func builtinBackend(t testing.TB, m *builtin.Model, core *observe.Core, version string) *Backend {
	t.Helper()
	b, err := NewBackend(BackendConfig{
		Version: version, Builtin: m, Observe: observed(t, core, version),
		Output: "probabilities", OutputKind: observe.Probabilities, Classes: builtintest.TinyClasses(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upstreamBackend(t testing.TB, url string, ucfg upstream.Config, core *observe.Core, version string, opts Options) *Backend {
	t.Helper()
	ucfg.URL = url
	client, err := upstream.New(ucfg, "tiny", opts.Tracing)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	b, err := NewBackend(BackendConfig{
		Version: version, Upstream: client, Observe: observed(t, core, version),
		Output: "probabilities", OutputKind: observe.Probabilities,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve starts an httptest server for a new front.
func serve(t testing.TB, cfg Config, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, method, url, body string, header http.Header) reply {
	t.Helper()
	return doCtx(t, context.Background(), method, url, body, header)
}

func doCtx(t testing.TB, ctx context.Context, method, url, body string, header http.Header) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

type inferResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name     string    `json:"name"`
		Datatype string    `json:"datatype"`
		Shape    []int64   `json:"shape"`
		Data     []float32 `json:"data"`
	} `json:"outputs"`
}

func decodeInfer(t testing.TB, r reply) inferResponse {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out inferResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, r.body)
	}
	return out
}

func errorOf(t testing.TB, r reply) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body is not a V2 error: %q", r.status, r.body)
	}
	return e.Error
}

func labelOf(m *dto.Metric, name string) string { return pairValue(m.GetLabel(), name) }

func pairValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}
