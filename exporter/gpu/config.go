package gpu

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Naming modes for Config.Naming.
const (
	// NamingEdgeloop exports edgeloop_gpu_* metrics in Prometheus style (base units).
	NamingEdgeloop = "edgeloop"
	// NamingDCGM exports DCGM-Exporter's default counters' names, units and labels instead, so
	// dashboards and alerts written for DCGM-Exporter work unchanged.
	NamingDCGM = "dcgm"
)

// Enabled is gpu.enabled: true, false or auto.
type Enabled string

// Values of Config.Enabled.
const (
	// EnabledAuto (the default) runs the collector and expects a GPU only where the NVIDIA
	// driver is installed: a node without libnvidia-ml.so says so once and exports
	// edgeloop_gpu_expected 0, so EdgeloopGPUNVMLDown stays quiet on CPU-only nodes.
	EnabledAuto Enabled = "auto"
	// EnabledTrue runs the collector and expects a GPU: NVML not coming up is a fault.
	EnabledTrue Enabled = "true"
	// EnabledFalse turns the collector off: no GPU series at all.
	EnabledFalse Enabled = "false"
)

// Off reports whether the collector is turned off.
func (e Enabled) Off() bool { return e == EnabledFalse }

// UnmarshalYAML accepts the booleans true and false (as YAML spells them) and "auto".
func (e *Enabled) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be true, false or auto")
	}
	if n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err != nil {
			return err
		}
		*e = EnabledFalse
		if b {
			*e = EnabledTrue
		}
		return nil
	}
	*e = Enabled(n.Value)
	return nil
}

// Config is the `gpu:` section of the exporter configuration.
type Config struct {
	// Enabled turns the NVML GPU collector on (true), off (false), or on where the NVIDIA
	// driver is installed (auto, the default; see EnabledAuto). With true or auto a machine
	// without NVML still runs, exporting edgeloop_gpu_nvml_up 0.
	Enabled Enabled `yaml:"enabled"`
	// Naming selects the metric names: "edgeloop" (default) or "dcgm".
	Naming string `yaml:"naming"`
	// InitRetryInterval is how often to retry initializing NVML while it fails: a driver may be
	// installed or loaded after the exporter starts. Default 1m.
	InitRetryInterval time.Duration `yaml:"init_retry_interval"`
	// Processes exports GPU memory used per process. Default true.
	Processes bool `yaml:"processes"`
	// XIDEvents listens to NVML's event set for XID errors and counts them. Default true.
	XIDEvents bool `yaml:"xid_events"`
	// Kubernetes labels the series with the pod holding each device (off by default).
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
}

// DefaultConfig returns the GPU collector's defaults: auto, edgeloop naming, NVML init retried
// every minute, per-process memory and XID events on, Kubernetes pod attribution off.
func DefaultConfig() Config {
	return Config{
		Enabled:           EnabledAuto,
		Naming:            NamingEdgeloop,
		InitRetryInterval: time.Minute,
		Processes:         true,
		XIDEvents:         true,
		Kubernetes:        DefaultKubernetesConfig(),
	}
}

// minInitRetryInterval bounds how hard a node without a driver is polled: nvml.Init on a
// machine without the library is cheap, but a tight loop of it is pointless.
const minInitRetryInterval = time.Second

// Validate checks the section, naming fields relative to it (the caller nests them under "gpu").
func (c Config) Validate() error {
	var errs []error
	switch c.Enabled {
	case EnabledAuto, EnabledTrue, EnabledFalse:
	default:
		errs = append(errs, config.Errorf("enabled", "must be true, false or auto, got %q", string(c.Enabled)))
	}
	switch c.Naming {
	case NamingEdgeloop, NamingDCGM:
	default:
		errs = append(errs, config.Errorf("naming", "must be %q or %q, got %q", NamingEdgeloop, NamingDCGM, c.Naming))
	}
	if c.InitRetryInterval < minInitRetryInterval {
		errs = append(errs, config.Errorf("init_retry_interval", "must be at least %s, got %s", minInitRetryInterval, c.InitRetryInterval))
	}
	errs = append(errs, config.Nest("kubernetes", c.Kubernetes.Validate()))
	return errors.Join(errs...)
}
