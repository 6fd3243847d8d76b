package retrain

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/config/configtest"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/token"
)

// testTokensEnv names the tokens file the files in testdata/invalid use: they must be valid
// but for the one rule each breaks, and a webhook tokens file must exist to be valid.
const testTokensEnv = "EDGELOOP_TEST_TOKENS_FILE"

// writeTokens writes a tokens file with one entry into dir and returns its path.
func writeTokens(t *testing.T, dir, name, id, tok string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(token.HashLine(id, tok)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInvalidConfigs loads every file in testdata/invalid, each breaking one rule, and checks
// the exact message its first line promises ("# want: ...").
func TestInvalidConfigs(t *testing.T) {
	t.Setenv(testTokensEnv, writeTokens(t, t.TempDir(), "tokens", "alertmanager", "am-secret"))
	keys, err := modelrepo.GenerateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("EDGELOOP_TEST_SIGNING_KEY", keys.Private)
	configtest.RunInvalid(t, "testdata/invalid/*.yaml", func() config.Validator {
		cfg := DefaultConfig()
		return &cfg
	})
}

// TestDefaultsNeedFile: without a file the controller cannot start, and the error names every
// setting that has no default, and nothing else.
func TestDefaultsNeedFile(t *testing.T) {
	_, err := LoadConfig("")
	if err == nil {
		t.Fatal("the defaults validate without tokens, a bucket, a key, a collector and models")
	}
	msg, ok := strings.CutPrefix(err.Error(), "config: defaults: ")
	if !ok {
		t.Fatalf("error %q does not say it is about the defaults", err)
	}
	want := []string{
		"auth.webhook_tokens_file: must be set",
		"repository.bucket: must be set",
		"repository.signing_key_file: must be set",
		"dataset.collector_url: must be an http:// or https:// URL",
		"models: must list at least one model",
	}
	lines := strings.Split(msg, "\n")
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("error lacks a line starting %q:\n%s", w, msg)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("%d problems with the defaults, want %d:\n%s", len(lines), len(want), msg)
	}
}

// TestDefaults pins the defaults that docs/architecture.md and docs/retrain.md state.
func TestDefaults(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Web.Listen != ":9752" {
		t.Errorf("listen = %q, want :9752 (docs/architecture.md)", cfg.Web.Listen)
	}
	p := cfg.Policy
	if cfg.StateDir != "/var/lib/edgeloop/retrain" || p.Cooldown != 6*time.Hour || p.MinNewLabels != 100 ||
		p.DailyBudget != 4 || p.EveryNewLabels != 0 || p.Schedule != 0 || p.CheckInterval != time.Minute ||
		p.JobTimeout != 4*time.Hour || p.DedupeWindow != 24*time.Hour || p.KeepJobs != 200 {
		t.Errorf("defaults drifted from docs/configuration.md: state_dir %q, policy %+v", cfg.StateDir, p)
	}
	if cfg.Backend.Type != "local" || cfg.Publish != (PublishConfig{Stable: true}) || cfg.Dataset.Timeout != 30*time.Second {
		t.Errorf("defaults drifted from docs/configuration.md: backend %q, publish %+v, dataset %+v", cfg.Backend.Type, cfg.Publish, cfg.Dataset)
	}
	// The default alerts are the shipped rules that route to the controller.
	rules, err := os.ReadFile("../alerts/rules/edgeloop-alerts.yml")
	if err != nil {
		t.Skipf("no shipped alert rules to compare with: %v", err)
	}
	for _, a := range cfg.Alerts {
		if !strings.Contains(string(rules), "alert: "+a+"\n") {
			t.Errorf("default alert %s is not a rule in alerts/rules/edgeloop-alerts.yml", a)
		}
	}
}

// TestExampleConfig loads docs/examples/retrain.yaml with its files in a temporary directory,
// checks a few values, that its unused backend sections are valid too, and that it names every
// key of Config.
func TestExampleConfig(t *testing.T) {
	const example = "../docs/examples/retrain.yaml"
	dir := t.TempDir()
	t.Setenv("EDGELOOP_CONFIG_DIR", dir)
	writeTokens(t, dir, "retrain-webhook.sha256", "alertmanager", "am-secret")
	writeTokens(t, dir, "retrain-operator.sha256", "alice", "op-secret")
	if _, err := modelrepo.GenerateKey(dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(example)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Web.Listen != ":9752" || cfg.Auth.WebhookTokensFile != filepath.Join(dir, "retrain-webhook.sha256") ||
		cfg.Backend.Type != "local" || len(cfg.Models) != 2 || cfg.Models[1].Serving != "stable" ||
		cfg.Policy.Cooldown != 6*time.Hour || cfg.Policy.MinNewLabels != 100 || !cfg.Publish.Stable ||
		cfg.Gate.MaxClassRegression != 0.02 || cfg.Drift.PSIThreshold != 0.25 {
		t.Errorf("example: %+v", cfg)
	}
	// Switching backend.type must be all it takes to use the other sections.
	if err := cfg.Backend.Kubernetes.Validate(); err != nil {
		t.Errorf("example backend.kubernetes: %v", err)
	}
	if err := cfg.Backend.HTTP.Validate(); err != nil {
		t.Errorf("example backend.http: %v", err)
	}
	// Every key appears in the example ("every key with its default or a realistic value").
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	yamlKeys(&root, "", present)
	// The evaluation jobs' kubernetes and http sections are backend.kubernetes' and
	// backend.http's types, shown in full there; so is gate.job.local.trainer, which only
	// the training command takes.
	for _, k := range configKeys(reflect.TypeFor[Config](), "", []string{"gate.job.kubernetes", "gate.job.http", "gate.job.local.trainer"}) {
		if !present[k] {
			t.Errorf("%s: key %s is missing", example, k)
		}
	}
}

// TestConfigDocumented checks that docs/configuration.md's retrain section has a row for
// every key of Config; the job backends' own keys are documented on their pages, which the
// section links.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## `edgeloop retrain`\n")
	if !ok {
		t.Fatal("docs/configuration.md has no section ## `edgeloop retrain`")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	linked := []string{"backend.local", "backend.kubernetes", "backend.http", "gate.job.local", "gate.job.kubernetes", "gate.job.http"}
	for _, k := range configKeys(reflect.TypeFor[Config](), "", linked) {
		if slices.Contains(linked, k) {
			if !strings.Contains(section, "`"+k+"`") {
				t.Errorf("docs/configuration.md, edgeloop retrain: %s is not named", k)
			}
			continue
		}
		if !strings.Contains(section, "| `"+k+"` |") {
			t.Errorf("docs/configuration.md, edgeloop retrain: no row | `%s` |", k)
		}
	}
	for _, link := range []string{"job-backends.md", "job-backend-kubernetes.md", "gate.md", "examples/retrain.yaml"} {
		if !strings.Contains(section, "("+link) {
			t.Errorf("docs/configuration.md, edgeloop retrain: no link to %s", link)
		}
	}
}

// configKeys lists the YAML keys of a configuration type as dotted paths, "[]" marking the
// items of a list ("models[].name"). Maps and lists of scalars are leaves; paths in stop are
// listed but not descended into.
func configKeys(t reflect.Type, prefix string, stop []string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var keys []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if opts == "inline" {
			keys = append(keys, configKeys(ft, prefix, stop)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if slices.Contains(stop, path) {
			keys = append(keys, path)
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			keys = append(keys, configKeys(ft, path, stop)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft.Elem(), path+"[]", stop)...)
		default:
			keys = append(keys, path)
		}
	}
	return keys
}

// yamlKeys records the dotted paths of the keys in a YAML tree, as configKeys writes them.
func yamlKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[p] = true
			yamlKeys(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix+"[]", out)
		}
	}
}

// TestMetricsDocumented checks that docs/metrics.md has a row, with the right type, for every
// metric the controller's own metrics register, and that docs/retrain.md names every skip
// reason, trigger source and job result (the label values of those metrics).
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rec := &descCounter{Registerer: reg}
	m := newMetrics(rec, []string{"m"})
	// The series newMetrics does not create up front, so that every family is gathered.
	m.triggers.WithLabelValues("m", SourceManual).Inc()
	m.lastSuccess.WithLabelValues("m").Set(1)
	m.published.WithLabelValues("m").Set(1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != rec.descs {
		t.Fatalf("gathered %d families of %d registered: give a new metric a series above", len(families), rec.descs)
	}
	types := map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge", dto.MetricType_HISTOGRAM: "histogram"}
	for _, f := range families {
		row := "| `" + f.GetName() + "` | " + types[f.GetType()] + " |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/metrics.md has no row starting %s", row)
		}
	}

	retrainDoc, err := os.ReadFile("../docs/retrain.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	names = append(names, skipReasons...)
	for _, r := range Results {
		names = append(names, string(r))
	}
	names = append(names, SourceAlertmanager, SourceManual, SourceLabels, SourceSchedule, SourceDrift)
	for _, n := range names {
		if !strings.Contains(string(retrainDoc), "`"+n+"`") {
			t.Errorf("docs/retrain.md does not name `%s`", n)
		}
	}
}

// descCounter counts the descriptors of the collectors registered through it.
type descCounter struct {
	prometheus.Registerer
	descs int
}

func (d *descCounter) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for range ch {
		d.descs++
	}
	return d.Registerer.Register(c)
}

func (d *descCounter) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// TestTimingsLabSnippets loads the lab profile's retrain snippets of docs/timings.md (the
// blocks starting with policy: or drift:) over the example configuration, strictly and
// validated, so the documented lab settings stay loadable.
func TestTimingsLabSnippets(t *testing.T) {
	doc, err := os.ReadFile("../docs/timings.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("EDGELOOP_CONFIG_DIR", dir)
	writeTokens(t, dir, "retrain-webhook.sha256", "alertmanager", "am-secret")
	writeTokens(t, dir, "retrain-operator.sha256", "alice", "op-secret")
	if _, err := modelrepo.GenerateKey(dir); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(string(doc), -1) {
		first, _, _ := strings.Cut(m[1], ":")
		if first != "policy" && first != "drift" {
			continue
		}
		cfg, err := LoadConfig("../docs/examples/retrain.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := config.Parse([]byte(m[1]), &cfg); err != nil {
			t.Errorf("docs/timings.md snippet does not load:\n%s\n%v", m[1], err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("found %d retrain snippets in docs/timings.md, want 2 (policy, drift)", n)
	}
}
