package infer

import (
	"errors"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

// file is how the exporter nests the front's sections: `inference:` (with the telemetry core's
// keys beside these) and `models:`.
type file struct {
	Inference Config        `yaml:"inference"`
	Models    []ModelConfig `yaml:"models"`
}

func (f *file) Validate() error {
	return errors.Join(
		config.Nest("inference", f.Inference.Validate()),
		config.Nest("models", ValidateModels(f.Models)),
	)
}

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises.
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		return &file{Inference: DefaultConfig()}
	})
}

func TestValidConfig(t *testing.T) {
	f := &file{Inference: DefaultConfig()}
	data := []byte(`
inference:
  listen: 127.0.0.1:8000
  max_batch: 32
models:
  - name: fashion
  - name: detector
    runtime: upstream
    output: logits
    output_kind: logits
    classes: [cat, dog]
    upstream:
      url: http://127.0.0.1:8001
      model: detector_onnx
      timeout: 5s
`)
	if err := config.Parse(data, f); err != nil {
		t.Fatal(err)
	}
	if f.Inference.MaxRequestBytes != DefaultConfig().MaxRequestBytes || f.Inference.MaxBatch != 32 {
		t.Fatalf("inference = %+v", f.Inference)
	}
	fashion := f.Models[0].WithDefaults()
	if fashion.Runtime != RuntimeBuiltin || fashion.Output != "probabilities" || fashion.Kind() != observe.Probabilities {
		t.Fatalf("builtin defaults = %+v", fashion)
	}
	det := f.Models[1].WithDefaults()
	want := upstream.Config{URL: "http://127.0.0.1:8001", Model: "detector_onnx", Timeout: 5 * time.Second,
		ConnectTimeout: upstream.DefaultConnectTimeout, MaxIdleConns: upstream.DefaultMaxIdleConns, MaxResponseBytes: upstream.DefaultMaxResponseBytes}
	if det.Kind() != observe.Logits || *det.Upstream != want {
		t.Fatalf("upstream entry = %+v, upstream %+v", det, *det.Upstream)
	}
	if err := DefaultConfig().Validate(); err != nil || DefaultConfig().Listen != ":8000" {
		t.Fatalf("defaults: %v", err)
	}
}
