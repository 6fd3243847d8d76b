package observe

import (
	"errors"
	"math"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Config is the `inference:` section of the exporter's configuration file.
type Config struct {
	// Scorer picks the confidence that feeds edgeloop_inference_confidence, the low-confidence
	// count and the drift window: "max_softmax" (default), "margin" or "entropy". The estimated
	// accuracy always uses the top-1 probability, whatever the scorer.
	Scorer Scorer `yaml:"scorer"`
	// LowConfidenceThreshold: a prediction whose confidence is below it (strictly) counts in
	// edgeloop_inference_low_confidence_total. Default 0.6; 0 counts nothing.
	LowConfidenceThreshold float64 `yaml:"low_confidence_threshold"`
	// Stages also exports edgeloop_inference_stage_duration_seconds (queue, preprocess, infer,
	// postprocess). Off by default: it multiplies the latency series by four.
	Stages bool `yaml:"stages"`
	// Drift configures the confidence drift signals (PSI and estimated accuracy).
	Drift DriftConfig `yaml:"drift"`
}

// DriftConfig configures the sliding window and the reference the PSI compares it with.
type DriftConfig struct {
	// Bins is the number of equal-width confidence bins over [0, 1] for the window and the
	// reference histograms. A reference in a model manifest must have exactly this many.
	// Default 10.
	Bins int `yaml:"bins"`
	// Window is how many of the latest predictions (output rows) the drift signals cover.
	// Both gauges are absent until the window is full. Default 1000.
	Window int `yaml:"window"`
	// ReferenceSamples is how many predictions after a model version loads are learned as its
	// reference when its manifest carries none. Default 1000.
	ReferenceSamples int `yaml:"reference_samples"`
}

// Limits of the drift settings. maxBins also bounds the fixed-size arrays the scrape copies
// into, and maxWindow bounds a model's ring buffer to 4 MiB.
const (
	minBins             = 2
	maxBins             = 100
	minWindow           = 10
	maxWindow           = 1_000_000
	minReferenceSamples = 10
	maxReferenceSamples = 100_000_000
)

// DefaultConfig returns the inference section's defaults.
func DefaultConfig() Config {
	return Config{
		Scorer:                 MaxSoftmax,
		LowConfidenceThreshold: 0.6,
		Drift: DriftConfig{
			Bins:             10,
			Window:           1000,
			ReferenceSamples: 1000,
		},
	}
}

// Validate reports every invalid field, named by its path relative to the inference section.
func (c Config) Validate() error {
	var errs []error
	if _, ok := c.Scorer.Index(); !ok {
		errs = append(errs, config.Errorf("scorer", "must be one of max_softmax, margin, entropy, got %q", string(c.Scorer)))
	}
	if t := c.LowConfidenceThreshold; math.IsNaN(t) || t < 0 || t > 1 {
		errs = append(errs, config.Errorf("low_confidence_threshold", "must be between 0 and 1, got %g", t))
	}
	if n := c.Drift.Bins; n < minBins || n > maxBins {
		errs = append(errs, config.Errorf("drift.bins", "must be between %d and %d, got %d", minBins, maxBins, n))
	}
	switch n := c.Drift.Window; {
	case n < minWindow || n > maxWindow:
		errs = append(errs, config.Errorf("drift.window", "must be between %d and %d, got %d", minWindow, maxWindow, n))
	case n < c.Drift.Bins:
		// Fewer observations than bins cannot fill a histogram; the PSI would be noise.
		errs = append(errs, config.Errorf("drift.window", "must be at least drift.bins (%d), got %d", c.Drift.Bins, n))
	}
	if n := c.Drift.ReferenceSamples; n < minReferenceSamples || n > maxReferenceSamples {
		errs = append(errs, config.Errorf("drift.reference_samples", "must be between %d and %d, got %d", minReferenceSamples, maxReferenceSamples, n))
	}
	return errors.Join(errs...)
}
