package modelrepo_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// seedKey returns a fixed key, so signatures in golden checks are reproducible (ed25519
// signing is deterministic).
func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func sampleManifest() modelrepo.Manifest {
	return modelrepo.Manifest{
		SchemaVersion: modelrepo.SchemaVersion,
		Model:         "fashion",
		Version:       3,
		Created:       time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC),
		Files: map[string]modelrepo.FileDigest{
			"model.onnx":   {SHA256: strings.Repeat("ab", 32), Size: 1234},
			"config.pbtxt": {SHA256: strings.Repeat("cd", 32), Size: 300},
		},
		Classes:            []string{"T-shirt/top", "Trouser", "Pullover"},
		Input:              modelrepo.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{-1, 784}},
		Output:             modelrepo.Output{Name: "logits", Kind: modelrepo.OutputLogits},
		SecondOutput:       &modelrepo.Output{Name: "probabilities", Kind: modelrepo.OutputProbabilities, Datatype: "FP32", Shape: []int64{-1, 3}},
		Metrics:            map[string]float64{"accuracy": 0.8812, "loss": 0.33},
		PerClassMetrics:    map[string][]float64{"accuracy": {0.85, 0.97, 0.8}},
		ReferenceHistogram: []float64{0, 0, 0, 0.01, 0.02, 0.03, 0.04, 0.1, 0.2, 0.6},
		ReferenceScorer:    "max_softmax",
		ParentVersion:      2,
		Datasets:           []string{"s3://edgeloop/samples/fashion/2/dt=2026-02-28/hour=10/a.tar"},
	}
}

// TestSigningBytesGolden pins the canonical encoding. Changing it (reordering Manifest's
// fields, renaming a JSON key) would invalidate every signature in every repository, so it
// must show up here first.
func TestSigningBytesGolden(t *testing.T) {
	m := sampleManifest()
	got, err := m.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema_version":1,"model":"fashion","version":3,"created":"2026-03-01T12:30:00Z",` +
		`"files":{"config.pbtxt":{"sha256":"` + strings.Repeat("cd", 32) + `","size":300},"model.onnx":{"sha256":"` + strings.Repeat("ab", 32) + `","size":1234}},` +
		`"classes":["T-shirt/top","Trouser","Pullover"],"input":{"name":"input","datatype":"FP32","shape":[-1,784]},` +
		`"output":{"name":"logits","kind":"logits"},"second_output":{"name":"probabilities","kind":"probabilities","datatype":"FP32","shape":[-1,3]},` +
		`"metrics":{"accuracy":0.8812,"loss":0.33},"per_class_metrics":{"accuracy":[0.85,0.97,0.8]},` +
		`"reference_histogram":[0,0,0,0.01,0.02,0.03,0.04,0.1,0.2,0.6],"reference_scorer":"max_softmax",` +
		`"parent_version":2,"datasets":["s3://edgeloop/samples/fashion/2/dt=2026-02-28/hour=10/a.tar"]}`
	if string(got) != want {
		t.Fatalf("signing bytes changed:\n got %s\nwant %s", got, want)
	}
	// The signature field never contributes.
	m.Signature = &modelrepo.Signature{KeyID: "0123456789abcdef", Algorithm: "ed25519", Value: "xx"}
	if again, _ := m.SigningBytes(); !bytes.Equal(again, got) {
		t.Fatal("signing bytes depend on the signature field")
	}

	s := modelrepo.NewSigner(seedKey(7))
	if err := s.Sign(&m); err != nil {
		t.Fatal(err)
	}
	if m.Signature.KeyID != "fe812c12f3ab4ce6" {
		t.Errorf("key id = %s", m.Signature.KeyID)
	}
	// Both values were computed independently with OpenSSL over the bytes above:
	// `openssl pkeyutl -sign -rawin -inkey seed7.pem -in golden.bin | base64` and the SHA-256
	// of the raw public key from `openssl pkey -pubout -outform DER | tail -c 32`.
	const wantSig = "sySQ6jgc1a+nP0k1yQ+k2CxxnhQ5srh6SJ3Yxcr7USwBJGX/Ou+7tyq9SIV2cYn6BhwvMgB06Fin4nFuegSHAQ=="
	if m.Signature.Value != wantSig {
		t.Errorf("signature over the golden bytes = %s, want %s", m.Signature.Value, wantSig)
	}
}

func signed(t *testing.T, key ed25519.PrivateKey) (modelrepo.Manifest, []byte) {
	t.Helper()
	m := sampleManifest()
	if err := modelrepo.NewSigner(key).Sign(&m); err != nil {
		t.Fatal(err)
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return m, data
}

func TestVerifyReorderedJSON(t *testing.T) {
	key := seedKey(1)
	v := modelrepo.NewVerifier(key.Public().(ed25519.PublicKey))
	_, data := signed(t, key)
	if _, err := modelrepo.VerifyManifest(data, v, "fashion", 3); err != nil {
		t.Fatalf("indented manifest: %v", err)
	}
	// Through a map, keys come out alphabetically: a different order than the struct's, and
	// compact instead of indented. The values are the same, so the signature holds.
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	reordered, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(reordered, data) || !bytes.HasPrefix(reordered, []byte(`{"classes"`)) {
		t.Fatalf("test bug: not reordered: %s", reordered)
	}
	if _, err := modelrepo.VerifyManifest(reordered, v, "fashion", 3); err != nil {
		t.Fatalf("reordered manifest: %v", err)
	}
	// Inside "files" too, and with odd whitespace.
	swapped := strings.Replace(string(data), `"files": {`, "\"files\"  :\n\t{  ", 1)
	if _, err := modelrepo.VerifyManifest([]byte(swapped), v, "fashion", 3); err != nil {
		t.Fatalf("re-spaced manifest: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	key, other := seedKey(1), seedKey(2)
	v := modelrepo.NewVerifier(key.Public().(ed25519.PublicKey))
	good, data := signed(t, key)

	edit := func(f func(m map[string]any)) []byte {
		var generic map[string]any
		if err := json.Unmarshal(data, &generic); err != nil {
			t.Fatal(err)
		}
		f(generic)
		out, err := json.Marshal(generic)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	_, byOther := signed(t, other)
	forged := good
	forged.Signature = &modelrepo.Signature{KeyID: good.Signature.KeyID, Algorithm: "ed25519"}
	{
		m := sampleManifest()
		_ = modelrepo.NewSigner(other).Sign(&m)
		forged.Signature.Value = m.Signature.Value // a real signature, by the wrong key
	}
	forgedData, _ := forged.Marshal()

	for _, c := range []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"no signature", edit(func(m map[string]any) { delete(m, "signature") }), modelrepo.ErrNoSignature, ""},
		{"empty signature", edit(func(m map[string]any) { m["signature"].(map[string]any)["value"] = "" }), modelrepo.ErrNoSignature, ""},
		{"untrusted key", byOther, modelrepo.ErrUnknownKey, "trusted: " + modelrepo.KeyID(key.Public().(ed25519.PublicKey))},
		{"metric edited", edit(func(m map[string]any) { m["metrics"].(map[string]any)["accuracy"] = 0.99 }), modelrepo.ErrBadSignature, ""},
		{"file digest edited", edit(func(m map[string]any) {
			m["files"].(map[string]any)["model.onnx"].(map[string]any)["sha256"] = strings.Repeat("ef", 32)
		}), modelrepo.ErrBadSignature, ""},
		{"class added", edit(func(m map[string]any) { m["classes"] = append(m["classes"].([]any), "Dress") }), modelrepo.ErrBadSignature, ""},
		{"forged key id", forgedData, modelrepo.ErrBadSignature, ""},
		{"garbage signature", edit(func(m map[string]any) { m["signature"].(map[string]any)["value"] = "!!" }), modelrepo.ErrBadSignature, "not a base64"},
		{"other algorithm", edit(func(m map[string]any) { m["signature"].(map[string]any)["algorithm"] = "rsa" }), modelrepo.ErrBadSignature, `algorithm "rsa"`},
		{"unknown field", edit(func(m map[string]any) { m["extra"] = "smuggled" }), modelrepo.ErrInvalidManifest, `unknown field "extra"`},
		{"newer schema", edit(func(m map[string]any) { m["schema_version"] = 2 }), modelrepo.ErrInvalidManifest, "schema_version 2 is newer"},
		{"trailing data", append(slices.Clone(data), []byte(`{}`)...), modelrepo.ErrInvalidManifest, "after top-level value"},
		{"not json", []byte("model.onnx"), modelrepo.ErrInvalidManifest, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := modelrepo.VerifyManifest(c.data, v, "fashion", 3)
			if !errors.Is(err, c.want) {
				t.Fatalf("error = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error = %v, want it to mention %q", err, c.msg)
			}
		})
	}

	// A valid manifest found in the wrong place: replayed as another version or model.
	if _, err := modelrepo.VerifyManifest(data, v, "fashion", 4); !errors.Is(err, modelrepo.ErrManifestMismatch) {
		t.Errorf("as version 4: %v, want ErrManifestMismatch", err)
	}
	if _, err := modelrepo.VerifyManifest(data, v, "digits", 3); !errors.Is(err, modelrepo.ErrManifestMismatch) {
		t.Errorf("as model digits: %v, want ErrManifestMismatch", err)
	}
	// Trusting both keys (a rotation) accepts either signer.
	both := modelrepo.NewVerifier(key.Public().(ed25519.PublicKey), other.Public().(ed25519.PublicKey))
	for _, d := range [][]byte{data, byOther} {
		if _, err := modelrepo.VerifyManifest(d, both, "fashion", 3); err != nil {
			t.Errorf("verifier with both keys: %v", err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(m *modelrepo.Manifest)
		want string
	}{
		{"schema", func(m *modelrepo.Manifest) { m.SchemaVersion = 0 }, "schema_version: must be 1, got 0"},
		{"model name", func(m *modelrepo.Manifest) { m.Model = "../etc" }, `model: must be 1-64 letters`},
		{"model dots", func(m *modelrepo.Manifest) { m.Model = "a..b" }, `model: must be 1-64 letters`},
		{"version zero", func(m *modelrepo.Manifest) { m.Version = 0 }, "version: must be a positive integer, got 0"},
		{"created", func(m *modelrepo.Manifest) { m.Created = time.Time{} }, "created: must be set"},
		{"no files", func(m *modelrepo.Manifest) { m.Files = nil }, "files: must list"},
		{"no model file", func(m *modelrepo.Manifest) { delete(m.Files, "model.onnx") }, "files: must include model.onnx"},
		{"file path", func(m *modelrepo.Manifest) { m.Files["../x"] = m.Files["model.onnx"] }, `files: "../x" is not a plain file name`},
		{"file subdir", func(m *modelrepo.Manifest) { m.Files["a/b"] = m.Files["model.onnx"] }, `files: "a/b" is not a plain file name`},
		{"manifest listed", func(m *modelrepo.Manifest) { m.Files["edgeloop.json"] = m.Files["model.onnx"] }, "files: must not include edgeloop.json"},
		{"bad digest", func(m *modelrepo.Manifest) { m.Files["model.onnx"] = modelrepo.FileDigest{SHA256: "ABC", Size: 1} }, "files[model.onnx].sha256: must be 64 lowercase hex digits"},
		{"negative size", func(m *modelrepo.Manifest) {
			m.Files["model.onnx"] = modelrepo.FileDigest{SHA256: strings.Repeat("0", 64), Size: -1}
		}, "files[model.onnx].size"},
		{"duplicate class", func(m *modelrepo.Manifest) { m.Classes[2] = "Trouser" }, `classes[2]: "Trouser" appears twice`},
		{"empty class", func(m *modelrepo.Manifest) { m.Classes[0] = "" }, "classes[0]: must not be empty"},
		{"input name", func(m *modelrepo.Manifest) { m.Input.Name = `in"put` }, "input.name: must be 1-256 printable ASCII"},
		{"input datatype", func(m *modelrepo.Manifest) { m.Input.Datatype = "FLOAT" }, `input.datatype: must be an Open Inference Protocol datatype such as FP32, got "FLOAT"`},
		{"input shape", func(m *modelrepo.Manifest) { m.Input.Shape = nil }, "input.shape: must be set"},
		{"input dim", func(m *modelrepo.Manifest) { m.Input.Shape = []int64{-1, 0} }, "input.shape: dimensions must be positive or -1"},
		{"output kind", func(m *modelrepo.Manifest) { m.Output.Kind = "scores" }, `output.kind: must be "logits" or "probabilities", got "scores"`},
		{"output classes", func(m *modelrepo.Manifest) { m.SecondOutput.Shape = []int64{-1, 10} }, "second_output.shape: last dimension 10 differs from the 3 classes"},
		{"second output same name", func(m *modelrepo.Manifest) { m.SecondOutput.Name = "logits" }, "second_output.name: must differ"},
		{"per-class length", func(m *modelrepo.Manifest) { m.PerClassMetrics["accuracy"] = []float64{1} }, "per_class_metrics[accuracy]: has 1 values for 3 classes"},
		{"histogram bins", func(m *modelrepo.Manifest) { m.ReferenceHistogram = []float64{1} }, "reference_histogram: must have 2 to 100 bins, got 1"},
		{"histogram negative", func(m *modelrepo.Manifest) { m.ReferenceHistogram[0] = -1 }, "reference_histogram: values must be finite and not negative"},
		{"histogram zero", func(m *modelrepo.Manifest) { m.ReferenceHistogram = make([]float64, 10) }, "reference_histogram: must not be all zero"},
		{"histogram scorer", func(m *modelrepo.Manifest) { m.ReferenceScorer = "" }, "reference_scorer: must name the scorer"},
		{"scorer alone", func(m *modelrepo.Manifest) { m.ReferenceHistogram = nil }, "reference_scorer: set without reference_histogram"},
		{"parent self", func(m *modelrepo.Manifest) { m.ParentVersion = 3 }, "parent_version: must be 0 (none) or another version's number, got 3"},
		{"dataset uri", func(m *modelrepo.Manifest) { m.Datasets = []string{"shard.tar"} }, `datasets[0]: must be a URI with a scheme`},
		{"task", func(m *modelrepo.Manifest) { m.Task = "detection" }, `task: must be "classification" or empty, got "detection"`},
		{"temperature", func(m *modelrepo.Manifest) { m.Calibration.Temperature = 0 }, "calibration.temperature: must be positive and finite, got 0"},
		{"calibration ece", func(m *modelrepo.Manifest) { m.Calibration.ECE = 2 }, "calibration: ece and ece_before must be between 0 and 1"},
		{"calibration digest", func(m *modelrepo.Manifest) { m.Calibration.EvalDigest = "x" }, "calibration.eval_digest: must be 64 lowercase hex digits"},
		{"calibration samples", func(m *modelrepo.Manifest) { m.Calibration.Samples = 0 }, "calibration.samples: must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := sampleManifest()
			m.Task = modelrepo.TaskClassification
			m.Calibration = &modelrepo.Calibration{Temperature: 1.5, ECE: 0.02, ECEBefore: 0.08, EvalDigest: strings.Repeat("e", 64), Samples: 500}
			c.edit(&m)
			err := m.Validate()
			if !errors.Is(err, modelrepo.ErrInvalidManifest) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidManifest mentioning %q", err, c.want)
			}
			// An invalid manifest is never signed.
			if err := modelrepo.NewSigner(seedKey(1)).Sign(&m); err == nil || m.Signature != nil {
				t.Fatalf("Sign accepted an invalid manifest")
			}
		})
	}
	m := sampleManifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("sample manifest: %v", err)
	}
}

// TestTaskAndCalibrationSigned: the fields the gate adds are signed like the rest, and a
// manifest without them (every version published before they existed) encodes exactly as
// before, so its signature still verifies (TestSigningBytesGolden pins that encoding).
func TestTaskAndCalibrationSigned(t *testing.T) {
	key := seedKey(7)
	v := modelrepo.NewVerifier(key.Public().(ed25519.PublicKey))
	m := sampleManifest()
	m.Task = modelrepo.TaskClassification
	m.Calibration = &modelrepo.Calibration{Temperature: 1.5, ECE: 0.02, ECEBefore: 0.08, EvalDigest: strings.Repeat("e", 64), Samples: 500}
	if err := modelrepo.NewSigner(key).Sign(&m); err != nil {
		t.Fatal(err)
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := modelrepo.VerifyManifest(data, v, "fashion", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got.Task != modelrepo.TaskClassification || got.Calibration == nil || got.Calibration.Temperature != 1.5 {
		t.Fatalf("round trip lost the fields: task %q calibration %+v", got.Task, got.Calibration)
	}
	// Changing the temperature breaks the signature.
	tampered := bytes.Replace(data, []byte(`"temperature": 1.5`), []byte(`"temperature": 0.5`), 1)
	if bytes.Equal(tampered, data) {
		t.Fatal("test did not find the temperature in the manifest")
	}
	if _, err := modelrepo.VerifyManifest(tampered, v, "fashion", 3); err == nil {
		t.Fatal("a tampered temperature verified")
	}
	// Without the fields, nothing of them is encoded.
	old := sampleManifest()
	b, err := old.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("task")) || bytes.Contains(b, []byte("calibration")) {
		t.Fatalf("an old manifest's signing bytes now mention the new fields: %s", b)
	}
}

func TestNames(t *testing.T) {
	for _, ok := range []string{"fashion", "Fashion-MNIST_v2.1", "_x", "a"} {
		if err := modelrepo.ValidateModelName(ok); err != nil {
			t.Errorf("ValidateModelName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "a..b", "a/b", "a b", strings.Repeat("m", 65), "ünï"} {
		if err := modelrepo.ValidateModelName(bad); !errors.Is(err, modelrepo.ErrInvalidName) {
			t.Errorf("ValidateModelName(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	for _, bad := range []string{"latest", "3", "01", "a/b", ""} {
		if err := modelrepo.ValidateAliasName(bad); !errors.Is(err, modelrepo.ErrInvalidName) {
			t.Errorf("ValidateAliasName(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	for _, ok := range []string{"stable", "canary", "v2"} {
		if err := modelrepo.ValidateAliasName(ok); err != nil {
			t.Errorf("ValidateAliasName(%q) = %v", ok, err)
		}
	}
}

func TestKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	kf, err := modelrepo.GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{kf.Private: 0o600, kf.Public: 0o644} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, info.Mode().Perm(), mode)
		}
	}
	priv, _ := os.ReadFile(kf.Private)
	pub, _ := os.ReadFile(kf.Public)
	if !bytes.HasPrefix(priv, []byte("-----BEGIN PRIVATE KEY-----\n")) || !bytes.HasPrefix(pub, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("PEM headers: %q / %q", priv[:30], pub[:30])
	}
	if _, err := modelrepo.GenerateKey(dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second GenerateKey into the same directory = %v, want it to refuse to overwrite", err)
	}
	signer, err := modelrepo.LoadSigner(kf.Private)
	if err != nil {
		t.Fatal(err)
	}
	if signer.KeyID() != kf.KeyID || len(kf.KeyID) != 16 {
		t.Fatalf("key ids: signer %s, files %s", signer.KeyID(), kf.KeyID)
	}
	for _, arg := range []string{kf.Public, dir} {
		v, err := modelrepo.LoadVerifier(arg)
		if err != nil {
			t.Fatalf("LoadVerifier(%s): %v", arg, err)
		}
		if !slices.Equal(v.KeyIDs(), []string{kf.KeyID}) {
			t.Fatalf("LoadVerifier(%s) trusts %v", arg, v.KeyIDs())
		}
		m := sampleManifest()
		if err := signer.Sign(&m); err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(&m); err != nil {
			t.Fatalf("round trip through key files: %v", err)
		}
	}
	// The wrong kind of file is refused with a clear error.
	if _, err := modelrepo.LoadSigner(kf.Public); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("LoadSigner(public key) = %v", err)
	}
	if _, err := modelrepo.LoadVerifier(kf.Private); err == nil || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Errorf("LoadVerifier(private key) = %v", err)
	}
	if _, err := modelrepo.LoadVerifier(t.TempDir()); err == nil {
		t.Error("LoadVerifier(empty directory) succeeded")
	}
}

func TestTritonConfig(t *testing.T) {
	m := sampleManifest()
	want := `# Generated by edgeloop for fashion version 3 from its edgeloop.json.
name: "fashion"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 784 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 3 ]
  },
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
]
`
	if got := string(modelrepo.TritonConfig(&m, 32)); got != want {
		t.Fatalf("config.pbtxt:\n%s\nwant:\n%s", got, want)
	}
	// A fixed first dimension means no batching: full shapes, max_batch_size 0.
	m.Input.Shape = []int64{1, 28, 28}
	m.SecondOutput = nil
	got := string(modelrepo.TritonConfig(&m, 0))
	if !strings.Contains(got, "max_batch_size: 0\n") || !strings.Contains(got, "dims: [ 1, 28, 28 ]") || !strings.Contains(got, "dims: [ -1, 3 ]") {
		t.Fatalf("unbatched config.pbtxt:\n%s", got)
	}
}

// tinyONNX is a two-layer classifier over 4 inputs and 3 classes, with logits and
// probabilities outputs, as `edgeloop train` exports its MLP.
func tinyONNX(t testing.TB, classesMeta string) []byte {
	t.Helper()
	m := &onnx.Model{
		IRVersion: 8,
		Opsets:    []onnx.Opset{{Version: 13}},
		Graph: onnx.Graph{
			Name: "tiny",
			Initializers: []onnx.Tensor{
				{Name: "w", DataType: onnx.Float, Dims: []int64{3, 4}, Float32: make([]float32, 12)},
				{Name: "b", DataType: onnx.Float, Dims: []int64{3}, Float32: []float32{0.5, 0, 0}},
			},
			Inputs: []onnx.ValueInfo{{Name: "pixels", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 4}}}},
			Outputs: []onnx.ValueInfo{
				{Name: "logits", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 3}}},
				{Name: "probs", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 3}}},
			},
			Nodes: []onnx.Node{
				{Name: "fc", OpType: "Gemm", Inputs: []string{"pixels", "w", "b"}, Outputs: []string{"logits"},
					Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}}},
				{Name: "sm", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probs"},
					Attrs: map[string]onnx.Attribute{"axis": {Type: onnx.AttrInt, Int: -1}}},
			},
		},
	}
	if classesMeta != "" {
		m.Metadata = map[string]string{"classes": classesMeta}
	}
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDraftManifest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("model.onnx", string(tinyONNX(t, `["zero","one","two"]`)))
	write("metrics.json", `{"model":"tiny","base_version":"4","accuracy":0.9,"loss":0.25,
		"per_class_accuracy":{"one":0.8,"zero":1,"two":0.9},
		"confidence_histogram":[0,0,1,2,3],"confidence_scorer":"margin",
		"history":[{"epoch":1}],"seed":1}`)
	m, err := modelrepo.DraftManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Model != "tiny" || m.ParentVersion != 4 {
		t.Errorf("model %q parent %d, want tiny and 4 from metrics.json", m.Model, m.ParentVersion)
	}
	if !slices.Equal(m.Classes, []string{"zero", "one", "two"}) {
		t.Errorf("classes = %q, want the model's metadata", m.Classes)
	}
	if m.Input.Name != "pixels" || m.Input.Datatype != "FP32" || !slices.Equal(m.Input.Shape, []int64{-1, 4}) {
		t.Errorf("input = %+v", m.Input)
	}
	if m.Output.Name != "logits" || m.Output.Kind != "logits" || m.SecondOutput == nil || m.SecondOutput.Name != "probs" || m.SecondOutput.Kind != "probabilities" {
		t.Errorf("outputs = %+v, %+v", m.Output, m.SecondOutput)
	}
	if m.Metrics["accuracy"] != 0.9 || m.Metrics["loss"] != 0.25 || len(m.Metrics) != 2 {
		t.Errorf("metrics = %v", m.Metrics)
	}
	if !slices.Equal(m.PerClassMetrics["accuracy"], []float64{1, 0.8, 0.9}) {
		t.Errorf("per-class accuracy = %v, want it in class order", m.PerClassMetrics["accuracy"])
	}
	if !slices.Equal(m.ReferenceHistogram, []float64{0, 0, 1, 2, 3}) || m.ReferenceScorer != "margin" {
		t.Errorf("reference = %v %q", m.ReferenceHistogram, m.ReferenceScorer)
	}

	// Signed in place, then verified; a changed byte is caught.
	signer := modelrepo.NewSigner(seedKey(3))
	m.Version = 5
	if _, err := modelrepo.SignDir(dir, *m, signer); err != nil {
		t.Fatal(err)
	}
	v := modelrepo.NewVerifier(signer.Public())
	got, err := modelrepo.VerifyDir(dir, v, "tiny", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != 2 || got.Files["metrics.json"].Size == 0 {
		t.Fatalf("signed files = %v, want model.onnx and metrics.json", got.Files)
	}
	// Comma-separated metadata and a list of per-class values also work; a re-sign reuses
	// the signed manifest as its base.
	write("model.onnx", string(tinyONNX(t, "a, b ,c")))
	write("metrics.json", `{"accuracy":0.5,"per_class_accuracy":[0.1,0.2,0.3]}`)
	if _, err := modelrepo.VerifyDir(dir, v, "", 0); !errors.Is(err, modelrepo.ErrDigestMismatch) {
		t.Fatalf("VerifyDir after changing model.onnx = %v, want ErrDigestMismatch", err)
	}
	m2, err := modelrepo.DraftManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Model != "tiny" || m2.Version != 5 || m2.Signature != nil || !slices.Equal(m2.Classes, []string{"zero", "one", "two"}) {
		t.Errorf("re-draft = model %q version %d classes %q signature %v", m2.Model, m2.Version, m2.Classes, m2.Signature)
	}
	if !slices.Equal(m2.PerClassMetrics["accuracy"], []float64{0.1, 0.2, 0.3}) || m2.Metrics["accuracy"] != 0.5 {
		t.Errorf("re-draft metrics = %v %v", m2.Metrics, m2.PerClassMetrics)
	}
	write("extra.bin", "x")
	if _, err := modelrepo.SignDir(dir, *m2, signer); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unsigned.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := modelrepo.VerifyDir(dir, v, "", 0); !errors.Is(err, modelrepo.ErrDigestMismatch) || !strings.Contains(err.Error(), "unsigned.txt is not listed") {
		t.Fatalf("VerifyDir with an unlisted file = %v", err)
	}

	empty := t.TempDir()
	if _, err := modelrepo.VerifyDir(empty, v, "", 0); !errors.Is(err, modelrepo.ErrNoManifest) {
		t.Fatalf("VerifyDir(empty) = %v, want ErrNoManifest", err)
	}
}

func TestReason(t *testing.T) {
	for err, want := range map[error]string{
		nil:                            "",
		modelrepo.ErrBadSignature:      "bad_signature",
		modelrepo.ErrDigestMismatch:    "digest_mismatch",
		errors.New("connection reset"): "storage",
	} {
		if got := modelrepo.Reason(err); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}
