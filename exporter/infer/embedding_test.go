package infer

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// embeddingTelemetry is the telemetry of the tiny model's version "1" with the embedding signal
// on (a window of 10) and a reference of 50 random 3-value embeddings drawn with seed.
func embeddingTelemetry(t *testing.T, seed uint64) (*prometheus.Registry, *observe.Model) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	pts := make([]float32, 3*50)
	for i := range pts {
		pts[i] = float32(rng.NormFloat64())
	}
	ref, err := modelrepo.ComputeEmbeddingReference(pts, 3, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ocfg := observe.DefaultConfig()
	ocfg.Drift.Signals = observe.Signals{Embedding: true, EmbeddingWindow: 10}
	core, err := observe.New(reg, ocfg)
	if err != nil {
		t.Fatal(err)
	}
	om, err := core.Model(observe.ModelSpec{Name: "tiny", Version: "1", Classes: builtintest.TinyClasses(), Output: observe.Probabilities,
		DriftReference: &modelrepo.DriftReference{Embedding: ref}})
	if err != nil {
		t.Fatal(err)
	}
	return reg, om
}

// TestEmbeddingOutput serves the tiny model with its logits as the embedding output (3 wide)
// and its probabilities scored: answers leave the embedding out unless asked for it by name,
// and every request's embedding reaches the telemetry's embedding signal.
func TestEmbeddingOutput(t *testing.T) {
	reg, om := embeddingTelemetry(t, 1)
	b, err := NewBackend(BackendConfig{Version: "1", Builtin: tinyModel(t), Observe: om, Output: "probabilities",
		OutputKind: observe.Probabilities, Classes: builtintest.TinyClasses(), Embedding: "logits"})
	if err != nil {
		t.Fatal(err)
	}
	s, ts := serve(t, testConfig(), Options{})
	s.Swap("tiny", b)
	const input = `"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]`
	names := func(r inferResponse) []string {
		var n []string
		for _, o := range r.Outputs {
			n = append(n, o.Name)
		}
		return n
	}
	for i := range 9 {
		got := names(decodeInfer(t, do(t, "POST", ts.URL+"/v2/models/tiny/infer", "{"+input+"}", nil)))
		if !slices.Equal(got, []string{"probabilities"}) {
			t.Fatalf("request %d: outputs %v, want only probabilities", i, got)
		}
		if _, ok := testenv.MetricValue(t, reg, "edgeloop_embedding_mmd", nil); ok {
			t.Fatalf("embedding distance exported after %d of 10 requests", i+1)
		}
	}
	asked := decodeInfer(t, do(t, "POST", ts.URL+"/v2/models/tiny/infer", `{`+input+`,"outputs":[{"name":"logits"}]}`, nil))
	if got := names(asked); !slices.Equal(got, []string{"logits"}) || len(asked.Outputs[0].Data) != 3 {
		t.Fatalf("asked for the embedding: outputs %v %+v", got, asked.Outputs)
	}
	if d, ok := testenv.MetricValue(t, reg, "edgeloop_embedding_mmd", nil); !ok || !(d > 0) {
		t.Fatalf("after 10 requests: embedding distance %v (exported %v), want positive: every embedding is the same point", d, ok)
	}
	if d := om.Drift().EmbeddingMMD; !(d > 0) {
		t.Fatalf("Drift: embedding distance %v", d)
	}
}

func TestEmbeddingBackendErrors(t *testing.T) {
	m := tinyModel(t)
	for _, tc := range []struct{ embedding, want string }{
		{"features", `the model has no embedding output "features" apart from the scored output (its outputs: [logits probabilities])`},
		{"probabilities", `no embedding output "probabilities" apart from the scored output`},
	} {
		_, err := NewBackend(BackendConfig{Version: "1", Builtin: m, Output: "probabilities", OutputKind: observe.Probabilities, Embedding: tc.embedding})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("embedding %q: %v, want %q", tc.embedding, err, tc.want)
		}
	}
}

// TestUpstreamEmbedding: behind an upstream, answers pass unchanged, and those that carry the
// embedding output feed the embedding signal; answers without it add nothing.
func TestUpstreamEmbedding(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		fed        bool
	}{
		{"with the embedding", `{"model_name":"tiny","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]},{"name":"features","datatype":"FP32","shape":[1,3],"data":[5,5,5]}]}`, true},
		{"without", `{"model_name":"tiny","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := fakeUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tc.body))
			})
			reg, om := embeddingTelemetry(t, 3)
			client, err := upstream.New(upstream.Config{URL: up.URL}, "tiny", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			b, err := NewBackend(BackendConfig{Version: "1", Upstream: client, Observe: om, Output: "probabilities",
				OutputKind: observe.Probabilities, Embedding: "features"})
			if err != nil {
				t.Fatal(err)
			}
			s, ts := serve(t, testConfig(), Options{})
			s.Swap("tiny", b)
			for range 10 {
				r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, http.Header{"Content-Type": {"application/json"}})
				if r.status != http.StatusOK || string(r.body) != tc.body {
					t.Fatalf("answer %d %s, want the upstream's unchanged", r.status, r.body)
				}
			}
			d, ok := testenv.MetricValue(t, reg, "edgeloop_embedding_mmd", nil)
			if ok != tc.fed || (tc.fed && !(d > 0)) {
				t.Fatalf("embedding distance %v exported %v; want exported %v (and positive)", d, ok, tc.fed)
			}
		})
	}
}
