// Package archtest checks the import rules of docs/architecture.md over the whole module.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/edgeloop/edgeloop/"

// integrators wire components together and may import anything: the binaries, the demo,
// the benchmarks and the integration tests.
var integrators = []string{"cmd", "demo", "bench", "integration"}

// component is what a package belongs to: internal, exporter, collector, retrain, one
// trainer (trainers/<name>), or an integrator.
func component(pkg string) string {
	parts := strings.Split(pkg, "/")
	switch parts[0] {
	case "trainers", "cmd":
		if len(parts) > 1 {
			return parts[0] + "/" + parts[1]
		}
	}
	return parts[0]
}

func isIntegrator(pkg string) bool {
	return slices.Contains(integrators, strings.Split(pkg, "/")[0])
}

// allowed reports whether package from may import package to (both module-relative): within
// a component, anything into internal/, and anything from an integrator. internal/ imports
// only internal/.
func allowed(from, to string) bool {
	switch {
	case isIntegrator(from):
		return true
	case component(to) == "internal":
		return true
	case component(from) == "internal":
		return false
	}
	return component(from) == component(to)
}

// imports parses every non-test Go file of the module under root and returns, per package
// (module-relative directory), the module packages it imports.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "dist", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if to, ok := strings.CutPrefix(p, module); ok && !slices.Contains(out[pkg], to) {
				out[pkg] = append(out[pkg], to)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImportRules checks that no component imports another component's packages (and
// internal/ imports nothing outside internal/). There are no exceptions: code two components
// need lives in internal/ (issue 17 moved the last shared pieces there).
func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	graph := imports(t, root)
	var edges, crossing int
	for from, tos := range graph {
		for _, to := range tos {
			edges++
			if component(from) != component(to) {
				crossing++
			}
			if !allowed(from, to) {
				t.Errorf("%s imports %s: a component may import only its own packages and internal/ (docs/architecture.md); move what both need into internal/", from, to)
			}
		}
	}
	// A walk that found no packages would pass having checked nothing.
	if len(graph) < 50 || edges < 100 {
		t.Fatalf("found %d packages and %d module imports: the walk missed the module", len(graph), edges)
	}
	t.Logf("%d packages, %d module imports, %d of them across components (into internal/ or from integrators)", len(graph), edges, crossing)
}

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"exporter/infer", "exporter/observe", true},
		{"exporter/infer", "internal/sample", true},
		{"exporter/infer", "collector/auth", false},
		{"retrain/gate", "exporter/observe", false},
		{"retrain", "internal/token", true},
		{"internal/sample", "exporter/observe", false},
		{"internal/sample", "internal/npy", true},
		{"trainers/go", "trainers/pytorch", false},
		{"cmd/edgeloop", "retrain/jobs", true},
		{"demo", "collector", true},
	} {
		if got := allowed(c.from, c.to); got != c.want {
			t.Errorf("allowed(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}
