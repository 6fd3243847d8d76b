package exporter

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/edgeloop/edgeloop/internal/config"
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
		only        []string // when set, only the examples whose first key is one of these
		validate    bool     // also validate: the example is complete over the defaults
	}{
		{"../docs/sender.md", "", nil, false},
		{"../docs/sampler.md", "capture", nil, false},
		// The lab profile's snippets for the exporter (the others are other components').
		{"../docs/timings.md", "", []string{"inference", "model_sync"}, true},
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
			if first, _, _ := strings.Cut(src, ":"); p.only != nil && !slices.Contains(p.only, first) {
				continue
			}
			if p.under != "" {
				src = p.under + ":\n  " + strings.ReplaceAll(strings.TrimRight(src, "\n"), "\n", "\n  ") + "\n"
			}
			cfg := DefaultConfig()
			dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
			dec.KnownFields(true)
			err := dec.Decode(&cfg)
			if err == nil && p.validate {
				err = config.Parse([]byte(src), &cfg)
			}
			if err != nil {
				t.Errorf("%s, YAML example %d does not decode as exporter.yaml%s: %v\n%s", p.path, i+1, map[bool]string{true: " under " + p.under + ":", false: ""}[p.under != ""], err, src)
			}
			total++
		}
	}
	t.Logf("decoded %d examples", total)
}
