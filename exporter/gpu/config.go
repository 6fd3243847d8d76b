package gpu

import (
	"errors"
	"time"

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

// Config is the `gpu:` section of the exporter configuration.
type Config struct {
	// Enabled turns the NVML GPU collector on. Default true; a machine without NVML still runs,
	// exporting edgeloop_gpu_nvml_up 0.
	Enabled bool `yaml:"enabled"`
	// Naming selects the metric names: "edgeloop" (default) or "dcgm".
	Naming string `yaml:"naming"`
	// InitRetryInterval is how often to retry initializing NVML while it fails: a driver may be
	// installed or loaded after the exporter starts. Default 1m.
	InitRetryInterval time.Duration `yaml:"init_retry_interval"`
	// Processes exports GPU memory used per process. Default true.
	Processes bool `yaml:"processes"`
	// XIDEvents listens to NVML's event set for XID errors and counts them. Default true.
	XIDEvents bool `yaml:"xid_events"`
}

// DefaultConfig returns the GPU collector's defaults: on, edgeloop naming, NVML init retried
// every minute, per-process memory and XID events on.
func DefaultConfig() Config {
	return Config{
		Enabled:           true,
		Naming:            NamingEdgeloop,
		InitRetryInterval: time.Minute,
		Processes:         true,
		XIDEvents:         true,
	}
}

// minInitRetryInterval bounds how hard a node without a driver is polled: nvml.Init on a
// machine without the library is cheap, but a tight loop of it is pointless.
const minInitRetryInterval = time.Second

// Validate checks the section, naming fields relative to it (the caller nests them under "gpu").
func (c Config) Validate() error {
	var errs []error
	switch c.Naming {
	case NamingEdgeloop, NamingDCGM:
	default:
		errs = append(errs, config.Errorf("naming", "must be %q or %q, got %q", NamingEdgeloop, NamingDCGM, c.Naming))
	}
	if c.InitRetryInterval < minInitRetryInterval {
		errs = append(errs, config.Errorf("init_retry_interval", "must be at least %s, got %s", minInitRetryInterval, c.InitRetryInterval))
	}
	return errors.Join(errs...)
}
