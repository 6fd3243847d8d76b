package observe

import (
	"reflect"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

// TestInvalidConfigs decodes every file in testdata/invalid (an inference section breaking one
// rule) over the defaults, and checks the exact message its first line promises
// ("# want: ..."), field path included.
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

func TestValidConfigs(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, doc := range []string{
		"",
		"scorer: margin\nlow_confidence_threshold: 0\nstages: true\n",
		"scorer: entropy\nlow_confidence_threshold: 1\ndrift: {bins: 2, window: 10, reference_samples: 10}\n",
		"drift: {bins: 100, window: 1000000, reference_samples: 100000000}\n",
		"drift: {calibrated_accuracy: false, signals: {class_mix: true, input: true, window: 10}, models: {fashion: {class_mix: true}}}\n",
	} {
		cfg := DefaultConfig()
		if err := config.Parse([]byte(doc), &cfg); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	want := Config{
		Scorer:                 MaxSoftmax,
		LowConfidenceThreshold: 0.6,
		Drift:                  DriftConfig{Bins: 10, Window: 1000, ReferenceSamples: 1000, CalibratedAccuracy: true},
	}
	if got := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultConfig() = %+v, want %+v (docs/inference-telemetry.md states these)", got, want)
	}
}

// TestValidateNamesFieldsUnderParent checks the paths read right once the exporter nests them.
func TestValidateNamesFieldsUnderParent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Drift.Bins = 0
	cfg.Scorer = "x"
	err := config.Nest("inference", cfg.Validate())
	for _, want := range []string{"inference.drift.bins: ", "inference.scorer: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
}
