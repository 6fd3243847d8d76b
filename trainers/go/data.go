package trainer

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// Data is what a run trains and evaluates on.
type Data struct {
	Train, Eval *fmnist.Dataset
	// Classes names the labels, in label order.
	Classes []string
	// Samples says how many collected samples were found and used.
	Samples SampleStats
	// Sources are file:// URIs of the data read: the Fashion-MNIST directory and each shard.
	Sources []string
}

// LoadData reads Fashion-MNIST from cfg.DataDir, adds the labelled samples of cfg.Samples and
// cfg.Manifest to the training images, and sets the evaluation split aside.
func LoadData(cfg Config, logger *slog.Logger) (*Data, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	train, err := fmnist.Load(cfg.DataDir, fmnist.Train)
	if err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	if cfg.TrainLimit > 0 && cfg.TrainLimit < train.Len() {
		train = &fmnist.Dataset{Images: train.Images[:cfg.TrainLimit*fmnist.Pixels], Labels: train.Labels[:cfg.TrainLimit]}
	}
	d := &Data{Train: train, Classes: fmnist.ClassNames(), Sources: []string{fileURI(cfg.DataDir)}}
	shards, labels := cfg.Samples, []string(nil)
	if cfg.Manifest != "" {
		m, err := ReadManifest(cfg.Manifest)
		if err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		shards, labels = append(append([]string(nil), shards...), m.Shards...), m.Labels
	}
	if len(shards) > 0 {
		set, err := LoadSamples(shards, labels, d.Classes, logger)
		if err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		// The held-out side of the split is the gate's evaluation data (retrain/gate): training
		// on it would let the gate score a candidate on what it learnt.
		s, held := SplitSamples(set.Data)
		stats := set.Stats
		stats.HeldOut = held.Len()
		d.Samples = stats
		for _, f := range set.Shards {
			d.Sources = append(d.Sources, fileURI(f))
		}
		d.Train = &fmnist.Dataset{
			Images: append(make([]float32, 0, len(train.Images)+cfg.SamplesRepeat*len(s.Images)), train.Images...),
			Labels: append(make([]uint8, 0, train.Len()+cfg.SamplesRepeat*s.Len()), train.Labels...),
		}
		for range cfg.SamplesRepeat {
			d.Train.Images = append(d.Train.Images, s.Images...)
			d.Train.Labels = append(d.Train.Labels, s.Labels...)
		}
		logger.Info("collected samples added", "shards", stats.Shards, "labelled", stats.Labelled,
			"held_out", stats.HeldOut, "repeat", cfg.SamplesRepeat, "unlabelled", stats.Unlabelled, "rejected", stats.Rejected, "duplicates", stats.Duplicates)
	}
	frac, _ := cfg.holdout() // validated above
	if frac == 0 {
		if d.Eval, err = fmnist.Load(cfg.DataDir, fmnist.Test); err != nil {
			return nil, fmt.Errorf("load data: %w", err)
		}
		return d, nil
	}
	d.Train, d.Eval = holdOut(d.Train, frac, cfg.Seed)
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
func holdOut(ds *fmnist.Dataset, frac float64, seed uint64) (train, eval *fmnist.Dataset) {
	n := ds.Len()
	perm := rand.New(rand.NewPCG(seed, seedStream+1)).Perm(n)
	k := max(1, int(frac*float64(n)))
	pick := func(idx []int) *fmnist.Dataset {
		out := &fmnist.Dataset{Images: make([]float32, 0, len(idx)*fmnist.Pixels), Labels: make([]uint8, 0, len(idx))}
		for _, i := range idx {
			out.Images = append(out.Images, ds.Image(i)...)
			out.Labels = append(out.Labels, ds.Labels[i])
		}
		return out
	}
	return pick(perm[k:]), pick(perm[:k])
}
