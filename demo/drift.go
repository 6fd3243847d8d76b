package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

// Drift is a brightness and contrast shift of the input stream, x' = clamp(Contrast·x +
// Brightness, 0, 1): what a new camera, a dirty lens or different lighting does to a
// deployed model's inputs. The demo's default (contrast 0.7, brightness +0.15) takes the base
// model from about 0.88 to about 0.47 accuracy and its confidence down with it (a PSI near
// 0.5 against the clean reference), while a model retrained on a few hundred labelled shifted
// images recovers to about 0.85 (docs/demo.md).
type Drift struct {
	Contrast   float32
	Brightness float32
}

// DefaultDrift is the demo's shift for the Go MLP.
var DefaultDrift = Drift{Contrast: 0.7, Brightness: 0.15}

// ModelDrift is the demo's shift for a model kind. The CNN shrugs off DefaultDrift (0.81 →
// 0.80 on 2,000 test images: its convolutions see edges, which a mild contrast change keeps),
// so it gets a washed-out image, contrast 0.4 and brightness +0.5, which takes it to about 0.45.
func ModelDrift(model string) Drift {
	if model == ModelCNN {
		return Drift{Contrast: 0.4, Brightness: 0.5}
	}
	return DefaultDrift
}

// Apply writes the shifted image into dst (len(src)) and returns it.
func (d Drift) Apply(dst, src []float32) []float32 {
	for i, v := range src {
		dst[i] = min(1, max(0, d.Contrast*v+d.Brightness))
	}
	return dst
}

// Kind is a family of image drift: what changes between the images a model was trained on and
// the images a deployed node sees. Every kind applies to one 28×28 image with values in
// [0, 1] (Fashion-MNIST's, fmnist.Pixels values, row-major). A change of the class mix is
// not a Kind: it is a property of the stream, not of an image (bench/sampling models it).
type Kind string

// The drift kinds. bench/estimate and bench/sampling measure them; the names are the
// prefixes ParseImageDrift reads.
const (
	// KindNone leaves the image as it is: the clean reference.
	KindNone Kind = "none"
	// KindPhotometric is Drift's x′ = clamp(c·x + b, 0, 1): contrast and brightness.
	KindPhotometric Kind = "photometric"
	// KindNoise adds gaussian noise of standard deviation σ to every pixel, then clamps.
	KindNoise Kind = "noise"
	// KindRotation turns the image about its centre (bilinear, black outside).
	KindRotation Kind = "rotation"
	// KindShift moves the image right and down by whole pixels, black filling in.
	KindShift Kind = "shift"
	// KindOcclusion blacks out a square at a random place inside the central 20×20, where
	// the garment is.
	KindOcclusion Kind = "occlusion"
)

// Kinds returns every drift kind, KindNone first.
func Kinds() []Kind {
	return []Kind{KindNone, KindPhotometric, KindNoise, KindRotation, KindShift, KindOcclusion}
}

// Family groups the kinds as the benchmarks' tables do: rotation and shift are both
// "geometric"; the others are their own family.
func (k Kind) Family() string {
	if k == KindRotation || k == KindShift {
		return "geometric"
	}
	return string(k)
}

// ImageDrift is one drift of a kind at a strength. Only the fields of its Kind are read.
type ImageDrift struct {
	Kind Kind
	// Photometric is the contrast and brightness of KindPhotometric.
	Photometric Drift
	// Sigma is KindNoise's standard deviation, in units of the [0, 1] range.
	Sigma float64
	// Degrees is KindRotation's angle, counter-clockwise on screen for positive values.
	Degrees float64
	// Pixels is KindShift's distance right and down.
	Pixels int
	// Size is the side of KindOcclusion's square, in pixels (1 to 20).
	Size int
}

// ImageDrifts returns the drifts the benchmarks measure: each kind at a few strengths from
// mild to severe, KindNone first. They are bench/estimate's conditions (docs/benchmarks.md).
func ImageDrifts() []ImageDrift {
	ds := []ImageDrift{{Kind: KindNone}}
	for _, p := range []Drift{{1, 0.1}, {1, 0.2}, {1, 0.3}, {0.7, 0}, {0.5, 0}, {0.3, 0}, {0.7, 0.15}, {0.5, 0.35}} {
		ds = append(ds, ImageDrift{Kind: KindPhotometric, Photometric: p})
	}
	for _, s := range []float64{0.1, 0.2, 0.3, 0.5} {
		ds = append(ds, ImageDrift{Kind: KindNoise, Sigma: s})
	}
	for _, deg := range []float64{10, 20, 30, 45} {
		ds = append(ds, ImageDrift{Kind: KindRotation, Degrees: deg})
	}
	for _, px := range []int{2, 4, 6} {
		ds = append(ds, ImageDrift{Kind: KindShift, Pixels: px})
	}
	for _, size := range []int{6, 10, 14} {
		ds = append(ds, ImageDrift{Kind: KindOcclusion, Size: size})
	}
	return ds
}

// ParseImageDrift reads a drift as String writes it: "none", "photometric:C,B" (contrast,
// brightness), "noise:SIGMA", "rotation:DEGREES", "shift:PIXELS" or "occlusion:SIZE", such
// as "rotation:20".
func ParseImageDrift(s string) (ImageDrift, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	d := ImageDrift{Kind: Kind(kind)}
	if d.Kind == KindNone {
		if hasArg {
			return ImageDrift{}, fmt.Errorf("drift %q: none takes no strength", s)
		}
		return d, nil
	}
	if !slices.Contains(Kinds(), d.Kind) {
		return ImageDrift{}, fmt.Errorf("drift %q: unknown kind %q (want one of %v)", s, kind, Kinds())
	}
	if !hasArg || arg == "" {
		return ImageDrift{}, fmt.Errorf("drift %q: give a strength after the colon, such as %s", s, example(d.Kind))
	}
	num := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("drift %q: %q is not a number (want %s)", s, v, example(d.Kind))
		}
		return f, nil
	}
	var err error
	switch d.Kind {
	case KindPhotometric:
		c, b, ok := strings.Cut(arg, ",")
		if !ok {
			return ImageDrift{}, fmt.Errorf("drift %q: want contrast,brightness, such as %s", s, example(d.Kind))
		}
		var cf, bf float64
		if cf, err = num(c); err == nil {
			bf, err = num(b)
		}
		d.Photometric = Drift{Contrast: float32(cf), Brightness: float32(bf)}
	case KindNoise:
		d.Sigma, err = num(arg)
	case KindRotation:
		d.Degrees, err = num(arg)
	case KindShift, KindOcclusion:
		var n int
		n, err = strconv.Atoi(arg)
		if err != nil {
			err = fmt.Errorf("drift %q: %q is not a whole number of pixels (want %s)", s, arg, example(d.Kind))
		}
		d.Pixels, d.Size = n, n
		if d.Kind == KindShift {
			d.Size = 0
		} else {
			d.Pixels = 0
		}
	}
	if err != nil {
		return ImageDrift{}, err
	}
	return d, d.validate(s)
}

// example is a valid drift of kind k, for error messages.
func example(k Kind) string {
	switch k {
	case KindPhotometric:
		return "photometric:0.7,0.15"
	case KindNoise:
		return "noise:0.3"
	case KindRotation:
		return "rotation:20"
	case KindShift:
		return "shift:2"
	case KindOcclusion:
		return "occlusion:10"
	}
	return "none"
}

// validate checks the strength's range; s is the text it was parsed from, for the message.
func (d ImageDrift) validate(s string) error {
	switch {
	case d.Kind == KindPhotometric && d.Photometric.Contrast < 0:
		return fmt.Errorf("drift %q: contrast must not be negative", s)
	case d.Kind == KindNoise && d.Sigma < 0:
		return fmt.Errorf("drift %q: σ must not be negative", s)
	case d.Kind == KindShift && (d.Pixels < -fmnist.Cols || d.Pixels > fmnist.Cols):
		return fmt.Errorf("drift %q: shift must be within ±%d pixels", s, fmnist.Cols)
	case d.Kind == KindOcclusion && (d.Size < 1 || d.Size > occlusionArea):
		return fmt.Errorf("drift %q: square side must be 1 to %d pixels", s, occlusionArea)
	}
	return nil
}

// String is the drift as ParseImageDrift reads it, such as "rotation:20".
func (d ImageDrift) String() string {
	switch d.Kind {
	case KindPhotometric:
		return fmt.Sprintf("photometric:%g,%g", d.Photometric.Contrast, d.Photometric.Brightness)
	case KindNoise:
		return fmt.Sprintf("noise:%g", d.Sigma)
	case KindRotation:
		return fmt.Sprintf("rotation:%g", d.Degrees)
	case KindShift:
		return fmt.Sprintf("shift:%d", d.Pixels)
	case KindOcclusion:
		return fmt.Sprintf("occlusion:%d", d.Size)
	}
	return string(d.Kind)
}

// Name says the kind and strength in words, as the benchmarks' tables print it, such as
// "rotation 20°".
func (d ImageDrift) Name() string {
	switch d.Kind {
	case KindPhotometric:
		return fmt.Sprintf("contrast %.1f brightness %+.2f", d.Photometric.Contrast, d.Photometric.Brightness)
	case KindNoise:
		return fmt.Sprintf("gaussian noise σ %.1f", d.Sigma)
	case KindRotation:
		return fmt.Sprintf("rotation %.0f°", d.Degrees)
	case KindShift:
		return fmt.Sprintf("shift %d px right and down", d.Pixels)
	case KindOcclusion:
		return fmt.Sprintf("black square %d×%d", d.Size, d.Size)
	}
	return string(d.Kind)
}

// Random reports whether Apply draws from its rng (noise and occlusion): the others give the
// same image every time.
func (d ImageDrift) Random() bool { return d.Kind == KindNoise || d.Kind == KindOcclusion }

// Apply writes the drifted src, one 28×28 image (fmnist.Pixels values), into dst (of the same
// length, not overlapping src) and returns dst. rng drives the random kinds (the noise, the
// square's place); the others do not read it, and it may then be nil. It panics on images of
// another size, as a slice index out of range would.
func (d ImageDrift) Apply(dst, src []float32, rng *rand.Rand) []float32 {
	if len(src) != fmnist.Pixels || len(dst) != fmnist.Pixels {
		panic(fmt.Sprintf("demo: drift of a %d-value image into %d values, want %d", len(src), len(dst), fmnist.Pixels))
	}
	switch d.Kind {
	case KindPhotometric:
		d.Photometric.Apply(dst, src)
	case KindNoise:
		for i, v := range src {
			dst[i] = min(1, max(0, v+float32(d.Sigma*rng.NormFloat64())))
		}
	case KindRotation:
		rotate(dst, src, d.Degrees*math.Pi/180)
	case KindShift:
		shift(dst, src, d.Pixels, d.Pixels)
	case KindOcclusion:
		occlude(dst, src, d.Size, rng)
	default:
		copy(dst, src)
	}
	return dst
}

// rotate turns the image by theta about its centre, with bilinear interpolation and black
// outside.
func rotate(dst, src []float32, theta float64) {
	c := float64(fmnist.Cols-1) / 2
	sin, cos := math.Sincos(theta)
	for y := range fmnist.Rows {
		for x := range fmnist.Cols {
			// The source point that lands on (x, y).
			dx, dy := float64(x)-c, float64(y)-c
			sx, sy := cos*dx+sin*dy+c, -sin*dx+cos*dy+c
			dst[y*fmnist.Cols+x] = bilinear(src, sx, sy)
		}
	}
}

func bilinear(src []float32, x, y float64) float32 {
	x0, y0 := int(math.Floor(x)), int(math.Floor(y))
	fx, fy := float32(x-float64(x0)), float32(y-float64(y0))
	at := func(x, y int) float32 {
		if x < 0 || y < 0 || x >= fmnist.Cols || y >= fmnist.Rows {
			return 0
		}
		return src[y*fmnist.Cols+x]
	}
	top := at(x0, y0)*(1-fx) + at(x0+1, y0)*fx
	bottom := at(x0, y0+1)*(1-fx) + at(x0+1, y0+1)*fx
	return top*(1-fy) + bottom*fy
}

// shift moves the image dx pixels right and dy down, filling with black.
func shift(dst, src []float32, dx, dy int) {
	for y := range fmnist.Rows {
		for x := range fmnist.Cols {
			sx, sy := x-dx, y-dy
			v := float32(0)
			if sx >= 0 && sy >= 0 && sx < fmnist.Cols && sy < fmnist.Rows {
				v = src[sy*fmnist.Cols+sx]
			}
			dst[y*fmnist.Cols+x] = v
		}
	}
}

// occlusionArea is the side of the central square the occluder stays inside: Fashion-MNIST's
// garments fill about the central 20×20 of the 28×28 frame.
const occlusionArea = 20

// occlude blacks out a size×size square at a random place inside the central 20×20.
func occlude(dst, src []float32, size int, rng *rand.Rand) {
	copy(dst, src)
	lo := (fmnist.Cols - occlusionArea) / 2
	hi := lo + occlusionArea - size
	x0, y0 := lo, lo
	if hi > lo {
		x0, y0 = lo+rng.IntN(hi-lo+1), lo+rng.IntN(hi-lo+1)
	}
	for y := y0; y < y0+size; y++ {
		for x := x0; x < x0+size; x++ {
			dst[y*fmnist.Cols+x] = 0
		}
	}
}
