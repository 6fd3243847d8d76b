package demo

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

func TestParseImageDrift(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ImageDrift
		err  string // a substring of the error; "" for none
	}{
		{in: "none", want: ImageDrift{Kind: KindNone}},
		{in: "photometric:0.7,0.15", want: ImageDrift{Kind: KindPhotometric, Photometric: Drift{0.7, 0.15}}},
		{in: "noise:0.3", want: ImageDrift{Kind: KindNoise, Sigma: 0.3}},
		{in: "rotation:20", want: ImageDrift{Kind: KindRotation, Degrees: 20}},
		{in: "rotation:-12.5", want: ImageDrift{Kind: KindRotation, Degrees: -12.5}},
		{in: "shift:2", want: ImageDrift{Kind: KindShift, Pixels: 2}},
		{in: "occlusion:10", want: ImageDrift{Kind: KindOcclusion, Size: 10}},
		{in: "none:1", err: "takes no strength"},
		{in: "blur:2", err: `unknown kind "blur"`},
		{in: "rotation", err: "give a strength"},
		{in: "rotation:", err: "give a strength"},
		{in: "rotation:x", err: "not a number"},
		{in: "noise:NaN", err: "not a number"},
		{in: "noise:-0.1", err: "must not be negative"},
		{in: "photometric:0.7", err: "contrast,brightness"},
		{in: "photometric:-1,0", err: "contrast must not be negative"},
		{in: "shift:1.5", err: "whole number"},
		{in: "shift:29", err: "within ±28"},
		{in: "occlusion:0", err: "1 to 20"},
		{in: "occlusion:21", err: "1 to 20"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseImageDrift(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseImageDrift(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseImageDrift(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

// TestImageDrifts checks the benchmarks' conditions: every one round-trips through String and
// ParseImageDrift, and their names are bench/estimate's.
func TestImageDrifts(t *testing.T) {
	ds := ImageDrifts()
	if len(ds) != 23 || ds[0].Kind != KindNone {
		t.Fatalf("%d drifts, first %v; want 23, none first", len(ds), ds[0])
	}
	families := map[string]int{}
	for _, d := range ds {
		back, err := ParseImageDrift(d.String())
		if err != nil || back.String() != d.String() {
			t.Errorf("%v: round trip gave %v, %v", d, back, err)
		}
		families[d.Kind.Family()]++
	}
	want := map[string]int{"none": 1, "photometric": 8, "noise": 4, "geometric": 7, "occlusion": 3}
	for f, n := range want {
		if families[f] != n {
			t.Errorf("family %s: %d drifts, want %d", f, families[f], n)
		}
	}
	names := map[string]bool{}
	for _, d := range ds {
		names[d.Name()] = true
	}
	for _, n := range []string{"none", "contrast 0.7 brightness +0.15", "gaussian noise σ 0.3", "rotation 20°", "shift 2 px right and down", "black square 10×10"} {
		if !names[n] {
			t.Errorf("no drift named %q", n)
		}
	}
}

// gradient is a test image: pixel (x, y) is (x + y) / 54, so every pixel differs from its
// neighbours and none is black.
func gradient() []float32 {
	img := make([]float32, fmnist.Pixels)
	for y := range fmnist.Rows {
		for x := range fmnist.Cols {
			img[y*fmnist.Cols+x] = float32(x+y+1) / 55
		}
	}
	return img
}

func TestApply(t *testing.T) {
	src := gradient()
	at := func(img []float32, x, y int) float32 { return img[y*fmnist.Cols+x] }
	for _, tc := range []struct {
		drift string
		check func(t *testing.T, out []float32)
	}{
		{"none", func(t *testing.T, out []float32) {
			for i := range out {
				if out[i] != src[i] {
					t.Fatalf("pixel %d changed: %v → %v", i, src[i], out[i])
				}
			}
		}},
		{"photometric:0.7,0.15", func(t *testing.T, out []float32) {
			want := DefaultDrift.Apply(make([]float32, len(src)), src)
			for i := range out {
				if out[i] != want[i] {
					t.Fatalf("pixel %d: %v, Drift.Apply gives %v", i, out[i], want[i])
				}
			}
		}},
		{"noise:0.1", func(t *testing.T, out []float32) {
			// Away from the clamps the differences are N(0, 0.1²): their standard deviation
			// over the 400 central pixels is within 0.02 of 0.1.
			var sum, sq float64
			n := 0
			for y := 4; y < 24; y++ {
				for x := 4; x < 24; x++ {
					d := float64(at(out, x, y) - at(src, x, y))
					sum, sq, n = sum+d, sq+d*d, n+1
				}
			}
			mean := sum / float64(n)
			if sd := math.Sqrt(sq/float64(n) - mean*mean); math.Abs(sd-0.1) > 0.02 || math.Abs(mean) > 0.02 {
				t.Errorf("noise mean %.3f sd %.3f, want about 0 and 0.1", mean, sd)
			}
		}},
		{"rotation:90", func(t *testing.T, out []float32) {
			// A quarter turn maps the centre-symmetric grid onto itself: the source of (x, y) is
			// (y, 27 − x).
			for _, p := range [][2]int{{0, 0}, {5, 20}, {27, 3}} {
				x, y := p[0], p[1]
				if got, want := at(out, x, y), at(src, y, 27-x); math.Abs(float64(got-want)) > 1e-5 {
					t.Errorf("(%d,%d) = %v, want %v", x, y, got, want)
				}
			}
		}},
		{"shift:2", func(t *testing.T, out []float32) {
			if at(out, 0, 0) != 0 || at(out, 1, 27) != 0 || at(out, 27, 1) != 0 {
				t.Error("the uncovered rows and columns are not black")
			}
			if at(out, 10, 12) != at(src, 8, 10) {
				t.Errorf("(10,12) = %v, want the source's (8,10) %v", at(out, 10, 12), at(src, 8, 10))
			}
		}},
		{"occlusion:10", func(t *testing.T, out []float32) {
			black := 0
			for y := range fmnist.Rows {
				for x := range fmnist.Cols {
					switch {
					case at(out, x, y) == 0:
						black++
						if x < 4 || y < 4 || x >= 24 || y >= 24 {
							t.Fatalf("(%d,%d) blacked outside the central 20×20", x, y)
						}
					case at(out, x, y) != at(src, x, y):
						t.Fatalf("(%d,%d) changed but not blacked", x, y)
					}
				}
			}
			if black != 100 {
				t.Errorf("%d black pixels, want 100", black)
			}
		}},
	} {
		t.Run(tc.drift, func(t *testing.T) {
			d, err := ParseImageDrift(tc.drift)
			if err != nil {
				t.Fatal(err)
			}
			out := d.Apply(make([]float32, fmnist.Pixels), src, rand.New(rand.NewPCG(1, 2)))
			tc.check(t, out)
			for _, v := range out {
				if v < 0 || v > 1 || math.IsNaN(float64(v)) {
					t.Fatalf("value %v outside [0, 1]", v)
				}
			}
			// Seeded: the same rng state gives the same image.
			again := d.Apply(make([]float32, fmnist.Pixels), src, rand.New(rand.NewPCG(1, 2)))
			for i := range out {
				if out[i] != again[i] {
					t.Fatalf("pixel %d differs between two runs with one seed", i)
				}
			}
			if d.Random() == (d.Kind == KindNone || d.Kind == KindPhotometric || d.Kind == KindRotation || d.Kind == KindShift) {
				t.Errorf("Random() = %v", d.Random())
			}
		})
	}
}

func TestApplyWrongSize(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Apply of a 10-value image did not panic")
		}
	}()
	ImageDrift{Kind: KindNone}.Apply(make([]float32, 10), make([]float32, 10), nil)
}
