package gate

import (
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigParse(t *testing.T) {
	c := DefaultConfig()
	yaml := "min_improvement: -0.005\nmax_class_regression: 0.05\nmin_class_samples: 100\nmin_eval_samples: 1000\n" +
		"first_model_min_accuracy: 0.8\nreference_images: 0\nfashion_mnist_dir: \"\"\n"
	if err := config.Parse([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	want := Config{MinImprovement: -0.005, MaxClassRegression: 0.05, MinClassSamples: 100, MinEvalSamples: 1000, FirstModelMinAccuracy: 0.8}
	if c != want {
		t.Errorf("parsed %+v, want %+v", c, want)
	}
}

func TestConfigInvalid(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		c := DefaultConfig()
		return &c
	})
}
