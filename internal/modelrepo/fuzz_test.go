package modelrepo_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// fuzzSigner signs the fuzz seeds; its key is fixed, so the seeds are reproducible.
func fuzzSigner() (*modelrepo.Signer, *modelrepo.Verifier) {
	key := seedKey(9)
	return modelrepo.NewSigner(key), modelrepo.NewVerifier(key.Public().(ed25519.PublicKey))
}

// signedManifests are the manifests the seeds hold, signed: the only content that may ever
// verify under fuzzSigner's key.
func signedManifests(tb testing.TB) []*modelrepo.Manifest {
	signer, _ := fuzzSigner()
	full := sampleManifest()
	minimal := modelrepo.Manifest{
		SchemaVersion: modelrepo.SchemaVersion, Model: "tiny", Version: 1, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Files:   map[string]modelrepo.FileDigest{"model.onnx": {SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Size: 10}},
		Classes: []string{"a", "b"},
		Input:   modelrepo.Tensor{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}},
		Output:  modelrepo.Output{Name: "y", Kind: modelrepo.OutputProbabilities},
	}
	var out []*modelrepo.Manifest
	for _, m := range []modelrepo.Manifest{full, minimal} {
		if err := signer.Sign(&m); err != nil {
			tb.Fatal(err)
		}
		out = append(out, &m)
	}
	return out
}

// FuzzVerifyManifest feeds arbitrary bytes to VerifyManifest, which parses untrusted JSON
// before it checks the signature, with a real trusted key. Seeds (testdata/fuzz): manifests
// signed by that key, one with a field changed after signing, one with a signature from
// another key, one unsigned, one from a newer schema. Nothing may panic, and whatever verifies
// must be, value for value, one of the manifests the key signed: the fuzzer can reorder,
// re-indent and re-escape the JSON, but never get content the key did not sign accepted.
func FuzzVerifyManifest(f *testing.F) {
	_, v := fuzzSigner()
	signed := map[string]bool{}
	for _, m := range signedManifests(f) {
		b, err := m.SigningBytes()
		if err != nil {
			f.Fatal(err)
		}
		signed[string(b)] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := modelrepo.VerifyManifest(data, v, "", 0)
		if err != nil {
			if m != nil {
				t.Fatal("a manifest returned with an error")
			}
			return
		}
		b, err := m.SigningBytes()
		if err != nil {
			t.Fatalf("a verified manifest does not encode: %v", err)
		}
		if !signed[string(b)] {
			t.Fatalf("content the key never signed verified:\n%s", b)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("a verified manifest is invalid: %v", err)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := modelrepo.VerifyManifest(again, v, m.Model, m.Version); err != nil {
			t.Fatalf("a verified manifest, written again, does not verify: %v", err)
		}
	})
}

// FuzzVerifyPointer does the same for aliases and latest hints: ParseAlias then
// VerifyPointer. Whatever verifies must be one of the pointers the key signed.
func FuzzVerifyPointer(f *testing.F) {
	_, v := fuzzSigner()
	signed := map[string]bool{}
	for _, a := range signedPointers(f) {
		b, err := a.PointerSigningBytes()
		if err != nil {
			f.Fatal(err)
		}
		signed[string(b)] = true
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		a, err := modelrepo.ParseAlias(data)
		if err != nil {
			return
		}
		if err := modelrepo.VerifyPointer(&a, v, "tiny", name); err != nil {
			return
		}
		b, err := a.PointerSigningBytes()
		if err != nil {
			t.Fatal(err)
		}
		if !signed[string(b)] {
			t.Fatalf("a pointer the key never signed verified:\n%s", b)
		}
	})
}

func signedPointers(tb testing.TB) []modelrepo.Alias {
	signer, _ := fuzzSigner()
	var out []modelrepo.Alias
	for _, a := range []modelrepo.Alias{
		{Version: 2, Updated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Model: "tiny", Name: "stable", Sequence: 1767323045000},
		{Version: 3, Updated: time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC), Model: "tiny", Name: modelrepo.SelectorLatest, Sequence: 1767409445000},
	} {
		if err := signer.SignPointer(&a); err != nil {
			tb.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// TestFuzzSeeds writes the fuzz seeds when EDGELOOP_WRITE_FUZZ_SEEDS is set, and otherwise
// checks that they are there and that each signed seed still verifies (a change of the
// canonical encoding would turn the seeds into refusals and starve the fuzzer).
func TestFuzzSeeds(t *testing.T) {
	_, v := fuzzSigner()
	ms := signedManifests(t)
	seeds := map[string][]byte{}
	for i, m := range ms {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		seeds[fmt.Sprintf("signed-%d", i)] = b
	}
	tampered := *ms[0]
	tampered.Version = 4
	seeds["tampered"], _ = tampered.Marshal()
	foreign := *ms[1]
	if err := modelrepo.NewSigner(seedKey(3)).Sign(&foreign); err != nil {
		t.Fatal(err)
	}
	seeds["foreign-key"], _ = foreign.Marshal()
	unsigned := *ms[1]
	unsigned.Signature = nil
	seeds["unsigned"], _ = unsigned.Marshal()
	seeds["newer-schema"] = bytes.Replace(seeds["signed-1"], []byte(`"schema_version": 1`), []byte(`"schema_version": 2`), 1)

	dir := filepath.Join("testdata", "fuzz", "FuzzVerifyManifest")
	pdir := filepath.Join("testdata", "fuzz", "FuzzVerifyPointer")
	pseeds := map[string][2]string{}
	for _, a := range signedPointers(t) {
		b, err := jsonMarshal(a)
		if err != nil {
			t.Fatal(err)
		}
		pseeds["signed-"+a.Name] = [2]string{string(b), a.Name}
	}
	pseeds["legacy-unsigned"] = [2]string{`{"version":2,"updated":"2026-01-02T03:04:05Z"}` + "\n", "stable"}
	if os.Getenv("EDGELOOP_WRITE_FUZZ_SEEDS") != "" {
		for _, d := range []string{dir, pdir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for name, p := range pseeds {
			if err := os.WriteFile(filepath.Join(pdir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nstring(%q)\n", p[0], p[1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range seeds {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)) {
			t.Errorf("seed %s missing or stale (regenerate: EDGELOOP_WRITE_FUZZ_SEEDS=1 go test -run TestFuzzSeeds): %v", name, err)
		}
	}
	for i, m := range ms {
		b, _ := m.Marshal()
		if _, err := modelrepo.VerifyManifest(b, v, "", 0); err != nil {
			t.Errorf("signed seed %d does not verify: %v", i, err)
		}
	}
}

func jsonMarshal(a modelrepo.Alias) ([]byte, error) {
	b, err := json.Marshal(a)
	return append(b, '\n'), err
}
