package collector

import (
	"testing"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
)

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises.
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

// TestExampleConfig checks that the documented example loads and keeps the defaults it omits.
func TestExampleConfig(t *testing.T) {
	t.Setenv("EDGELOOP_TOKENS_FILE", "testdata/tokens")
	cfg, err := LoadConfig("../docs/examples/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Instance != "collector-1" || cfg.Web.Listen != ":9751" || cfg.Shards.MaxAge.Minutes() != 5 {
		t.Fatalf("example: %+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Web.Listen != ":9751" {
		t.Errorf("listen = %q, want :9751 (docs/architecture.md)", cfg.Web.Listen)
	}
	if cfg.WAL.Dir != "/var/lib/edgeloop/collector/wal" || cfg.Ingest.MaxSamples != 2000 || cfg.Shards.TargetBytes != 64<<20 {
		t.Errorf("defaults drifted from docs/collector.md: %+v", cfg)
	}
	if _, err := LoadConfig(""); err == nil {
		t.Error("the defaults validate without a bucket and tokens")
	}
}
