package gate

import (
	"reflect"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigParse(t *testing.T) {
	c := DefaultConfig()
	yaml := "min_improvement: -0.005\nmax_class_regression: 0.05\nmin_class_samples: 100\nmin_eval_samples: 1000\n" +
		"first_model_min: 0.8\nprimary_metric: macro_f1\ntop_k: 3\nmax_ece_increase: -1\ncalibrate: false\neval_sets: [golden]\n"
	if err := config.Parse([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Rules = Rules{PrimaryMetric: MetricMacroF1, MinImprovement: -0.005, MaxClassRegression: 0.05, MinClassSamples: 100,
		MaxECEIncrease: -1, MinEvalSamples: 1000, FirstModelMin: 0.8, TopK: 3}
	want.Calibrate, want.EvalSets = false, []string{"golden"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parsed %+v, want %+v", c, want)
	}
}

func TestRulesOverride(t *testing.T) {
	var o RulesOverride
	if err := yaml.Unmarshal([]byte("primary_metric: top_k\nmin_improvement: 0.01\n"), &o); err != nil {
		t.Fatal(err)
	}
	got := o.Apply(DefaultRules())
	want := DefaultRules()
	want.PrimaryMetric, want.MinImprovement = MetricTopK, 0.01
	if got != want {
		t.Errorf("override gave %+v, want %+v", got, want)
	}
}

func TestConfigInvalid(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		c := DefaultConfig()
		return &c
	})
}

func TestRemovedKeysSayWhatReplacesThem(t *testing.T) {
	c := DefaultConfig()
	err := config.Parse([]byte("min_eval_samples: 10\nreference_images: 2000\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "eval_sets") || !strings.Contains(err.Error(), "edgeloop evalset create") {
		t.Fatalf("err = %v, want one naming eval_sets and edgeloop evalset create", err)
	}
}
