package dataset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadManifest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	manifest := `{"shards": ["shards/00.tar", "file:///data/01.tar", "/abs/02.tar"], "labels": ["labels.jsonl"], "created": "ignored"}`
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "shards/00.tar"), "/data/01.tar", "/abs/02.tar"}; !slices.Equal(m.Shards, want) {
		t.Errorf("shards %q, want %q", m.Shards, want)
	}
	if want := []string{filepath.Join(dir, "labels.jsonl")}; !slices.Equal(m.Labels, want) {
		t.Errorf("labels %q, want %q", m.Labels, want)
	}
	if err := os.WriteFile(path, []byte(`{"shards": ["s3://bucket/samples/x.tar"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(path); err == nil || !strings.Contains(err.Error(), "names local files") {
		t.Errorf("a manifest with an s3:// shard: %v, want an error saying it names local files", err)
	}
	if err := os.WriteFile(path, []byte(`{"shards": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(path); err == nil {
		t.Error("a manifest whose shards is not a list was accepted")
	}
}
