//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// reference is the reference model, trained once for every test that needs it.
var reference struct {
	once    sync.Once
	dir     string // holds keys/ and trained/
	metrics *modelrepo.TrainerMetrics
	err     error
}

// referenceModel trains the reference model with `edgeloop train`'s defaults (the issue's
// target is ≥ 0.87 test accuracy; about 30 s on two cores, docs/trainer.md) and makes a
// signing key, once per test run. It returns the keys directory, the trained model's directory
// and its metrics.
func referenceModel(t *testing.T) (keys, trained string, metrics *modelrepo.TrainerMetrics) {
	t.Helper()
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	reference.once.Do(func() {
		reference.dir, reference.err = os.MkdirTemp("", "edgeloop-reference-")
		if reference.err != nil {
			return
		}
		var out bytes.Buffer
		for _, args := range [][]string{
			{"model", "keygen", "--out", filepath.Join(reference.dir, "keys")},
			{"train", "--out", filepath.Join(reference.dir, "trained"), "--data", dataDir, "--log.format", "json"},
		} {
			cmd := exec.Command(binary, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				reference.err = fmt.Errorf("edgeloop %s: %v\n%s", strings.Join(args, " "), err, out.String())
				return
			}
		}
		reference.metrics, reference.err = modelrepo.ReadTrainerMetrics(filepath.Join(reference.dir, "trained", modelrepo.MetricsFile))
	})
	if reference.err != nil {
		t.Fatal(reference.err)
	}
	if m := reference.metrics; m.Accuracy == nil || *m.Accuracy < 0.87 {
		t.Fatalf("edgeloop train reached accuracy %v, want ≥ 0.87", m.Accuracy)
	}
	return filepath.Join(reference.dir, "keys"), filepath.Join(reference.dir, "trained"), reference.metrics
}

// run runs `edgeloop args...` to completion with env added, failing the test on a non-zero exit.
func run(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("edgeloop %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestTrainPublishServe is issue 3's loop on real parts: `edgeloop train` on Fashion-MNIST
// reaching its accuracy target,
// `edgeloop model publish` into MinIO, an exporter that syncs the model from there and
// classifies the test set through POST /v2/models/fashion/infer with the accuracy the trainer
// reported; a newly published version serving within one poll interval; and a version with
// one byte changed refused while the old one keeps serving.
func TestTrainPublishServe(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	endpoint, access, secret := testenv.MinIO(t)
	ctx := context.Background()
	s3 := objstore.S3Config{Endpoint: endpoint, Bucket: "models", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(ctx, s3); err != nil {
		t.Fatal(err)
	}
	repoURL := "s3://models?endpoint=" + endpoint + "&insecure=true"
	env := []string{objstore.EnvAccessKey + "=" + access, objstore.EnvSecretKey + "=" + secret}

	work := t.TempDir()
	keys, trained, metrics := referenceModel(t)
	publish := func() {
		t.Helper()
		run(t, env, "model", "publish", "--repo", repoURL, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)
	}
	publish()

	const poll = 2 * time.Second
	p, metricsAddr := startExporterEnv(t, env, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: %s
  jitter: 0.1
`, repoURL, filepath.Join(keys, "edgeloop.pub"), filepath.Join(work, "cache"), poll))
	front := "http://" + p.waitFor(t, "inference front started", 20*time.Second)["listen"].(string)
	p.waitForVersion(t, "1", 30*time.Second)

	test, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	acc, version := classify(t, front, test)
	if diff := acc - *metrics.Accuracy; diff < -0.005 || diff > 0.005 {
		t.Fatalf("accuracy through the V2 front %.4f, trainer reported %.4f: differ by more than 0.5%%", acc, *metrics.Accuracy)
	}
	if version != "1" {
		t.Fatalf("answered by version %q, want 1", version)
	}
	t.Logf("accuracy through POST /v2/models/fashion/infer: %.4f (trainer: %.4f)", acc, *metrics.Accuracy)

	// A second exporter fronting the first as its upstream (a static upstream model): the same
	// answers, scored again on the way.
	proxy, proxyMetrics := startExporter(t, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
    runtime: upstream
    version: "1"
    output: logits
    output_kind: logits
    classes: [%s]
    upstream:
      url: %s
`, strings.Join(fmnist.ClassNames(), ", "), front))
	proxyFront := "http://" + proxy.waitFor(t, "inference front started", 20*time.Second)["listen"].(string)
	head := &fmnist.Dataset{Images: test.Images[:1000*fmnist.Pixels], Labels: test.Labels[:1000]}
	direct, _ := classify(t, front, head)
	proxied, v := classify(t, proxyFront, head)
	if proxied != direct || v != "1" {
		t.Fatalf("through the upstream exporter: accuracy %.4f from version %q, directly %.4f from 1", proxied, v, direct)
	}
	if _, m := get(t, newRequest(t, "http://"+proxyMetrics+"/metrics")); !regexp.MustCompile(`edgeloop_inference_predictions_total\{class="Trouser",model="fashion",version="1"\} [1-9]`).MatchString(m) {
		t.Errorf("the upstream exporter did not score the proxied answers:\n%s", m)
	}

	publish()
	published := time.Now()
	p.waitForVersion(t, "2", 30*time.Second)
	if took := time.Since(published); took > poll*11/10+time.Second {
		t.Fatalf("version 2 served %s after publishing, want within one poll interval (%s)", took, poll)
	}
	t.Logf("version 2 served %s after it was published (poll interval %s)", time.Since(published).Round(time.Millisecond), poll)

	// Version 3 with one byte of model.onnx changed: published to a staging bucket, then
	// copied into the live one with the byte flipped and the signed manifest last.
	staging := s3
	staging.Bucket = "staging"
	if err := objstore.CreateS3Bucket(ctx, staging); err != nil {
		t.Fatal(err)
	}
	run(t, env, "model", "publish", "--repo", "s3://staging?endpoint="+endpoint+"&insecure=true", "--version", "3",
		"--key", filepath.Join(keys, modelrepo.PrivateKeyFile), trained)
	copyTampered(t, staging, s3, 3)
	p.waitForLog(t, `"reason":"digest_mismatch"`, 30*time.Second)
	if _, v := classify(t, front, &fmnist.Dataset{Images: test.Images[:100*fmnist.Pixels], Labels: test.Labels[:100]}); v != "2" {
		t.Fatalf("after a tampered version 3, answered by %q, want 2", v)
	}
	_, m := get(t, newRequest(t, "http://"+metricsAddr+"/metrics"))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`edgeloop_model_sync_failures_total\{model="fashion",reason="digest_mismatch"\} [1-9]`),
		regexp.MustCompile(`edgeloop_model_info\{model="fashion",sha256="[0-9a-f]{64}",version="2"\} 1`),
		regexp.MustCompile(`edgeloop_inference_requests_total\{model="fashion",outcome="success",version="2"\} [1-9]`),
	} {
		if !want.MatchString(m) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// classify sends the images through the V2 front in batches and returns the accuracy and the
// version that answered.
func classify(t *testing.T, front string, d *fmnist.Dataset) (float64, string) {
	t.Helper()
	const batch = 250
	correct, version := 0, ""
	for start := 0; start < d.Len(); start += batch {
		n := min(batch, d.Len()-start)
		req := map[string]any{"inputs": []map[string]any{{
			"name": "input", "datatype": "FP32", "shape": []int{n, fmnist.Pixels},
			"data": d.Images[start*fmnist.Pixels : (start+n)*fmnist.Pixels],
		}}}
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(front+"/v2/models/fashion/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Version string `json:"model_version"`
			Outputs []struct {
				Name  string    `json:"name"`
				Shape []int     `json:"shape"`
				Data  []float32 `json:"data"`
			} `json:"outputs"`
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("infer: %d %v %s", resp.StatusCode, err, out.Error)
		}
		version = out.Version
		for _, o := range out.Outputs {
			if o.Name != "probabilities" {
				continue
			}
			if len(o.Data) != n*fmnist.NumClasses {
				t.Fatalf("probabilities hold %d values for %d images", len(o.Data), n)
			}
			for i := range n {
				row := o.Data[i*fmnist.NumClasses : (i+1)*fmnist.NumClasses]
				best := 0
				for c := range row {
					if row[c] > row[best] {
						best = c
					}
				}
				if best == int(d.Labels[start+i]) {
					correct++
				}
			}
		}
	}
	return float64(correct) / float64(d.Len()), version
}

// copyTampered copies version v of fashion from one bucket to another with one byte of
// model.onnx flipped, the manifest last, as an attacker with write access to the bucket could.
func copyTampered(t *testing.T, from, to objstore.S3Config, v int64) {
	t.Helper()
	ctx := context.Background()
	src, err := objstore.NewS3(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := objstore.NewS3(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	keys, err := objstore.List(ctx, src, modelrepo.VersionPrefix("fashion", v), true)
	if err != nil {
		t.Fatal(err)
	}
	manifest := modelrepo.ManifestKey("fashion", v)
	var ordered []string
	for _, k := range keys {
		if k != manifest {
			ordered = append(ordered, k)
		}
	}
	ordered = append(ordered, manifest)
	for _, key := range ordered {
		data, _, err := objstore.ReadAll(ctx, src, key, 1<<28)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(key, "/"+modelrepo.ModelFile) {
			data[len(data)/2] ^= 0x01
		}
		if err := dst.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
}

// waitForVersion waits for the exporter's log to say that version v of the model serves.
func (p *process) waitForVersion(t *testing.T, v string, timeout time.Duration) {
	t.Helper()
	want, _ := strconv.ParseFloat(v, 64)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == "model version loaded" && l["version"] == want {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("version %s not loaded within %s", v, timeout)
}

// waitForLog waits for a raw log line containing s.
func (p *process) waitForLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.log(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line containing %s within %s", s, timeout)
}
