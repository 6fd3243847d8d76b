package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// repoRoot is where docs/ and alerts/ are, seen from this package's directory.
const repoRoot = ".."

// allowed are metric names the queries may use although neither docs/metrics.md documents them
// nor a rule in alerts/rules/*.yml records them: Prometheus's own series, and the retrain
// controller's metrics, which were specified to the dashboards while docs/metrics.md did not
// have their rows yet. Once it has, the retrain entries can go.
var allowed = map[string]string{
	// Made by Prometheus itself.
	"up":     "Prometheus: the scrape's success",
	"ALERTS": "Prometheus: alerts pending and firing",

	// The retrain controller's metrics (retrain/metrics.go).
	"edgeloop_retrain_jobs_total":                     "retrain controller",
	"edgeloop_retrain_job_duration_seconds":           "retrain controller (histogram)",
	"edgeloop_retrain_last_success_timestamp_seconds": "retrain controller",
	"edgeloop_retrain_gate_decisions_total":           "retrain controller",
	"edgeloop_retrain_triggers_total":                 "retrain controller",
	"edgeloop_retrain_triggers_skipped_total":         "retrain controller",
	"edgeloop_retrain_active_jobs":                    "retrain controller",
	"edgeloop_retrain_published_version":              "retrain controller",
}

// built parses All()'s output once per test.
func built(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("All returned no dashboards")
	}
	out := make(map[string]map[string]any, len(files))
	for name, data := range files {
		var d map[string]any
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: not JSON: %v", name, err)
		}
		out[name] = d
	}
	return out
}

func TestCommittedJSONIsUpToDate(t *testing.T) {
	files, err := All()
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("json", name))
		if err != nil {
			t.Errorf("dashboards/json is stale: run make dashboards (%v)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dashboards/json is stale: run make dashboards (%s differs from the generated dashboard)", name)
		}
	}
	committed, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range committed {
		if _, ok := files[filepath.Base(f)]; !ok {
			t.Errorf("dashboards/json is stale: run make dashboards (%s is not generated any more)", f)
		}
	}
}

func TestAllIsDeterministic(t *testing.T) {
	a, err := All()
	if err != nil {
		t.Fatal(err)
	}
	b, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s: two builds differ", name)
		}
		if !bytes.HasSuffix(a[name], []byte("}\n")) {
			t.Errorf("%s: does not end in a newline", name)
		}
	}
}

// query is one PromQL expression of a dashboard and where it is.
type query struct {
	where string
	expr  string
}

// panels returns a dashboard's panels, those inside rows included.
func panels(d map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(list []any)
	walk = func(list []any) {
		for _, p := range list {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, pm)
			if sub, ok := pm["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	list, _ := d["panels"].([]any)
	walk(list)
	return out
}

// variables returns a dashboard's template variables by name.
func variables(d map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		if vm, ok := v.(map[string]any); ok {
			name, _ := vm["name"].(string)
			out[name] = vm
		}
	}
	return out
}

var labelValues = regexp.MustCompile(`(?s)^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// queries returns every PromQL expression of a dashboard: its panels' targets, the selectors
// of its label_values(...) variables, and its annotations' expressions.
func queries(t *testing.T, name string, d map[string]any) []query {
	t.Helper()
	var out []query
	for _, p := range panels(d) {
		if p["type"] == "row" {
			continue
		}
		title, _ := p["title"].(string)
		targets, _ := p["targets"].([]any)
		n := 0
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if isPluginQuery(tm) {
				n++ // not PromQL: TestPluginPanels checks these
				continue
			}
			expr, _ := tm["expr"].(string)
			if strings.TrimSpace(expr) == "" {
				continue
			}
			n++
			out = append(out, query{where: fmt.Sprintf("%s panel %q target %v", name, title, tm["refId"]), expr: expr})
		}
		if n == 0 {
			t.Errorf("%s: panel %q has no query", name, title)
		}
	}
	for vname, v := range variables(d) {
		if v["type"] != "query" {
			continue
		}
		var q string
		switch qv := v["query"].(type) {
		case string:
			q = qv
		case map[string]any:
			q, _ = qv["query"].(string)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", name, vname, q)
			continue
		}
		out = append(out, query{where: fmt.Sprintf("%s variable %s", name, vname), expr: m[1]})
	}
	annotations, _ := d["annotations"].(map[string]any)
	list, _ := annotations["list"].([]any)
	for _, a := range list {
		am, _ := a.(map[string]any)
		if expr, ok := am["expr"].(string); ok {
			out = append(out, query{where: fmt.Sprintf("%s annotation %q", name, am["name"]), expr: expr})
		}
	}
	return out
}

var (
	// Grafana's interval variables stand in range selectors: a duration keeps them parseable.
	grafanaInterval = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)
	// Dashboard variables ($model, ${model}, ${model:regex}) stand in label matchers' strings.
	grafanaVar = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z_]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// standIns replaces Grafana's variables by what PromQL parses.
func standIns(expr string) string {
	expr = grafanaInterval.ReplaceAllString(expr, "5m")
	return grafanaVar.ReplaceAllString(expr, "x")
}

// usedVariables returns the dashboard variables an expression refers to (Grafana's own $__
// variables left out).
func usedVariables(expr string) []string {
	var out []string
	for _, m := range grafanaVar.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2]
		if !strings.HasPrefix(name, "__") {
			out = append(out, name)
		}
	}
	return out
}

// metricNames returns the metric names an expression selects.
func metricNames(t *testing.T, where string, e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			out = append(out, vs.Name)
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel || m.Value == vs.Name {
				continue
			}
			if m.Type != labels.MatchEqual {
				t.Errorf("%s: selects metric names by %s %q: name them", where, m.Type, m.Value)
				continue
			}
			out = append(out, m.Value)
		}
		return nil
	})
	return out
}

func TestQueriesParse(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for name, d := range built(t) {
		for _, q := range queries(t, name, d) {
			if _, err := p.ParseExpr(standIns(q.expr)); err != nil {
				t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			}
		}
	}
}

func TestQueriesUseDefinedVariables(t *testing.T) {
	for name, d := range built(t) {
		vars := variables(d)
		for _, q := range queries(t, name, d) {
			for _, v := range usedVariables(q.expr) {
				if _, ok := vars[v]; !ok {
					t.Errorf("%s: uses $%s, which the dashboard does not define", q.where, v)
				}
			}
		}
	}
}

// documented reads the metric names of docs/metrics.md's tables: the names in backquotes in
// the first cell of each row. A name ending in * stands for the suffixes the row lists in
// backquotes (edgeloop_collector_wal_* and `_records`, `_bytes`, ...), or, when it lists none,
// for any name with that prefix (go_*, process_*).
func documented(t *testing.T) (names map[string]bool, prefixes []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatalf("read the metrics reference: %v", err)
	}
	names = map[string]bool{}
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.SplitN(line, "|", 3)
		var suffixes []string
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			if strings.HasPrefix(m[1], "_") {
				suffixes = append(suffixes, m[1])
			}
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			n, _, _ := strings.Cut(m[1], "{")
			p, wildcard := strings.CutSuffix(n, "*")
			switch {
			case !wildcard:
				names[n] = true
			case len(suffixes) == 0:
				prefixes = append(prefixes, p)
			default:
				for _, s := range suffixes {
					names[strings.TrimSuffix(p, "_")+s] = true
				}
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("docs/metrics.md: no metric rows found")
	}
	return names, prefixes
}

// recorded reads the names recorded by the rules of alerts/rules/*.yml, if there are any.
func recorded(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "alerts", "rules", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(data, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					out[r.Record] = true
				}
			}
		}
	}
	return out
}

func TestMetricsAreDocumented(t *testing.T) {
	names, prefixes := documented(t)
	rules := recorded(t)
	known := func(n string) bool {
		if names[n] || rules[n] {
			return true
		}
		if _, ok := allowed[n]; ok {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				return true
			}
		}
		return false
	}
	p := parser.NewParser(parser.Options{})
	used := map[string][]string{}
	for name, d := range built(t) {
		for _, q := range queries(t, name, d) {
			e, err := p.ParseExpr(standIns(q.expr))
			if err != nil {
				continue // TestQueriesParse reports it
			}
			for _, m := range metricNames(t, q.where, e) {
				used[m] = append(used[m], q.where)
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("no metric names found in the dashboards' queries")
	}
	var missing []string
	for m, where := range used {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if s, ok := strings.CutSuffix(m, suffix); ok && !known(m) && known(s) {
				base = s
			}
		}
		if !known(base) {
			missing = append(missing, fmt.Sprintf("%s (in %s)", m, where[0]))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("metric %s is neither in docs/metrics.md, nor recorded by alerts/rules/*.yml, nor allowed in this test", m)
	}
}

func TestVariables(t *testing.T) {
	for name, d := range built(t) {
		vars := variables(d)
		want := []string{"datasource", "model", "version", "node"}
		if name == "edgeloop-gpu.json" {
			want = []string{"datasource", "node", "gpu"}
		}
		for _, w := range want {
			v, ok := vars[w]
			if !ok {
				t.Errorf("%s: no %s variable", name, w)
				continue
			}
			if w == "datasource" {
				if v["type"] != "datasource" || v["query"] != "prometheus" {
					t.Errorf("%s: datasource variable is %v %v, want a Prometheus datasource variable", name, v["type"], v["query"])
				}
				continue
			}
			if v["type"] != "query" || v["multi"] != true || v["includeAll"] != true {
				t.Errorf("%s: variable %s: want a multi-select query variable with All, got type %v multi %v includeAll %v",
					name, w, v["type"], v["multi"], v["includeAll"])
			}
			ds, _ := v["datasource"].(map[string]any)
			if ds["uid"] != "${datasource}" {
				t.Errorf("%s: variable %s does not query the datasource variable: %v", name, w, ds)
			}
		}
	}
}

func TestDashboardSettings(t *testing.T) {
	uids := map[string]bool{}
	for name, d := range built(t) {
		uid, _ := d["uid"].(string)
		if uid+".json" != name {
			t.Errorf("%s: uid %q does not match the file name", name, uid)
		}
		if uids[uid] {
			t.Errorf("%s: uid %q used twice", name, uid)
		}
		uids[uid] = true
		if tags, _ := d["tags"].([]any); !slices.Contains(tags, any(Tag)) {
			t.Errorf("%s: tags %v lack %q", name, tags, Tag)
		}
		if d["refresh"] != "30s" {
			t.Errorf("%s: refresh %v, want 30s", name, d["refresh"])
		}
	}
}

func TestPanels(t *testing.T) {
	for name, d := range built(t) {
		ids := map[float64]string{}
		for _, p := range panels(d) {
			title, _ := p["title"].(string)
			id, ok := p["id"].(float64)
			if !ok {
				t.Errorf("%s: panel %q has no id", name, title)
				continue
			}
			if other, dup := ids[id]; dup {
				t.Errorf("%s: panels %q and %q share id %v", name, other, title, id)
			}
			ids[id] = title
			if p["type"] == "row" {
				continue
			}
			if title == "" {
				t.Errorf("%s: panel %v has no title", name, id)
			}
			if desc, _ := p["description"].(string); desc == "" {
				t.Errorf("%s: panel %q has no description", name, title)
			}
			targets, _ := p["targets"].([]any)
			for _, tg := range targets {
				tm, _ := tg.(map[string]any)
				ds, _ := tm["datasource"].(map[string]any)
				want := "${datasource}"
				if isPluginQuery(tm) {
					want = "${edgeloop}"
				}
				if ds["uid"] != want {
					t.Errorf("%s: panel %q target %v does not use the %s variable: %v", name, title, tm["refId"], want, ds)
				}
			}
			if gp, ok := p["gridPos"].(map[string]any); !ok || gp["w"].(float64)+gp["x"].(float64) > 24 {
				t.Errorf("%s: panel %q does not fit the grid: %v", name, title, p["gridPos"])
			}
		}
		if len(ids) == 0 {
			t.Errorf("%s: no panels", name)
		}
	}
}

func TestGPUPanelsSayTheyNeedAGPU(t *testing.T) {
	d := built(t)["edgeloop-gpu.json"]
	if d == nil {
		t.Fatal("no edgeloop-gpu.json")
	}
	for _, p := range panels(d) {
		if p["type"] == "row" {
			continue
		}
		if desc, _ := p["description"].(string); !strings.Contains(desc, "Needs an NVIDIA GPU") {
			t.Errorf("GPU panel %q does not say it needs an NVIDIA GPU", p["title"])
		}
	}
}

func TestStandIns(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{model=~"$model"}[$__rate_interval])`:    `rate(x{model=~"x"}[5m])`,
		`increase(x{node=~"${node:regex}"}[$__range])`:  `increase(x{node=~"x"}[5m])`,
		`sum_over_time(x{v="${version}"}[$__interval])`: `sum_over_time(x{v="x"}[5m])`,
	} {
		if got := standIns(in); got != want {
			t.Errorf("standIns(%q) = %q, want %q", in, got, want)
		}
	}
}

// isPluginQuery says whether a target or annotation query is the edgeloop data source's.
func isPluginQuery(q map[string]any) bool {
	ds, _ := q["datasource"].(map[string]any)
	return ds["type"] == PluginType
}

// pluginContract reads the plugin backend's query types (the Query* string constants) and the
// json names of its Query struct's fields from grafana/plugin/pkg/plugin/queries.go, so that a
// panel asking for a type or a field the backend does not know fails here.
func pluginContract(t *testing.T) (types []string, fields map[string]bool) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "grafana", "plugin", "pkg", "plugin", "queries.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+Query\w*\s+=\s+"([^"]+)"`).FindAllSubmatch(src, -1) {
		types = append(types, string(m[1]))
	}
	start := bytes.Index(src, []byte("type Query struct {"))
	if start < 0 || len(types) == 0 {
		t.Fatal("queries.go: no Query struct or no query type constants")
	}
	body := src[start : start+bytes.Index(src[start:], []byte("\n}\n"))]
	fields = map[string]bool{"refId": true, "datasource": true, "queryType": true}
	for _, m := range regexp.MustCompile("(?m)^\\s+[A-Z]\\w*\\s[^`\\n]*`json:\"([^\",]+)").FindAllSubmatch(body, -1) {
		fields[string(m[1])] = true
	}
	return types, fields
}

// pluginUse is one query of the edgeloop data source in a dashboard and where it is.
type pluginUse struct {
	where string
	query map[string]any
}

// pluginQueries returns a dashboard's queries of the edgeloop data source: panel targets and
// annotation targets.
func pluginQueries(name string, d map[string]any) []pluginUse {
	var out []pluginUse
	for _, p := range panels(d) {
		targets, _ := p["targets"].([]any)
		for _, tg := range targets {
			if tm, _ := tg.(map[string]any); isPluginQuery(tm) {
				out = append(out, pluginUse{fmt.Sprintf("%s panel %q", name, p["title"]), tm})
			}
		}
	}
	annotations, _ := d["annotations"].(map[string]any)
	list, _ := annotations["list"].([]any)
	for _, a := range list {
		am, _ := a.(map[string]any)
		if tm, _ := am["target"].(map[string]any); tm != nil && isPluginQuery(tm) {
			out = append(out, pluginUse{fmt.Sprintf("%s annotation %q", name, am["name"]), tm})
		}
	}
	return out
}

// TestPluginPanels checks the panels and annotations from the edgeloop data source: they query
// the dashboard's `edgeloop` variable, a data source variable of the plugin's type (so that a
// Grafana without the plugin loads the dashboard, those panels showing no data source), with
// query types and fields the plugin's backend knows and variables the dashboard defines; and
// that the retrain dashboard has the jobs table and version annotations and the pipeline
// dashboard the low-confidence samples with thumbnails.
func TestPluginPanels(t *testing.T) {
	types, fields := pluginContract(t)
	seen := map[string][]string{}
	for name, d := range built(t) {
		uses := pluginQueries(name, d)
		if len(uses) == 0 {
			continue
		}
		vars := variables(d)
		if v := vars["edgeloop"]; v == nil || v["type"] != "datasource" || v["query"] != PluginType {
			t.Errorf("%s: queries the edgeloop data source but its edgeloop variable is %v, want a data source variable of %s", name, v, PluginType)
		}
		for _, u := range uses {
			if ds, _ := u.query["datasource"].(map[string]any); ds["uid"] != "${edgeloop}" {
				t.Errorf("%s: data source %v, want the edgeloop variable", u.where, ds)
			}
			qt, _ := u.query["queryType"].(string)
			if !slices.Contains(types, qt) {
				t.Errorf("%s: queryType %q is not one of the plugin's %v", u.where, qt, types)
			}
			seen[name] = append(seen[name], qt)
			for k, v := range u.query {
				if !fields[k] {
					t.Errorf("%s: field %q is not in the plugin's Query", u.where, k)
				}
				if s, ok := v.(string); ok {
					for _, used := range usedVariables(s) {
						if vars[used] == nil {
							t.Errorf("%s: field %s uses $%s, which the dashboard does not define", u.where, k, used)
						}
					}
				}
			}
		}
	}
	for name, want := range map[string][]string{
		"edgeloop-retrain.json":  {"jobs", "versionAnnotations"},
		"edgeloop-pipeline.json": {"samples"},
	} {
		got := slices.Clone(seen[name])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the edgeloop data source's queries are %v, want %v", name, got, want)
		}
	}

	// The samples table: one model (the samples query needs one), low confidence, thumbnails
	// shown as images, and the sample_model variable single-valued so that it is one name.
	d := built(t)["edgeloop-pipeline.json"]
	if v := variables(d)["sample_model"]; v == nil || v["multi"] == true || v["includeAll"] == true {
		t.Errorf("pipeline: sample_model variable %v: want a single-valued query variable without All", v)
	}
	var samples map[string]any
	for _, p := range panels(d) {
		if targets, _ := p["targets"].([]any); len(targets) == 1 {
			if tm, _ := targets[0].(map[string]any); isPluginQuery(tm) && tm["queryType"] == "samples" {
				samples = p
				if tm["model"] != "${sample_model}" || tm["maxConfidence"] != lowConfidence {
					t.Errorf("pipeline samples query %v: want model ${sample_model}, maxConfidence %v", tm, lowConfidence)
				}
			}
		}
	}
	if samples == nil {
		t.Fatal("pipeline: no samples panel")
	}
	fc, _ := samples["fieldConfig"].(map[string]any)
	overrides, _ := fc["overrides"].([]any)
	image := false
	for _, o := range overrides {
		om, _ := o.(map[string]any)
		if m, _ := om["matcher"].(map[string]any); m["options"] != "thumbnail_url" {
			continue
		}
		props, _ := om["properties"].([]any)
		for _, p := range props {
			pm, _ := p.(map[string]any)
			if v, _ := pm["value"].(map[string]any); pm["id"] == "custom.cellOptions" && v["type"] == "image" {
				image = true
			}
		}
	}
	if !image {
		t.Errorf("pipeline samples panel: thumbnail_url is not shown as an image: %v", overrides)
	}
}
