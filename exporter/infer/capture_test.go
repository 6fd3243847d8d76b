package infer

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// recorder is a Capturer that keeps copies of what it is offered and answers keys as the
// keys of the samples it stored.
type recorder struct {
	want string
	keys []string
	mu   sync.Mutex
	got  []Prediction
}

func (r *recorder) Wants(model string) bool { return model == r.want }

func (r *recorder) Consider(_ context.Context, p *Prediction) []string {
	c := *p
	c.Scores = slices.Clone(p.Scores)
	c.Input.Shape = slices.Clone(p.Input.Shape)
	c.Input.Data = slices.Clone(p.Input.Data)
	r.mu.Lock()
	r.got = append(r.got, c)
	r.mu.Unlock()
	return r.keys
}

func (r *recorder) predictions() []Prediction {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestCaptureHook checks what both runtimes hand the capture pipeline: the scored rows and
// the decoded input of a successful request, and nothing for failed requests or for models
// capture does not want.
func TestCaptureHook(t *testing.T) {
	for _, runtime := range []string{"builtin", "upstream"} {
		t.Run(runtime, func(t *testing.T) {
			rec := &recorder{want: "tiny", keys: []string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"}}
			s, ts := serve(t, testConfig(), Options{Capture: rec})
			if runtime == "builtin" {
				s.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "3"))
			} else {
				// The upstream is another front serving the tiny model on the built-in runtime.
				upSrv, upTS := serve(t, testConfig(), Options{})
				upSrv.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "3"))
				s.Swap("tiny", upstreamBackend(t, upTS.URL, upstream.Config{}, nil, "3", Options{}))
			}
			s.Swap("other", builtinBackend(t, tinyModel(t), nil, "1"))

			captured := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil)
			decodeInfer(t, captured)
			if got, want := captured.header.Values(CaptureKeyHeader), []string{strings.Join(rec.keys, ", ")}; !slices.Equal(got, want) {
				t.Errorf("%s = %q, want %q: the keys the pipeline stored, in row order", CaptureKeyHeader, got, want)
			}
			other := do(t, "POST", ts.URL+"/v2/models/other/infer", tinyRequest, nil)
			decodeInfer(t, other)
			if v, ok := other.header[CaptureKeyHeader]; ok {
				t.Errorf("a model capture does not want answered %s: %q", CaptureKeyHeader, v)
			}
			if r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", `{"inputs":[`, nil); r.status != 400 {
				t.Fatalf("malformed request answered %d", r.status)
			}

			got := rec.predictions()
			if len(got) != 1 {
				t.Fatalf("capture was offered %d predictions, want 1 (the successful request of the wanted model)", len(got))
			}
			p := got[0]
			if p.Model != "tiny" || p.Version != "3" || p.RequestID != "req-1" {
				t.Fatalf("prediction %+v", p)
			}
			if !slices.Equal(p.Input.Shape, []int64{2, 4}) || !slices.Equal(p.Input.Data, []float32{1, 2, 4, 1, 3, -1, 0, 2}) || p.Input.Name != "input" {
				t.Fatalf("input %+v, want the request's [2,4] tensor", p.Input)
			}
			want := slices.Concat(builtintest.Softmax(builtintest.TinyLogits([]float32{1, 2, 4, 1})), builtintest.Softmax(builtintest.TinyLogits([]float32{3, -1, 0, 2})))
			if len(p.Scores) != len(want) {
				t.Fatalf("scores %v, want %v", p.Scores, want)
			}
			for i := range want {
				if d := p.Scores[i] - want[i]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("scores %v, want %v", p.Scores, want)
				}
			}
		})
	}
}

// TestCaptureKeyHeader: the header is absent when the pipeline stored nothing; behind an
// upstream edgeloop front, this front's keys replace the upstream's, and without its own the
// upstream's pass unchanged.
func TestCaptureKeyHeader(t *testing.T) {
	const upKey, ourKey = "11111111111111111111111111111111", "22222222222222222222222222222222"
	tests := []struct {
		name       string
		up, ours   []string
		wantHeader []string
	}{
		{name: "nothing captured", wantHeader: nil},
		{name: "captured here", ours: []string{ourKey}, wantHeader: []string{ourKey}},
		{name: "captured upstream", up: []string{upKey}, wantHeader: []string{upKey}},
		{name: "captured both", up: []string{upKey}, ours: []string{ourKey}, wantHeader: []string{ourKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upRec := &recorder{want: "tiny", keys: tt.up}
			upSrv, upTS := serve(t, testConfig(), Options{Capture: upRec})
			upSrv.Swap("tiny", builtinBackend(t, tinyModel(t), nil, "3"))
			rec := &recorder{want: "tiny", keys: tt.ours}
			s, ts := serve(t, testConfig(), Options{Capture: rec})
			s.Swap("tiny", upstreamBackend(t, upTS.URL, upstream.Config{}, nil, "3", Options{}))

			r := do(t, "POST", ts.URL+"/v2/models/tiny/infer", tinyRequest, nil)
			decodeInfer(t, r)
			if got := r.header.Values(CaptureKeyHeader); !slices.Equal(got, tt.wantHeader) {
				t.Errorf("%s = %q, want %q", CaptureKeyHeader, got, tt.wantHeader)
			}
			if n := len(rec.predictions()) + len(upRec.predictions()); n != 2 {
				t.Errorf("%d predictions offered to the two fronts' pipelines, want 2", n)
			}
		})
	}
}
