package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/edgeloop/edgeloop/demo"
	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/onnx"
	trainer "github.com/edgeloop/edgeloop/trainers/go"
)

// options are the benchmark's settings; docs/benchmarks.md explains each choice.
type options struct {
	DataDir    string   `json:"-"`
	Work       string   `json:"-"`
	Out        string   `json:"-"`
	Seeds      int      `json:"seeds"`
	Budgets    []int    `json:"budgets"`
	Conditions []string `json:"conditions"`
	Stream     int      `json:"stream_frames"`
	Burst      float64  `json:"mean_frames_per_item"`
	Nodes      int      `json:"nodes"`
	Test       int      `json:"drifted_test_images"`
	Clean      int      `json:"clean_test_images"`
	BaseTrain  int      `json:"base_train_images"`
	BaseEpochs int      `json:"base_epochs"`
	Replay     int      `json:"replay_images"`
	Repeat     int      `json:"upload_repeat"`
	Epochs     int      `json:"finetune_epochs"`
	LR         float64  `json:"finetune_lr"`
	Parallel   int      `json:"parallel"`
}

func defaultOptions() options {
	return options{Seeds: 10, Stream: 6000, Burst: 2, Nodes: 4, Test: 1000, Clean: 500, BaseTrain: 20000, BaseEpochs: 5,
		Replay: 500, Repeat: 2, Epochs: 1, LR: 5e-4, Parallel: 1}
}

func (o options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Seeds >= 2, "-seeds must be at least 2 (confidence intervals), got %d", o.Seeds)
	check(len(o.Budgets) > 0 && slices.IsSorted(o.Budgets), "-budgets must be ascending, got %v", o.Budgets)
	check(len(o.Budgets) > 0 && o.Budgets[len(o.Budgets)-1] < o.Stream, "-stream (%d) must exceed the largest budget", o.Stream)
	check(o.Burst >= 1, "-burst must be at least 1, got %g", o.Burst)
	check(o.Nodes >= 1, "-nodes must be at least 1, got %d", o.Nodes)
	check(o.Test >= 1 && o.Test <= fmnist.TestSize/2, "-test must be 1 to %d, got %d", fmnist.TestSize/2, o.Test)
	check(o.Clean >= 1 && o.Clean <= fmnist.TestSize/2, "-clean must be 1 to %d, got %d", fmnist.TestSize/2, o.Clean)
	check(o.BaseTrain >= 1000 && o.BaseTrain <= fmnist.TrainSize-o.Stream, "-base-train must be 1000 to 60000 − -stream, got %d", o.BaseTrain)
	check(o.Replay >= 0 && o.Replay <= o.BaseTrain, "-replay must be 0 to -base-train, got %d", o.Replay)
	check(o.Repeat >= 1 && o.Parallel >= 1 && o.Epochs >= 1 && o.BaseEpochs >= 1, "-repeat, -parallel, -epochs and -base-epochs must be at least 1")
	for _, c := range o.Conditions {
		_, ok := conditionByName(c)
		check(ok, "-conditions: unknown condition %q (want some of %v)", c, conditionNames())
	}
	return errors.Join(errs...)
}

// condition is one drift the fleet meets: an image drift, a class mix, or both.
type condition struct {
	Name  string
	Drift demo.ImageDrift
	// Mix weighs the classes of the stream and the drifted test images; nil is uniform.
	Mix []float64
}

// confusable are the classes the reference MLP confuses most (T-shirt/top, Pullover, Coat,
// Shirt): the class-mix change makes them 80% of the traffic.
var confusable = []int{0, 2, 4, 6}

func conditions() []condition {
	mix := make([]float64, fmnist.NumClasses)
	for c := range mix {
		mix[c] = 0.2 / 6
	}
	for _, c := range confusable {
		mix[c] = 0.2
	}
	return []condition{
		{Name: "photometric", Drift: demo.ImageDrift{Kind: demo.KindPhotometric, Photometric: demo.DefaultDrift}},
		{Name: "geometric", Drift: demo.ImageDrift{Kind: demo.KindRotation, Degrees: 20}},
		{Name: "noise", Drift: demo.ImageDrift{Kind: demo.KindNoise, Sigma: 0.3}},
		{Name: "occlusion", Drift: demo.ImageDrift{Kind: demo.KindOcclusion, Size: 10}},
		{Name: "class-mix", Drift: demo.ImageDrift{Kind: demo.KindNone}, Mix: mix},
	}
}

func conditionNames() []string {
	var names []string
	for _, c := range conditions() {
		names = append(names, c.Name)
	}
	return names
}

func conditionByName(name string) (condition, bool) {
	for _, c := range conditions() {
		if c.Name == name {
			return c, true
		}
	}
	return condition{}, false
}

// jitter is the per-frame sensor noise of a burst: consecutive frames of one item differ by
// it, so they are near duplicates, not exact ones.
const jitter = 0.02

// data is Fashion-MNIST split the benchmark's way.
type data struct {
	train, test *fmnist.Dataset
	// byClass lists the stream pool's training images (index ≥ BaseTrain) of each class,
	// and testByClass the drifted-test pool's (test index < TestSize/2).
	byClass, testByClass [fmnist.NumClasses][]int
}

func loadData(dir string, baseTrain int) (*data, error) {
	train, err := fmnist.Load(dir, fmnist.Train)
	if err != nil {
		return nil, err
	}
	test, err := fmnist.Load(dir, fmnist.Test)
	if err != nil {
		return nil, err
	}
	d := &data{train: train, test: test}
	for i := baseTrain; i < train.Len(); i++ {
		d.byClass[train.Labels[i]] = append(d.byClass[train.Labels[i]], i)
	}
	for i := range test.Len() / 2 {
		d.testByClass[test.Labels[i]] = append(d.testByClass[test.Labels[i]], i)
	}
	return d, nil
}

// drawClass picks a class by mix (uniform when nil).
func drawClass(rng *rand.Rand, mix []float64) int {
	if mix == nil {
		return rng.IntN(fmnist.NumClasses)
	}
	u := rng.Float64()
	for c, w := range mix {
		if u < w {
			return c
		}
		u -= w
	}
	return len(mix) - 1
}

// stream is what the fleet saw under one condition and seed.
type stream struct {
	frames []float32 // len(labels) × Pixels, in time order
	labels []int
	item   []int // which item (burst) each frame shows
	node   []int // which node saw it
	scores []classify.Scores
	draws  []float64 // the random strategy's draw per frame
	wrong  []bool    // the base model's prediction was wrong
}

// newStream draws o.Stream frames: items from the stream pool by the condition's class mix,
// each drifted once and seen by one node for a geometric number of frames (mean o.Burst),
// every frame with its own sensor jitter.
func newStream(d *data, c condition, o options, rng *rand.Rand) *stream {
	s := &stream{frames: make([]float32, 0, o.Stream*fmnist.Pixels)}
	drifted := make([]float32, fmnist.Pixels)
	for item := 0; len(s.labels) < o.Stream; item++ {
		class := drawClass(rng, c.Mix)
		idx := d.byClass[class][rng.IntN(len(d.byClass[class]))]
		c.Drift.Apply(drifted, d.train.Image(idx), rng)
		node := rng.IntN(o.Nodes)
		frames := 1
		for rng.Float64() > 1/o.Burst { // geometric: P(one more) = 1 − 1/mean
			frames++
		}
		for range min(frames, o.Stream-len(s.labels)) {
			for _, v := range drifted {
				s.frames = append(s.frames, min(1, max(0, v+float32(jitter*rng.NormFloat64()))))
			}
			s.labels = append(s.labels, class)
			s.item = append(s.item, item)
			s.node = append(s.node, node)
		}
	}
	return s
}

// testSet draws n images from the test pool by the condition's class mix and drifts them;
// clean draws n undrifted images from the other half of the test split.
func testSet(d *data, c condition, n int, rng *rand.Rand) *trainer.Examples {
	ex := &trainer.Examples{Width: fmnist.Pixels}
	img := make([]float32, fmnist.Pixels)
	for range n {
		class := drawClass(rng, c.Mix)
		idx := d.testByClass[class][rng.IntN(len(d.testByClass[class]))]
		ex.Inputs = append(ex.Inputs, c.Drift.Apply(img, d.test.Image(idx), rng)...)
		ex.Labels = append(ex.Labels, class)
	}
	return ex
}

func cleanSet(d *data, n int, rng *rand.Rand) *trainer.Examples {
	ex := &trainer.Examples{Width: fmnist.Pixels}
	half := d.test.Len() / 2
	for _, i := range rng.Perm(half)[:n] {
		ex.Inputs = append(ex.Inputs, d.test.Image(half+i)...)
		ex.Labels = append(ex.Labels, int(d.test.Labels[half+i]))
	}
	return ex
}

// forward returns the logits of the rows of inputs: the network's layers as matrix products
// (gonum's Sgemm), which is what the built-in runtime computes for the MLP.
func forward(net *trainer.Network, inputs []float32) []float32 {
	rows := len(inputs) / net.Inputs()
	act := inputs
	impl := gonum.Implementation{}
	for li, l := range net.Layers {
		out := make([]float32, rows*l.Out)
		for r := range rows {
			copy(out[r*l.Out:(r+1)*l.Out], l.B)
		}
		impl.Sgemm(blas.NoTrans, blas.Trans, rows, l.Out, l.In, 1, act, l.In, l.W, l.In, 1, out, l.Out)
		if li < len(net.Layers)-1 {
			for i, v := range out {
				out[i] = max(0, v)
			}
		}
		act = out
	}
	return act
}

// accuracy is the share of ex the network classifies right.
func accuracy(net *trainer.Network, ex *trainer.Examples) float64 {
	logits := forward(net, ex.Inputs)
	k := net.Classes()
	right := 0
	for r, label := range ex.Labels {
		row := logits[r*k : (r+1)*k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == label {
			right++
		}
	}
	return float64(right) / float64(len(ex.Labels))
}

// score runs the base model over the stream and scores each frame as the exporter does
// (observe.Score on the logits).
func (s *stream) score(net *trainer.Network) error {
	logits := forward(net, s.frames)
	k := net.Classes()
	s.scores, s.wrong = make([]classify.Scores, len(s.labels)), make([]bool, len(s.labels))
	for r := range s.labels {
		sc, err := classify.Score(logits[r*k:(r+1)*k], classify.Logits)
		if err != nil {
			return fmt.Errorf("score frame %d: %w", r, err)
		}
		s.scores[r], s.wrong[r] = sc, sc.Class != s.labels[r]
	}
	return nil
}

// baseModel returns the base model: the reference MLP trained on the first o.BaseTrain clean
// training images, cached under o.Work.
func baseModel(ctx context.Context, o options, logger *slog.Logger) (*trainer.Network, error) {
	dir := filepath.Join(o.Work, fmt.Sprintf("base-%d-%d", o.BaseTrain, o.BaseEpochs))
	path := filepath.Join(dir, trainer.ModelFile)
	if b, err := os.ReadFile(path); err == nil {
		m, err := onnx.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("cached base model %s: %w", path, err)
		}
		net, _, err := trainer.FromONNX(m)
		if err != nil {
			return nil, fmt.Errorf("cached base model %s: %w", path, err)
		}
		logger.Info("base model from cache", "path", path)
		return net, nil
	}
	cfg := trainer.DefaultConfig()
	cfg.DataDir, cfg.TrainLimit, cfg.Epochs = o.DataDir, o.BaseTrain, o.BaseEpochs
	start := time.Now()
	res, err := trainer.Run(ctx, cfg, dir, logger.With("job", "base"))
	if err != nil {
		return nil, fmt.Errorf("train the base model: %w", err)
	}
	logger.Info("base model trained", "accuracy", res.Metrics.Accuracy, "took", time.Since(start).Round(time.Second), "path", path)
	return res.Network, nil
}

// fineTune fine-tunes base on the uploads (each o.Repeat times) plus the replay, as the
// loop's retrain job does with its base dataset, and returns the new network.
func fineTune(ctx context.Context, base *trainer.Network, o options, replay *trainer.Examples, s *stream, uploads []int, seed uint64) (*trainer.Network, error) {
	train := &trainer.Examples{Width: fmnist.Pixels}
	train.Inputs = append(train.Inputs, replay.Inputs...)
	train.Labels = append(train.Labels, replay.Labels...)
	for range o.Repeat {
		for _, i := range uploads {
			train.Inputs = append(train.Inputs, s.frames[i*fmnist.Pixels:(i+1)*fmnist.Pixels]...)
			train.Labels = append(train.Labels, s.labels[i])
		}
	}
	cfg := trainer.DefaultConfig()
	cfg.DataDir, cfg.Epochs, cfg.BatchSize, cfg.LearningRate, cfg.Seed, cfg.Workers, cfg.Init = "", o.Epochs, 64, o.LR, seed, 1, base
	cfg.Classes, cfg.Samples = fmnist.ClassNames(), []string{"in-process"} // shards alone, for Validate: the data is given
	// Train evaluates after every epoch; the benchmark measures on its own sets, so the
	// trainer's evaluation set is one image.
	eval := &trainer.Examples{Width: fmnist.Pixels, Inputs: replay.Inputs[:fmnist.Pixels], Labels: replay.Labels[:1]}
	res, err := trainer.Train(ctx, cfg, &trainer.Data{Train: train, Eval: eval, Classes: cfg.Classes, Shape: []int64{fmnist.Pixels}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return res.Network, nil
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || ctx.Err() != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// seedOf derives a seed for one use from the run's seed index, so that every strategy of a
// seed shares its stream, test images, replay and fine-tune order.
func seedOf(seed int, use uint64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed)+1, use)) }

const (
	useStream = iota + 1
	useTest
	useClean
	useReplay
	useRandom
)
