package observe

import (
	"errors"
	"math"
	"slices"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/sample"
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
	// CalibratedAccuracy makes edgeloop_estimated_accuracy the mean calibrated top-1
	// probability, with the temperature the gate fitted and stored in the manifest
	// (calibration.temperature); versions without one keep the raw mean. Default true. It
	// costs one exponential per class per prediction, which takes Observe beyond the P1
	// budget (docs/drift.md, "Cost"): false restores it.
	CalibratedAccuracy bool `yaml:"calibrated_accuracy"`
	// Signals turns on the drift signals beyond confidence for every model: each compares a
	// window with the reference in the manifest (drift_reference) and is absent for versions
	// without one. Off by default: off costs nothing on the request path.
	Signals Signals `yaml:"signals"`
	// Models replaces Signals for the models it names (by model name), whole: a model listed
	// here gets exactly its entry.
	Models map[string]Signals `yaml:"models"`
}

// Signals configures the drift signals beyond confidence (docs/drift.md).
type Signals struct {
	// ClassMix exports edgeloop_class_mix_js_distance: the Jensen-Shannon distance of the
	// window's predicted-class mix to the reference's.
	ClassMix bool `yaml:"class_mix"`
	// Input exports edgeloop_input_mean_shift, edgeloop_input_std_ratio and
	// edgeloop_input_sketch_psi from the request's first input tensor (built-in runtime only:
	// an upstream's inputs are not decoded).
	Input bool `yaml:"input"`
	// Window is how many of the latest predictions (class mix) and input samples (input)
	// the signals cover; 0 means drift.window.
	Window int `yaml:"window"`
	// Embedding exports edgeloop_embedding_mmd from the model's embedding output (the
	// manifest's embedding_output; built-in runtime only).
	Embedding bool `yaml:"embedding"`
	// EmbeddingWindow is how many of the latest embeddings the embedding signal compares with
	// the reference; 0 means 256. Its scrape costs grow with its square (docs/drift.md,
	// "Cost"), hence a window of its own.
	EmbeddingWindow int `yaml:"embedding_window"`
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

	defaultEmbeddingWindow = 256
	maxEmbeddingWindow     = 4096
)

// DefaultConfig returns the inference section's defaults.
func DefaultConfig() Config {
	return Config{
		Scorer:                 MaxSoftmax,
		LowConfidenceThreshold: 0.6,
		Drift: DriftConfig{
			Bins:               10,
			Window:             1000,
			ReferenceSamples:   1000,
			CalibratedAccuracy: true,
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
	errs = append(errs, c.Drift.Signals.validate("drift.signals"))
	names := make([]string, 0, len(c.Drift.Models))
	for name := range c.Drift.Models {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		field := "drift.models." + name
		if !sample.ValidName(name) {
			errs = append(errs, config.Errorf(field, "the model name %s, got %q", sample.NameRule, name))
		}
		errs = append(errs, c.Drift.Models[name].validate(field))
	}
	return errors.Join(errs...)
}

func (s Signals) validate(field string) error {
	var errs []error
	if n := s.Window; n != 0 && (n < minWindow || n > maxWindow) {
		errs = append(errs, config.Errorf(field+".window", "must be 0 (drift.window) or between %d and %d, got %d", minWindow, maxWindow, n))
	}
	if n := s.EmbeddingWindow; n != 0 && (n < minWindow || n > maxEmbeddingWindow) {
		errs = append(errs, config.Errorf(field+".embedding_window", "must be 0 (%d) or between %d and %d, got %d", defaultEmbeddingWindow, minWindow, maxEmbeddingWindow, n))
	}
	return errors.Join(errs...)
}

// signals returns the drift signals configured for a model.
func (d DriftConfig) signals(model string) Signals {
	s, ok := d.Models[model]
	if !ok {
		s = d.Signals
	}
	if s.Window == 0 {
		s.Window = d.Window
	}
	if s.EmbeddingWindow == 0 {
		s.EmbeddingWindow = defaultEmbeddingWindow
	}
	return s
}
