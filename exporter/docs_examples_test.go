package exporter

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlBlockRE finds the ```yaml blocks of a Markdown page.
var yamlBlockRE = regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")

// TestDocExamplesDecode decodes every YAML example of the capture pages with the exporter's
// strict decoding (unknown keys and wrong types are errors, as config.Parse does), so an
// example that puts a section in the wrong place fails here instead of at a reader's node
// ("sender:" at the top level once did). Pages whose examples are relative to a section are
// decoded under it. Validation is left out: the examples are excerpts, without models or files.
func TestDocExamplesDecode(t *testing.T) {
	pages := []struct {
		path, under string
	}{
		{"../docs/sender.md", ""},
		{"../docs/sampler.md", "capture"},
	}
	total := 0
	for _, p := range pages {
		doc, err := os.ReadFile(p.path)
		if err != nil {
			t.Fatal(err)
		}
		blocks := yamlBlockRE.FindAllSubmatch(doc, -1)
		if len(blocks) == 0 {
			t.Errorf("%s: no ```yaml examples found", p.path)
		}
		for i, b := range blocks {
			src := string(b[1])
			if p.under != "" {
				src = p.under + ":\n  " + strings.ReplaceAll(strings.TrimRight(src, "\n"), "\n", "\n  ") + "\n"
			}
			cfg := DefaultConfig()
			dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
			dec.KnownFields(true)
			if err := dec.Decode(&cfg); err != nil {
				t.Errorf("%s, YAML example %d does not decode as exporter.yaml%s: %v\n%s", p.path, i+1, map[bool]string{true: " under " + p.under + ":", false: ""}[p.under != ""], err, src)
			}
			total++
		}
	}
	t.Logf("decoded %d examples", total)
}
