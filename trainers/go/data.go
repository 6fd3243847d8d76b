package trainer

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// Examples is a set of labelled inputs of one width.
type Examples struct {
	// Inputs holds Len()×Width values, row-major, one input after the other.
	Inputs []float32
	// Labels holds one class index per input.
	Labels []int
	// Width is the number of values of one input.
	Width int
}

// Len is the number of inputs.
func (e *Examples) Len() int { return len(e.Labels) }

// Input returns input i's Width values (a slice of Inputs, not a copy).
func (e *Examples) Input(i int) []float32 { return e.Inputs[i*e.Width : (i+1)*e.Width] }

// add appends the inputs and labels of o (of the same width) repeat times.
func (e *Examples) add(o *Examples, repeat int) {
	for range repeat {
		e.Inputs = append(e.Inputs, o.Inputs...)
		e.Labels = append(e.Labels, o.Labels...)
	}
}

// examplesOf holds the samples of l.
func examplesOf(l *dataset.Labelled) *Examples {
	return &Examples{Inputs: l.Inputs, Labels: l.Labels, Width: l.Width}
}

// Data is what a run trains and evaluates on.
type Data struct {
	Train, Eval *Examples
	// Classes names the labels, in label order.
	Classes []string
	// Shape is one input's shape without the batch dimension: [H*W] for IDX images (the MLP
	// takes them flattened, as it always has), the samples' shape for shards alone.
	Shape []int64
	// Preprocessing says in words what an input is, for the model's metadata.
	Preprocessing string
	// Samples says how many collected samples were found and used.
	Samples SampleStats
	// Sources are file:// URIs of the data read: the IDX directory and each shard.
	Sources []string
}

// Width is the number of values of one input: the product of Shape.
func (d *Data) Width() int { return dataset.Spec{Shape: d.Shape}.Width() }

// fashionMNISTClasses reports whether IDX data with no --classes is taken as Fashion-MNIST's
// (docs/trainer.md): 28×28 images labelled 0 to 9, wherever the directory is, so that the
// demo and the tests behave as they always have.
func fashionMNISTClasses(d *fmnist.IDX) bool {
	return d.Rows == fmnist.Rows && d.Cols == fmnist.Cols && !slices.ContainsFunc(d.Labels, func(l uint8) bool { return l >= fmnist.NumClasses })
}

// idxExamples checks the labels of d against classes and holds its images.
func idxExamples(d *fmnist.IDX, classes []string, split fmnist.Split) (*Examples, error) {
	e := &Examples{Inputs: d.Images, Labels: make([]int, d.Len()), Width: d.Rows * d.Cols}
	for i, l := range d.Labels {
		if int(l) >= len(classes) {
			return nil, fmt.Errorf("%s split: label %d of image %d names no class: %d classes (--classes)", split, l, i, len(classes))
		}
		e.Labels[i] = int(l)
	}
	return e, nil
}

// LoadData reads the base dataset and the labelled samples of cfg.Samples and cfg.Manifest,
// and sets the evaluation split aside. The base dataset is the IDX files of cfg.DataDir, or,
// with no DataDir, the shards alone. The input shape and the classes come from the data and
// cfg.Classes, as docs/trainer.md says.
func LoadData(cfg Config, logger *slog.Logger) (*Data, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	shards, labels := cfg.Samples, []string(nil)
	if cfg.Manifest != "" {
		m, err := dataset.ReadManifest(cfg.Manifest)
		if err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		shards, labels = append(append([]string(nil), shards...), m.Shards...), m.Labels
	}
	d := &Data{Classes: cfg.Classes}
	var test *fmnist.IDX
	if cfg.DataDir != "" {
		train, err := fmnist.LoadIDX(cfg.DataDir, fmnist.Train)
		if err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		if len(d.Classes) == 0 {
			if !fashionMNISTClasses(train) {
				return nil, fmt.Errorf("load data: %s: %d×%d images with labels up to %d are not Fashion-MNIST's: name their classes with --classes",
					cfg.DataDir, train.Rows, train.Cols, slices.Max(append([]uint8{0}, train.Labels...)))
			}
			d.Classes = fmnist.ClassNames()
		}
		if cfg.TrainLimit > 0 && cfg.TrainLimit < train.Len() {
			train.Images, train.Labels = train.Images[:cfg.TrainLimit*train.Rows*train.Cols], train.Labels[:cfg.TrainLimit]
		}
		if d.Train, err = idxExamples(train, d.Classes, fmnist.Train); err != nil {
			return nil, fmt.Errorf("load data: %s: %w", cfg.DataDir, err)
		}
		if frac, _ := cfg.holdout(); frac == 0 { // validated above
			if test, err = fmnist.LoadIDX(cfg.DataDir, fmnist.Test); err != nil {
				return nil, fmt.Errorf("load data: %w", err)
			}
			if test.Rows != train.Rows || test.Cols != train.Cols {
				return nil, fmt.Errorf("load data: %s: test images are %d×%d, training images %d×%d", cfg.DataDir, test.Rows, test.Cols, train.Rows, train.Cols)
			}
		}
		d.Shape = []int64{int64(train.Rows * train.Cols)}
		d.Preprocessing = fmt.Sprintf("%dx%d grey levels divided by 255, row-major, flattened to %d", train.Rows, train.Cols, train.Rows*train.Cols)
		d.Sources = []string{fileURI(cfg.DataDir)}
	} else {
		shape, err := sampleShape(shards, labels, d.Classes)
		if err != nil {
			return nil, fmt.Errorf("load data: shards alone (no --data): %w", err)
		}
		d.Shape = shape
		d.Preprocessing = fmt.Sprintf("the samples' input.npy of shape %v (uint8 divided by 255), row-major, flattened to %d", shape, d.Width())
	}
	var held *Examples
	if len(shards) > 0 {
		spec := dataset.Spec{Shape: d.Shape, Datatype: dataset.DatatypeFP32, Classes: d.Classes}
		set, err := dataset.ReadLabelled(shards, labels, spec, logger)
		if err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		// The held-out side of the split is the gate's evaluation data (retrain/gate): training
		// on it would let the gate score a candidate on what it learnt.
		s, h := set.Split()
		held = examplesOf(h)
		d.Samples = sampleStats(set.Stats)
		d.Samples.HeldOut = held.Len()
		for _, f := range set.Shards {
			d.Sources = append(d.Sources, fileURI(f))
		}
		base := d.Train
		if base == nil {
			base = &Examples{Width: d.Width()}
		}
		d.Train = &Examples{
			Inputs: make([]float32, 0, len(base.Inputs)+cfg.SamplesRepeat*len(s.Inputs)),
			Labels: make([]int, 0, base.Len()+cfg.SamplesRepeat*s.Len()),
			Width:  d.Width(),
		}
		d.Train.add(base, 1)
		d.Train.add(examplesOf(s), cfg.SamplesRepeat)
		st := d.Samples
		logger.Info("collected samples added", "shards", st.Shards, "labelled", st.Labelled,
			"held_out", st.HeldOut, "repeat", cfg.SamplesRepeat, "unlabelled", st.Unlabelled, "rejected", st.Rejected,
			"rejected_by_reason", st.RejectedByReason, "duplicates", st.Duplicates, "shape", d.Shape)
	}
	if d.Train == nil || d.Train.Len() == 0 {
		return nil, errors.New("load data: no training data: the shards hold no labelled sample of the data's shape and classes")
	}
	frac, _ := cfg.holdout() // validated above
	switch {
	case frac > 0:
		d.Train, d.Eval = holdOut(d.Train, frac, cfg.Seed)
	case test != nil:
		e, err := idxExamples(test, d.Classes, fmnist.Test)
		if err != nil {
			return nil, fmt.Errorf("load data: %s: %w", cfg.DataDir, err)
		}
		d.Eval = e
	default:
		// Shards alone have no test split: "test" is their held-out side, the samples the gate
		// evaluates on (never trained on).
		d.Eval = held
		if d.Eval.Len() == 0 {
			return nil, errors.New(`load data: shards alone (no --data) with --eval-split test evaluate on the held-out side of the samples, and none is held out: use a fraction such as --eval-split 0.2`)
		}
	}
	return d, nil
}

// fileURI is the file:// URI of a local path (made absolute when it can be).
func fileURI(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

// holdOut splits ds at random (from its own stream of seed, so the split does not depend on
// the training settings) into a training part and an evaluation part of about frac of ds.
func holdOut(ds *Examples, frac float64, seed uint64) (train, eval *Examples) {
	n := ds.Len()
	perm := rand.New(rand.NewPCG(seed, seedStream+1)).Perm(n)
	k := max(1, int(frac*float64(n)))
	pick := func(idx []int) *Examples {
		out := &Examples{Inputs: make([]float32, 0, len(idx)*ds.Width), Labels: make([]int, 0, len(idx)), Width: ds.Width}
		for _, i := range idx {
			out.Inputs = append(out.Inputs, ds.Input(i)...)
			out.Labels = append(out.Labels, ds.Labels[i])
		}
		return out
	}
	return pick(perm[k:]), pick(perm[:k])
}
