package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fashionDir returns the Fashion-MNIST directory, or skips (fails in CI) when it is missing.
func fashionDir(t testing.TB) string {
	t.Helper()
	return testenv.FashionMNIST(t, fmnist.DefaultDir)
}

// realData is Fashion-MNIST, loaded once for all the tests of the package that need it.
var realData fashion

// fashion holds the real data set.
type fashion struct {
	once        sync.Once
	train, test *fmnist.Dataset
	err         error
}

func (f *fashion) load(t *testing.T) (train, test *fmnist.Dataset) {
	t.Helper()
	dir := fashionDir(t)
	f.once.Do(func() {
		if f.train, f.err = fmnist.Load(dir, fmnist.Train); f.err == nil {
			f.test, f.err = fmnist.Load(dir, fmnist.Test)
		}
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.train, f.test
}

// smallConfig is a run that takes well under a second: a subset, small layers, one epoch.
func smallConfig() Config {
	c := DefaultConfig()
	c.Hidden = []int{32}
	c.Epochs = 1
	c.BatchSize = 64
	c.TrainLimit = 10000
	return c
}

// examples holds Fashion-MNIST images as the trainer's Examples.
func examples(ds *fmnist.Dataset) *Examples {
	e := &Examples{Inputs: ds.Images, Labels: make([]int, ds.Len()), Width: fmnist.Pixels}
	for i, l := range ds.Labels {
		e.Labels[i] = int(l)
	}
	return e
}

// smallData is the first n training images and the whole test set.
func smallData(t *testing.T, n int) *Data {
	train, test := realData.load(t)
	return &Data{
		Train:   examples(&fmnist.Dataset{Images: train.Images[:n*fmnist.Pixels], Labels: train.Labels[:n]}),
		Eval:    examples(test),
		Classes: fmnist.ClassNames(),
		Shape:   []int64{fmnist.Pixels},
	}
}

func TestTrainBeatsChance(t *testing.T) {
	cfg := smallConfig()
	res, err := Train(context.Background(), cfg, smallData(t, cfg.TrainLimit), discard())
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics
	// Chance is 0.10; one epoch over 10,000 images with 32 hidden units reaches about 0.80.
	if m.Accuracy < 0.70 {
		t.Errorf("accuracy %.4f after one small epoch, want ≥ 0.70", m.Accuracy)
	}
	if len(m.History) != 1 || m.History[0].EvalAccuracy != m.Accuracy || m.TrainSize != 10000 || m.EvalSize != fmnist.TestSize {
		t.Errorf("history %+v, sizes %d/%d", m.History, m.TrainSize, m.EvalSize)
	}
	if !(m.Loss > 0 && m.Loss < math.Log(10)) {
		t.Errorf("eval loss %v, want in (0, ln 10)", m.Loss)
	}
	// The test set has 1,000 images per class, so accuracy is the mean per-class accuracy.
	var mean float64
	for _, name := range fmnist.ClassNames() {
		acc, ok := m.PerClassAccuracy[name]
		if !ok || acc < 0 || acc > 1 {
			t.Errorf("per-class accuracy of %q: %v, %v", name, acc, ok)
		}
		mean += acc / fmnist.NumClasses
	}
	if math.Abs(mean-m.Accuracy) > 1e-9 {
		t.Errorf("mean per-class accuracy %v, accuracy %v", mean, m.Accuracy)
	}
	for name, h := range m.ConfidenceHistograms {
		var sum float64
		for _, p := range h {
			sum += p
		}
		if len(h) != HistogramBins || math.Abs(sum-1) > 1e-9 {
			t.Errorf("%s histogram %v: %d bins summing to %v", name, h, len(h), sum)
		}
	}
	if h := m.ConfidenceHistogram; h[0] != 0 || !slices.Equal(h, m.ConfidenceHistograms["max_softmax"]) {
		t.Errorf("max_softmax histogram %v: the top-1 probability of 10 classes is ≥ 0.1, so bin 0 must be empty", h)
	}
	if m.ConfidenceScorer != "max_softmax" || !(m.MeanConfidence > 0.1 && m.MeanConfidence < 1) {
		t.Errorf("scorer %q, mean confidence %v", m.ConfidenceScorer, m.MeanConfidence)
	}
}

// weights flattens every parameter of net, for exact comparison.
func weights(net *Network) []float32 {
	var w []float32
	for _, l := range net.Layers {
		w = append(append(w, l.W...), l.B...)
	}
	return w
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func TestDeterministic(t *testing.T) {
	data := smallData(t, 3000) // 46 full batches of 64 and one of 56
	train := func(seed uint64, workers int) []float32 {
		t.Helper()
		cfg := DefaultConfig()
		cfg.Hidden, cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Workers = []int{16, 8}, 2, 64, seed, workers
		res, err := Train(context.Background(), cfg, data, discard())
		if err != nil {
			t.Fatal(err)
		}
		return weights(res.Network)
	}
	a, b, c := train(7, 2), train(7, 2), train(7, 1)
	if !sameBits(a, b) {
		t.Error("two runs with the same seed gave different weights")
	}
	if !sameBits(a, c) {
		t.Error("one worker and two workers gave different weights")
	}
	if sameBits(a, train(8, 2)) {
		t.Error("another seed gave the same weights")
	}
}

func TestPredict(t *testing.T) {
	// y = W2·relu(W1·x + b1) + b2 by hand: W1 = [[1, -1], [2, 0]], b1 = [0, -1], W2 = [[1, 1], [-1, 0.5]], b2 = [0.5, 0].
	net := &Network{Layers: []Layer{
		{In: 2, Out: 2, W: []float32{1, -1, 2, 0}, B: []float32{0, -1}},
		{In: 2, Out: 2, W: []float32{1, 1, -1, 0.5}, B: []float32{0.5, 0}},
	}}
	// x = (3, 1): h = relu(2, 5) = (2, 5), y = (7.5, 0.5). x = (0, 2): h = relu(-2, -1) = 0, y = (0.5, 0).
	got, err := Predict(net, []float32{3, 1, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{7.5, 0.5, 0.5, 0}; !slices.Equal(got, want) {
		t.Errorf("Predict = %v, want %v", got, want)
	}
	if _, err := Predict(net, []float32{1, 2, 3}); err == nil {
		t.Error("Predict accepted 3 values for 2-value images")
	}
}

func TestKernelsMatchPredict(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	net, err := NewNetwork([]int{50, 40, 30, 5}, rng)
	if err != nil {
		t.Fatal(err)
	}
	rows := 7
	x := make([]float32, rows*50)
	for i := range x {
		x[i] = rng.Float32()
	}
	want, err := Predict(net, x)
	if err != nil {
		t.Fatal(err)
	}
	acts := [][]float32{x}
	for i, l := range net.Layers {
		acts = append(acts, make([]float32, rows*l.Out))
		forward(&net.Layers[i], acts[i], acts[i+1], rows, 3, i < len(net.Layers)-1)
	}
	for i, g := range acts[len(acts)-1] {
		if math.Abs(float64(g-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: kernels %v, Predict %v", i, g, want[i])
		}
	}
}

// TestGradients checks backpropagation against central finite differences of the mean loss.
func TestGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	net, err := NewNetwork([]int{6, 5, 4, 3}, rng)
	if err != nil {
		t.Fatal(err)
	}
	ds := &Examples{Labels: []int{0, 2, 1, 2}, Width: 6}
	for range 4 * 6 {
		ds.Inputs = append(ds.Inputs, rng.Float32())
	}
	idx := []int{0, 1, 2, 3}
	st := newTrainState(net, len(idx), 2)
	st.gradients(ds, idx)
	meanLoss := func() float64 {
		logits, err := Predict(net, ds.Inputs)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for r, l := range ds.Labels {
			s += classify.CrossEntropy(logits[r*3:(r+1)*3], l, 1)
		}
		return s / float64(len(ds.Labels))
	}
	const eps = 1e-2
	for li, l := range net.Layers {
		params := map[string][2][]float32{"W": {l.W, st.gw[li]}, "B": {l.B, st.gb[li]}}
		for name, pg := range params {
			for i := range pg[0] {
				orig := pg[0][i]
				pg[0][i] = orig + eps
				up := meanLoss()
				pg[0][i] = orig - eps
				down := meanLoss()
				pg[0][i] = orig
				num := (up - down) / (2 * eps)
				if got := float64(pg[1][i]); math.Abs(got-num) > 2e-3+1e-2*math.Abs(num) {
					t.Errorf("layer %d %s[%d]: backprop %v, finite differences %v", li, name, i, got, num)
				}
			}
		}
	}
}

func TestRunWritesModelAndMetrics(t *testing.T) {
	fashionDir(t)
	_, test := realData.load(t)
	cfg := smallConfig()
	cfg.Hidden = []int{24, 12}
	cfg.Model, cfg.BaseVersion = "fashion-small", "3"
	out := filepath.Join(t.TempDir(), "job", "out")
	res, err := Run(context.Background(), cfg, out, discard())
	if err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(filepath.Join(out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.IRVersion != 8 || len(m.Opsets) != 1 || m.Opsets[0] != (onnx.Opset{Version: 13}) {
		t.Errorf("ir_version %d, opsets %v; want 8 and ai.onnx 13", m.IRVersion, m.Opsets)
	}
	var ops []string
	for _, n := range m.Graph.Nodes {
		ops = append(ops, n.OpType)
	}
	if want := []string{"Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"}; !slices.Equal(ops, want) {
		t.Errorf("nodes %v, want %v", ops, want)
	}
	batch := onnx.Dim{Value: -1, Param: "batch"}
	wantIn := []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: 784}}}}
	wantOut := []onnx.ValueInfo{
		{Name: "logits", ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: 10}}},
		{Name: "probabilities", ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: 10}}},
		{Name: "embedding", ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: 12}}}, // the last hidden layer's Relu
	}
	if !slices.EqualFunc(m.Graph.Inputs, wantIn, valueInfoEqual) || !slices.EqualFunc(m.Graph.Outputs, wantOut, valueInfoEqual) {
		t.Errorf("inputs %+v, outputs %+v", m.Graph.Inputs, m.Graph.Outputs)
	}
	if m.Metadata["edgeloop.model"] != "fashion-small" || m.Metadata["edgeloop.base_version"] != "3" {
		t.Errorf("metadata %v", m.Metadata)
	}
	net, classes, err := FromONNX(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(classes, fmnist.ClassNames()) {
		t.Errorf("classes %q", classes)
	}
	if !sameBits(weights(net), weights(res.Network)) || len(net.Layers) != 3 {
		t.Error("the weights in model.onnx differ from the trained ones")
	}

	data, err = os.ReadFile(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var metrics map[string]any
	if err := json.Unmarshal(data, &metrics); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"accuracy", "per_class_accuracy", "loss", "confidence_histogram", "confidence_scorer",
		"confidence_histograms", "classes", "epochs", "seed", "train_size", "eval_size", "duration_seconds", "history", "samples", "datasets"} {
		if _, ok := metrics[key]; !ok {
			t.Errorf("metrics.json has no %q", key)
		}
	}
	var got Metrics
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Model != "fashion-small" || got.BaseVersion != "3" || got.Epochs != 1 || got.Seed != 1 || got.TrainSize != 10000 {
		t.Errorf("metrics.json settings: %+v", got)
	}

	// Recompute accuracy and the reference histogram from model.onnx's weights with the
	// reference forward pass. Predict sums in float64 and the kernels in float32, so a
	// prediction whose top two logits are within rounding may flip: allow 0.05%.
	logits, err := Predict(net, test.Images)
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	hist := make([]float64, HistogramBins)
	for i, l := range test.Labels {
		s, err := classify.Score(logits[i*10:(i+1)*10], classify.Logits)
		if err != nil {
			t.Fatal(err)
		}
		if s.Class == int(l) {
			right++
		}
		hist[classify.HistogramBin(s.MaxSoftmax, HistogramBins)] += 1.0 / float64(test.Len())
	}
	if acc := float64(right) / float64(test.Len()); math.Abs(acc-got.Accuracy) > 0.0005 {
		t.Errorf("accuracy recomputed from model.onnx %.4f, metrics.json says %.4f", acc, got.Accuracy)
	}
	for b := range hist {
		if math.Abs(hist[b]-got.ConfidenceHistogram[b]) > 0.0005 {
			t.Errorf("histogram recomputed from model.onnx %v, metrics.json says %v", hist, got.ConfidenceHistogram)
			break
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("output directory holds %d entries, want model.onnx and metrics.json only (no temporary files)", len(entries))
	}
}

func valueInfoEqual(a, b onnx.ValueInfo) bool {
	return a.Name == b.Name && a.ElemType == b.ElemType && slices.Equal(a.Shape, b.Shape)
}

func TestTrainStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Train(ctx, smallConfig(), smallData(t, 1000), discard())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Train with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		edit func(c *Config)
		want string
	}{
		{func(c *Config) { c.DataDir = "" }, "data: must name"},
		{func(c *Config) { c.Hidden = []int{256, 0} }, "hidden: widths must be between 1 and 8192"},
		{func(c *Config) { c.Hidden = make([]int, 9) }, "hidden: at most 8 hidden layers"},
		{func(c *Config) { c.Epochs = 0 }, "epochs: must be between 1 and 10000"},
		{func(c *Config) { c.BatchSize = 0 }, "batch: must be between 1"},
		{func(c *Config) { c.LearningRate = math.NaN() }, "lr: must be in (0, 1]"},
		{func(c *Config) { c.LearningRate = 2 }, "lr: must be in (0, 1]"},
		{func(c *Config) { c.EvalSplit = "validation" }, `eval-split: must be "test" or a fraction`},
		{func(c *Config) { c.EvalSplit = "0.9" }, "eval-split"},
		{func(c *Config) { c.EvalSplit = "0" }, "eval-split"},
		{func(c *Config) { c.TrainLimit = -1 }, "train-limit: must not be negative"},
		{func(c *Config) { c.Workers = -1 }, "workers: must be between 0"},
		{func(c *Config) { c.Model = "../etc" }, `model: must be 1-128 letters`},
		{func(c *Config) { c.Model = "" }, `model: must be 1-128 letters`},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
		}
	}
	c := DefaultConfig()
	c.EvalSplit, c.Model = "0.1", "fashion_v2.b-1"
	if err := c.Validate(); err != nil {
		t.Errorf("a held-out fraction and a model name with . _ -: %v", err)
	}
}

// TestTrainReachesBaseline is the full reference run: default settings on all of
// Fashion-MNIST, judged against the scikit-learn MLPClassifier baselines (about 0.87–0.88).
// It takes about half a minute on two cores, so it runs only when EDGELOOP_FULL_TRAIN=1.
func TestTrainReachesBaseline(t *testing.T) {
	if os.Getenv("EDGELOOP_FULL_TRAIN") != "1" {
		t.Skip("set EDGELOOP_FULL_TRAIN=1 to run the full training (about 30 s on two cores)")
	}
	fashionDir(t)
	res, err := Run(context.Background(), DefaultConfig(), t.TempDir(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accuracy %.4f, loss %.4f, %d epochs in %.1f s", res.Metrics.Accuracy, res.Metrics.Loss, res.Metrics.Epochs, res.Metrics.DurationSeconds)
	if res.Metrics.Accuracy < 0.87 {
		t.Errorf("test accuracy %.4f, want ≥ 0.87", res.Metrics.Accuracy)
	}
}

// BenchmarkStep is one optimiser step of the reference network (784→256→128→10, batch 128) on
// random images, with one and with two workers.
func BenchmarkStep(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	ds := &Examples{Inputs: make([]float32, 128*fmnist.Pixels), Labels: make([]int, 128), Width: fmnist.Pixels}
	for i := range ds.Inputs {
		if rng.IntN(2) == 0 { // about half the pixels of a Fashion-MNIST image are 0
			ds.Inputs[i] = rng.Float32()
		}
	}
	for i := range ds.Labels {
		ds.Labels[i] = rng.IntN(10)
	}
	idx := make([]int, 128)
	for i := range idx {
		idx[i] = i
	}
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			net, err := NewNetwork([]int{784, 256, 128, 10}, rng)
			if err != nil {
				b.Fatal(err)
			}
			st := newTrainState(net, 128, workers)
			for b.Loop() {
				st.step1(ds, idx, 1e-3)
			}
		})
	}
}
