// Command gen writes edgeloop's Grafana dashboards to dashboards/json, one file per dashboard,
// from the Go code in package dashboards: `go run ./dashboards/gen` (or `make dashboards`) from
// the repository root. Files of dashboards that no longer exist are removed.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeloop/edgeloop/dashboards"
)

func main() {
	dir := flag.String("out", filepath.Join("dashboards", "json"), "directory to write the dashboards' JSON to")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards/gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := dashboards.All()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep && strings.HasPrefix(filepath.Base(f), "edgeloop-") {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("remove stale %s: %w", f, err)
			}
		}
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
