// Package exporter is the edge agent: it serves GPU and inference telemetry to Prometheus and
// (as later parts land) fronts the model, captures uncertain inputs and syncs model versions.
package exporter

import (
	"errors"
	"fmt"
	"os"

	"github.com/edgeloop/edgeloop/exporter/capture"
	"github.com/edgeloop/edgeloop/exporter/gpu"
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/modelsync"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/web"
)

// DefaultMetricsListen is the exporter's default metrics address (docs/architecture.md's port plan).
const DefaultMetricsListen = ":9750"

// Config is the exporter's whole configuration file (exporter.yaml). Every field is documented in
// docs/configuration.md.
type Config struct {
	// Node names this edge node in metrics and, later, in captured samples. Default: the host name.
	Node string `yaml:"node"`
	// Log configures the structured log on stderr.
	Log telemetry.LogConfig `yaml:"log"`
	// Tracing configures OpenTelemetry trace export (off by default).
	Tracing telemetry.TracingConfig `yaml:"tracing"`
	// Metrics is the metrics/health server: /metrics, /healthz, /readyz.
	Metrics web.Config `yaml:"metrics"`
	// GPU configures the NVML GPU collector.
	GPU gpu.Config `yaml:"gpu"`
	// Inference configures the inference front (the Open Inference Protocol server) and the
	// telemetry core (confidence scoring, drift signals) every request passes through.
	Inference InferenceConfig `yaml:"inference"`
	// Models lists the models the front serves. Empty: no front, metrics only.
	Models []infer.ModelConfig `yaml:"models"`
	// ModelSync says where model versions come from and which keys may sign them.
	ModelSync modelsync.Config `yaml:"model_sync"`
	// Capture keeps the inputs the model was unsure about and ships them to the collector.
	Capture capture.Config `yaml:"capture"`
}

// InferenceConfig is the `inference:` section: the front's keys and the telemetry core's keys
// side by side.
type InferenceConfig struct {
	Front     infer.Config   `yaml:",inline"`
	Telemetry observe.Config `yaml:",inline"`
}

// Validate checks both halves; their keys are distinct, so the paths name the field.
func (c InferenceConfig) Validate() error {
	return errors.Join(c.Front.Validate(), c.Telemetry.Validate())
}

// DefaultConfig returns the configuration `edgeloop exporter` runs with when given no file:
// metrics on :9750, GPU metrics on when NVML is present, no model.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || !sample.ValidName(host) {
		host = "edge"
	}
	return Config{
		Node:      host,
		Log:       telemetry.DefaultLogConfig(),
		Tracing:   telemetry.DefaultTracingConfig(),
		Metrics:   web.Config{Listen: DefaultMetricsListen},
		GPU:       gpu.DefaultConfig(),
		Inference: InferenceConfig{Front: infer.DefaultConfig(), Telemetry: observe.DefaultConfig()},
		ModelSync: modelsync.DefaultConfig(),
		Capture:   capture.DefaultConfig(),
	}
}

// Validate checks every section, naming fields by their path in the file.
func (c *Config) Validate() error {
	var errs []error
	// The sample format's name rule: the node name is a metric label, a URL path segment, an
	// object key component and, at the collector, a token's or certificate's node id.
	if !sample.ValidName(c.Node) {
		errs = append(errs, config.Errorf("node", "%s, got %q", sample.NameRule, c.Node))
	}
	errs = append(errs,
		config.Nest("log", c.Log.Validate()),
		config.Nest("tracing", c.Tracing.Validate()),
		config.Nest("metrics", c.Metrics.Validate()),
		config.Nest("gpu", c.GPU.Validate()),
		config.Nest("inference", c.Inference.Validate()),
		config.Nest("models", infer.ValidateModels(c.Models)),
		config.Nest("model_sync", c.ModelSync.Validate()),
		config.Nest("capture", c.Capture.Validate()),
	)
	if c.Capture.Enabled() && len(c.Models) == 0 {
		errs = append(errs, config.Errorf("capture.enabled", "needs at least one model in models: capture keeps the inputs of served predictions"))
	}
	if c.ModelSync.Repository == "" {
		for i, m := range c.Models {
			if !m.Static() {
				errs = append(errs, config.Errorf("model_sync.repository", "must be set to serve models[%d] (%q): its versions come from the model repository", i, m.Name))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// LoadConfig returns the defaults overlaid with the file at path ("" means defaults only),
// validated.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path == "" {
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("config: defaults: %w", err)
		}
		return cfg, nil
	}
	err := config.LoadFile(path, &cfg)
	return cfg, err
}
