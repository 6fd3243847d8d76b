package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

func runModelCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runModel(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// trainerOutput writes what `edgeloop train` leaves behind: model.onnx (linearModel with zero
// weights) and metrics.json.
func trainerOutput(t *testing.T, accuracy string) string {
	t.Helper()
	dir := linearModel(t, make([]float32, 6))
	metrics := `{"accuracy": ` + accuracy + `, "per_class_accuracy": [0.5, 0.7], "confidence_histogram": [1, 2, 3, 4], "confidence_scorer": "max_softmax"}`
	if err := os.WriteFile(filepath.Join(dir, "metrics.json"), []byte(metrics), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// linearModel writes, in a new directory, a model.onnx of classes cat and dog whose logits are
// weights (2×3, row-major) times a 3-value input.
func linearModel(t *testing.T, weights []float32) string {
	t.Helper()
	dir := t.TempDir()
	m := &onnx.Model{
		IRVersion: 8,
		Opsets:    []onnx.Opset{{Version: 13}},
		Metadata:  map[string]string{"classes": `["cat","dog"]`},
		Graph: onnx.Graph{
			Name:         "mlp",
			Initializers: []onnx.Tensor{{Name: "w", DataType: onnx.Float, Dims: []int64{2, 3}, Float32: weights}},
			Inputs:       []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 3}}}},
			Outputs:      []onnx.ValueInfo{{Name: "logits", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 2}}}},
			Nodes: []onnx.Node{{OpType: "Gemm", Inputs: []string{"input", "w"}, Outputs: []string{"logits"},
				Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}}}},
		},
	}
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAccuracyColumns: ls shows the trainer's accuracy and the gate's in two columns, whichever
// way the version was published.
func TestAccuracyColumns(t *testing.T) {
	gated := map[string]modelrepo.FileDigest{"model.onnx": {}, publish.GateFile: {}}
	for _, tc := range []struct {
		name          string
		m             modelrepo.Manifest
		trainer, gate string
	}{
		{"by hand", modelrepo.Manifest{Metrics: map[string]float64{"accuracy": 0.915}, Files: map[string]modelrepo.FileDigest{"model.onnx": {}}}, "0.9150", "-"},
		{"by the controller", modelrepo.Manifest{Metrics: map[string]float64{"accuracy": 0.908, "trainer_accuracy": 0.915}, Files: gated}, "0.9150", "0.9080"},
		{"controller, job without accuracy", modelrepo.Manifest{Metrics: map[string]float64{"accuracy": 0.7}, Files: gated}, "-", "0.7000"},
		{"no metrics", modelrepo.Manifest{}, "-", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trainer, gate := accuracyColumns(&tc.m)
			if trainer != tc.trainer || gate != tc.gate {
				t.Errorf("columns = %s, %s; want %s, %s", trainer, gate, tc.trainer, tc.gate)
			}
		})
	}
}

func TestModelUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage: edgeloop model"},
		{[]string{"--help"}, exitOK, "keygen"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"keygen"}, exitUsage, "--out DIR is required"},
		{[]string{"sign", "dir"}, exitUsage, "--key and one version directory are required"},
		{[]string{"verify", "--pub", "k.pub"}, exitUsage, "--pub and one version directory are required"},
		{[]string{"publish", "--key", "k", "dir"}, exitUsage, "--repo, --key and one version directory are required"},
		{[]string{"ls"}, exitUsage, "--repo is required"},
		{[]string{"ls", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"ls", "--repo", "ftp://x"}, exitUsage, `unsupported scheme "ftp"`},
		{[]string{"keygen", "-h"}, exitOK, "-out"},
		{[]string{"ls", "--repo", "file:///nonexistent/edgeloop-repo"}, exitFailure, "no repository at file:///nonexistent/edgeloop-repo"},
	} {
		code, stdout, stderr := runModelCmd(t, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("edgeloop model %q = %d\nstdout: %s\nstderr: %s\nwant %d and %q", c.args, code, stdout, stderr, c.code, c.want)
		}
	}
}

func TestModelKeygenSignVerify(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	code, stdout, stderr := runModelCmd(t, "keygen", "--out", keys)
	if code != exitOK || !regexp.MustCompile(`key id [0-9a-f]{16}`).MatchString(stdout) {
		t.Fatalf("keygen = %d: %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runModelCmd(t, "keygen", "--out", keys); code != exitFailure || !strings.Contains(stderr, "exists") {
		t.Fatalf("keygen over existing keys = %d: %s", code, stderr)
	}
	other := filepath.Join(t.TempDir(), "other")
	runModelCmd(t, "keygen", "--out", other)

	dir := trainerOutput(t, "0.875")
	code, stdout, stderr = runModelCmd(t, "sign", "--key", filepath.Join(keys, "edgeloop.key"), "--model", "pets", "--version", "4", "--dataset", "s3://b/samples/pets/", dir)
	if code != exitOK || !strings.Contains(stdout, "signed pets version 4 (2 files)") {
		t.Fatalf("sign = %d: %s %s", code, stdout, stderr)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "edgeloop.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"classes": [`, `"cat"`, `"accuracy": 0.875`, `"name": "input"`, `"kind": "logits"`, `"s3://b/samples/pets/"`, `"reference_scorer": "max_softmax"`, `"algorithm": "ed25519"`} {
		if !strings.Contains(string(manifest), want) {
			t.Errorf("edgeloop.json lacks %s:\n%s", want, manifest)
		}
	}

	code, stdout, _ = runModelCmd(t, "verify", "--pub", filepath.Join(keys, "edgeloop.pub"), dir)
	if code != exitOK || !strings.Contains(stdout, "OK: ") || !strings.Contains(stdout, "pets version 4") {
		t.Fatalf("verify = %d: %s", code, stdout)
	}
	// A directory of keys works as the trust set; the wrong key alone is refused.
	if code, _, _ := runModelCmd(t, "verify", "--pub", other, "--pub", keys, dir); code != exitOK {
		t.Fatalf("verify with a key directory = %d", code)
	}
	code, _, stderr = runModelCmd(t, "verify", "--pub", filepath.Join(other, "edgeloop.pub"), dir)
	if code != exitFailure || !strings.Contains(stderr, "(unknown_key)") {
		t.Fatalf("verify with the wrong key = %d: %s", code, stderr)
	}
	code, _, stderr = runModelCmd(t, "verify", "--pub", keys, "--version", "5", dir)
	if code != exitFailure || !strings.Contains(stderr, "(manifest_mismatch)") {
		t.Fatalf("verify --version 5 of version 4 = %d: %s", code, stderr)
	}
	// One byte changed in the model.
	model, _ := os.ReadFile(filepath.Join(dir, "model.onnx"))
	model[len(model)-1] ^= 0xff
	os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644)
	code, _, stderr = runModelCmd(t, "verify", "--pub", keys, dir)
	if code != exitFailure || !strings.Contains(stderr, "(digest_mismatch)") || !strings.Contains(stderr, "model.onnx has sha256") {
		t.Fatalf("verify of a tampered model = %d: %s", code, stderr)
	}
}

func TestModelPublishLsFile(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	runModelCmd(t, "keygen", "--out", keys)
	repo := "file://" + filepath.ToSlash(t.TempDir())
	testPublishLs(t, repo, filepath.Join(keys, "edgeloop.key"), keys)
}

func TestModelPublishLsMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	if err := objstore.CreateS3Bucket(context.Background(), objstore.S3Config{Endpoint: endpoint, Bucket: "models", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	keys := filepath.Join(t.TempDir(), "keys")
	runModelCmd(t, "keygen", "--out", keys)
	testPublishLs(t, "s3://models/site-a?endpoint="+endpoint+"&insecure=true", filepath.Join(keys, "edgeloop.key"), keys)
}

func testPublishLs(t *testing.T, repo, key, pubs string) {
	t.Helper()
	code, stdout, stderr := runModelCmd(t, "publish", "--repo", repo, "--key", key, "--model", "pets", "--alias", "stable", trainerOutput(t, "0.81"))
	if code != exitOK || !strings.Contains(stdout, "published pets version 1") || !strings.Contains(stdout, "alias stable -> version 1") {
		t.Fatalf("publish = %d: %s %s", code, stdout, stderr)
	}
	// A signed directory publishes too; publish assigns the version, not the one signed.
	dir := trainerOutput(t, "0.9")
	runModelCmd(t, "sign", "--key", key, "--model", "pets", "--version", "40", dir)
	code, stdout, stderr = runModelCmd(t, "publish", "--repo", repo, "--key", key, "--alias", "canary", dir)
	if code != exitOK || !strings.Contains(stdout, "published pets version 2") {
		t.Fatalf("second publish = %d: %s %s", code, stdout, stderr)
	}
	code, _, stderr = runModelCmd(t, "publish", "--repo", repo, "--key", key, "--model", "pets", "--version", "2", trainerOutput(t, "0.5"))
	if code != exitFailure || !strings.Contains(stderr, "version already exists") {
		t.Fatalf("publishing over version 2 = %d: %s", code, stderr)
	}
	code, _, stderr = runModelCmd(t, "publish", "--repo", repo, "--key", key, trainerOutput(t, "0.5"))
	if code != exitUsage || !strings.Contains(stderr, "--model is required") {
		t.Fatalf("publish without a model name = %d: %s", code, stderr)
	}

	code, stdout, stderr = runModelCmd(t, "ls", "--repo", repo, "--pub", pubs)
	if code != exitOK {
		t.Fatalf("ls = %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "MODEL") {
		t.Fatalf("ls output:\n%s", stdout)
	}
	// Published by hand: the trainer's accuracy, and no gate score.
	row1 := regexp.MustCompile(`^pets\s+1\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+0\.8100\s+-\s+stable\s+[0-9a-f]{16}\s+ok$`)
	row2 := regexp.MustCompile(`^pets\s+2\s+\S+\s+0\.9000\s+-\s+canary\s+[0-9a-f]{16}\s+ok$`)
	if !row1.MatchString(lines[1]) || !row2.MatchString(lines[2]) {
		t.Fatalf("ls rows:\n%s", stdout)
	}
	if code, stdout, _ := runModelCmd(t, "ls", "--repo", repo, "--model", "nothing"); code != exitOK || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("ls --model nothing = %d:\n%s", code, stdout)
	}

	// Promote: stable moves to 2 (and both aliases show on version 2); then canary goes.
	if code, stdout, stderr := runModelCmd(t, "alias", "--repo", repo, "--key", key, "--model", "pets", "stable", "2"); code != exitOK || !strings.Contains(stdout, "alias stable of pets -> version 2") {
		t.Fatalf("alias stable 2 = %d: %s %s", code, stdout, stderr)
	}
	checkSignedAlias(t, repo, key, "stable", 2)
	checkSignedAlias(t, repo, key, "canary", 2)
	if code, _, stderr := runModelCmd(t, "alias", "--repo", repo, "--model", "pets", "stable", "9"); code != exitFailure || !strings.Contains(stderr, "version not found") {
		t.Fatalf("alias to a missing version = %d: %s", code, stderr)
	}
	if code, _, stderr := runModelCmd(t, "alias", "--repo", repo, "--model", "pets", "latest", "1"); code != exitUsage || !strings.Contains(stderr, "cannot be aliases") {
		t.Fatalf("alias named latest = %d: %s", code, stderr)
	}
	if code, _, stderr := runModelCmd(t, "alias", "--repo", repo, "--model", "pets", "--delete", "canary"); code != exitOK {
		t.Fatalf("alias --delete = %d: %s", code, stderr)
	}
	_, stdout, _ = runModelCmd(t, "ls", "--repo", repo)
	if !regexp.MustCompile(`(?m)^pets\s+2\s+\S+\s+0\.9000\s+-\s+stable\s`).MatchString(stdout) || strings.Contains(stdout, "canary") {
		t.Fatalf("ls after moving stable and deleting canary:\n%s", stdout)
	}
}

// checkSignedAlias checks that alias of "pets" in repo points at version with a pointer
// signed by key's public half.
func checkSignedAlias(t *testing.T, repo, key, alias string, version int64) {
	t.Helper()
	bucket, err := objstore.Open(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	a, err := modelrepo.New(bucket).Alias(context.Background(), "pets", alias)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := modelrepo.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := modelrepo.VerifyPointer(&a, modelrepo.NewVerifier(signer.Public()), "pets", alias); err != nil || a.Version != version {
		t.Errorf("alias %s: version %d, verify: %v; want version %d, signed", alias, a.Version, err, version)
	}
}
