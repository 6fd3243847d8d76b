package infer

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/oip"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// fashionRequest is one Fashion-MNIST-sized request (784 pixels in [0, 1) as a float32 client
// writes them) for the reference MLP, about 8 KiB of JSON.
func fashionRequest(batch int) []byte {
	x := builtintest.Input(1, batch, 784)
	var b bytes.Buffer
	b.WriteString(`{"id":"bench","inputs":[{"name":"input","shape":[` + strconv.Itoa(batch) + `,784],"datatype":"FP32","data":[`)
	for i, v := range x {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32))
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

// percentiles records one latency per request and reports p50 and p99 under a name.
type percentiles []time.Duration

func (p percentiles) report(b *testing.B, name string) (p50, p99 time.Duration) {
	s := slices.Clone(p)
	slices.Sort(s)
	p50, p99 = s[len(s)/2], s[len(s)*99/100]
	b.ReportMetric(float64(p50.Nanoseconds()), name+"-p50-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), name+"-p99-ns")
	return p50, p99
}

func timedPost(b *testing.B, client *http.Client, url string, body []byte) time.Duration {
	start := time.Now()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return d
}

// BenchmarkUpstreamProxy measures the latency the front adds in upstream mode: each iteration
// sends the same Fashion-MNIST request to a fake upstream directly and through the front
// (interleaved, so a noisy machine slows both alike) and reports both sides' p50 and p99 and
// the differences. The fake answers at once with a fixed 10-class response, so what is left
// is the front: the second loopback hop, streaming the body, reading and scoring the
// response, the telemetry core.
//
//	go test -run '^$' -bench UpstreamProxy -benchtime 5000x -count 6 ./exporter/infer/
func BenchmarkUpstreamProxy(b *testing.B) {
	outs := []oip.Output{{Name: "probabilities", Shape: []int64{1, 10}, Data: builtintest.Softmax([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})}}
	answer, _ := oip.AppendResponse(nil, "fashion", "1", "bench", outs)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		_, _ = w.Write(answer)
	}))
	defer up.Close()
	core, _ := newCore(b)
	s, err := NewServer(DefaultConfig(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	front := httptest.NewServer(s.Handler())
	defer front.Close()
	client, err := upstream.New(upstream.Config{URL: up.URL}, "fashion", nil)
	if err != nil {
		b.Fatal(err)
	}
	om, err := core.Model(observe.ModelSpec{Name: "fashion", Version: "1", Classes: classNames(10), Output: observe.Probabilities})
	if err != nil {
		b.Fatal(err)
	}
	be, err := NewBackend(BackendConfig{Version: "1", Upstream: client, Observe: om, Output: "probabilities", OutputKind: observe.Probabilities})
	if err != nil {
		b.Fatal(err)
	}
	s.Swap("fashion", be)
	body := fashionRequest(1)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	directURL, frontURL := up.URL+"/v2/models/fashion/infer", front.URL+"/v2/models/fashion/infer"
	for range 200 { // warm connections and pools on both paths
		timedPost(b, hc, directURL, body)
		timedPost(b, hc, frontURL, body)
	}
	direct, via := make(percentiles, 0, b.N), make(percentiles, 0, b.N)
	b.ResetTimer()
	for range b.N {
		direct = append(direct, timedPost(b, hc, directURL, body))
		via = append(via, timedPost(b, hc, frontURL, body))
	}
	b.StopTimer()
	d50, d99 := direct.report(b, "direct")
	f50, f99 := via.report(b, "front")
	b.ReportMetric(float64((f50 - d50).Nanoseconds()), "added-p50-ns")
	b.ReportMetric(float64((f99 - d99).Nanoseconds()), "added-p99-ns")
}

// BenchmarkFrontBuiltin measures a whole request to the front serving the reference MLP on
// the built-in runtime, client to response, with the model's own Run beside it: the difference
// is the HTTP round trip, JSON decoding of 784 numbers and encoding, and the telemetry core.
//
//	go test -run '^$' -bench FrontBuiltin -benchtime 5000x -count 6 ./exporter/infer/
func BenchmarkFrontBuiltin(b *testing.B) {
	layers := builtintest.MLPLayers(42, 784, 256, 128, 10)
	m, err := builtin.Compile(builtintest.MLP(layers))
	if err != nil {
		b.Fatal(err)
	}
	core, _ := newCore(b)
	s, err := NewServer(DefaultConfig(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	front := httptest.NewServer(s.Handler())
	defer front.Close()
	om, err := core.Model(observe.ModelSpec{Name: "fashion", Version: "1", Classes: classNames(10), Output: observe.Probabilities})
	if err != nil {
		b.Fatal(err)
	}
	be, err := NewBackend(BackendConfig{Version: "1", Builtin: m, Observe: om, Output: "probabilities", OutputKind: observe.Probabilities})
	if err != nil {
		b.Fatal(err)
	}
	s.Swap("fashion", be)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			body := fashionRequest(batch)
			url := front.URL + "/v2/models/fashion/infer"
			lat := make(percentiles, 0, b.N)
			for range 50 {
				timedPost(b, hc, url, body)
			}
			b.ResetTimer()
			for range b.N {
				lat = append(lat, timedPost(b, hc, url, body))
			}
			b.StopTimer()
			lat.report(b, "request")
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkParseRequest is the JSON decoding of a batch-1 Fashion-MNIST request alone.
func BenchmarkParseRequest(b *testing.B) {
	body := fashionRequest(1)
	var dst []float32
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := oip.ParseRequest(body, -1)
		if err != nil {
			b.Fatal(err)
		}
		if dst, err = req.Inputs[0].Float32s(dst); err != nil {
			b.Fatal(err)
		}
	}
}

func classNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "c" + strings.Repeat("x", i)
	}
	return names
}
