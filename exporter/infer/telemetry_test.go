package infer

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestTelemetry sends a scripted mix of requests and checks what the telemetry core counted:
// requests by outcome, predictions by class, the confidence and latency histograms and, with
// stages on, the stage durations of the successful requests.
func TestTelemetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := observe.DefaultConfig()
	cfg.Stages = true
	core, err := observe.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, ts := serve(t, testConfig(), Options{Models: []string{"tiny"}})
	s.Swap("tiny", builtinBackend(t, tinyModel(t), core, "1"))
	infer := ts.URL + "/v2/models/tiny/infer"
	for _, tt := range []struct {
		body   string
		path   string
		status int
	}{
		{body: tinyRequest, status: 200}, // classes two and zero
		{body: `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,4,1]}]}`, status: 200}, // two
		{body: `{"inputs":[`, status: 400},
		{body: `{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,4]}]}`, status: 400},
		{body: tinyRequest, path: "/v2/models/tiny/versions/9/infer", status: 404}, // no version to count it for
	} {
		url := infer
		if tt.path != "" {
			url = ts.URL + tt.path
		}
		if r := do(t, "POST", url, tt.body, nil); r.status != tt.status {
			t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
		}
	}
	want := `
# HELP edgeloop_inference_predictions_total Predictions (output rows) scored, by top-1 class.
# TYPE edgeloop_inference_predictions_total counter
edgeloop_inference_predictions_total{class="one",model="tiny",version="1"} 0
edgeloop_inference_predictions_total{class="two",model="tiny",version="1"} 2
edgeloop_inference_predictions_total{class="zero",model="tiny",version="1"} 1
# HELP edgeloop_inference_requests_total Inference requests served, by outcome.
# TYPE edgeloop_inference_requests_total counter
edgeloop_inference_requests_total{model="tiny",outcome="canceled",version="1"} 0
edgeloop_inference_requests_total{model="tiny",outcome="invalid_request",version="1"} 2
edgeloop_inference_requests_total{model="tiny",outcome="runtime_error",version="1"} 0
edgeloop_inference_requests_total{model="tiny",outcome="success",version="1"} 2
edgeloop_inference_requests_total{model="tiny",outcome="upstream_error",version="1"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeloop_inference_requests_total", "edgeloop_inference_predictions_total"); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"model": "tiny", "version": "1"}
	if n, _ := testenv.MetricValue(t, reg, "edgeloop_inference_confidence", labels); n != 3 {
		t.Fatalf("confidence count = %g, want 3 (one per scored row)", n)
	}
	if n, _ := testenv.MetricValue(t, reg, "edgeloop_inference_duration_seconds", labels); n != 4 {
		t.Fatalf("latency count = %g, want 4 (every observed request)", n)
	}
	for _, stage := range []string{"preprocess", "infer", "postprocess"} {
		if n, _ := testenv.MetricValue(t, reg, "edgeloop_inference_stage_duration_seconds", map[string]string{"stage": stage}); n != 2 {
			t.Fatalf("stage %s count = %g, want 2 (the successful requests)", stage, n)
		}
	}
}

// TestRuntimeError serves a model that compiles but cannot run every input the front lets
// through (its feature dimension is dynamic, its weights are not): 500, runtime_error.
func TestRuntimeError(t *testing.T) {
	m, err := builtin.Compile(&onnx.Model{
		Opsets: []onnx.Opset{{Version: 13}},
		Graph: onnx.Graph{
			Inputs:       []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "n"}, {Param: "f"}}}},
			Initializers: []onnx.Tensor{{Name: "w", DataType: onnx.Float, Dims: []int64{3, 4}, Float32: make([]float32, 12)}},
			Nodes: []onnx.Node{{Name: "fc", OpType: "Gemm", Inputs: []string{"input", "w"}, Outputs: []string{"probabilities"},
				Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}}}},
			Outputs: []onnx.ValueInfo{{Name: "probabilities", ElemType: onnx.Float}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	core, reg := newCore(t)
	s, ts := serve(t, testConfig(), Options{})
	b, err := NewBackend(BackendConfig{Version: "1", Builtin: m, Observe: observed(t, core, "1"), Output: "probabilities", OutputKind: observe.Probabilities})
	if err != nil {
		t.Fatal(err)
	}
	s.Swap("tiny", b)
	r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", `{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`, nil)
	if r.status != http.StatusInternalServerError || !strings.Contains(errorOf(t, r), "inner dimensions differ") {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if n, _ := testenv.MetricValue(t, reg, "edgeloop_inference_requests_total", map[string]string{"outcome": "runtime_error"}); n != 1 {
		t.Fatalf("runtime_error = %g", n)
	}
	checkTinyOK := do(t, "POST", ts.URL+"/v2/models/tiny/infer", `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, nil)
	if checkTinyOK.status != 200 {
		t.Fatalf("a fitting input after the failure: %d %s", checkTinyOK.status, checkTinyOK.body)
	}
}

func TestNewBackendErrors(t *testing.T) {
	m := tinyModel(t)
	tests := []struct {
		name string
		cfg  BackendConfig
		want string
	}{
		{"no version", BackendConfig{Builtin: m, Output: "probabilities", OutputKind: observe.Probabilities}, `infer: version "": version is empty`},
		{"no runtime", BackendConfig{Version: "1", Output: "probabilities", OutputKind: observe.Probabilities}, `infer: version "1": exactly one of Builtin and Upstream must be set`},
		{"no kind", BackendConfig{Version: "1", Builtin: m, Output: "probabilities"}, `infer: version "1": output kind must be logits or probabilities, got invalid`},
		{"unknown output", BackendConfig{Version: "1", Builtin: m, Output: "scores", OutputKind: observe.Logits}, `infer: version "1": the model has no output "scores" (its outputs: [logits probabilities])`},
		{"class count", BackendConfig{Version: "1", Builtin: m, Output: "logits", OutputKind: observe.Logits, Classes: []string{"a", "b"}}, `infer: version "1": output "logits" has shape [-1 3], which does not end in the 2 classes`},
		{"duplicate class", BackendConfig{Version: "1", Builtin: m, Output: "logits", OutputKind: observe.Logits, Classes: []string{"a", "b", "a"}}, `infer: version "1": classes 0 and 2 are both named "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewBackend(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}
