package infer

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// fixture is a front serving the tiny model as version "1" through one runtime.
type fixture struct {
	url    string
	reg    *prometheus.Registry
	server *Server
}

func builtinFixture(t *testing.T) fixture {
	core, reg := newCore(t)
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	s.Swap("tiny", builtinBackend(t, tinyModel(t), core, "1"))
	return fixture{url: ts.URL, reg: reg, server: s}
}

// upstreamFixture is a front whose upstream is a second front serving the built-in runtime:
// a real HTTP hop between two exporters.
func upstreamFixture(t *testing.T) fixture {
	upCfg := testConfig()
	upCfg.MaxRequestBytes = DefaultConfig().MaxRequestBytes // the front's own limit must answer 413
	up, upTS := serve(t, upCfg, Options{})
	up.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "1"))
	core, reg := newCore(t)
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	s.Swap("tiny", upstreamBackend(t, upTS.URL, upstream.Config{}, core, "1", Options{}))
	return fixture{url: ts.URL, reg: reg, server: s}
}

// TestConformance runs the V2 REST checks against both runtimes.
func TestConformance(t *testing.T) {
	for name, setup := range map[string]func(*testing.T) fixture{"builtin": builtinFixture, "upstream": upstreamFixture} {
		t.Run(name, func(t *testing.T) {
			f := setup(t)
			conformance(t, f)
		})
	}
}

func conformance(t *testing.T, f fixture) {
	json := http.Header{"Content-Type": {"application/json"}}
	infer := f.url + "/v2/models/tiny/infer"
	big := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"pad":"` + strings.Repeat("x", 2000) + `"}`
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		errContains  string // for error answers: part of the {"error"} message
		check        func(t *testing.T, r reply)
	}{
		{name: "live", method: "GET", path: "/v2/health/live", status: 200},
		{name: "ready", method: "GET", path: "/v2/health/ready", status: 200},
		{name: "server metadata", method: "GET", path: "/v2", status: 200, check: checkServerMetadata},
		{name: "model metadata", method: "GET", path: "/v2/models/tiny", status: 200, check: checkModelMetadata},
		{name: "version metadata", method: "GET", path: "/v2/models/tiny/versions/1", status: 200, check: checkModelMetadata},
		{name: "model ready", method: "GET", path: "/v2/models/tiny/ready", status: 200},
		{name: "version ready", method: "GET", path: "/v2/models/tiny/versions/1/ready", status: 200},
		{name: "infer", method: "POST", path: "/v2/models/tiny/infer", body: tinyRequest, status: 200, check: checkTiny},
		{name: "infer version", method: "POST", path: "/v2/models/tiny/versions/1/infer", body: tinyRequest, status: 200, check: checkTiny},
		{name: "flat data and an outputs list", method: "POST", path: "/v2/models/tiny/infer", status: 200,
			body: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,4,1]}],"outputs":[{"name":"logits"}]}`,
			check: func(t *testing.T, r reply) {
				out := decodeInfer(t, r)
				if len(out.Outputs) != 1 || out.Outputs[0].Name != "logits" || !slices.Equal(out.Outputs[0].Data, []float32{2.5, 4, 6}) {
					t.Fatalf("outputs = %+v", out.Outputs)
				}
			}},
		{name: "malformed JSON", method: "POST", path: "/v2/models/tiny/infer", body: `{"inputs":[`, status: 400, errContains: "malformed JSON"},
		{name: "wrong shape", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `input "input": shape [1 5] does not match the model's [-1 4] at dimension 1`,
			body: `{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`},
		{name: "shape and data disagree", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `input "input": shape [2 4] needs 8 values, data has 4`,
			body: `{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "wrong datatype", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `input "input": datatype FP64, the model expects FP32`,
			body: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}`},
		{name: "wrong input name", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `unknown input "pixels": the model's inputs are ["input"]`,
			body: `{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "unknown output", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `unknown output "scores"`,
			body: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"scores"}]}`},
		{name: "batch too large", method: "POST", path: "/v2/models/tiny/infer", status: 400, errContains: `input "input": batch size 9 is larger than max_batch (8)`,
			body: `{"inputs":[{"name":"input","shape":[9,4],"datatype":"FP32","data":[` + strings.Repeat("1,", 35) + `1]}]}`},
		{name: "unknown model", method: "POST", path: "/v2/models/nope/infer", body: tinyRequest, status: 404, errContains: `unknown model "nope"`},
		{name: "unknown model metadata", method: "GET", path: "/v2/models/nope", status: 404, errContains: `unknown model "nope"`},
		{name: "unknown version", method: "POST", path: "/v2/models/tiny/versions/7/infer", body: tinyRequest, status: 404, errContains: `model "tiny" has no version "7": serving version "1"`},
		{name: "unknown version metadata", method: "GET", path: "/v2/models/tiny/versions/7", status: 404, errContains: `serving version "1"`},
		{name: "unknown version ready", method: "GET", path: "/v2/models/tiny/versions/7/ready", status: 404, errContains: `serving version "1"`},
		{name: "oversized body", method: "POST", path: "/v2/models/tiny/infer", body: big, status: 413, errContains: "request body is larger than max_request_bytes (1024 bytes)"},
		{name: "infer with GET", method: "GET", path: "/v2/models/tiny/infer", status: 405, errContains: "method GET is not allowed",
			check: func(t *testing.T, r reply) {
				if r.header.Get("Allow") != "POST" {
					t.Fatalf("Allow = %q", r.header.Get("Allow"))
				}
			}},
		{name: "metadata with DELETE", method: "DELETE", path: "/v2/models/tiny", status: 405, errContains: "method DELETE is not allowed"},
		{name: "unknown path", method: "GET", path: "/v3", status: 404, errContains: "no such endpoint: /v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, f.url+tt.path, tt.body, json)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.errContains != "" {
				if msg := errorOf(t, r); !strings.Contains(msg, tt.errContains) {
					t.Fatalf("error %q does not contain %q", msg, tt.errContains)
				}
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
	t.Run("oversized chunked body", func(t *testing.T) {
		// No Content-Length: the limit must trip while reading (or streaming) the body.
		req, err := http.NewRequest("POST", infer, io.MultiReader(strings.NewReader(big)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413: %s", resp.StatusCode, body)
		}
	})
	t.Run("binary tensor data", func(t *testing.T) {
		header := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],` +
			`"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}`
		body := []byte(header)
		for _, v := range []float32{1, 2, 4, 1} {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
		}
		r := do(t, "POST", infer, string(body), http.Header{
			"Content-Type":                    {"application/octet-stream"},
			"Inference-Header-Content-Length": {strconv.Itoa(len(header))},
		})
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		n, err := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
		if err != nil || n+12 != len(r.body) {
			t.Fatalf("Inference-Header-Content-Length %q with a %d-byte body", r.header.Get("Inference-Header-Content-Length"), len(r.body))
		}
		var got []float32
		for i := n; i < len(r.body); i += 4 {
			got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(r.body[i:])))
		}
		if !slices.Equal(got, []float32{2.5, 4, 6}) {
			t.Fatalf("binary logits = %v", got)
		}
	})
}

func checkServerMetadata(t *testing.T, r reply) {
	var md serverMetadata
	if err := json.Unmarshal(r.body, &md); err != nil || md.Name != "edgeloop" || md.Version == "" || !slices.Contains(md.Extensions, "binary_tensor_data") {
		t.Fatalf("server metadata %s (%v)", r.body, err)
	}
}

func checkModelMetadata(t *testing.T, r reply) {
	var md modelMetadata
	if err := json.Unmarshal(r.body, &md); err != nil {
		t.Fatal(err)
	}
	if md.Name != "tiny" || !slices.Equal(md.Versions, []string{"1"}) || md.Platform == "" {
		t.Fatalf("metadata %s", r.body)
	}
	if len(md.Inputs) != 1 || md.Inputs[0].Name != "input" || md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, []int64{-1, 4}) {
		t.Fatalf("inputs %+v", md.Inputs)
	}
	if len(md.Outputs) != 2 || md.Outputs[0].Name != "logits" || md.Outputs[1].Name != "probabilities" || !slices.Equal(md.Outputs[1].Shape, []int64{-1, 3}) {
		t.Fatalf("outputs %+v", md.Outputs)
	}
}

// checkTiny checks the hand-computed answer of tinyRequest.
func checkTiny(t *testing.T, r reply) {
	out := decodeInfer(t, r)
	if out.ModelName != "tiny" || out.ModelVersion != "1" || out.ID != "req-1" || len(out.Outputs) != 2 {
		t.Fatalf("response %s", r.body)
	}
	logits, probs := out.Outputs[0], out.Outputs[1]
	if logits.Name != "logits" || logits.Datatype != "FP32" || !slices.Equal(logits.Shape, []int64{2, 3}) || !slices.Equal(logits.Data, []float32{2.5, 4, 6, 6.5, 0, 0}) {
		t.Fatalf("logits %+v", logits)
	}
	if probs.Name != "probabilities" || argmax(probs.Data[:3]) != 2 || argmax(probs.Data[3:]) != 0 {
		t.Fatalf("probabilities %+v", probs)
	}
	want := builtintest.Softmax([]float32{2.5, 4, 6})
	for i, v := range want {
		if math.Abs(float64(v-probs.Data[i])) > 1e-6 {
			t.Fatalf("probabilities %v, want %v", probs.Data[:3], want)
		}
	}
}
