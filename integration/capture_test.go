//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// ingest is a collector's ingest endpoint as docs/wire-format.md specifies it (the collector
// itself arrives with its own issue): it keeps every sample it accepts.
type ingest struct {
	mu      sync.Mutex
	samples map[string]*sample.Sample
	token   string
}

func (in *ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/samples" {
		http.Error(w, `{"error":"no such endpoint"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+in.token || r.Header.Get("X-Edgeloop-Node") != "it-node" {
		http.Error(w, `{"error":"unknown credential"}`, http.StatusUnauthorized)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "zstd" {
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			http.Error(w, `{"error":"bad zstd"}`, http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	samples, rejected, err := sample.ReadTar(body, sample.DefaultLimits())
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusBadRequest)
		return
	}
	in.mu.Lock()
	dups := 0
	for _, s := range samples {
		if in.samples[s.Meta.Key] != nil {
			dups++
		}
		in.samples[s.Meta.Key] = s
	}
	in.mu.Unlock()
	resp := map[string]any{"accepted": len(samples) - dups, "duplicates": dups, "rejected": []map[string]string{}}
	for _, rj := range rejected {
		resp["rejected"] = append(resp["rejected"].([]map[string]string), map[string]string{"key": rj.Key, "error": rj.Err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (in *ingest) all() []*sample.Sample {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*sample.Sample, 0, len(in.samples))
	for _, s := range in.samples {
		out = append(out, s)
	}
	return out
}

// TestCaptureRealTraffic sends Fashion-MNIST test images through an exporter with capture on:
// it captures exactly the predictions its strategy names, up to its limit, and every captured
// sample reaches the collector's ingest endpoint carrying the image that was sent.
func TestCaptureRealTraffic(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	keys, trained, _ := referenceModel(t)
	work := t.TempDir()
	repo := "file://" + filepath.Join(work, "models")
	run(t, nil, "model", "publish", "--repo", repo, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)

	collector := &ingest{samples: map[string]*sample.Sample{}, token: "node-secret"}
	srv := httptest.NewServer(collector)
	defer srv.Close()
	token := filepath.Join(work, "token")
	if err := os.WriteFile(token, []byte(collector.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An hourly token bucket of 40: it refills 40 an hour, continuously, so the captures may pass
	// 40 by what refilled while the test ran (under a second's worth of tokens a minute). A
	// minutely bucket refilled a few more on a loaded machine.
	const limit = 40
	started := time.Now()
	p, metricsAddr := startExporter(t, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
capture:
  enabled: true
  strategies:
    - name: low_confidence
      type: threshold
      threshold: 0.6
  limits:
    - {type: hourly, value: %d}
  spool:
    dir: %s
  sender:
    url: %s
    token_file: %s
    batch_delay: 100ms
    dead_letter_dir: %s
`, repo, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache"), limit, filepath.Join(work, "spool"), srv.URL, token, filepath.Join(work, "deadletter")))
	front := "http://" + p.waitFor(t, "inference front started", 20*time.Second)["listen"].(string)
	p.waitForVersion(t, "1", 30*time.Second)

	test, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	const images, batch = 2000, 100
	for b := 0; b < images/batch; b++ {
		body, err := json.Marshal(map[string]any{"id": "b" + strconv.Itoa(b), "inputs": []map[string]any{{
			"name": "input", "datatype": "FP32", "shape": []int{batch, fmnist.Pixels},
			"data": test.Images[b*batch*fmnist.Pixels : (b+1)*batch*fmnist.Pixels],
		}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(front+"/v2/models/fashion/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("infer: %d", resp.StatusCode)
		}
	}

	// Every captured sample arrives: wait until the collector holds as many as were captured.
	captured := regexp.MustCompile(`edgeloop_samples_captured_total\{model="fashion",strategy="low_confidence"\} (\d+)`)
	skipped := regexp.MustCompile(`edgeloop_samples_skipped_total\{model="fashion",reason="rate_limit"\} (\d+)`)
	var n, limited int
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, m := get(t, newRequest(t, "http://"+metricsAddr+"/metrics"))
		if c := captured.FindStringSubmatch(m); c != nil {
			n, _ = strconv.Atoi(c[1])
		}
		if s := skipped.FindStringSubmatch(m); s != nil {
			limited, _ = strconv.Atoi(s[1])
		}
		if n > 0 && len(collector.all()) == n && strings.Contains(m, "edgeloop_spool_records 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("captured %d, the collector holds %d after 30s", n, len(collector.all()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The reference model is unsure (max softmax < 0.6) of roughly 5% of the test set, ~100 of
	// these images: more than the limit, which must hold.
	refilled := int(math.Ceil(time.Since(started).Hours() * limit))
	if n < limit || n > limit+refilled || limited == 0 {
		t.Fatalf("captured %d with %d refused by the rate limit; want the limit (%d, plus at most %d refilled while the test ran) and some refused", n, limited, limit, refilled)
	}
	for _, s := range collector.all() {
		m := s.Meta
		if m.Model != "fashion" || m.Version != "1" || m.Node != "it-node" || m.Reason != "low_confidence" {
			t.Fatalf("sample meta %+v", m)
		}
		if c := m.Confidence["max_softmax"]; c >= 0.6 {
			t.Fatalf("captured a prediction with confidence %.3f, the threshold is 0.6", c)
		}
		// "b<batch>#<row>" names the image that was sent; the sample must carry exactly it.
		var b, row int
		if _, err := fmt.Sscanf(m.RequestID, "b%d#%d", &b, &row); err != nil {
			t.Fatalf("request id %q: %v", m.RequestID, err)
		}
		arr, err := npy.Read(bytes.NewReader(s.Input))
		if err != nil {
			t.Fatal(err)
		}
		want := test.Image(b*batch + row)
		if len(arr.Data) != len(want) {
			t.Fatalf("sample input has %d values, want %d", len(arr.Data), len(want))
		}
		for i := range want {
			if arr.Data[i] != want[i] {
				t.Fatalf("sample %s carries another image than %s", m.Key, m.RequestID)
			}
		}
	}
	t.Logf("%d images served, %d captured (limit %d), %d refused by the rate limit, all delivered", images, n, limit, limited)
}
