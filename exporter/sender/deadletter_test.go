package sender

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// entry returns the files of a dead-letter entry of about size bytes.
func entry(id string, size int) []dlFile {
	return []dlFile{
		{id + ".json", []byte(strings.Repeat("j", size/2))},
		{id + ".error.txt", []byte(strings.Repeat("e", size-size/2))},
	}
}

func TestDeadLetterCapEvictsOldest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dl")
	d, err := openDeadLetter(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	add := func(id string, size int) {
		t.Helper()
		at = at.Add(time.Second)
		if err := d.add(id, entry(id, size), at); err != nil {
			t.Fatal(err)
		}
	}
	add("a", 40)
	add("b", 40)
	add("c", 40) // a goes
	if got, want := dirNames(t, dir), []string{"b.error.txt", "b.json", "c.error.txt", "c.json"}; !slices.Equal(got, want) {
		t.Fatalf("after c: %v, want %v", got, want)
	}
	add("b", 30) // replaced: now the newest
	add("d", 40) // c goes, not b
	if got, want := dirNames(t, dir), []string{"b.error.txt", "b.json", "d.error.txt", "d.json"}; !slices.Equal(got, want) {
		t.Fatalf("after d: %v, want %v", got, want)
	}
	if d.size != 70 {
		t.Errorf("size %d, want 70", d.size)
	}
	if err := d.add("huge", entry("huge", 101), at); err == nil || !strings.Contains(err.Error(), "larger than dead_letter_max_bytes") {
		t.Errorf("an entry above the cap: %v", err)
	}
	if slices.Contains(dirNames(t, dir), "huge.json") || d.size != 70 {
		t.Error("an entry above the cap was written or evicted others")
	}
}

// TestDeadLetterReopen: the index is rebuilt from the directory, oldest by modification time,
// leftovers of interrupted writes are removed, and a lower cap evicts at once.
func TestDeadLetterReopen(t *testing.T) {
	dir := t.TempDir()
	for i, id := range []string{"new", "old", "mid"} {
		for _, f := range entry(id, 40) {
			p := filepath.Join(dir, f.name)
			if err := os.WriteFile(p, f.data, 0o600); err != nil {
				t.Fatal(err)
			}
			mtime := t0.Add(time.Duration([]int{3, 1, 2}[i]) * time.Minute)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".tmp-x.json-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := openDeadLetter(dir, 90)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dirNames(t, dir), []string{"mid.error.txt", "mid.json", "new.error.txt", "new.json"}; !slices.Equal(got, want) {
		t.Fatalf("after reopening with a cap of 90: %v, want %v", got, want)
	}
	if d.size != 80 {
		t.Errorf("size %d, want 80", d.size)
	}
}

func TestDeadLetterDisabled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	d, err := openDeadLetter(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("the directory was created with dead letter off")
	}
	if err := d.add("a", entry("a", 10), t0); err == nil {
		t.Error("added with dead letter off")
	}
}
