//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/demo"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/serverconfig"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain"
)

// pytorchTrainer is the PyTorch training job's entry point, from the integration directory.
func pytorchTrainer(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "trainers", "pytorch", "train.py"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// controllerSetup is what startController writes into retrain.yaml besides the plumbing.
type controllerSetup struct {
	// Models is the YAML list under models:.
	Models string
	// Command is the local backend's command.
	Command []string
	// Gate is the YAML under gate:.
	Gate string
}

// baseController is the plumbing of every test's retrain.yaml: a free loopback listener, JSON
// logs, state under work, the webhook token "am-token" and the operator token "op-token", the
// model repository at repoURL signed with the key in keys, and the collector env e (a zero
// collector gives an address nothing answers on).
func baseController(t *testing.T, e *collectorEnv, repoURL, keys, work string) (serverconfig.Controller, string) {
	t.Helper()
	addr, collectorURL := freeAddr(t), "http://127.0.0.1:9"
	if e != nil {
		collectorURL = "http://" + e.addr
	}
	return serverconfig.Controller{Listen: addr, LogJSON: true, StateDir: filepath.Join(work, "state"),
		WebhookTokens:  writeFile(t, "webhook.tokens", token.HashLine("alertmanager", "am-token")+"\n"),
		OperatorTokens: writeFile(t, "operator.tokens", token.HashLine("alice", "op-token")+"\n"),
		Bucket:         repoURL, SigningKey: filepath.Join(keys, modelrepo.PrivateKeyFile),
		CollectorURL: collectorURL, CollectorToken: writeFile(t, "collector.token", operatorToken+"\n"),
		Models: []string{"fashion"},
	}, addr
}

// writeController writes c as retrain.yaml and returns its path.
func writeController(t *testing.T, c serverconfig.Controller) string {
	t.Helper()
	content, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "retrain.yaml", content)
}

// startController starts `edgeloop retrain` against the collector env e and the model
// repository at repoURL, signing with keys, running jobs with the local backend; it returns
// the controller's address (operator token "op-token") and its process.
func startController(t *testing.T, e *collectorEnv, repoURL, keys string, s controllerSetup) (string, *process) {
	t.Helper()
	c, addr := baseController(t, e, repoURL, keys, t.TempDir())
	c.Policy = serverconfig.Policy{MinNewLabels: 1, Cooldown: time.Hour, JobTimeout: 10 * time.Minute}
	c.Command, c.PublishStable = s.Command, true
	c.Tuning = "models:\n" + s.Models
	if s.Gate != "" {
		c.Tuning += "gate:\n" + s.Gate
	}
	cfg := writeController(t, c)
	ctrl := startEnv(t, e.env, "retrain", "--config", cfg)
	ctrl.waitFor(t, "retrain controller started", 30*time.Second)
	return addr, ctrl
}

// retrainNow asks the controller for a job of model (manual, forced) and waits for its end.
func retrainNow(t *testing.T, addr, model string, ctrl *process, timeout time.Duration) retrain.Job {
	t.Helper()
	code, body := operatorDo(t, http.MethodPost, "http://"+addr+"/v1/models/"+model+"/retrain", "op-token",
		map[string]any{"reason": "integration test", "force": true})
	var d retrain.Decision
	if code != http.StatusAccepted || json.Unmarshal(body, &d) != nil || d.Started == "" {
		t.Fatalf("retrain %s: %d %s", model, code, body)
	}
	var job retrain.Job
	deadline := time.Now().Add(timeout)
	for {
		code, body := operatorDo(t, http.MethodGet, "http://"+addr+"/v1/jobs/"+d.Started, "op-token", nil)
		if code != 200 || json.Unmarshal(body, &job) != nil {
			t.Fatalf("job: %d %s", code, body)
		}
		if job.Phase.Done() {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s:\n%s", job.ID, job.Phase, timeout, ctrl.log())
		}
		time.Sleep(time.Second)
	}
}

// postLabelled sends samples through the collector as node, waits for their shards, then
// posts their labels.
func postLabelled(t *testing.T, e *collectorEnv, node, model string, samples []*sample.Sample, ls []labels.Label) {
	t.Helper()
	for i := 0; i < len(samples); i += 200 {
		if code := e.postBatch(t, node, samples[i:min(i+200, len(samples))]); code != 200 {
			t.Fatalf("ingest: %d", code)
		}
	}
	e.waitDrained(t, 60*time.Second)
	if code, body := operatorDo(t, http.MethodPost, "http://"+e.addr+"/v1/labels", operatorToken, labels.Request{Model: model, Labels: ls}); code != http.StatusCreated {
		t.Fatalf("labels: %d %s", code, body)
	}
}

// inferTop1 sends inputs (each of the per-sample shape) through an exporter's V2 API to
// model in batches and returns each input's top-1 class and the version that answered last.
func inferTop1(t *testing.T, front, model string, shape []int, inputs [][]float32) ([]int, string) {
	t.Helper()
	const batch = 100
	var top []int
	version := ""
	for start := 0; start < len(inputs); start += batch {
		n := min(batch, len(inputs)-start)
		var data []float32
		for _, in := range inputs[start : start+n] {
			data = append(data, in...)
		}
		body, err := json.Marshal(map[string]any{"inputs": []map[string]any{{
			"name": "input", "datatype": "FP32", "shape": append([]int{n}, shape...), "data": data}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(front+"/v2/models/"+model+"/infer", "application/json", bytes.NewReader(body))
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
		found := false
		for _, o := range out.Outputs {
			if o.Name != "probabilities" {
				continue
			}
			found = true
			if len(o.Shape) != 2 || o.Shape[0] != n || len(o.Data) != n*o.Shape[1] {
				t.Fatalf("probabilities of shape %v with %d values for %d inputs", o.Shape, len(o.Data), n)
			}
			k := o.Shape[1]
			for i := range n {
				row := o.Data[i*k : (i+1)*k]
				best := 0
				for c := range row {
					if row[c] > row[best] {
						best = c
					}
				}
				top = append(top, best)
			}
		}
		if !found {
			t.Fatalf("no probabilities output from %s", model)
		}
	}
	return top, version
}

// accuracy is the share of predictions equal to labels.
func accuracy(pred, labels []int) float64 {
	correct := 0
	for i := range pred {
		if pred[i] == labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

// TestRetrainCNNEndToEnd is the loop for a convolutional network trained by the PyTorch job:
// a CNN version 1 (a small budget on clean Fashion-MNIST) is published with `edgeloop model
// publish` to MinIO and served by an exporter's built-in runtime; labelled captured samples of
// a drifted distribution (a brightness/contrast shift, as the demo's but stronger) reach the bucket through the
// collector; the controller's local backend runs the PyTorch job, which fine-tunes from
// version 1's checkpoint.pt; the gate scores both on an evaluation set of drifted test images
// ([1,28,28]) and the held-out samples, promotes version 2 with its temperature; the exporter
// hot-swaps, and its accuracy on drifted test images no job saw recovers.
func TestRetrainCNNEndToEnd(t *testing.T) {
	python := testenv.Torch(t)
	trainer := pytorchTrainer(t)
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	train, err := fmnist.Load(dataDir, fmnist.Train)
	if err != nil {
		t.Fatal(err)
	}
	test, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	// A stronger shift than the demo's (contrast 0.7, brightness +0.15), which a CNN trained
	// on 5,000 images already tolerates (0.78 against about 0.85 clean), so that there is
	// something to recover: pixel levels 0 to 1 become 0.35 to 0.85.
	drift := demo.Drift{Contrast: 0.5, Brightness: 0.35}
	began := time.Now()
	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	run(t, nil, "model", "keygen", "--out", keys)

	// Version 1: a CNN on 5,000 clean training images, two epochs.
	v1 := filepath.Join(work, "v1")
	runCommand(t, nil, python, trainer, "--out", v1, "--model", "fashion", "--base-data", dataDir, "--train-limit", "5000",
		"--epochs", "2", "--eval-limit", "1000", "--log.format", "json")
	t.Logf("%s: CNN version 1 trained", since(began))

	e := newCollectorEnv(t, testShards, "edge-1")
	e.start(t)
	repoURL := "s3://edgeloop?endpoint=" + e.minio.Endpoint + "&insecure=true"
	run(t, e.env, "model", "publish", "--repo", repoURL, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile), v1)
	p, _ := startExporterEnv(t, e.env, fmt.Sprintf(`
inference:
  listen: 127.0.0.1:0
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: 1s
`, repoURL, filepath.Join(keys, modelrepo.PublicKeyFile), filepath.Join(work, "cache")))
	front, _ := p.waitFor(t, "inference front started", 30*time.Second)["listen"].(string)
	p.waitForVersion(t, "1", 30*time.Second)

	// The drifted images the exporter is measured on: test images no job trains on and no
	// evaluation set holds.
	probe, probeLabels := fmnistImages(test, 5000, 5600, drift.Apply)
	pred, version := inferTop1(t, "http://"+front, "fashion", []int{1, 28, 28}, probe)
	before := accuracy(pred, probeLabels)
	if version != "1" {
		t.Fatalf("answered by version %q, want 1", version)
	}

	// 1,500 drifted captured samples (training images version 1 never saw), labelled.
	const from, to = 50000, 51500
	shiftedTrain := &fmnist.Dataset{Images: make([]float32, (to-from)*fmnist.Pixels), Labels: train.Labels[from:to]}
	for i := range to - from {
		drift.Apply(shiftedTrain.Image(i), train.Image(from+i))
	}
	samples, ls := fmnistSamples(t, shiftedTrain, "edge-1", 0, to-from, []int64{1, 1, 28, 28})
	postLabelled(t, e, "edge-1", "fashion", samples, ls)

	// The evaluation set: 800 drifted test images, [1,28,28] as the CNN takes them.
	images, classes := fmnistImages(test, 0, 800, drift.Apply)
	t.Log(createEvalSet(t, e.env, repoURL, "fashion", "fmnist-drifted-800", []int{1, 28, 28}, fmnist.ClassNames(), images, classes))
	t.Logf("%s: version 1 serves (%.3f on drifted images); samples, labels and the evaluation set are in MinIO", since(began), before)

	addr, ctrl := startController(t, e, repoURL, keys, controllerSetup{
		Models: "  - name: fashion\n",
		Command: []string{python, trainer, "--out", "{{.Output}}", "--dataset-manifest", "{{.DatasetManifest}}", "--model", "{{.Model}}",
			"--base-version", "{{.BaseVersion}}", "--base-data", dataDir, "--train-limit", "5000", "--epochs", "2",
			"--samples-repeat", "2", "--lr", "0.0005", "--eval-limit", "500", "--log.format", "json"},
		// About 95 samples per class: one sample is 0.01 of a class's recall, and the standard
		// error of a difference of two recalls near 0.7 is about 0.065; the class rule allows
		// for that noise.
		Gate: "  eval_sets: [fmnist-drifted-800]\n  max_class_regression: 0.15\n",
	})
	job := retrainNow(t, addr, "fashion", ctrl, 5*time.Minute)
	if job.Phase != retrain.PhasePromoted || job.Version != 2 || job.BaseVersion != 1 {
		t.Fatalf("job ended %s (version %d, base %d): %s\n%s", job.Phase, job.Version, job.BaseVersion, job.Error, ctrl.log())
	}
	g := job.Gate
	if g == nil || !g.Promote || g.Current == nil || g.Candidate.Accuracy <= g.Current.Accuracy {
		t.Fatalf("gate decision: %+v", g)
	}
	t.Logf("%s: job %s: gate %s (candidate %.4f, serving %.4f on %d samples); took %s", since(began), job.ID, g.Reason,
		g.Candidate.Accuracy, g.Current.Accuracy, job.Dataset.EvalSamples, job.Finished.Sub(job.Created).Round(time.Second))

	// Version 2: signed, carries checkpoint.pt and the temperature, and was fine-tuned from
	// version 1's files (the job was handed EDGELOOP_BASE_MODEL and read its checkpoint).
	repo := modelrepo.New(e.bucket)
	verifier, err := modelrepo.LoadVerifier(filepath.Join(keys, modelrepo.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Manifest(context.Background(), "fashion", 2, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Files["checkpoint.pt"]; !ok || m.ParentVersion != 1 {
		t.Errorf("version 2: files %v, parent %d; want checkpoint.pt and parent 1", keysOf(m.Files), m.ParentVersion)
	}
	if c := m.Calibration; c == nil || !(c.Temperature > 0) || math.IsInf(c.Temperature, 0) {
		t.Errorf("version 2's calibration: %+v", m.Calibration)
	} else {
		t.Logf("version 2's temperature: %.3f", c.Temperature)
	}
	if got := fmt.Sprint(m.Input.Shape); got != "[-1 1 28 28]" {
		t.Errorf("version 2's input shape %s, want [-1 1 28 28]", got)
	}
	data, _, err := objstore.ReadAll(context.Background(), e.bucket, "models/fashion/2/metrics.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var metrics struct {
		FineTunedFrom string `json:"fine_tuned_from"`
		Arch          string `json:"arch"`
	}
	if err := json.Unmarshal(data, &metrics); err != nil || metrics.FineTunedFrom == "" || metrics.Arch != "cnn" {
		t.Errorf("version 2's metrics.json: fine_tuned_from %q, arch %q (%v); want a fine-tuned cnn", metrics.FineTunedFrom, metrics.Arch, err)
	}
	if rec := readGateRecord(t, e.bucket, "fashion", 2); rec.Report.Evaluator != "builtin" || len(rec.Set.Parts) != 2 || len(rec.Set.Refused) != 0 {
		t.Errorf("gate.json: evaluator %q, parts %+v, refused %+v; want the evaluation set and held_out, nothing refused", rec.Report.Evaluator, rec.Set.Parts, rec.Set.Refused)
	}

	// The exporter hot-swaps to version 2, which recovers on drifted images never trained on.
	p.waitForVersion(t, "2", 30*time.Second)
	pred, version = inferTop1(t, "http://"+front, "fashion", []int{1, 28, 28}, probe)
	after := accuracy(pred, probeLabels)
	t.Logf("%s: accuracy on %d drifted held-out images through the exporter: version 1 %.3f, version %s %.3f", since(began), len(probe), before, version, after)
	if version != "2" || after < before+0.05 {
		t.Errorf("version %s scores %.3f on drifted images, version 1 %.3f: want version 2 at least 0.05 better", version, after, before)
	}
}

// keysOf returns the names of a manifest's files.
func keysOf(m map[string]modelrepo.FileDigest) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// shapeClasses are the second model's classes, in its output order.
var shapeClasses = []string{"circle", "square", "cross", "stripes"}

// shapeImage draws one 3×16×16 RGB image (CHW, values in [0, 1]) of class c: a shape in a
// random bright colour at a random place on a random dark background, with noise, so that a
// model must learn the shape and not a colour.
func shapeImage(rng *rand.Rand, c int) []float32 {
	const n = 16
	img := make([]float32, 3*n*n)
	var fg, bg [3]float32
	for ch := range 3 {
		fg[ch] = 0.6 + 0.4*rng.Float32()
		bg[ch] = 0.3 * rng.Float32()
	}
	cx, cy := 5+rng.IntN(6), 5+rng.IntN(6)
	r := 3 + rng.IntN(2)
	for y := range n {
		for x := range n {
			dx, dy := x-cx, y-cy
			var on bool
			switch shapeClasses[c] {
			case "circle":
				on = dx*dx+dy*dy <= r*r
			case "square":
				on = max(abs(dx), abs(dy)) <= r
			case "cross":
				on = (abs(dx) <= 1 && abs(dy) <= r+1) || (abs(dy) <= 1 && abs(dx) <= r+1)
			case "stripes":
				on = (y+cy)%4 < 2
			}
			for ch := range 3 {
				v := bg[ch]
				if on {
					v = fg[ch]
				}
				v += 0.05 * float32(rng.NormFloat64())
				img[ch*n*n+y*n+x] = min(1, max(0, v))
			}
		}
	}
	return img
}

func abs(v int) int { return max(v, -v) }

// shapeSet draws count images, cycling over the classes.
func shapeSet(seed uint64, count int) ([][]float32, []int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var images [][]float32
	var ls []int
	for i := range count {
		images = append(images, shapeImage(rng, i%len(shapeClasses)))
		ls = append(ls, i%len(shapeClasses))
	}
	return images, ls
}

// shapeSamples makes captured samples of the images for model, labelled with class names.
func shapeSamples(t *testing.T, model, node string, images [][]float32, classes []int) ([]*sample.Sample, []labels.Label) {
	t.Helper()
	var out []*sample.Sample
	var ls []labels.Label
	base := time.Now().UTC().Add(-time.Hour)
	for i, img := range images {
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, []int{1, 3, 16, 16}, img); err != nil {
			t.Fatal(err)
		}
		s, err := sample.New(sample.Meta{
			Model: model, Version: "0", Node: node, Time: base.Add(time.Duration(i) * time.Millisecond),
			RequestID: fmt.Sprintf("shape-%d", i), Prediction: 0, Scores: make([]float32, len(shapeClasses)),
			ScoresKind: sample.ScoresProbabilities, Confidence: map[string]float64{"max_softmax": 0.3},
			Reason: "random", Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 3, 16, 16}, File: sample.NPYFile},
		}, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
		ls = append(ls, labels.Label{Key: s.Meta.Key, Label: json.RawMessage(fmt.Sprintf("%q", shapeClasses[classes[i]])), Source: "human", Annotator: "it"})
	}
	return out, ls
}

// TestRetrainSecondModel runs another model through the whole controller: a 3×16×16 RGB
// classifier of 4 synthetic shapes, with no version yet. Its labelled captured samples reach
// MinIO through the collector; the controller runs the PyTorch job on them (no base data set),
// and the gate scores the candidate, a first model, on an evaluation set of that shape plus
// the held-out samples, and promotes it as version 1. Two more evaluation sets listed for the
// model, one of another shape and one with a class the model does not have, are refused, with
// reasons that say so, in gate.json.
func TestRetrainSecondModel(t *testing.T) {
	python := testenv.Torch(t)
	trainer := pytorchTrainer(t)
	began := time.Now()
	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	run(t, nil, "model", "keygen", "--out", keys)
	e := newCollectorEnv(t, testShards, "cam-1")
	e.start(t)
	repoURL := "s3://edgeloop?endpoint=" + e.minio.Endpoint + "&insecure=true"

	images, classes := shapeSet(1, 1200)
	samples, ls := shapeSamples(t, "shapes", "cam-1", images, classes)
	postLabelled(t, e, "cam-1", "shapes", samples, ls)

	golden, goldenLabels := shapeSet(2, 400)
	t.Log(createEvalSet(t, e.env, repoURL, "shapes", "golden", []int{3, 16, 16}, shapeClasses, golden, goldenLabels))
	// Another shape: the first channel only.
	grey := make([][]float32, 100)
	for i := range grey {
		grey[i] = golden[i][:16*16]
	}
	t.Log(createEvalSet(t, e.env, repoURL, "shapes", "grey", []int{1, 16, 16}, shapeClasses, grey, goldenLabels[:100]))
	// A class the model does not have.
	other := append(append([]string(nil), shapeClasses[:3]...), "triangle")
	t.Log(createEvalSet(t, e.env, repoURL, "shapes", "triangles", []int{3, 16, 16}, other, golden[:100], goldenLabels[:100]))

	addr, ctrl := startController(t, e, repoURL, keys, controllerSetup{
		Models: fmt.Sprintf("  - name: shapes\n    classes: [%s]\n    eval_sets: [golden, grey, triangles]\n", strings.Join(shapeClasses, ", ")),
		Command: []string{python, trainer, "--out", "{{.Output}}", "--dataset-manifest", "{{.DatasetManifest}}", "--model", "{{.Model}}",
			"--base-data", "none", "--classes", strings.Join(shapeClasses, ","), "--arch", "cnn", "--width", "8",
			"--epochs", "4", "--batch", "64", "--eval-split", "0.1", "--log.format", "json"},
		Gate: "  first_model_min: 0.8\n",
	})
	job := retrainNow(t, addr, "shapes", ctrl, 5*time.Minute)
	if job.Phase != retrain.PhasePromoted || job.Version != 1 || job.BaseVersion != 0 {
		t.Fatalf("job ended %s (version %d, base %d): %s\n%s", job.Phase, job.Version, job.BaseVersion, job.Error, ctrl.log())
	}
	g := job.Gate
	if g == nil || !g.Promote || g.Current != nil || g.Candidate.Accuracy < 0.8 {
		t.Fatalf("gate decision: %+v", g)
	}
	t.Logf("%s: job %s: gate %s (accuracy %.4f on %d samples); took %s", since(began), job.ID, g.Reason,
		g.Candidate.Accuracy, job.Dataset.EvalSamples, job.Finished.Sub(job.Created).Round(time.Second))

	repo := modelrepo.New(e.bucket)
	verifier, err := modelrepo.LoadVerifier(filepath.Join(keys, modelrepo.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Manifest(context.Background(), "shapes", 1, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.Classes, ",") != strings.Join(shapeClasses, ",") || fmt.Sprint(m.Input.Shape) != "[-1 3 16 16]" || m.Calibration == nil {
		t.Errorf("version 1: classes %v, input %v, calibration %+v", m.Classes, m.Input.Shape, m.Calibration)
	}

	// The set: golden and the held-out samples; grey and triangles refused, saying why.
	rec := readGateRecord(t, e.bucket, "shapes", 1)
	parts := map[string]int{}
	for _, p := range rec.Set.Parts {
		parts[p.Name] = p.Samples
	}
	if parts["golden"] != 400 || parts["held_out"] == 0 || len(parts) != 2 || rec.Set.Samples != job.Dataset.EvalSamples {
		t.Errorf("gate.json's parts: %+v (%d samples), want golden's 400 and held_out", rec.Set.Parts, rec.Set.Samples)
	}
	refused := map[string]string{}
	for _, r := range rec.Set.Refused {
		refused[r.Source] = r.Reason
	}
	t.Logf("refused: %q", refused)
	if r := refused["grey"]; !strings.Contains(r, "[1 16 16]") || !strings.Contains(r, "[3 16 16]") {
		t.Errorf("grey refused for %q, want a reason naming both shapes", r)
	}
	if r := refused["triangles"]; !strings.Contains(r, "triangle") {
		t.Errorf("triangles refused for %q, want a reason naming the unknown class", r)
	}
	if len(refused) != 2 {
		t.Errorf("refused: %+v, want grey and triangles", rec.Set.Refused)
	}
	// The controller's log says how many samples it refused, with the decision.
	if n := ctrl.waitFor(t, "gate decided", 5*time.Second)["refused_samples"]; n != float64(200) {
		t.Errorf("gate decided with refused_samples %v, want 200 (grey's 100 and triangles' 100)", n)
	}
}

// runCommand runs name with args to completion with env added, failing the test on a
// non-zero exit, and returns its standard output.
func runCommand(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
