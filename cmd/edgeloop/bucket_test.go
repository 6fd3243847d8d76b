package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

func runBucketCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runBucket(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBucketUsage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, exitUsage, "usage: edgeloop bucket"},
		{"unknown command", []string{"rm"}, exitUsage, `unknown command "rm"`},
		{"create without URL", []string{"create"}, exitUsage, "exactly one bucket URL is required"},
		{"create two URLs", []string{"create", "file:///a", "file:///b"}, exitUsage, "exactly one bucket URL is required"},
		{"create relative path", []string{"create", "file://rel/dir"}, exitUsage, "a file URL names a local path"},
		{"create no scheme", []string{"create", "/tmp/x"}, exitUsage, "has no scheme"},
		{"create credentials in URL", []string{"create", "s3://key:secret@bucket"}, exitUsage, "credentials in the URL are not accepted"},
		{"create unknown parameter", []string{"create", "s3://bucket?endpont=x"}, exitUsage, `unknown parameter "endpont"`},
		{"create bad bucket name", []string{"create", "s3://B_ad?endpoint=127.0.0.1:1"}, exitUsage, "bucket"},
		{"create read-only HTTP", []string{"create", "http://127.0.0.1:1/v1/repo"}, exitUsage, "read-only model repository"},
		{"create over a file", []string{"create", "file://" + file}, exitFailure, "exists and is not a directory"},
		{"ls without URL", []string{"ls"}, exitUsage, "a bucket URL and an optional key prefix are required"},
		{"ls three arguments", []string{"ls", "file:///a", "b", "c"}, exitUsage, "a bucket URL and an optional key prefix are required"},
		{"ls bad prefix", []string{"ls", "file:///a", "a//b"}, exitUsage, "empty path segment"},
		{"ls missing directory", []string{"ls", "file://" + filepath.Join(t.TempDir(), "none")}, exitFailure, "create it with 'edgeloop bucket create'"},
		{"ls no server", []string{"ls", "s3://edgeloop?endpoint=127.0.0.1:1&insecure=true"}, exitFailure, "edgeloop bucket ls: s3://edgeloop"},
		{"create no server", []string{"create", "s3://edgeloop?endpoint=127.0.0.1:1&insecure=true"}, exitFailure, "create bucket edgeloop"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(objstore.EnvAccessKey, "")
			t.Setenv(objstore.EnvSecretKey, "")
			code, _, stderr := runBucketCmd(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Fatalf("bucket %v = %d, want %d and stderr containing %q:\n%s", c.args, code, c.code, c.stderr, stderr)
			}
		})
	}
	// -h is a success, on stdout for the group and stderr for a subcommand's flags.
	if code, stdout, _ := runBucketCmd(t, "-h"); code != exitOK || !strings.Contains(stdout, "create") || !strings.Contains(stdout, "ls") {
		t.Fatalf("bucket -h = %d:\n%s", code, stdout)
	}
	if code, _, stderr := runBucketCmd(t, "ls", "-h"); code != exitOK || !strings.Contains(stderr, "usage: edgeloop bucket ls") {
		t.Fatalf("bucket ls -h = %d:\n%s", code, stderr)
	}
}

func TestBucketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store", "edgeloop")
	url := "file://" + dir

	code, stdout, stderr := runBucketCmd(t, "create", url)
	if code != exitOK || stdout != "created "+url+"\n" {
		t.Fatalf("first create = %d %q %q", code, stdout, stderr)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Fatalf("create made no directory: %v", err)
	}
	// A second create succeeds and says it did nothing, so setup scripts may repeat it.
	code, stdout, stderr = runBucketCmd(t, "create", url)
	if code != exitOK || stdout != url+" exists already; nothing to do\n" {
		t.Fatalf("second create = %d %q %q", code, stdout, stderr)
	}

	code, stdout, stderr = runBucketCmd(t, "ls", url)
	if code != exitOK || stdout != "" || stderr != "0 objects, 0 bytes\n" {
		t.Fatalf("ls of an empty bucket = %d %q %q", code, stdout, stderr)
	}

	b, err := objstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objects := map[string]string{"models/m/1/model.onnx": "12345", "models/m/1/edgeloop.json": "{}", "models/n/latest": "1", "samples/a.tar": ""}
	for key, content := range objects {
		if err := b.Put(context.Background(), key, strings.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name   string
		args   []string
		keys   []string
		sizes  []string
		stderr string
	}{
		{"everything", []string{url}, []string{"models/m/1/edgeloop.json", "models/m/1/model.onnx", "models/n/latest", "samples/a.tar"}, []string{"2", "5", "1", "0"}, "4 objects, 8 bytes\n"},
		{"prefix", []string{url, "models/m/"}, []string{"models/m/1/edgeloop.json", "models/m/1/model.onnx"}, []string{"2", "5"}, "2 objects, 7 bytes\n"},
		{"string prefix", []string{url, "models/"}, []string{"models/m/1/edgeloop.json", "models/m/1/model.onnx", "models/n/latest"}, []string{"2", "5", "1"}, "3 objects, 8 bytes\n"},
		{"one level", []string{"-d", url, "models/"}, []string{"models/m/", "models/n/"}, []string{"-", "-"}, "0 objects, 0 bytes\n"},
		{"one level of the root", []string{"-d", url}, []string{"models/", "samples/"}, []string{"-", "-"}, "0 objects, 0 bytes\n"},
		{"nothing matches", []string{url, "labels/"}, nil, nil, "0 objects, 0 bytes\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runBucketCmd(t, append([]string{"ls"}, c.args...)...)
			if code != exitOK || stderr != c.stderr {
				t.Fatalf("ls %v = %d, stderr %q, want %q", c.args, code, stderr, c.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if stdout == "" {
				lines = nil
			}
			if len(lines) != len(c.keys) {
				t.Fatalf("ls %v printed %d lines, want %d:\n%s", c.args, len(lines), len(c.keys), stdout)
			}
			for i, line := range lines {
				f := strings.Fields(line)
				if len(f) != 3 || f[0] != c.sizes[i] || f[2] != c.keys[i] {
					t.Errorf("line %d = %q, want size %s and key %s", i, line, c.sizes[i], c.keys[i])
				}
				if f[0] != "-" && !strings.HasSuffix(f[1], "Z") {
					t.Errorf("line %d: time %q is not RFC 3339 UTC", i, f[1])
				}
			}
		})
	}
}
