package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

const runbookBase = "https://github.com/edgeloop/edgeloop/blob/main/docs/alerts.md#"

// retrainMetrics are the retrain controller's metrics (retrain/metrics.go). They are accepted
// even where docs/metrics.md does not list them yet; once it does, this list is redundant
// (the test logs it) and can go.
var retrainMetrics = []string{
	"edgeloop_retrain_jobs_total",
	"edgeloop_retrain_job_duration_seconds",
	"edgeloop_retrain_last_success_timestamp_seconds",
	"edgeloop_retrain_gate_decisions_total",
	"edgeloop_retrain_triggers_total",
	"edgeloop_retrain_triggers_skipped_total",
	"edgeloop_retrain_active_jobs",
	"edgeloop_retrain_published_version",
}

// retrainAlerts are the alerts Alertmanager forwards to the retrain controller, which reads
// `model` (what to retrain), `version` and `node` from them.
var retrainAlerts = []string{"EdgeloopConfidenceDrift", "EdgeloopEstimatedAccuracyDrop"}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

// testFile is the part of a `promtool test rules` file these tests look at.
type testFile struct {
	RuleFiles      []string `yaml:"rule_files"`
	GroupEvalOrder []string `yaml:"group_eval_order"`
	Tests          []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromqlExprTest []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	return files
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// loadRules returns every rule of rules/*.yml and the groups of each file.
func loadRules(t *testing.T) (rules []rule, groups map[string][]string) {
	t.Helper()
	groups = map[string][]string{}
	for _, f := range glob(t, "rules/*.yml") {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			groups[filepath.Base(f)] = append(groups[filepath.Base(f)], g.Name)
			rules = append(rules, g.Rules...)
		}
	}
	return rules, groups
}

func promtool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs promtool; skipped with -short")
	}
	return testenv.Tool(t, "promtool")
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	p := promtool(t)
	for _, f := range glob(t, "rules/*.yml") {
		t.Run(filepath.Base(f), func(t *testing.T) { run(t, p, "check", "rules", f) })
	}
}

func TestPromtoolTestRules(t *testing.T) {
	p := promtool(t)
	for _, f := range glob(t, "tests/*.yml") {
		t.Run(filepath.Base(f), func(t *testing.T) { run(t, p, "test", "rules", f) })
	}
}

func TestPromtoolCheckConfig(t *testing.T) {
	run(t, promtool(t), "check", "config", "prometheus.yml")
}

// TestAmtoolCheckConfig checks the example Alertmanager configuration with amtool (pinned in
// scripts/tools.sh; `make test` passes it as AMTOOL).
func TestAmtoolCheckConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs amtool; skipped with -short")
	}
	run(t, testenv.Tool(t, "amtool"), "check-config", "alertmanager.yml")
}

// TestAlertsHaveRunbooks checks what every alert must carry: a severity, a summary, a
// description and a runbook_url pointing at its own section of docs/alerts.md, which must
// exist; and that every recording rule is in the document's table.
func TestAlertsHaveRunbooks(t *testing.T) {
	doc, err := os.ReadFile("../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,4} +(\S+) *$`).FindAllStringSubmatch(string(doc), -1) {
		headings[m[1]] = true
	}
	rules, _ := loadRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			if !strings.Contains(string(doc), "| `"+r.Record+"` |") {
				t.Errorf("recording rule %s: no row in the table of docs/alerts.md", r.Record)
			}
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s: defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, a)
			}
		}
		if want := runbookBase + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !headings[r.Alert] {
			t.Errorf("alert %s: no section headed %q in docs/alerts.md", r.Alert, r.Alert)
		}
	}
	for _, a := range retrainAlerts {
		if !seen[a] {
			t.Errorf("alert %s (the retrain controller's default trigger) is missing", a)
		}
	}
}

// documentedMetrics reads the metric names docs/metrics.md lists: the backticked names in the
// first cell of each table row. A name ending in `*` stands for the suffixes its row lists in
// backticks (`_records`, ...), or for any suffix when it lists none.
func documentedMetrics(t *testing.T) (names map[string]bool, wildcards map[string][]string) {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	names, wildcards = map[string]bool{}, map[string][]string{}
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			name, _, _ := strings.Cut(m[1], "{")
			if prefix, ok := strings.CutSuffix(name, "*"); ok {
				var suffixes []string
				for _, s := range tick.FindAllStringSubmatch(strings.Join(cells[2:], "|"), -1) {
					if strings.HasPrefix(s[1], "_") {
						suffixes = append(suffixes, strings.TrimPrefix(s[1], "_"))
					}
				}
				wildcards[prefix] = suffixes
				continue
			}
			names[name] = true
		}
	}
	return names, wildcards
}

var (
	stringLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	edgeloopName  = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])(edgeloop[_:][A-Za-z0-9_:]*)`)
)

// metricNames returns the edgeloop metric names an expression reads (label values aside).
func metricNames(expr string) []string {
	expr = stringLiteral.ReplaceAllString(expr, `""`)
	var names []string
	for _, m := range edgeloopName.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1])
	}
	return names
}

// TestRuleMetricsDocumented checks that every metric the rules read exists: documented in
// docs/metrics.md, one of the retrain controller's, or recorded by a rule here. A typo in a
// metric name makes a rule silently match nothing, which no promtool check catches.
func TestRuleMetricsDocumented(t *testing.T) {
	names, wildcards := documentedMetrics(t)
	if len(names) < 50 {
		t.Fatalf("read only %d metric names from docs/metrics.md: has its table format changed?", len(names))
	}
	for _, m := range retrainMetrics {
		if names[m] {
			t.Logf("%s is in docs/metrics.md now: retrainMetrics can lose it", m)
		}
	}
	rules, _ := loadRules(t)
	recorded := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			recorded[r.Record] = true
		}
	}
	known := func(name string) bool {
		if names[name] || recorded[name] || slices.Contains(retrainMetrics, name) {
			return true
		}
		for prefix, suffixes := range wildcards {
			if rest, ok := strings.CutPrefix(name, prefix); ok && (len(suffixes) == 0 || slices.Contains(suffixes, rest)) {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		for _, name := range metricNames(r.Expr) {
			ok := known(name)
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if base, cut := strings.CutSuffix(name, suffix); cut && known(base) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("rule %s%s reads %s, which docs/metrics.md does not list and no rule records", r.Alert, r.Record, name)
			}
		}
	}
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (le) (rate(edgeloop_a_bucket{job="edgeloop_not_a_metric"}[5m])) / edgeloop:b:rate5m` +
		` and on (node) up{job="edgeloop-exporter"}`)
	want := []string{"edgeloop_a_bucket", "edgeloop:b:rate5m"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricNames = %q, want %q", got, want)
	}
}

// TestEveryRuleTested checks the unit tests' coverage: every alert fires in some test and is
// expected silent in another, the drift alerts fire with model, version and node, every
// recording rule's value is tested, and every test file fixes the evaluation order of all the
// groups it loads (recording groups first), so that alerts read the same minute's recordings.
func TestEveryRuleTested(t *testing.T) {
	rules, groups := loadRules(t)
	fires, silent, exprs := map[string]bool{}, map[string]bool{}, ""
	for _, f := range glob(t, "tests/*.yml") {
		var tf testFile
		readYAML(t, f, &tf)
		var want []string
		for _, rf := range tf.RuleFiles {
			want = append(want, groups[filepath.Base(rf)]...)
		}
		got := slices.Clone(tf.GroupEvalOrder)
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: group_eval_order lists %q, want every group of its rule files: %q", f, tf.GroupEvalOrder, want)
		}
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTest {
				if len(at.ExpAlerts) == 0 {
					silent[at.Alertname] = true
					continue
				}
				fires[at.Alertname] = true
				if !slices.Contains(retrainAlerts, at.Alertname) {
					continue
				}
				for _, a := range at.ExpAlerts {
					for _, l := range []string{"model", "version", "node"} {
						if a.ExpLabels[l] == "" {
							t.Errorf("%s: %q: %s fires without the %s label the retrain controller needs", f, tc.Name, at.Alertname, l)
						}
					}
				}
			}
			for _, pt := range tc.PromqlExprTest {
				exprs += pt.Expr + "\n"
			}
		}
	}
	tested := map[string]bool{}
	for _, n := range metricNames(exprs) {
		tested[n] = true
	}
	for _, r := range rules {
		switch {
		case r.Record != "" && !tested[r.Record]:
			t.Errorf("recording rule %s: no promql_expr_test reads it", r.Record)
		case r.Alert != "" && !fires[r.Alert]:
			t.Errorf("alert %s: no test expects it to fire", r.Alert)
		case r.Alert != "" && !silent[r.Alert]:
			t.Errorf("alert %s: no test expects it to stay silent", r.Alert)
		}
	}
}
