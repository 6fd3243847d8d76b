// Package pytorch_test tests the PyTorch training job (train.py beside it, docs/trainer-pytorch.md)
// from Go: it runs the job on real Fashion-MNIST data and checks what it writes with edgeloop's
// own readers (the built-in runtime, the Go trainer's Metrics, internal/dataset's rules).
package pytorch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
	trainer "github.com/edgeloop/edgeloop/trainers/go"
)

// python is Debian's interpreter, the one with python3-torch; the first python3 in PATH may be
// another without it.
const python = "/usr/bin/python3"

// Sizes of the test runs: small enough for the whole package to take about a minute on two
// shared cores, large enough that a trained model is far above chance.
const (
	trainLimit = 300 // Fashion-MNIST training images in the base data
	evalLimit  = 500 // Fashion-MNIST test images evaluated
	nSamples   = 200 // captured samples in the shards
)

// needPython reports Missing (a failure in CI, a skip elsewhere) unless python imports modules;
// short mode skips the test.
func needPython(t *testing.T, modules string) {
	t.Helper()
	if testing.Short() { // `make test-unit` runs no external programs
		t.Skip("-short: not running python")
	}
	out, err := exec.Command(python, "-B", "-c", "import "+modules).CombinedOutput()
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("%s cannot import %s (apt-get install python3-torch python3-onnx python3-numpy python3-boto3; scripts/debs.sh does): %v: %s", python, modules, err, out))
	}
}

// result is one finished run of the job.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// runJob runs train.py with the contract's environment (env) and flags, without any
// EDGELOOP_ variable of the test's own environment.
func runJob(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"-B", "train.py"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGELOOP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("train.py: %v\n%s", err, r.stderr)
	}
	t.Logf("train.py %s: exit %d in %s", strings.Join(args, " "), r.code, r.elapsed.Round(100*time.Millisecond))
	return r
}

// mustSucceed fails the test unless r exited 0 with the summary line on stdout.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || !strings.HasPrefix(r.stdout, "edgeloop pytorch job: accuracy ") {
		t.Fatalf("exit %d\nstdout: %s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// metrics is metrics.json: the Go trainer's Metrics plus the keys only this job writes.
type metrics struct {
	trainer.Metrics
	Arch             string         `json:"arch"`
	InputShape       []int          `json:"input_shape"`
	FineTunedFrom    string         `json:"fine_tuned_from"`
	RejectedByReason map[string]int `json:"rejected_by_reason"`
}

func readMetrics(t *testing.T, dir string) metrics {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The Go trainer's type first, strictly typed: the schema the publisher reads.
	var m trainer.Metrics
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metrics.json does not decode as trainer.Metrics: %v", err)
	}
	var full metrics
	if err := json.Unmarshal(b, &full); err != nil {
		t.Fatal(err)
	}
	// And what `edgeloop model publish` takes of it into the version's manifest.
	tm, err := modelrepo.ReadTrainerMetrics(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man modelrepo.Manifest
	if err := tm.Apply(&man); err != nil {
		t.Fatalf("modelrepo: %v", err)
	}
	if man.Model != full.Model || !slices.Equal(man.Classes, full.Classes) || man.Metrics["accuracy"] != full.Accuracy ||
		len(man.PerClassMetrics["accuracy"]) != len(full.Classes) || man.ReferenceScorer != "max_softmax" {
		t.Errorf("manifest from metrics.json: %+v", man)
	}
	return full
}

// fixture is the data every run reads: a dataset manifest of shards and a label file built
// from real Fashion-MNIST images, and what internal/dataset makes of them.
type fixture struct {
	dir       string
	manifest  string
	shards    []string
	labels    []string
	want      *dataset.Labelled // internal/dataset.ReadLabelled of the same files
	wantHeld  int
	evalX     []float32 // the first evalLimit test images, as the job evaluates them
	evalY     []uint8
	fashionMN string
}

var fashionSpec = dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: dataset.DatatypeFP32, Classes: fmnist.ClassNames()}

func npyBytes(t *testing.T, shape []int, data []float32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, shape, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// uint8NPY is an image as a client sending raw grey levels stores it.
func uint8NPY(img []float32) []byte {
	hdr := "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 28, 28), }"
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)), byte(len(hdr)>>8))
	b = append(b, hdr...)
	for _, v := range img {
		b = append(b, byte(math.Round(float64(v)*255)))
	}
	return b
}

func captured(t *testing.T, i int, node string, input []byte, shape []int64, label json.RawMessage) *sample.Sample {
	t.Helper()
	s, err := sample.New(sample.Meta{
		Model: "fashion", Version: "1", Node: node,
		Time:       time.Date(2026, 12, 1, 10, 0, 0, i, time.UTC),
		Prediction: 0, Scores: make([]float32, 10), ScoresKind: sample.ScoresProbabilities,
		Confidence: map[string]float64{"max_softmax": 0.3}, Reason: "low_confidence", Label: label,
		Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: shape, File: sample.NPYFile},
	}, input)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newFixture writes two shards of captured samples: Fashion-MNIST training images beyond
// trainLimit with index, name and string-index labels, unlabelled ones (some labelled later by
// the label file, one relabelled by it), one of each refusal, and the same image twice under
// two sample keys.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	train, err := fmnist.Load(dir, fmnist.Train)
	if err != nil {
		t.Fatal(err)
	}
	test, err := fmnist.Load(dir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), fashionMN: dir, evalX: test.Images[:evalLimit*fmnist.Pixels], evalY: test.Labels[:evalLimit]}
	names := fmnist.ClassNames()
	var shards [2][]*sample.Sample
	var posted []string
	for i := range nSamples {
		idx := 1000 + i
		img, y := train.Image(idx), int(train.Labels[idx])
		var label json.RawMessage
		switch i % 5 {
		case 0:
			label = sample.IndexLabel(y)
		case 1:
			label = sample.NameLabel(names[y])
		case 2:
			label = sample.NameLabel(fmt.Sprint(y)) // "7": an index as a string
		case 3:
			label = sample.IndexLabel(y)
		case 4:
			// Unlabelled at capture; every other one labelled later by the label file.
		}
		var input []byte
		if i%2 == 0 {
			input = uint8NPY(img)
		} else {
			input = npyBytes(t, []int{1, 1, 28, 28}, img) // a batch of one fits [1,28,28]
		}
		s := captured(t, i, fmt.Sprintf("edge-%04d", i%7), input, []int64{1, 1, 28, 28}, label)
		if i%5 == 4 && i%10 == 9 {
			posted = append(posted, fmt.Sprintf(`{"key": %q, "label": %q}`, s.Meta.Key, names[y]))
		}
		if i == 3 { // a label file's label wins over the sample's own
			posted = append(posted, fmt.Sprintf(`{"key": %q, "label": %d}`, s.Meta.Key, (y+1)%10))
		}
		shards[i%2] = append(shards[i%2], s)
	}
	img := train.Image(1500)
	nan := append([]float32{float32(math.NaN())}, img[1:]...)
	shards[1] = append(shards[1],
		// The same image as sample 0 from another node: a new sample key, the same content.
		captured(t, 9001, "edge-9999", uint8NPY(train.Image(1000)), []int64{1, 28, 28}, sample.IndexLabel(int(train.Labels[1000]))),
		// Refusals, one of each reason the job can meet here: shape ([784] is not [1,28,28]),
		// label (no class "Hat"), nonfinite.
		captured(t, 9002, "edge-9999", npyBytes(t, []int{784}, img), []int64{784}, sample.IndexLabel(1)),
		captured(t, 9003, "edge-9999", npyBytes(t, []int{1, 28, 28}, img), []int64{1, 28, 28}, sample.NameLabel("Hat")),
		captured(t, 9004, "edge-9999", npyBytes(t, []int{1, 28, 28}, nan), []int64{1, 28, 28}, sample.IndexLabel(2)),
	)
	for i, ss := range shards {
		p := filepath.Join(f.dir, "samples", fmt.Sprintf("shard-%d.tar", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := sample.WriteTar(&b, ss); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		f.shards = append(f.shards, p)
	}
	lf := filepath.Join(f.dir, "labels", "posted.jsonl")
	if err := os.MkdirAll(filepath.Dir(lf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lf, []byte(strings.Join(posted, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.labels = []string{lf}
	// Relative paths and a directory, as a local manifest may have them.
	m, _ := json.Marshal(map[string][]string{"shards": {"samples"}, "labels": {"labels/posted.jsonl"}})
	f.manifest = filepath.Join(f.dir, "dataset.json")
	if err := os.WriteFile(f.manifest, m, 0o644); err != nil {
		t.Fatal(err)
	}
	if f.want, err = dataset.ReadLabelled(f.shards, f.labels, fashionSpec, nil); err != nil {
		t.Fatal(err)
	}
	_, held := f.want.Split()
	f.wantHeld = held.Len()
	if f.want.Stats.Duplicates == 0 || f.want.Stats.Unlabelled == 0 || len(f.want.Stats.Rejected) != 3 || f.wantHeld == 0 {
		t.Fatalf("fixture does not exercise every rule: %+v, %d held out", f.want.Stats, f.wantHeld)
	}
	return f
}

// checkSamples checks that the job counted the samples exactly as internal/dataset does.
func (f *fixture) checkSamples(t *testing.T, m metrics) {
	t.Helper()
	st := f.want.Stats
	got := m.Samples
	if got.Shards != st.Shards || got.Labelled != st.Labelled || got.Unlabelled != st.Unlabelled ||
		got.Duplicates != st.Duplicates || got.Rejected != st.RejectedTotal() || got.HeldOut != f.wantHeld {
		t.Errorf("samples = %+v, internal/dataset: %+v with %d held out", got, st, f.wantHeld)
	}
	if !maps.Equal(m.RejectedByReason, st.Rejected) {
		t.Errorf("rejected_by_reason = %v, internal/dataset: %v", m.RejectedByReason, st.Rejected)
	}
	if want := trainLimit + st.Labelled - f.wantHeld; m.TrainSize != want {
		t.Errorf("train_size = %d, want %d Fashion-MNIST images + %d samples not held out", m.TrainSize, trainLimit, want-trainLimit)
	}
}

// scoreWithBuiltin runs the written model.onnx in the exporter's built-in runtime on the
// evaluation images and returns its accuracy and mean loss. It checks the graph's interface:
// input "input" [-1,1,28,28], outputs "logits", "probabilities" (their softmax) and
// "embedding" (named by the metadata), classes.
func (f *fixture) scoreWithBuiltin(t *testing.T, dir string, n int) (accuracy, loss float64, err error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := builtin.Load(b)
	if err != nil {
		return 0, 0, err
	}
	if in := mod.Inputs(); len(in) != 1 || in[0].Name != trainer.InputName || !slices.Equal(in[0].Shape, []int64{-1, 1, 28, 28}) {
		t.Errorf("inputs = %+v, want input [-1 1 28 28]", in)
	}
	if out := mod.Outputs(); len(out) != 3 || out[0].Name != trainer.LogitsName || out[1].Name != trainer.ProbabilitiesName || out[2].Name != trainer.EmbeddingName {
		t.Errorf("outputs = %+v, want logits, probabilities and embedding", out)
	}
	if got := mod.Metadata()[modelrepo.MetadataEmbeddingOutput]; got != trainer.EmbeddingName {
		t.Errorf("embedding metadata %q, want %q", got, trainer.EmbeddingName)
	}
	var classes []string
	if err := json.Unmarshal([]byte(mod.Metadata()[trainer.MetadataClasses]), &classes); err != nil || !slices.Equal(classes, fmnist.ClassNames()) {
		t.Errorf("metadata classes = %q (%v), want Fashion-MNIST's", mod.Metadata()[trainer.MetadataClasses], err)
	}
	right := 0
	// Batches of at most 1000 images: a batch's activations are its size times 50 KiB.
	for start := 0; start < n; start += 1000 {
		rows := min(1000, n-start)
		res, err := mod.Run(context.Background(), []builtin.Tensor{{Shape: []int64{int64(rows), 1, 28, 28},
			Data: f.evalX[start*fmnist.Pixels : (start+rows)*fmnist.Pixels]}})
		if err != nil {
			t.Fatal(err)
		}
		logits, probs := res.Outputs[0].Data, res.Outputs[1].Data
		for r := range rows {
			z, label := logits[r*10:(r+1)*10], int(f.evalY[start+r])
			top := argmax(z)
			if top == label {
				right++
			}
			loss += classify.CrossEntropy(z, label, 1)
			// probabilities is softmax(logits).
			var s float64
			for _, v := range z {
				s += math.Exp(float64(v - z[top]))
			}
			for j, v := range z {
				if p := math.Exp(float64(v-z[top])) / s; math.Abs(p-float64(probs[r*10+j])) > 1e-5 {
					t.Fatalf("image %d class %d: probability %v, softmax of the logits %v", start+r, j, probs[r*10+j], p)
				}
			}
		}
		res.Release()
	}
	return float64(right) / float64(n), loss / float64(n), nil
}

func argmax(z []float32) int {
	top := 0
	for i, v := range z {
		if v > z[top] {
			top = i
		}
	}
	return top
}

// checkModel checks that the built-in runtime scores the model as the job measured it, and
// well above chance (0.1 for ten classes).
func (f *fixture) checkModel(t *testing.T, dir string, m metrics, floor float64) {
	t.Helper()
	acc, loss, err := f.scoreWithBuiltin(t, dir, evalLimit)
	if err != nil {
		t.Fatalf("builtin.Load: %v", err)
	}
	t.Logf("%s: built-in runtime accuracy %.3f loss %.4f on %d test images; the job measured %.3f and %.4f", m.Arch, acc, loss, evalLimit, m.Accuracy, m.Loss)
	// The same images through two implementations: at most a near-tie or two may flip.
	if math.Abs(acc-m.Accuracy) > 2.0/evalLimit || math.Abs(loss-m.Loss) > 1e-3*max(1, m.Loss) {
		t.Errorf("built-in runtime: accuracy %.4f loss %.5f, the job measured %.4f and %.5f", acc, loss, m.Accuracy, m.Loss)
	}
	if acc < floor {
		t.Errorf("accuracy %.3f, want at least %.2f (chance is 0.1)", acc, floor)
	}
}

func checkMetrics(t *testing.T, m metrics, arch string, epochs int) {
	t.Helper()
	if m.Model != "fashion" || m.Arch != arch || m.EvalSplit != "test" || m.EvalSize != evalLimit || m.Epochs != epochs ||
		len(m.History) != epochs || !slices.Equal(m.Classes, fmnist.ClassNames()) || !slices.Equal(m.InputShape, []int{1, 28, 28}) {
		t.Errorf("metrics: model %q arch %q eval_split %q eval_size %d epochs %d history %d classes %v input_shape %v",
			m.Model, m.Arch, m.EvalSplit, m.EvalSize, m.Epochs, len(m.History), m.Classes, m.InputShape)
	}
	for name, h := range m.ConfidenceHistograms {
		var s float64
		for _, v := range h {
			s += v
		}
		if len(h) != trainer.HistogramBins || math.Abs(s-1) > 1e-9 {
			t.Errorf("confidence_histograms[%s] = %v: want %d bins summing to 1", name, h, trainer.HistogramBins)
		}
	}
	if len(m.ConfidenceHistograms) != 3 || !reflect.DeepEqual(m.ConfidenceHistogram, m.ConfidenceHistograms["max_softmax"]) || m.ConfidenceScorer != "max_softmax" {
		t.Errorf("confidence histograms %v, scorer %q", m.ConfidenceHistograms, m.ConfidenceScorer)
	}
	if m.MeanConfidence <= 0 || m.MeanConfidence > 1 || len(m.PerClassAccuracy) == 0 || m.DurationSeconds <= 0 {
		t.Errorf("mean_confidence %v, per_class_accuracy %v, duration %v", m.MeanConfidence, m.PerClassAccuracy, m.DurationSeconds)
	}
	if len(m.Datasets) != 3 || !strings.HasPrefix(m.Datasets[0], "file:///") {
		t.Errorf("datasets = %v, want the Fashion-MNIST directory and two shards", m.Datasets)
	}
}

// commonArgs are the flags of every run: tiny data, one thread, the first evalLimit test images.
func commonArgs(f *fixture, more ...string) []string {
	return append([]string{"--base-data", f.fashionMN, "--train-limit", fmt.Sprint(trainLimit),
		"--eval-limit", fmt.Sprint(evalLimit), "--batch", "32", "--threads", "1"}, more...)
}

// TestJobMLPAndFineTune trains the MLP from scratch on the contract's environment, checks its
// outputs, then fine-tunes it: a second run pointed at the first's output by
// EDGELOOP_BASE_MODEL starts from its weights.
func TestJobMLPAndFineTune(t *testing.T) {
	t.Parallel() // each job uses one thread: two at once fill two cores
	needPython(t, "torch, onnx, numpy")
	f := newFixture(t)
	first := filepath.Join(t.TempDir(), "v1")
	r := runJob(t, map[string]string{
		"EDGELOOP_MODEL": "fashion", "EDGELOOP_BASE_VERSION": "0", "EDGELOOP_DATASET_MANIFEST": f.manifest,
		"EDGELOOP_OUTPUT": first, "EDGELOOP_JOB_ID": "job-1",
	}, commonArgs(f, "--arch", "mlp", "--hidden", "64", "--epochs", "3", "--lr", "0.003")...)
	mustSucceed(t, r)
	if n := strings.Count(r.stderr, `msg="epoch done"`); n != 3 {
		t.Errorf("%d epoch lines on stderr, want 3:\n%s", n, r.stderr)
	}
	m := readMetrics(t, first)
	checkMetrics(t, m, "mlp", 3)
	f.checkSamples(t, m)
	if !slices.Equal(m.Hidden, []int{64}) || m.FineTunedFrom != "" || m.BaseVersion != "0" {
		t.Errorf("hidden %v fine_tuned_from %q base_version %q", m.Hidden, m.FineTunedFrom, m.BaseVersion)
	}
	f.checkModel(t, first, m, 0.5)
	for _, name := range []string{"model.onnx", "metrics.json", "checkpoint.pt"} {
		if _, err := os.Stat(filepath.Join(first, name)); err != nil {
			t.Error(err)
		}
	}

	t.Run("fine-tune", func(t *testing.T) {
		second := filepath.Join(t.TempDir(), "v2")
		r := runJob(t, map[string]string{"EDGELOOP_DATASET_MANIFEST": f.manifest, "EDGELOOP_OUTPUT": second,
			"EDGELOOP_BASE_MODEL": first, "EDGELOOP_BASE_VERSION": "1"},
			commonArgs(f, "--epochs", "1", "--lr", "0.0005")...) // arch and widths from the checkpoint
		mustSucceed(t, r)
		m2 := readMetrics(t, second)
		checkMetrics(t, m2, "mlp", 1)
		scratch, parent, tuned := m.History[0].TrainLoss, m.TrainLoss, m2.History[0].TrainLoss
		t.Logf("first-epoch training loss: %.4f from scratch, %.4f fine-tuned from the first run's checkpoint (whose last epoch had %.4f)", scratch, tuned, parent)
		if m2.FineTunedFrom != first || !slices.Equal(m2.Hidden, []int{64}) {
			t.Errorf("fine_tuned_from %q hidden %v, want %q and the parent's [64]", m2.FineTunedFrom, m2.Hidden, first)
		}
		// A fine-tune starts where its parent ended; a scratch run starts at ln 10 = 2.3.
		if tuned > 0.6*scratch || tuned > 1.25*parent {
			t.Errorf("fine-tuned first-epoch loss %.4f is not far below the scratch run's %.4f, near the parent's last %.4f: did it start from the parent?", tuned, scratch, parent)
		}
		f.checkModel(t, second, m2, 0.5)
	})

	t.Run("mismatched checkpoint", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "v2")
		r := runJob(t, map[string]string{"EDGELOOP_OUTPUT": out, "EDGELOOP_BASE_MODEL": first},
			commonArgs(f, "--arch", "cnn", "--epochs", "1")...)
		if r.code != 1 || !strings.Contains(r.stderr, "checkpoint does not fit: arch 'mlp', asked for 'cnn'") {
			t.Fatalf("exit %d, want 1 with the mismatch named:\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(out, "model.onnx")); !os.IsNotExist(err) {
			t.Errorf("a failed job left model.onnx: %v", err)
		}
	})
}

// TestJobCNN trains the two convolutional architectures and runs them in the built-in runtime.
func TestJobCNN(t *testing.T) {
	t.Parallel() // each job uses one thread: two at once fill two cores
	needPython(t, "torch, onnx, numpy")
	f := newFixture(t)
	for _, tc := range []struct {
		arch   string
		epochs int
		floor  float64
	}{
		{"cnn", 2, 0.5},
		// A MobileNet learns more slowly from 500 images (0.39 after one epoch).
		{"mobilenet", 1, 0.25},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			r := runJob(t, map[string]string{"EDGELOOP_DATASET_MANIFEST": f.manifest, "EDGELOOP_OUTPUT": out},
				commonArgs(f, "--arch", tc.arch, "--epochs", fmt.Sprint(tc.epochs), "--lr", "0.003")...)
			mustSucceed(t, r)
			m := readMetrics(t, out)
			checkMetrics(t, m, tc.arch, tc.epochs)
			f.checkSamples(t, m)
			if _, _, err := f.scoreWithBuiltin(t, out, evalLimit); errors.Is(err, builtin.ErrUnsupported) {
				t.Skipf("the built-in runtime does not run the exported %s yet: %v", tc.arch, err)
			}
			f.checkModel(t, out, m, tc.floor)
		})
	}
}

// TestJobRGBShards trains on shards alone (no Fashion-MNIST): 3×16×16 images of three colour
// classes labelled by name. The input shape and the classes come from the data, the evaluation
// split is a fraction, and the built-in runtime runs the model on [batch, 3, 16, 16].
func TestJobRGBShards(t *testing.T) {
	t.Parallel()
	needPython(t, "torch, onnx, numpy")
	rng := rand.New(rand.NewPCG(3, 16))
	names := []string{"red", "green", "blue"} // the job sorts them: blue, green, red
	var samples []*sample.Sample
	var inputs []float32
	var labels []int
	for i := range 240 {
		c := i % 3
		img := make([]float32, 3*16*16)
		for j := range img {
			img[j] = 0.3 * rng.Float32()
			if j/256 == c { // the class's channel is the bright one
				img[j] += 0.5
			}
		}
		samples = append(samples, captured(t, i, "edge-0001", npyBytes(t, []int{3, 16, 16}, img), []int64{3, 16, 16}, sample.NameLabel(names[c])))
		inputs = append(inputs, img...)
		labels = append(labels, 2-c) // index in the sorted names
	}
	dir := t.TempDir()
	var b bytes.Buffer
	if err := sample.WriteTar(&b, samples); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rgb.tar"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	mustSucceed(t, runJob(t, map[string]string{"EDGELOOP_OUTPUT": out}, "--base-data", "none", "--samples", filepath.Join(dir, "rgb.tar"),
		"--arch", "cnn", "--width", "8", "--epochs", "3", "--batch", "16", "--lr", "0.01", "--eval-split", "0.2"))
	m := readMetrics(t, out)
	if !slices.Equal(m.Classes, []string{"blue", "green", "red"}) || !slices.Equal(m.InputShape, []int{3, 16, 16}) || m.EvalSplit != "0.2" ||
		m.Samples.Labelled != 240 || m.TrainSize+m.EvalSize != 240-m.Samples.HeldOut {
		t.Errorf("classes %v input_shape %v eval_split %q samples %+v train %d eval %d", m.Classes, m.InputShape, m.EvalSplit, m.Samples, m.TrainSize, m.EvalSize)
	}
	data, err := os.ReadFile(filepath.Join(out, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := builtin.Load(data)
	if err != nil {
		t.Fatalf("builtin.Load: %v", err)
	}
	if in := mod.Inputs()[0]; !slices.Equal(in.Shape, []int64{-1, 3, 16, 16}) {
		t.Errorf("input shape %v, want [-1 3 16 16]", in.Shape)
	}
	res, err := mod.Run(context.Background(), []builtin.Tensor{{Shape: []int64{240, 3, 16, 16}, Data: inputs}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	right := 0
	for i, y := range labels {
		if argmax(res.Outputs[0].Data[i*3:(i+1)*3]) == y {
			right++
		}
	}
	t.Logf("built-in runtime: %d of 240 right; the job measured %.3f on its %d evaluation images", right, m.Accuracy, m.EvalSize)
	if right < 200 {
		t.Errorf("%d of 240 right, want at least 200 (chance: 80)", right)
	}
}

// TestJobFullFashionMNIST trains the defaults (cnn, 5 epochs of the 60,000 training images)
// and scores the model on the 10,000 test images in the built-in runtime. It takes most of an
// hour on two shared cores, so it runs only with EDGELOOP_FULL_TRAIN=1 (as trainers/go's);
// EDGELOOP_FULL_TRAIN_OUT names a directory to keep the outputs in, or to check without
// training when it holds them already.
func TestJobFullFashionMNIST(t *testing.T) {
	if os.Getenv("EDGELOOP_FULL_TRAIN") != "1" {
		t.Skip("EDGELOOP_FULL_TRAIN=1 runs the full training (most of an hour on two cores)")
	}
	needPython(t, "torch, onnx, numpy")
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	out := os.Getenv("EDGELOOP_FULL_TRAIN_OUT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "out")
	}
	if _, err := os.Stat(filepath.Join(out, "metrics.json")); err != nil {
		mustSucceed(t, runJob(t, map[string]string{"EDGELOOP_OUTPUT": out}, "--base-data", dir, "--threads", "2"))
	}
	m := readMetrics(t, out)
	test, err := fmnist.Load(dir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{evalX: test.Images, evalY: test.Labels}
	acc, loss, err := f.scoreWithBuiltin(t, out, test.Len())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s, %d epochs in %.0fs: the job measured accuracy %.4f loss %.4f on %d test images; the built-in runtime %.4f and %.4f",
		m.Arch, m.Epochs, m.DurationSeconds, m.Accuracy, m.Loss, m.EvalSize, acc, loss)
	if m.EvalSize != test.Len() || math.Abs(acc-m.Accuracy) > 2.0/float64(test.Len()) || math.Abs(loss-m.Loss) > 1e-3*max(1, m.Loss) {
		t.Errorf("the built-in runtime disagrees with the job")
	}
	if acc < 0.9 {
		t.Errorf("accuracy %.4f, want at least 0.90 (the Go MLP reaches 0.8965)", acc)
	}
}

// TestJobDeterministic trains twice with the same settings and data and requires the same
// model.onnx, byte for byte.
func TestJobDeterministic(t *testing.T) {
	t.Parallel() // each job uses one thread: two at once fill two cores
	needPython(t, "torch, onnx, numpy")
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	var models [2][]byte
	for i := range models {
		out := filepath.Join(t.TempDir(), "out")
		mustSucceed(t, runJob(t, map[string]string{"EDGELOOP_OUTPUT": out}, "--base-data", dir, "--train-limit", "200",
			"--eval-limit", "100", "--batch", "32", "--epochs", "1", "--arch", "cnn", "--seed", "7"))
		var err error
		if models[i], err = os.ReadFile(filepath.Join(out, "model.onnx")); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(models[0], models[1]) {
		t.Fatalf("two runs with the same settings wrote different models (%d and %d bytes)", len(models[0]), len(models[1]))
	}
}

func TestJobFlags(t *testing.T) {
	needPython(t, "torch, onnx, numpy")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no output", nil, nil, 2, "out: required (or EDGELOOP_OUTPUT)"},
		{"bad epochs", map[string]string{"EDGELOOP_OUTPUT": t.TempDir()}, []string{"--epochs", "0"}, 2, "epochs: must be between 1 and 10000, got 0"},
		{"unknown flag", map[string]string{"EDGELOOP_OUTPUT": t.TempDir()}, []string{"--epoch", "3"}, 2, "unrecognized arguments: --epoch 3"},
		{"bad arch", map[string]string{"EDGELOOP_OUTPUT": t.TempDir()}, []string{"--arch", "resnet"}, 2, "invalid choice: 'resnet'"},
		{"bad model name", map[string]string{"EDGELOOP_OUTPUT": t.TempDir(), "EDGELOOP_MODEL": "a/b"}, nil, 2, `model: must be letters, digits, '.', '_' or '-', got 'a/b'`},
		{"missing manifest", map[string]string{"EDGELOOP_OUTPUT": t.TempDir(), "EDGELOOP_DATASET_MANIFEST": "/nonexistent/dataset.json"},
			[]string{"--base-data", "none"}, 1, "read manifest /nonexistent/dataset.json"},
		{"remote manifest scheme", map[string]string{"EDGELOOP_OUTPUT": t.TempDir(), "EDGELOOP_DATASET_MANIFEST": "gs://b/dataset.json"},
			[]string{"--base-data", "none"}, 1, "only s3:// object URLs are supported"},
		{"missing base model", map[string]string{"EDGELOOP_OUTPUT": t.TempDir(), "EDGELOOP_BASE_MODEL": "/nonexistent/v3"},
			[]string{"--base-data", "none"}, 1, "base model /nonexistent/v3: not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runJob(t, tc.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", r.code, tc.code, tc.want, r.stderr)
			}
		})
	}
}

// TestHeldOutAgreesWithGo checks that the job splits captured samples exactly as
// internal/dataset does (the evaluation gate's side never trained on): the same content key of
// the same values, and the same HeldOut decision for content keys and for any other string.
func TestHeldOutAgreesWithGo(t *testing.T) {
	needPython(t, "numpy")
	rng := rand.New(rand.NewPCG(13, 13))
	var keys []string
	for range 3000 {
		keys = append(keys, fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()))
	}
	keys = append(keys, "", "0", "abc", "0000000000000000", "000000000000000a", "FFFFFFFFFFFFFFFF00", "g000000000000000",
		"ffffffffffffffff", "ünïcödé-ключ", "edge-0001/1234", "0123456789abcdeF0123")
	for range 500 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(32 + rng.IntN(95))
		}
		keys = append(keys, string(b))
	}
	// Arrays as float32 bit patterns, so JSON cannot round them: special values included.
	var arrays [][]uint32
	specials := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.SmallestNonzeroFloat32, math.MaxFloat32, 1.0 / 255, 0.1}
	for i := range 300 {
		a := make([]uint32, 1+rng.IntN(900))
		for j := range a {
			v := rng.Float32()
			if j%7 == 0 {
				v = specials[(i+j)%len(specials)]
			}
			a[j] = math.Float32bits(v)
		}
		arrays = append(arrays, a)
	}
	in, _ := json.Marshal(map[string]any{"keys": keys, "arrays": arrays})
	script := `
import json, sys
import numpy as np
from edgeloop_pytorch import data
req = json.load(sys.stdin)
cks = [data.content_key(np.array(a, dtype=np.uint32).view(np.float32)) for a in req["arrays"]]
json.dump({"held_out": [data.held_out(k) for k in req["keys"]], "content_keys": cks,
           "content_held_out": [data.held_out(k) for k in cks]}, sys.stdout)
`
	cmd := exec.Command(python, "-B", "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	var got struct {
		HeldOut        []bool   `json:"held_out"`
		ContentKeys    []string `json:"content_keys"`
		ContentHeldOut []bool   `json:"content_held_out"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.HeldOut) != len(keys) || len(got.ContentKeys) != len(arrays) {
		t.Fatalf("python answered %d and %d, want %d and %d", len(got.HeldOut), len(got.ContentKeys), len(keys), len(arrays))
	}
	held := 0
	for i, k := range keys {
		if want := dataset.HeldOut(k); got.HeldOut[i] != want {
			t.Errorf("HeldOut(%q): python %t, Go %t", k, got.HeldOut[i], want)
		}
		if got.HeldOut[i] {
			held++
		}
	}
	for i, a := range arrays {
		v := make([]float32, len(a))
		for j, b := range a {
			v[j] = math.Float32frombits(b)
		}
		want := dataset.ContentKey(v)
		if got.ContentKeys[i] != want || got.ContentHeldOut[i] != dataset.HeldOut(want) {
			t.Errorf("array %d: python content key %s (held out %t), Go %s (%t)", i, got.ContentKeys[i], got.ContentHeldOut[i], want, dataset.HeldOut(want))
		}
	}
	t.Logf("%d keys (%d held out) and %d arrays agree", len(keys), held, len(arrays))
	if held < len(keys)/20 || held > len(keys)/5 {
		t.Errorf("%d of %d keys held out, want about 1 in 10", held, len(keys))
	}
}
