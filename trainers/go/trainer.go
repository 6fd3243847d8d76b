// Package trainer is edgeloop's reference training job (`edgeloop train`): it trains a
// multilayer perceptron classifier in pure Go on a base dataset named by flag (IDX image files,
// Fashion-MNIST by default, or the shards alone) plus, optionally, the labelled samples the
// collector gathered, and writes model.onnx and metrics.json as the job contract
// (docs/architecture.md) asks. The input shape and the classes come from the data, never from
// code. docs/trainer.md describes the job, its flags and its outputs.
//
// Training is deterministic: the same Config and data give bit-for-bit the same weights, for
// any number of workers. Each kernel hands every output element to exactly one worker and
// sums in a fixed order, and all randomness (initialisation, shuffling, held-out split) comes
// from one PCG stream seeded by Config.Seed.
package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Config is one training run. Field names in errors are the `edgeloop train` flag names.
type Config struct {
	// DataDir holds the base dataset's IDX files (default fmnist.DefaultDir, Fashion-MNIST):
	// train-{images-idx3,labels-idx1}-ubyte and t10k-..., gzipped or not, of images of any one
	// size. Empty: the base dataset is the shards alone (Samples and Manifest).
	DataDir string
	// Classes names the classes in label order. Optional with IDX images of Fashion-MNIST's
	// format (28×28, labels 0 to 9), which then get Fashion-MNIST's names; required otherwise
	// and with shards alone (docs/trainer.md).
	Classes []string
	// Samples are WebDataset shard files (.tar, .tar.gz) or directories of them whose labelled
	// samples are added to the training data.
	Samples []string
	// Manifest is a dataset manifest file listing more shards and label files (docs/trainer.md).
	Manifest string
	// SamplesRepeat is how many times each labelled collected sample joins the training data
	// (oversampling): a few hundred samples of a shifted distribution weigh little against
	// tens of thousands of IDX images otherwise. Default 1.
	SamplesRepeat int
	// Hidden are the widths of the hidden layers (default 256, 128).
	Hidden []int
	// Epochs is the number of passes over the training data.
	Epochs int
	// BatchSize is the number of images per optimiser step.
	BatchSize int
	// LearningRate is Adam's initial step size; it decays to zero along a cosine over the run.
	LearningRate float64
	// Seed drives initialisation, shuffling and the held-out split.
	Seed uint64
	// EvalSplit is what the model is evaluated on: "test" (the IDX test split; with shards
	// alone, the held-out side of the samples) or a fraction such as "0.1" of the training data
	// held out.
	EvalSplit string
	// TrainLimit, when positive, uses only the first TrainLimit IDX training images.
	TrainLimit int
	// Workers is the number of goroutines the kernels use; 0 means GOMAXPROCS.
	Workers int
	// Model names the model (metadata and metrics only).
	Model string
	// BaseVersion is the version this run retrains (metadata and metrics only).
	BaseVersion string
	// Init, when set, is the network training starts from (a fine-tune) instead of a random
	// one: Train copies it and never changes it; its widths must be the data's and Hidden's.
	// No flag sets it: it serves programs that train in-process, such as bench/sampling.
	Init *Network
}

// DefaultConfig returns the reference settings: Fashion-MNIST, 784→256→128→10, 15 epochs of
// Adam on batches of 128 with a cosine-decayed learning rate from 0.001, evaluated on the test
// set.
func DefaultConfig() Config {
	return Config{
		DataDir:       fmnist.DefaultDir,
		Hidden:        []int{256, 128},
		Epochs:        15,
		BatchSize:     128,
		LearningRate:  1e-3,
		Seed:          1,
		EvalSplit:     "test",
		Model:         "fashion",
		SamplesRepeat: 1,
	}
}

// Limits of the settings: generous for an MLP on 784 inputs, tight enough that a typo does not
// ask for terabytes.
const (
	maxHiddenLayers = 8
	maxWidth        = 8192
	maxEpochs       = 10000
	maxBatch        = 65536
	maxWorkers      = 1024
)

// maxSamplesRepeat bounds SamplesRepeat: beyond it the collected samples drown the base dataset.
const maxSamplesRepeat = 100

// Validate checks every setting and names the offending flag.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		if len(c.Classes) == 0 {
			errs = append(errs, config.Errorf("classes", "required when the base dataset is the shards alone (no --data)"))
		}
		if len(c.Samples) == 0 && c.Manifest == "" {
			errs = append(errs, config.Errorf("data", "must name the IDX directory, or --samples or --dataset-manifest name the shards to train on"))
		}
	}
	if len(c.Classes) > 0 {
		if err := (dataset.Spec{Shape: []int64{1}, Datatype: dataset.DatatypeFP32, Classes: c.Classes}).Validate(); err != nil {
			errs = append(errs, config.Errorf("classes", "%v", err))
		}
	}
	if len(c.Hidden) > maxHiddenLayers {
		errs = append(errs, config.Errorf("hidden", "at most %d hidden layers, got %d", maxHiddenLayers, len(c.Hidden)))
	}
	for _, h := range c.Hidden {
		if h < 1 || h > maxWidth {
			errs = append(errs, config.Errorf("hidden", "widths must be between 1 and %d, got %v", maxWidth, c.Hidden))
			break
		}
	}
	if c.Epochs < 1 || c.Epochs > maxEpochs {
		errs = append(errs, config.Errorf("epochs", "must be between 1 and %d, got %d", maxEpochs, c.Epochs))
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatch {
		errs = append(errs, config.Errorf("batch", "must be between 1 and %d, got %d", maxBatch, c.BatchSize))
	}
	if !(c.LearningRate > 0 && c.LearningRate <= 1) {
		errs = append(errs, config.Errorf("lr", "must be in (0, 1], got %v", c.LearningRate))
	}
	if _, err := c.holdout(); err != nil {
		errs = append(errs, config.Errorf("eval-split", "%v", err))
	}
	if c.SamplesRepeat < 1 || c.SamplesRepeat > maxSamplesRepeat {
		errs = append(errs, config.Errorf("samples-repeat", "must be between 1 and %d, got %d", maxSamplesRepeat, c.SamplesRepeat))
	}
	if c.TrainLimit < 0 {
		errs = append(errs, config.Errorf("train-limit", "must not be negative, got %d", c.TrainLimit))
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		errs = append(errs, config.Errorf("workers", "must be between 0 (GOMAXPROCS) and %d, got %d", maxWorkers, c.Workers))
	}
	// The sample format's name rule: the model's name goes into metrics.json, the ONNX
	// metadata and, once published, every sample captured from it.
	if !sample.ValidName(c.Model) {
		errs = append(errs, config.Errorf("model", "%s, got %q", sample.NameRule, c.Model))
	}
	return errors.Join(errs...)
}

// holdout is the fraction of training data held out for evaluation, 0 for the test set.
func (c Config) holdout() (float64, error) {
	if c.EvalSplit == "test" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(c.EvalSplit, 64)
	if err != nil || !(f > 0 && f <= 0.5) {
		return 0, fmt.Errorf(`must be "test" or a fraction in (0, 0.5] of the training data, got %q`, c.EvalSplit)
	}
	return f, nil
}

func (c Config) workers() int {
	if c.Workers > 0 {
		return c.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// seedStream separates the trainer's PCG stream from other uses of the same seed.
const seedStream = 0x65646765_6c6f6f70 // "edgeloop"

// EpochStats is one epoch's progress, as logged and kept in Metrics.History.
type EpochStats struct {
	Epoch int `json:"epoch"`
	// TrainLoss and TrainAccuracy are averaged over the epoch's mini-batches, as the weights
	// changed during it.
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	// EvalLoss and EvalAccuracy are measured on the evaluation split at the end of the epoch.
	EvalLoss       float64 `json:"eval_loss"`
	EvalAccuracy   float64 `json:"eval_accuracy"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
}

// Result is a finished training run.
type Result struct {
	Network *Network
	Metrics Metrics
}

// Train trains a network on data as cfg says, logging one line per epoch. It stops early with
// ctx's error when ctx is cancelled.
func Train(ctx context.Context, cfg Config, data *Data, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if data.Train.Len() == 0 || data.Eval.Len() == 0 {
		return nil, fmt.Errorf("train: %d training and %d evaluation images: need some of each", data.Train.Len(), data.Eval.Len())
	}
	if data.Train.Width < 1 || data.Eval.Width != data.Train.Width {
		return nil, fmt.Errorf("train: training inputs of %d values, evaluation inputs of %d: need one width", data.Train.Width, data.Eval.Width)
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.Seed, seedStream))
	sizes := append(append([]int{data.Train.Width}, cfg.Hidden...), len(data.Classes))
	net, err := NewNetwork(sizes, rng)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if cfg.Init != nil {
		if net, err = cfg.Init.copyAs(sizes); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	t := newTrainState(net, cfg.BatchSize, cfg.workers())
	n := data.Train.Len()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	stepsPerEpoch := (n + cfg.BatchSize - 1) / cfg.BatchSize
	total := float64(cfg.Epochs * stepsPerEpoch)
	var history []EpochStats
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var lossSum float64
		correct := 0
		for b := 0; b < n; b += cfg.BatchSize {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("train: stopped in epoch %d: %w", epoch, err)
			}
			idx := order[b:min(b+cfg.BatchSize, n)]
			// Cosine decay: big steps early, fine ones at the end, no schedule to tune.
			lr := cfg.LearningRate * 0.5 * (1 + math.Cos(math.Pi*float64(t.step)/total))
			l, c := t.step1(data.Train, idx, lr)
			lossSum += l
			correct += c
		}
		ev, err := evaluate(net, data.Eval, data.Classes, t.workers)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: %w", epoch, err)
		}
		st := EpochStats{
			Epoch:          epoch,
			TrainLoss:      lossSum / float64(n),
			TrainAccuracy:  float64(correct) / float64(n),
			EvalLoss:       ev.Loss,
			EvalAccuracy:   ev.Accuracy,
			ElapsedSeconds: time.Since(start).Seconds(),
		}
		history = append(history, st)
		logger.Info("epoch done", "epoch", epoch, "of", cfg.Epochs,
			"train_loss", round4(st.TrainLoss), "train_accuracy", round4(st.TrainAccuracy),
			"eval_loss", round4(st.EvalLoss), "eval_accuracy", round4(st.EvalAccuracy),
			"elapsed", time.Since(start).Round(100*time.Millisecond))
	}
	m, err := evaluate(net, data.Eval, data.Classes, t.workers)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	last := history[len(history)-1]
	m.Model, m.BaseVersion = cfg.Model, cfg.BaseVersion
	m.EvalSplit, m.TrainSize, m.EvalSize, m.Samples, m.Datasets = cfg.EvalSplit, data.Train.Len(), data.Eval.Len(), data.Samples, data.Sources
	m.InputShape, m.RejectedByReason = data.Shape, data.Samples.RejectedByReason
	m.Epochs, m.Seed, m.Hidden, m.BatchSize, m.LearningRate = cfg.Epochs, cfg.Seed, cfg.Hidden, cfg.BatchSize, cfg.LearningRate
	m.TrainLoss, m.TrainAccuracy, m.History = last.TrainLoss, last.TrainAccuracy, history
	m.DurationSeconds = time.Since(start).Seconds()
	return &Result{Network: net, Metrics: m}, nil
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// trainState is the network being trained and every buffer a step needs, allocated once.
type trainState struct {
	net     *Network
	workers int
	step    int         // optimiser steps taken
	acts    [][]float32 // acts[0] the input batch, acts[i] layer i's output (after ReLU)
	deltas  [][]float32 // deltas[i]: ∂loss/∂(layer i's output), same shape as acts[i]
	gw, gb  [][]float32 // gradients per layer
	mw, mb  []adam      // optimiser state per layer
	loss    []float64   // per row of the batch
	hit     []bool      // per row: was the prediction right
}

func newTrainState(net *Network, batch, workers int) *trainState {
	t := &trainState{net: net, workers: workers, loss: make([]float64, batch), hit: make([]bool, batch)}
	t.acts = append(t.acts, make([]float32, batch*net.Inputs()))
	t.deltas = append(t.deltas, nil) // the input needs no delta
	for _, l := range net.Layers {
		t.acts = append(t.acts, make([]float32, batch*l.Out))
		t.deltas = append(t.deltas, make([]float32, batch*l.Out))
		t.gw = append(t.gw, make([]float32, len(l.W)))
		t.gb = append(t.gb, make([]float32, len(l.B)))
		t.mw = append(t.mw, adam{m: make([]float32, len(l.W)), v: make([]float32, len(l.W))})
		t.mb = append(t.mb, adam{m: make([]float32, len(l.B)), v: make([]float32, len(l.B))})
	}
	return t
}

// step1 runs one mini-batch (the images ds[idx]) forward and backward and updates the weights
// with Adam at learning rate lr. It returns the batch's summed loss and correct predictions.
func (t *trainState) step1(ds *Examples, idx []int, lr float64) (float64, int) {
	loss, correct := t.gradients(ds, idx)
	t.update(lr)
	return loss, correct
}

// gradients runs the images ds[idx] forward and backward, leaving the gradient of the batch's
// mean loss in gw and gb. It returns the summed loss and the number of correct predictions.
func (t *trainState) gradients(ds *Examples, idx []int) (float64, int) {
	rows, layers := len(idx), t.net.Layers
	in := t.net.Inputs()
	for r, i := range idx {
		copy(t.acts[0][r*in:(r+1)*in], ds.Input(i))
	}
	for i := range layers {
		forward(&layers[i], t.acts[i], t.acts[i+1], rows, t.workers, i < len(layers)-1)
	}
	// Softmax cross-entropy: the delta of the logits is (p − onehot(label)) / rows.
	logits, top := t.acts[len(layers)], t.deltas[len(layers)]
	k := t.net.Classes()
	parallel(t.workers, rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			label := ds.Labels[idx[r]]
			z, d := logits[r*k:(r+1)*k], top[r*k:(r+1)*k]
			t.loss[r] = softmaxRow(z, d, label)
			t.hit[r] = argmax(z) == label
			d[label]--
			for c := range d {
				d[c] /= float32(rows)
			}
		}
	})
	var loss float64
	correct := 0
	for r := range rows { // summed here, in row order, so the total does not depend on workers
		loss += t.loss[r]
		if t.hit[r] {
			correct++
		}
	}
	for i := len(layers) - 1; i >= 0; i-- {
		var prev []float32
		if i > 0 {
			prev = t.deltas[i]
		}
		backward(&layers[i], t.acts[i], t.deltas[i+1], t.gw[i], t.gb[i], prev, rows, t.workers)
	}
	return loss, correct
}

// update takes one Adam step along the gradients at learning rate lr.
func (t *trainState) update(lr float64) {
	t.step++
	// Adam's bias corrections folded into the step size.
	lrT := lr * math.Sqrt(1-math.Pow(adamBeta2, float64(t.step))) / (1 - math.Pow(adamBeta1, float64(t.step)))
	for i, l := range t.net.Layers {
		t.mw[i].step(l.W, t.gw[i], lrT, t.workers)
		t.mb[i].step(l.B, t.gb[i], lrT, t.workers)
	}
}

// copyAs returns a copy of n, provided its widths are sizes (input first, classes last).
func (n *Network) copyAs(sizes []int) (*Network, error) {
	widths := []int{n.Inputs()}
	for _, l := range n.Layers {
		widths = append(widths, l.Out)
	}
	if !slices.Equal(widths, sizes) {
		return nil, fmt.Errorf("initial network of widths %v, the data and settings ask for %v", widths, sizes)
	}
	c := &Network{Layers: make([]Layer, len(n.Layers))}
	for i, l := range n.Layers {
		c.Layers[i] = Layer{In: l.In, Out: l.Out, W: slices.Clone(l.W), B: slices.Clone(l.B)}
	}
	return c, nil
}
