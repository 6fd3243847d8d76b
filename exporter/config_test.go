package exporter

import (
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises ("# want: ...").
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

// TestValidConfigs checks that the defaults and the documented examples load.
func TestValidConfigs(t *testing.T) {
	if _, err := LoadConfig(""); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	t.Setenv("OTLP_TOKEN", "secret")
	for _, file := range []string{"testdata/valid/minimal.yaml", "../docs/examples/exporter.yaml"} {
		cfg, err := LoadConfig(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if cfg.Metrics.Listen == "" || cfg.Node == "" {
			t.Fatalf("%s: lost defaults: %+v", file, cfg)
		}
	}
}

func TestDefaultsMatchDesign(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Metrics.Listen != ":9750" {
		t.Errorf("metrics.listen = %q, want :9750 (docs/architecture.md)", cfg.Metrics.Listen)
	}
	if cfg.Tracing.Endpoint != "" {
		t.Errorf("tracing must be off by default, endpoint = %q", cfg.Tracing.Endpoint)
	}
	if cfg.Metrics.Pprof {
		t.Error("pprof must be off by default")
	}
}
