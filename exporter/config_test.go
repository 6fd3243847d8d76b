package exporter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises ("# want: ...").
func TestInvalidConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs found: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: <message>'", file)
			}
			_, err = LoadConfig(file)
			if err == nil {
				t.Fatalf("accepted; want error %q", want)
			}
			if got := strings.TrimPrefix(err.Error(), "config: "+file+": "); got != want {
				t.Fatalf("error:\n got %q\nwant %q", got, want)
			}
		})
	}
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
		t.Errorf("metrics.listen = %q, want :9750 (DESIGN.md)", cfg.Metrics.Listen)
	}
	if cfg.Tracing.Endpoint != "" {
		t.Errorf("tracing must be off by default, endpoint = %q", cfg.Tracing.Endpoint)
	}
	if cfg.Metrics.Pprof {
		t.Error("pprof must be off by default")
	}
}
