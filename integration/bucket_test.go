//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// runBinary runs `edgeloop args...` with env added and returns its exit code and output.
func runBinary(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// TestBucketMinIO runs `edgeloop bucket create` and `ls` against a real MinIO: the bucket is
// created once and kept the second time, objects written through objstore are listed with
// their sizes, and wrong credentials or a missing bucket are errors that say so.
func TestBucketMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	env := []string{objstore.EnvAccessKey + "=" + access, objstore.EnvSecretKey + "=" + secret}
	url := "s3://edgeloop?endpoint=" + endpoint + "&insecure=true"

	if code, _, stderr := runBinary(t, env, "bucket", "ls", url); code != 1 || !strings.Contains(stderr, "NoSuchBucket") && !strings.Contains(stderr, "does not exist") {
		t.Fatalf("ls before create = %d:\n%s", code, stderr)
	}
	if code, stdout, stderr := runBinary(t, env, "bucket", "create", url); code != 0 || stdout != "created "+url+"\n" {
		t.Fatalf("create = %d %q %q", code, stdout, stderr)
	}
	if code, stdout, stderr := runBinary(t, env, "bucket", "create", url); code != 0 || stdout != url+" exists already; nothing to do\n" {
		t.Fatalf("second create = %d %q %q", code, stdout, stderr)
	}
	// A URL with a prefix creates the bucket alone: S3 has no directories to make.
	prefixed := "s3://other/site-1?endpoint=" + endpoint + "&insecure=true"
	if code, stdout, stderr := runBinary(t, env, "bucket", "create", prefixed); code != 0 || stdout != "created "+prefixed+"\n" {
		t.Fatalf("create with a prefix = %d %q %q", code, stdout, stderr)
	}
	wrong := []string{objstore.EnvAccessKey + "=" + access, objstore.EnvSecretKey + "=wrong-secret"}
	if code, _, stderr := runBinary(t, wrong, "bucket", "create", "s3://third?endpoint="+endpoint+"&insecure=true"); code != 1 || !strings.Contains(stderr, "SignatureDoesNotMatch") && !strings.Contains(stderr, "signature") {
		t.Fatalf("create with a wrong secret = %d:\n%s", code, stderr)
	}

	b, err := objstore.NewS3(objstore.S3Config{Endpoint: endpoint, Bucket: "edgeloop", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for key, content := range map[string]string{"models/m/1/model.onnx": "12345", "models/m/latest": "1", "samples/x.tar": "abc"} {
		if err := b.Put(context.Background(), key, strings.NewReader(content), int64(len(content))); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := runBinary(t, env, "bucket", "ls", url, "models/")
	if code != 0 || stderr != "2 objects, 6 bytes\n" {
		t.Fatalf("ls models/ = %d %q %q", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || strings.Fields(lines[0])[2] != "models/m/1/model.onnx" || strings.Fields(lines[0])[0] != "5" ||
		strings.Fields(lines[1])[2] != "models/m/latest" {
		t.Fatalf("ls models/ printed:\n%s", stdout)
	}
	if code, stdout, _ := runBinary(t, env, "bucket", "ls", "-d", url); code != 0 || len(strings.Fields(stdout)) != 6 ||
		!strings.Contains(stdout, "models/\n") || !strings.Contains(stdout, "samples/\n") {
		t.Fatalf("ls -d = %d:\n%s", code, stdout)
	}
}
