// Package gate is the retrain controller's evaluation gate: it runs a candidate model and the
// serving version through the built-in runtime on the same held-out set and decides whether
// the candidate may replace the serving version. docs/gate.md describes the held-out set, the
// metrics and the decision rule.
//
// The gate evaluates with exporter/runtime/builtin, the runtime edge nodes serve with, rather
// than trusting the numbers in a job's metrics.json: a training job (possibly a user's
// container) grades its own homework on a split of its choosing, while the gate grades every
// version the same way on the same images.
package gate

import (
	"errors"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// Config is the gate's part of the retrain configuration (the `gate:` section).
type Config struct {
	// MinImprovement is how much the candidate's accuracy must exceed the serving version's:
	// candidate ≥ current + MinImprovement. A negative value tolerates a small loss (for
	// example to adopt a model trained on fresher data).
	MinImprovement float64 `yaml:"min_improvement"`
	// MaxClassRegression is the most accuracy any one class may lose against the serving
	// version, so that a better average cannot hide a class the candidate has forgotten.
	MaxClassRegression float64 `yaml:"max_class_regression"`
	// MinClassSamples is how many held-out images a class needs for its regression to be
	// judged; below it one image is several points of accuracy and the check would be noise.
	MinClassSamples int `yaml:"min_class_samples"`
	// MinEvalSamples is the smallest held-out set a decision may rest on; smaller sets refuse.
	MinEvalSamples int `yaml:"min_eval_samples"`
	// FirstModelMinAccuracy is the accuracy a candidate needs when no version is serving yet,
	// there being nothing to compare with.
	FirstModelMinAccuracy float64 `yaml:"first_model_min_accuracy"`
	// ReferenceImages is how many images of Fashion-MNIST's test set join the held-out set
	// (the same ones every time, balanced over the classes); 0 uses captured samples only.
	ReferenceImages int `yaml:"reference_images"`
	// FashionMNISTDir holds the Fashion-MNIST IDX files the reference images come from.
	FashionMNISTDir string `yaml:"fashion_mnist_dir"`
}

// DefaultConfig returns the gate's defaults: no regression of overall accuracy, no class
// losing more than 2 points, at least 500 held-out images, 2,000 of them from Fashion-MNIST,
// and 0.5 accuracy for a first model.
func DefaultConfig() Config {
	return Config{
		MinImprovement:        0,
		MaxClassRegression:    0.02,
		MinClassSamples:       50,
		MinEvalSamples:        500,
		FirstModelMinAccuracy: 0.5,
		ReferenceImages:       2000,
		FashionMNISTDir:       fmnist.DefaultDir,
	}
}

// Validate reports every invalid setting, naming it by its YAML key.
func (c Config) Validate() error {
	var errs []error
	if !(c.MinImprovement >= -1 && c.MinImprovement <= 1) { // also refuses NaN
		errs = append(errs, config.Errorf("min_improvement", "must be between -1 and 1, got %v", c.MinImprovement))
	}
	if !(c.MaxClassRegression >= 0 && c.MaxClassRegression <= 1) {
		errs = append(errs, config.Errorf("max_class_regression", "must be between 0 and 1, got %v", c.MaxClassRegression))
	}
	if c.MinClassSamples < 1 {
		errs = append(errs, config.Errorf("min_class_samples", "must be at least 1, got %d", c.MinClassSamples))
	}
	if c.MinEvalSamples < 1 {
		errs = append(errs, config.Errorf("min_eval_samples", "must be at least 1, got %d", c.MinEvalSamples))
	}
	if !(c.FirstModelMinAccuracy >= 0 && c.FirstModelMinAccuracy <= 1) {
		errs = append(errs, config.Errorf("first_model_min_accuracy", "must be between 0 and 1, got %v", c.FirstModelMinAccuracy))
	}
	if c.ReferenceImages < 0 || c.ReferenceImages > fmnist.TestSize {
		errs = append(errs, config.Errorf("reference_images", "must be between 0 and %d (the Fashion-MNIST test set), got %d", fmnist.TestSize, c.ReferenceImages))
	}
	if c.ReferenceImages > 0 && c.FashionMNISTDir == "" {
		errs = append(errs, config.Errorf("fashion_mnist_dir", "must name the Fashion-MNIST directory when reference_images is positive"))
	}
	return errors.Join(errs...)
}

// accuracyEpsilon absorbs float rounding in comparisons of accuracies, which are ratios of
// counts: 0.88 + 0.01 must not fail against 0.89 by one ulp.
const accuracyEpsilon = 1e-9
