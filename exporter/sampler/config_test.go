package sampler

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestInvalidConfigs decodes every file in testdata/invalid (a sampler section breaking one
// rule) over the defaults and checks the exact message its first line promises.
func TestInvalidConfigs(t *testing.T) {
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

func TestDefaultConfig(t *testing.T) {
	want := Config{
		Enabled: false,
		Strategies: []StrategyConfig{
			{Name: "random", Type: Random, Probability: ptr(0.01)},
			{Name: "close_call", Type: Margin, Threshold: ptr(0.1)},
		},
		Limits:         []Limit{{Minutely, 60}, {Hourly, 1000}, {Daily, 10000}},
		MaxBytesPerDay: 256 << 20,
		Dedup:          DedupConfig{Enabled: true, Window: 10 * time.Minute, MaxDistance: 4, MaxEntries: 4096},
	}
	got := DefaultConfig()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultConfig() = %+v\nwant %+v (docs/sampler.md states these)", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	got.Enabled = true
	if err := got.Validate(); err != nil {
		t.Fatalf("defaults, enabled: %v", err)
	}
	// Each call returns its own pointers: changing one config's threshold changes no other.
	*got.Strategies[1].Threshold = 0.5
	if *DefaultConfig().Strategies[1].Threshold != 0.1 {
		t.Fatal("DefaultConfig shares its pointers")
	}
}

func TestValidConfigs(t *testing.T) {
	for _, doc := range []string{
		"",
		"enabled: true\n",
		"enabled: false\nstrategies: []\n", // off needs no strategies
		"enabled: true\nmax_bytes_per_day: 0\nlimits: []\ndedup: {enabled: false}\n",
		"dedup: {max_distance: -1, window: 1h, max_entries: 1}\n",
		"dedup: {max_distance: 32, max_entries: 1000000}\n",
		`strategies:
  - {name: low, type: threshold, threshold: 1, scorer: entropy, probability: 0}
  - {name: band, type: close_to_threshold, threshold: 0, epsilon: 1, scorer: margin, only_top_classes: true}
  - {name: m, type: margin, threshold: 0.05, classes: ["0", "6"]}
  - {name: e, type: entropy, threshold: 0.2, tags: ["a:b/c.d[e]<f>{g}@h-i_j"]}
  - {name: r, type: random, probability: 1, classes: [Bag]}
  - {name: "night-shift.v2:c", type: classes, selected_class_names: [Bag], limits: [{type: daily, value: 1000000000}]}
`,
		"batching_strategy: {batches_name_prefix: x, recreation_interval: never}\n",
		"batching_strategy: {batches_name_prefix: x, recreation_interval: monthly, max_batch_images: 10}\n",
	} {
		cfg := DefaultConfig()
		if err := config.Parse([]byte(doc), &cfg); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

// TestRoboflowConfig loads a Roboflow active_learning configuration unchanged and checks what
// it became.
func TestRoboflowConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := config.LoadFile("testdata/roboflow.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.EffectiveStrategies() {
		names = append(names, s.Name)
	}
	if want := []string{"default_strategy", "hard_examples", "underrepresented_classes"}; !slices.Equal(names, want) {
		t.Fatalf("strategies %v, want %v (sampling_strategies replaces the defaults)", names, want)
	}
	clk := newClock()
	s := mustNew(t, cfg, Options{Now: clk.Now, Rand: fixedRand(0.4)})
	// The default overall limits stay (the file sets none); max_batch_images adds a bucket.
	if n := len(s.overall); n != 4 || s.overall[3].capacity != 5000 || s.overall[3].period != float64(24*time.Hour) {
		t.Fatalf("max_batch_images with a daily batch: overall buckets %+v, want the 3 defaults and 5000 a day", s.overall)
	}
	for i, tc := range []struct {
		conf   float64
		class  string
		reason string
		tags   []string
	}{
		// The draw (0.4) loses the random strategy's 0.01 and wins hard_examples' 0.5.
		{0.3, "Shirt", "hard_examples", []string{"my_tag_1", "my_tag_2", "production", "site:berlin-03"}},
		{0.3, "Coat", "", nil},  // not a selected class
		{0.4, "Shirt", "", nil}, // outside (0.15, 0.35)
		{0.99, "Bag", "underrepresented_classes", []string{"hard-classes", "production", "site:berlin-03"}},
	} {
		c := cand(tc.conf, uint64(i))
		c.ClassName = tc.class
		d := s.Decide(c)
		if d.Reason != tc.reason || !slices.Equal(d.Tags, tc.tags) {
			t.Errorf("%g %s: %+v, want reason %q tags %v", tc.conf, tc.class, d, tc.reason, tc.tags)
		}
	}
}

// TestRoboflowJSON loads the example configuration of Roboflow Inference's active learning
// README as Roboflow writes it, in JSON (which is YAML).
func TestRoboflowJSON(t *testing.T) {
	doc := `{
    "enabled": true,
    "max_image_size": [1200, 1200],
    "jpeg_compression_level": 75,
    "persist_predictions": true,
    "sampling_strategies": [
      {
        "name": "default_strategy",
        "type": "random",
        "traffic_percentage": 0.1
      }
    ],
    "batching_strategy": {
      "batches_name_prefix": "al_batch",
      "recreation_interval": "daily"
    }
}`
	cfg := DefaultConfig()
	if err := config.Parse([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	st := cfg.EffectiveStrategies()
	if len(st) != 1 || st[0].Type != Random || *st[0].TrafficPercentage != 0.1 {
		t.Fatalf("strategies %+v", st)
	}
	if _, err := New(cfg, Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestValidateNamesFieldsUnderParent checks the paths read right once the exporter nests them.
func TestValidateNamesFieldsUnderParent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Strategies[1].Threshold = ptr(2.0)
	cfg.Dedup.MaxEntries = 0
	err := config.Nest("capture.sampler", cfg.Validate())
	for _, want := range []string{"capture.sampler.strategies[1].threshold: ", "capture.sampler.dedup.max_entries: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
}

// TestNewRejectsInvalid checks that New validates, and reports a registration clash.
func TestNewRejectsInvalid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dedup.Window = 0
	if _, err := New(cfg, Options{}); err == nil || !strings.HasPrefix(err.Error(), "sampler: invalid configuration: dedup.window: ") {
		t.Fatalf("New with an invalid config: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	mustNew(t, DefaultConfig(), Options{Registerer: reg})
	if _, err := New(DefaultConfig(), Options{Registerer: reg}); err == nil || !strings.HasPrefix(err.Error(), "sampler: register metrics: ") {
		t.Fatalf("second sampler on one registry: %v", err)
	}
}

// TestDocExample loads the Fashion-MNIST example of docs/sampler.md and checks it does what
// its comments say.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sampler.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Example: Fashion-MNIST\n\n```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/sampler.md has no Fashion-MNIST example")
	}
	cfg := DefaultConfig()
	if err := config.Parse([]byte(example), &cfg); err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	s := mustNew(t, cfg, Options{Now: newClock().Now, Rand: fixedRand(0.3)})
	for i, tc := range []struct {
		s      observe.Scores
		class  string
		reason string
	}{
		{observe.Scores{MaxSoftmax: 0.45, Margin: 0.2}, "Shirt", "confusable"},
		{observe.Scores{MaxSoftmax: 0.45, Margin: 0.2}, "Bag", "low_confidence"},
		{observe.Scores{MaxSoftmax: 0.7, Margin: 0.05}, "Bag", "close_call"},
		{observe.Scores{MaxSoftmax: 0.99, Margin: 0.98}, "Bag", ""},
	} {
		c := cand(0, uint64(i))
		c.Scores, c.ClassName = tc.s, tc.class
		if d := s.Decide(c); d.Reason != tc.reason {
			t.Errorf("%+v %s: %+v, want reason %q", tc.s, tc.class, d, tc.reason)
		}
	}
}
