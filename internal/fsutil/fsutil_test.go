package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := WriteNew(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("stat = %v, %v; want mode 0600", info, err)
	}
	if err := WriteNew(path, []byte("other"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteNew = %v, want ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "secret" {
		t.Fatalf("content %q after a refused overwrite", data)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "current")
	for _, content := range []string{"1\n", "22\n"} {
		if err := WriteFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(path); err != nil || string(data) != content {
			t.Fatalf("read %q, %v; want %q", data, err, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file (no temporary left)", len(entries))
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Fatal("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestCopyNew(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(src, []byte("model bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CopyNew(src, dst, 0o644); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(dst); string(data) != "model bytes" {
		t.Fatalf("copied %q", data)
	}
	if err := CopyNew(src, dst, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("copy over an existing file = %v, want ErrExist", err)
	}
	if err := CopyNew(filepath.Join(dir, "none"), filepath.Join(dir, "c"), 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("copy of a missing file = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a failed copy left its destination")
	}
}

// TestWriteNewSyncsDirectory: the new file's directory entry is made durable, after the file
// itself, and a failure of that fsync leaves nothing (the caller must not rely on the name).
func TestWriteNewSyncsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "id")
	var synced []string
	err := writeNew(path, []byte("0123abcd\n"), 0o600, func(d string) error {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory fsynced before the file exists: %v", err)
		}
		synced = append(synced, d)
		return SyncDir(d)
	})
	if err != nil || len(synced) != 1 || synced[0] != dir {
		t.Fatalf("writeNew = %v, directories fsynced %v; want %s once", err, synced, dir)
	}
	other := filepath.Join(dir, "other")
	if err := writeNew(other, []byte("x"), 0o600, func(string) error { return errors.New("EIO") }); err == nil {
		t.Fatal("writeNew succeeded though the directory fsync failed")
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file whose directory fsync failed was left: %v", err)
	}
}
