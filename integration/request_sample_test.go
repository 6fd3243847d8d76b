//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestRequestToSample follows one request to its sample and its label, with the real binary
// on both sides and a real MinIO: an exporter captures the predictions it is unsure of and
// names the captured sample in the infer response's Edgeloop-Capture-Key header (and nothing
// for the others); once the sender has shipped it and the collector has stored its shard,
// GET /v1/samples?request_id= finds it under the same key, its index line and Label Studio
// task carry the request id, and a label posted by request id lands in the catalog's label
// files under the sample's key.
func TestRequestToSample(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	keys, trained, _ := referenceModel(t)
	const node = "it-node"
	e := newCollectorEnv(t, testShards, node)
	e.start(t)
	work := t.TempDir()
	repo := "file://" + filepath.Join(work, "models")
	run(t, nil, "model", "publish", "--repo", repo, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)
	token := filepath.Join(work, "token")
	if err := os.WriteFile(token, []byte(collectortest.Token(node)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
  spool:
    dir: %s
  sender:
    url: http://%s
    token_file: %s
    batch_delay: 100ms
    dead_letter_dir: %s
`, repo, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache"), filepath.Join(work, "spool"), e.addr, token, filepath.Join(work, "deadletter")))
	front := "http://" + p.waitFor(t, "inference front started", 20*time.Second)["listen"].(string)
	p.waitForVersion(t, "1", 30*time.Second)

	test, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	// One image a request, each with its own id, until one is captured: the reference model
	// is unsure (max softmax < 0.6) of about 5% of the test set.
	var requestID, captureKey string
	sent := 0
	for i := 0; i < 1000 && captureKey == ""; i++ {
		id := "req-" + strconv.Itoa(i)
		body, _ := json.Marshal(map[string]any{"id": id, "inputs": []map[string]any{{
			"name": "input", "datatype": "FP32", "shape": []int{1, fmnist.Pixels},
			"data": test.Images[i*fmnist.Pixels : (i+1)*fmnist.Pixels],
		}}})
		resp, err := http.Post(front+"/v2/models/fashion/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("infer %s: %d", id, resp.StatusCode)
		}
		sent++
		if v := resp.Header.Values(infer.CaptureKeyHeader); len(v) > 0 {
			requestID, captureKey = id, v[0]
		}
	}
	if captureKey == "" {
		t.Fatalf("none of %d requests was captured", sent)
	}
	if ok, _ := regexp.MatchString(`^[0-9a-f]{32}$`, captureKey); !ok {
		t.Fatalf("%s: %q is not a sample key", infer.CaptureKeyHeader, captureKey)
	}
	// Exactly one capture, the one the header named: the other requests had no header.
	_, m := get(t, newRequest(t, "http://"+metricsAddr+"/metrics"))
	if c := regexp.MustCompile(`edgeloop_samples_captured_total\{model="fashion",strategy="low_confidence"\} (\d+)`).FindStringSubmatch(m); c == nil || c[1] != "1" {
		t.Fatalf("captured counter %v after %d requests and one header, want 1", c, sent)
	}
	t.Logf("request %s of %d sent was captured as %s", requestID, sent, captureKey)

	// After the sender ships it and the shard is stored, the collector finds it by request id.
	base := "http://" + e.addr
	var found catalog.RequestAnswer
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := operatorGet(base+"/v1/samples?request_id="+requestID, operatorToken)
		if code == http.StatusOK {
			if err := json.Unmarshal(body, &found); err != nil {
				t.Fatal(err)
			}
			break
		}
		if code != http.StatusNotFound && code != http.StatusServiceUnavailable {
			t.Fatalf("GET /v1/samples?request_id=%s = %d %s", requestID, code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sample of %s is not found after 60s: %d %s", requestID, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(found.Samples) != 1 {
		t.Fatalf("found %+v, want one sample", found)
	}
	s := found.Samples[0]
	if s.Key != captureKey || s.RequestID != requestID || s.Model != "fashion" || s.Version != "1" || s.Node != node || !strings.HasSuffix(s.Shard, ".tar") {
		t.Fatalf("found %+v, want key %s of fashion 1 on %s", s, captureKey, node)
	}
	if code, body := operatorGet(base+"/v1/samples?request_id="+requestID, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("without the operator token: %d %s", code, body)
	}
	if code, body := operatorGet(base+"/v1/samples?request_id=req-none", operatorToken); code != http.StatusNotFound {
		t.Errorf("an unknown request id: %d %s", code, body)
	}
	if code, body := operatorGet(base+"/v1/samples", operatorToken); code != http.StatusBadRequest {
		t.Errorf("no request id: %d %s", code, body)
	}

	// The shard's index line and the Label Studio task carry the request id.
	ctx := context.Background()
	index, _, err := objstore.ReadAll(ctx, e.bucket, strings.TrimSuffix(s.Shard, ".tar")+".index.jsonl", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(index, []byte(`"key":"`+captureKey+`","model":"fashion","version":"1","node":"`+node+`"`)) || !bytes.Contains(index, []byte(`"request_id":"`+requestID+`"`)) {
		t.Fatalf("index %s lacks the sample's line with its request id", index)
	}
	code, body := operatorGet(base+"/v1/labelstudio/fashion/tasks", operatorToken)
	var tasks []labels.Task
	if code != http.StatusOK || json.Unmarshal(body, &tasks) != nil || len(tasks) != 1 || tasks[0].Data.Key != captureKey || tasks[0].Data.RequestID != requestID {
		t.Fatalf("Label Studio tasks = %d %s", code, body)
	}

	// Labelled by request id; an unknown id refuses its batch whole.
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/labels", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+operatorToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"model":"fashion","labels":[{"request_id":"` + requestID + `","label":"Coat","source":"teacher"},{"request_id":"req-none","label":"Bag","source":"teacher"}]}`); code != http.StatusUnprocessableEntity || !strings.Contains(body, `labels[1].request_id \"req-none\"`) {
		t.Fatalf("a batch with an unknown request id = %d %s, want 422 naming it", code, body)
	}
	if code, body := post(`{"model":"fashion","labels":[{"request_id":"` + requestID + `","label":"Coat","source":"teacher"}]}`); code != http.StatusCreated || !strings.Contains(body, `"stored": 1`) {
		t.Fatalf("label by request id = %d %s", code, body)
	}
	code, body = operatorGet(base+"/v1/datasets/fashion", operatorToken)
	var manifest dataset.Manifest
	if code != http.StatusOK || json.Unmarshal(body, &manifest) != nil || len(manifest.Labels) != 1 {
		t.Fatalf("dataset manifest = %d %s, want one label file", code, body)
	}
	data, _, err := objstore.ReadAll(ctx, e.bucket, manifest.Labels[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	var line labels.Line
	if err := json.Unmarshal(bytes.TrimSpace(data), &line); err != nil || line.Key != captureKey || line.RequestID != requestID || string(line.Label) != `"Coat"` {
		t.Fatalf("label file %s: %+v, %v; want the label under key %s", data, line, err, captureKey)
	}
}
