package modelrepo_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

func sampleDriftReference() *modelrepo.DriftReference {
	return &modelrepo.DriftReference{
		ClassMix: []float64{0.5, 0.3, 0.2},
		Input: &modelrepo.InputReference{
			Channels: []modelrepo.ChannelStats{{Mean: 0.28, Std: 0.35}},
			Projections: &modelrepo.ProjectionReference{Seed: 9, Edges: [][]float64{{-1, 0, 1}, {-2, 0, 2}},
				Histograms: [][]float64{{0.25, 0.25, 0.25, 0.25}, {0.2, 0.3, 0.3, 0.2}}},
		},
		Samples:    1000,
		EvalDigest: strings.Repeat("d", 64),
	}
}

func TestDriftReferenceValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*modelrepo.DriftReference)
		want string
	}{
		{"samples", func(r *modelrepo.DriftReference) { r.Samples = 0 }, "drift_reference.samples: must be positive"},
		{"digest", func(r *modelrepo.DriftReference) { r.EvalDigest = "x" }, "drift_reference.eval_digest: must be 64 lowercase hex digits"},
		{"class mix length", func(r *modelrepo.DriftReference) { r.ClassMix = []float64{1} }, "drift_reference.class_mix: has 1 values for 3 classes"},
		{"class mix zero", func(r *modelrepo.DriftReference) { r.ClassMix = []float64{0, 0, 0} }, "drift_reference.class_mix: must not be all zero"},
		{"class mix NaN", func(r *modelrepo.DriftReference) { r.ClassMix[1] = math.NaN() }, "drift_reference.class_mix: values must be finite"},
		{"no channels", func(r *modelrepo.DriftReference) { r.Input.Channels = nil }, "drift_reference.input.channels: must have 1 to 64 entries, got 0"},
		{"std negative", func(r *modelrepo.DriftReference) { r.Input.Channels[0].Std = -1 }, "drift_reference.input.channels[0]: mean and std must be finite"},
		{"histograms count", func(r *modelrepo.DriftReference) { r.Input.Projections.Histograms = r.Input.Projections.Histograms[:1] },
			"drift_reference.input.projections: must have 1 to 16 edges and as many histograms, got 2 and 1"},
		{"edges count", func(r *modelrepo.DriftReference) { r.Input.Projections.Edges[1] = []float64{0} },
			"drift_reference.input.projections[1]: 4 bins need 3 edges, got 1"},
		{"edges order", func(r *modelrepo.DriftReference) { r.Input.Projections.Edges[0] = []float64{1, 0, -1} },
			"drift_reference.input.projections[0].edges: must be finite and increasing"},
		{"histogram negative", func(r *modelrepo.DriftReference) { r.Input.Projections.Histograms[0][0] = -1 },
			"drift_reference.input.projections[0].histogram: values must be finite and not negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := sampleManifest()
			m.DriftReference = sampleDriftReference()
			c.edit(m.DriftReference)
			err := m.Validate()
			if !errors.Is(err, modelrepo.ErrInvalidManifest) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidManifest mentioning %q", err, c.want)
			}
		})
	}
	m := sampleManifest()
	m.DriftReference = sampleDriftReference()
	if err := m.Validate(); err != nil {
		t.Fatalf("sample drift reference: %v", err)
	}
}

// TestDriftReferenceSigned: the reference is signed like the rest, and a manifest without it
// encodes as before.
func TestDriftReferenceSigned(t *testing.T) {
	key := seedKey(8)
	v := modelrepo.NewVerifier(key.Public().(ed25519.PublicKey))
	m := sampleManifest()
	m.DriftReference = sampleDriftReference()
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
	if got.DriftReference == nil || got.DriftReference.Input.Projections.Seed != 9 {
		t.Fatalf("round trip lost the reference: %+v", got.DriftReference)
	}
	tampered := bytes.Replace(data, []byte(`"seed": 9`), []byte(`"seed": 10`), 1)
	if bytes.Equal(tampered, data) {
		t.Fatal("test did not find the seed in the manifest")
	}
	if _, err := modelrepo.VerifyManifest(tampered, v, "fashion", 3); err == nil {
		t.Fatal("a tampered seed verified")
	}
	old := sampleManifest()
	b, err := old.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("drift_reference")) {
		t.Fatalf("an old manifest's signing bytes mention drift_reference: %s", b)
	}
}

// TestProjectionVectorsStable pins the generator: the publisher and every exporter must derive
// the same vectors from a seed, whatever their version.
func TestProjectionVectorsStable(t *testing.T) {
	v := modelrepo.ProjectionVectors(0x5eed, 2, 8)
	var signs strings.Builder
	for _, x := range v {
		if math.Abs(math.Abs(float64(x))-1/math.Sqrt(8)) > 1e-7 {
			t.Fatalf("value %v, want ±1/√8", x)
		}
		if x > 0 {
			signs.WriteByte('+')
		} else {
			signs.WriteByte('-')
		}
	}
	// The low 16 bits of splitmix64(0x5eed)'s first output, least significant first (computed
	// independently with Python's integers).
	const want = "--+-++-++--+-+-+"
	if signs.String() != want {
		t.Errorf("signs %s, want %s", signs.String(), want)
	}
	if a, b := modelrepo.ProjectionVectors(1, 1, 64), modelrepo.ProjectionVectors(2, 1, 64); string(f32bytes(a)) == string(f32bytes(b)) {
		t.Error("seeds 1 and 2 give the same vector")
	}
}

func f32bytes(v []float32) []byte {
	var b []byte
	for _, x := range v {
		b = append(b, byte(math.Float32bits(x)>>31))
	}
	return b
}

func TestComputeInputReference(t *testing.T) {
	// Two samples of 2 channels × 2 values.
	in := []float32{0, 2, 10, 10, 4, 2, 20, 20}
	r, err := modelrepo.ComputeInputReference(in, 4, 2, 1, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Channel 0: 0, 2, 4, 2 → mean 2, std √2; channel 1: 10, 10, 20, 20 → mean 15, std 5.
	want := []modelrepo.ChannelStats{{Mean: 2, Std: math.Sqrt2}, {Mean: 15, Std: 5}}
	for c, w := range want {
		if g := r.Channels[c]; math.Abs(g.Mean-w.Mean) > 1e-12 || math.Abs(g.Std-w.Std) > 1e-12 {
			t.Errorf("channel %d: %+v, want %+v", c, g, w)
		}
	}
	if len(r.Projections.Edges) != 2 || len(r.Projections.Histograms[0]) != 2 {
		t.Errorf("projections %+v", r.Projections)
	}
	for _, bad := range []struct {
		in       []float32
		width, c int
	}{{in, 4, 3}, {in[:7], 4, 2}, {nil, 4, 1}} {
		if _, err := modelrepo.ComputeInputReference(bad.in, bad.width, bad.c, 1, 2, 2); err == nil {
			t.Errorf("%d values of width %d in %d channels: no error", len(bad.in), bad.width, bad.c)
		}
	}
	if got := modelrepo.InputChannels([]int64{3, 28, 28}); got != 3 {
		t.Errorf("InputChannels([3 28 28]) = %d", got)
	}
	if got := modelrepo.InputChannels([]int64{784}); got != 1 {
		t.Errorf("InputChannels([784]) = %d", got)
	}
}
