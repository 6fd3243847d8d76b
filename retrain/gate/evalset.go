package gate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/trainers/go"
)

// EvalSet is the held-out set the gate evaluates every model on: the held-out captured
// samples first, then the Fashion-MNIST reference images.
type EvalSet struct {
	// Images holds Len()×Width input values, one image after the other.
	Images []float32
	// Labels holds one class index per image.
	Labels []uint8
	// Width is the number of input values of one image (784 for Fashion-MNIST).
	Width int
	// Classes names the labels, in label order.
	Classes []string
	// Captured is how many of the images (the first ones) are held-out captured samples; the
	// rest come from Fashion-MNIST's test set.
	Captured int
	// Samples counts what was found in the shards, both sides of the split.
	Samples trainer.SampleStats
	// Sources are file:// URIs of what was read: shards, label files, the Fashion-MNIST
	// directory.
	Sources []string
	// Digest is ComputeDigest's hash of the width, classes, labels and image values: two
	// reports with the same Digest were made on the same images.
	Digest string
}

// Len is the number of images.
func (s *EvalSet) Len() int { return len(s.Labels) }

// LoadEvalSet builds the held-out set: the labelled samples of data's shards (label files
// taking precedence, as for the trainer) that trainer.HeldOut picks, followed by cfg.ReferenceImages
// images of Fashion-MNIST's test set chosen by ReferenceSlice. Shards and label files are
// local paths; the trainer's rules for reading them apply (trainer.LoadSamples).
func LoadEvalSet(cfg Config, data trainer.Manifest, logger *slog.Logger) (*EvalSet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load eval set: %w", err)
	}
	set := &EvalSet{Width: fmnist.Pixels, Classes: fmnist.ClassNames()}
	if len(data.Shards) > 0 {
		ss, err := trainer.LoadSamples(data.Shards, data.Labels, set.Classes, logger)
		if err != nil {
			return nil, fmt.Errorf("load eval set: %w", err)
		}
		_, held := trainer.SplitSamples(ss.Data)
		set.Images, set.Labels, set.Captured, set.Samples = held.Images, held.Labels, held.Len(), ss.Stats
		for _, f := range ss.Shards {
			set.Sources = append(set.Sources, fileURI(f))
		}
		for _, f := range data.Labels {
			set.Sources = append(set.Sources, fileURI(f))
		}
	}
	if cfg.ReferenceImages > 0 {
		test, err := fmnist.Load(cfg.FashionMNISTDir, fmnist.Test)
		if err != nil {
			return nil, fmt.Errorf("load eval set: %w", err)
		}
		ref := ReferenceSlice(test, cfg.ReferenceImages)
		set.Images = append(set.Images, ref.Images...)
		set.Labels = append(set.Labels, ref.Labels...)
		set.Sources = append(set.Sources, fileURI(cfg.FashionMNISTDir))
	}
	set.Digest = set.ComputeDigest()
	logger.Info("held-out set loaded", "images", set.Len(), "captured", set.Captured,
		"reference", set.Len()-set.Captured, "labelled_samples", set.Samples.Labelled, "digest", set.Digest[:16])
	return set, nil
}

// ReferenceSlice returns n images of ds balanced over fmnist.NumClasses classes: walking ds
// in order, an image is taken while its class has fewer than its share (n/NumClasses, one
// more for the first n%NumClasses classes). Balance gives every class the same weight in the
// overall accuracy and enough images for its own; walking in order makes it the same slice
// every time.
func ReferenceSlice(ds *fmnist.Dataset, n int) *fmnist.Dataset {
	n = min(n, ds.Len())
	quota := make([]int, fmnist.NumClasses)
	for c := range quota {
		quota[c] = n / fmnist.NumClasses
		if c < n%fmnist.NumClasses {
			quota[c]++
		}
	}
	out := &fmnist.Dataset{Images: make([]float32, 0, n*fmnist.Pixels), Labels: make([]uint8, 0, n)}
	for i := 0; i < ds.Len() && out.Len() < n; i++ {
		if c := ds.Labels[i]; int(c) < len(quota) && quota[c] > 0 {
			quota[c]--
			out.Images = append(out.Images, ds.Image(i)...)
			out.Labels = append(out.Labels, c)
		}
	}
	return out
}

// ComputeDigest computes the set's Digest from its width, classes, labels and images. LoadEvalSet
// sets it; a set built by hand calls it after filling the rest.
func (s *EvalSet) ComputeDigest() string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s.Width))
	h.Write(b[:])
	for _, c := range s.Classes {
		binary.BigEndian.PutUint64(b[:], uint64(len(c)))
		h.Write(b[:])
		h.Write([]byte(c))
	}
	binary.BigEndian.PutUint64(b[:], uint64(len(s.Labels)))
	h.Write(b[:])
	h.Write(s.Labels)
	trainer.WriteFloat32s(h, s.Images)
	return hex.EncodeToString(h.Sum(nil))
}

// fileURI is the file:// URI of a local path, made absolute when it can be.
func fileURI(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}
