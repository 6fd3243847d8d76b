package gate_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

// fakeTriton is an httptest stand-in for Triton's repository and inference APIs over a model
// repository directory: load reads <dir>/<name>/config.pbtxt and <dir>/<name>/1/model.onnx
// and compiles it with the builtin runtime, infer runs it on a binary request and answers in
// binary, unload forgets it. It checks what the gate writes and sends, as Triton would.
type fakeTriton struct {
	t      *testing.T
	dir    string
	mu     sync.Mutex
	models map[string]*builtin.Model
	calls  []string
	srv    *httptest.Server
}

func newFakeTriton(t *testing.T) *fakeTriton {
	f := &fakeTriton{t: t, dir: t.TempDir(), models: map[string]*builtin.Model{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/repository/models/{name}/{action}", f.repository)
	mux.HandleFunc("POST /v2/models/{name}/versions/{v}/infer", f.infer)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTriton) fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (f *fakeTriton) repository(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, action+" "+name)
	switch action {
	case "load":
		cfg, err := os.ReadFile(filepath.Join(f.dir, name, "config.pbtxt"))
		if err != nil || !strings.Contains(string(cfg), strconv.Quote(name)) || !strings.Contains(string(cfg), "onnxruntime_onnx") {
			f.fail(w, 400, "config.pbtxt of %s: %v %q", name, err, cfg)
			return
		}
		data, err := os.ReadFile(filepath.Join(f.dir, name, "1", "model.onnx"))
		if err != nil {
			f.fail(w, 400, "failed to load '%s': %v", name, err)
			return
		}
		m, err := builtin.Load(data)
		if err != nil {
			f.fail(w, 400, "failed to load '%s': %v", name, err)
			return
		}
		f.models[name] = m
	case "unload":
		delete(f.models, name)
	default:
		f.fail(w, 404, "unknown action")
		return
	}
	w.Write([]byte("{}"))
}

func (f *fakeTriton) infer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f.mu.Lock()
	m := f.models[name]
	f.mu.Unlock()
	if m == nil || r.PathValue("v") != "1" {
		f.fail(w, 400, "Request for unknown model: '%s' version %s is not found", name, r.PathValue("v"))
		return
	}
	body, _ := io.ReadAll(r.Body)
	hl, err := strconv.Atoi(r.Header.Get("Inference-Header-Content-Length"))
	if err != nil || hl > len(body) {
		f.fail(w, 400, "binary request without a valid Inference-Header-Content-Length")
		return
	}
	var req struct {
		Inputs []struct {
			Name       string
			Datatype   string
			Shape      []int64
			Parameters struct {
				BinaryDataSize int `json:"binary_data_size"`
			}
		}
		Outputs []struct {
			Name       string
			Parameters struct {
				BinaryData bool `json:"binary_data"`
			}
		}
	}
	if err := json.Unmarshal(body[:hl], &req); err != nil || len(req.Inputs) != 1 || len(req.Outputs) == 0 {
		f.fail(w, 400, "request: %v %s", err, body[:hl])
		return
	}
	in := req.Inputs[0]
	raw := body[hl:]
	if in.Datatype != "FP32" || in.Name != m.Inputs()[0].Name || in.Parameters.BinaryDataSize != len(raw) {
		f.fail(w, 400, "input %+v with %d bytes", in, len(raw))
		return
	}
	values := make([]float32, len(raw)/4)
	for i := range values {
		values[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	res, err := m.Run(r.Context(), []builtin.Tensor{{Shape: in.Shape, Data: values}})
	if err != nil {
		f.fail(w, 400, "%v", err)
		return
	}
	defer res.Release()
	// Every requested output, binary, in the order asked, as Triton answers.
	var outs []any
	var data []byte
	for _, want := range req.Outputs {
		i := slices.IndexFunc(m.Outputs(), func(o builtin.TensorInfo) bool { return o.Name == want.Name })
		if i < 0 || !want.Parameters.BinaryData {
			f.fail(w, 400, "unknown output %q, or not asked in binary", want.Name)
			return
		}
		out := res.Outputs[i]
		before := len(data)
		for _, v := range out.Data {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		outs = append(outs, map[string]any{"name": want.Name, "datatype": "FP32", "shape": out.Shape, "parameters": map[string]any{"binary_data_size": len(data) - before}})
	}
	head, _ := json.Marshal(map[string]any{"model_name": name, "model_version": "1", "outputs": outs})
	w.Header().Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
	w.Write(append(head, data...))
}

func oipConfig(url, dir string) gate.OIPConfig {
	c := gate.DefaultConfig().OIP
	c.URL, c.RepositoryDir, c.BatchSize, c.ReadyTimeout = url, dir, 7, 5*time.Second
	return c
}

// TestOIPTritonConformance runs the conformance suite against the oip evaluator in triton
// mode, with a fake Triton that really runs the models it loads; each subtest checks that
// every loaded model was unloaded again.
func TestOIPTritonConformance(t *testing.T) {
	gatetest.Run(t, func(t *testing.T) gate.Evaluator {
		f := newFakeTriton(t)
		ev, err := gate.NewOIP(oipConfig(f.srv.URL, f.dir), nil, discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.models) != 0 {
				t.Errorf("models left loaded: %v (calls %q)", len(f.models), f.calls)
			}
			t.Logf("repository calls: %q", f.calls)
		})
		return ev
	})
}

func TestOIPServerDown(t *testing.T) {
	f := newFakeTriton(t)
	url := f.srv.URL
	f.srv.Close()
	ev, err := gate.NewOIP(oipConfig(url, f.dir), nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 4, 1, 1)
	set, _ := gate.NewSet(spec, "t", in, labels)
	dir := t.TempDir()
	gatetest.WriteModel(t, dir, spec, protos, gatetest.ModelOptions{})
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ev.Score(context.Background(), set, []gate.Model{m})
	if err == nil || !isUnavailable(err) {
		t.Fatalf("server down: %v, want ErrUnavailable (retried by the controller)", err)
	}
}

func isUnavailable(err error) bool { return errors.Is(err, gate.ErrUnavailable) }
