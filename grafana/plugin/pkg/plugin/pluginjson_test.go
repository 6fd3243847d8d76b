package plugin

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestPluginJSON checks src/plugin.json against the rules of Grafana's plugin schema
// (plugin.schema.json in grafana/grafana's docs) that a data source with a backend depends on:
// the required keys, the id's pattern, no key the schema does not know, logos that exist,
// and the id and executable this package and `make plugin` use. Grafana itself is not run
// here (its licence rules it out); this is what stands in for its loader.
func TestPluginJSON(t *testing.T) {
	dir := filepath.Join("..", "..", "src")
	raw, err := os.ReadFile(filepath.Join(dir, "plugin.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	known := []string{"$schema", "id", "type", "name", "info", "dependencies", "alerting", "annotations", "autoEnabled", "backend",
		"category", "executable", "includes", "logs", "metrics", "preload", "queryOptions", "routes", "streaming", "tracing", "tables", "state"}
	for k := range p {
		if !slices.Contains(known, k) {
			t.Errorf("key %q is not in Grafana's plugin schema", k)
		}
	}
	for _, k := range []string{"type", "name", "id", "info", "dependencies"} {
		if _, ok := p[k]; !ok {
			t.Errorf("required key %q missing", k)
		}
	}
	var top struct {
		ID, Type, Name, Executable    string
		Backend, Metrics, Annotations bool
		Info                          struct {
			Keywords []string
			Logos    struct{ Small, Large string }
			Version  string
			Updated  string
		}
		Dependencies struct {
			GrafanaDependency string
		}
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-z]+\-([0-9a-z]+\-)?(app|panel|datasource|secretsmanager|transformer)$`).MatchString(top.ID) || top.ID != ID {
		t.Errorf("id %q: want %q, matching the schema's pattern", top.ID, ID)
	}
	if top.Type != "datasource" || !top.Backend || !top.Metrics || !top.Annotations {
		t.Errorf("type %q backend %v metrics %v annotations %v: want a backend data source with metrics and annotations", top.Type, top.Backend, top.Metrics, top.Annotations)
	}
	if top.Executable != "gpx_edgeloop" {
		t.Errorf("executable %q: `make plugin` builds gpx_edgeloop_<os>_<arch>", top.Executable)
	}
	if len(top.Info.Keywords) == 0 {
		t.Error("info.keywords: at least one")
	}
	for _, l := range []string{top.Info.Logos.Small, top.Info.Logos.Large} {
		if l == "" {
			t.Error("info.logos: small and large are required")
		} else if _, err := os.Stat(filepath.Join(dir, l)); err != nil {
			t.Errorf("info.logos: %v", err)
		}
	}
	if !regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)|(%VERSION%)$`).MatchString(top.Info.Version) {
		t.Errorf("info.version %q", top.Info.Version)
	}
	if !regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}|%TODAY%)$`).MatchString(top.Info.Updated) {
		t.Errorf("info.updated %q", top.Info.Updated)
	}
	if !regexp.MustCompile(`^(<=|>=|<|>|=|~|\^)?([0-9]+)(\.[0-9x\*]+)(\.[0-9x\*]+)?`).MatchString(top.Dependencies.GrafanaDependency) {
		t.Errorf("dependencies.grafanaDependency %q", top.Dependencies.GrafanaDependency)
	}
}
