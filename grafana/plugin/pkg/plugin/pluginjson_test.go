package plugin

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pluginJSON is what the tests read of a plugin.json.
type pluginJSON struct {
	ID, Type, Name, Executable    string
	Backend, Metrics, Annotations bool
	Info                          struct {
		Keywords []string
		Logos    struct{ Small, Large string }
		Version  string
		Updated  string
	}
	Includes []struct {
		Type, Name, Path, Role string
		AddToNav, DefaultNav   bool
	}
	Dependencies struct {
		GrafanaDependency string
	}
}

// readPluginJSON reads a plugin.json under src/ and checks it against the rules of Grafana's
// plugin schema (plugin.schema.json in grafana/grafana's docs) that every plugin must meet: the
// required keys, the id's pattern, no key the schema does not know, logos that exist (under
// src/img, which `make plugin` copies beside each plugin.json), a version and date or the
// placeholders `make plugin` fills in, a Grafana version range.
func readPluginJSON(t *testing.T, rel string) pluginJSON {
	t.Helper()
	src := filepath.Join("..", "..", "src")
	raw, err := os.ReadFile(filepath.Join(src, rel))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&keys); err != nil {
		t.Fatal(err)
	}
	known := []string{"$schema", "id", "type", "name", "info", "dependencies", "alerting", "annotations", "autoEnabled", "backend",
		"category", "executable", "includes", "logs", "metrics", "preload", "queryOptions", "routes", "streaming", "tracing", "tables", "state"}
	for k := range keys {
		if !slices.Contains(known, k) {
			t.Errorf("%s: key %q is not in Grafana's plugin schema", rel, k)
		}
	}
	for _, k := range []string{"type", "name", "id", "info", "dependencies"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("%s: required key %q missing", rel, k)
		}
	}
	var p pluginJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-z]+\-([0-9a-z]+\-)?(app|panel|datasource|secretsmanager|transformer)$`).MatchString(p.ID) {
		t.Errorf("%s: id %q does not match the schema's pattern", rel, p.ID)
	}
	if !strings.HasSuffix(p.ID, "-"+p.Type) {
		t.Errorf("%s: id %q does not end in its type %q", rel, p.ID, p.Type)
	}
	if len(p.Info.Keywords) == 0 {
		t.Errorf("%s: info.keywords: at least one", rel)
	}
	for _, l := range []string{p.Info.Logos.Small, p.Info.Logos.Large} {
		if l == "" {
			t.Errorf("%s: info.logos: small and large are required", rel)
		} else if _, err := os.Stat(filepath.Join(src, l)); err != nil {
			t.Errorf("%s: info.logos: %v", rel, err)
		}
	}
	if !regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)|(%VERSION%)$`).MatchString(p.Info.Version) {
		t.Errorf("%s: info.version %q", rel, p.Info.Version)
	}
	if !regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}|%TODAY%)$`).MatchString(p.Info.Updated) {
		t.Errorf("%s: info.updated %q", rel, p.Info.Updated)
	}
	if !regexp.MustCompile(`^(<=|>=|<|>|=|~|\^)?([0-9]+)(\.[0-9x\*]+)(\.[0-9x\*]+)?`).MatchString(p.Dependencies.GrafanaDependency) {
		t.Errorf("%s: dependencies.grafanaDependency %q", rel, p.Dependencies.GrafanaDependency)
	}
	return p
}

// TestPluginJSON checks the nested data source's plugin.json (src/datasource/plugin.json): a
// backend data source with metrics and annotations, with the id this package registers and the
// executable `make plugin` builds beside it (dist/datasource/gpx_edgeloop_<os>_<arch>). Grafana
// itself is not run here (its licence rules it out); this is what stands in for its loader.
func TestPluginJSON(t *testing.T) {
	p := readPluginJSON(t, filepath.Join("datasource", "plugin.json"))
	if p.ID != ID {
		t.Errorf("id %q: want %q, the id the backend registers", p.ID, ID)
	}
	if p.Type != "datasource" || !p.Backend || !p.Metrics || !p.Annotations {
		t.Errorf("type %q backend %v metrics %v annotations %v: want a backend data source with metrics and annotations", p.Type, p.Backend, p.Metrics, p.Annotations)
	}
	if p.Executable != "gpx_edgeloop" {
		t.Errorf("executable %q: `make plugin` builds gpx_edgeloop_<os>_<arch> in dist/datasource", p.Executable)
	}
}

// TestAppPluginJSON checks the app's plugin.json (src/plugin.json), the folder Grafana loads: an
// app without a backend of its own that includes the nested data source by its name and the
// three pages under /a/<app id>/, visible to every role (actions are checked per role by the
// data source), the sample review the default; the frontend's routes (src/app/App.tsx) are the
// pages' last path elements.
func TestAppPluginJSON(t *testing.T) {
	app := readPluginJSON(t, "plugin.json")
	ds := readPluginJSON(t, filepath.Join("datasource", "plugin.json"))
	if app.ID != "edgeloop-edgeloop-app" || app.Type != "app" || app.Backend || app.Executable != "" {
		t.Errorf("id %q type %q backend %v executable %q: want edgeloop-edgeloop-app, an app without a backend", app.ID, app.Type, app.Backend, app.Executable)
	}
	if app.Dependencies.GrafanaDependency != ds.Dependencies.GrafanaDependency {
		t.Errorf("grafanaDependency: app %q, data source %q", app.Dependencies.GrafanaDependency, ds.Dependencies.GrafanaDependency)
	}
	routes, err := os.ReadFile(filepath.Join("..", "..", "src", "app", "App.tsx"))
	if err != nil {
		t.Fatal(err)
	}
	var pages []string
	var datasources, defaults int
	for _, inc := range app.Includes {
		switch inc.Type {
		case "datasource":
			datasources++
			if inc.Name != ds.Name {
				t.Errorf("includes: data source %q, the nested plugin.json's name is %q", inc.Name, ds.Name)
			}
		case "page":
			rest, ok := strings.CutPrefix(inc.Path, "/a/"+app.ID+"/")
			if !ok || strings.Contains(rest, "/") || rest == "" {
				t.Errorf("includes: page %q path %q: want /a/%s/<page>", inc.Name, inc.Path, app.ID)
			}
			if !strings.Contains(string(routes), rest+": '"+rest+"'") {
				t.Errorf("includes: page %q: no route %q in src/app/App.tsx", inc.Name, rest)
			}
			if inc.Role != "Viewer" || !inc.AddToNav {
				t.Errorf("includes: page %q: role %q addToNav %v, want Viewer and in the navigation", inc.Name, inc.Role, inc.AddToNav)
			}
			if inc.DefaultNav {
				defaults++
			}
			pages = append(pages, rest)
		default:
			t.Errorf("includes: unexpected type %q", inc.Type)
		}
	}
	if datasources != 1 || defaults != 1 || !slices.Equal(pages, []string{"review", "jobs", "versions"}) {
		t.Errorf("includes: %d data sources, %d default pages, pages %v: want 1, 1 and review, jobs, versions", datasources, defaults, pages)
	}
}
