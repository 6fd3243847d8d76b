package evalset

import (
	"errors"
	"fmt"
	"image"
	"math"
	"strings"

	"golang.org/x/image/draw"
)

// Layouts and colour modes of Preprocess.
const (
	LayoutNCHW = "NCHW"
	LayoutNHWC = "NHWC"
	ColorGrey  = "grey"
	ColorRGB   = "rgb"
	ColorBGR   = "bgr"
)

// MaxImagePixels bounds a decoded image (width × height), checked from the header before
// decoding, so a small file claiming a huge image cannot exhaust memory.
const MaxImagePixels = 64 << 20

// Preprocess is the model's declared image pre-processing, applied to PNG and JPEG images to
// make the values the model takes. In order: the image is resized to Resize (bilinear), its
// pixels converted to ColorMode's channels as 8-bit levels 0-255, each level multiplied by
// Scale, then (v - Mean[c]) / Std[c] per channel, and the values laid out as Layout says.
type Preprocess struct {
	// Resize is [H, W], the size images are resized to (bilinear); it must be the model's
	// height and width. Empty: images must already have that size.
	Resize []int
	// Layout is how the model's per-sample shape orders channels: "NCHW" ([C,H,W], the
	// default) or "NHWC" ([H,W,C]). A 2-dimensional shape [H,W] is one grey channel.
	Layout string
	// ColorMode is "grey", "rgb" or "bgr"; empty picks grey for one channel, rgb for three.
	ColorMode string
	// Scale multiplies the 0-255 levels; 0 means 1/255 (values in [0, 1]).
	Scale float64
	// Mean and Std are per channel (one value applies to every channel); empty means 0 and 1.
	Mean, Std []float64
}

// Validate reports every problem of the pre-processing in one error, naming the field.
func (p Preprocess) Validate() error {
	var errs []error
	if len(p.Resize) != 0 && (len(p.Resize) != 2 || p.Resize[0] <= 0 || p.Resize[1] <= 0 || p.Resize[0] > 1<<15 || p.Resize[1] > 1<<15) {
		errs = append(errs, fmt.Errorf("resize: want [H, W] with both 1 to %d, got %v", 1<<15, p.Resize))
	}
	switch p.Layout {
	case "", LayoutNCHW, LayoutNHWC:
	default:
		errs = append(errs, fmt.Errorf("layout: want %s or %s, got %q", LayoutNCHW, LayoutNHWC, p.Layout))
	}
	switch p.ColorMode {
	case "", ColorGrey, ColorRGB, ColorBGR:
	default:
		errs = append(errs, fmt.Errorf("color: want %s, %s or %s, got %q", ColorGrey, ColorRGB, ColorBGR, p.ColorMode))
	}
	if math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0) || p.Scale < 0 {
		errs = append(errs, fmt.Errorf("scale: must be a finite number ≥ 0 (0 means 1/255), got %v", p.Scale))
	}
	for i, v := range p.Mean {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("mean[%d]: must be finite, got %v", i, v))
		}
	}
	for i, v := range p.Std {
		if math.IsNaN(v) || math.IsInf(v, 0) || v == 0 {
			errs = append(errs, fmt.Errorf("std[%d]: must be finite and not 0, got %v", i, v))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("preprocess: %w", errors.Join(errs...))
	}
	return nil
}

// geometry is what a model's per-sample shape says of its images.
type geometry struct {
	c, h, w int
	nhwc    bool
}

// geometryOf reads channels, height and width from a per-sample shape: [H,W] is one grey
// channel; [C,H,W] for NCHW, [H,W,C] for NHWC; leading 1-dimensions beyond three are
// dropped. A flat [N] shape takes its height and width from Resize.
func (p Preprocess) geometryOf(shape []int64) (geometry, error) {
	s := shape
	for len(s) > 3 && s[0] == 1 {
		s = s[1:]
	}
	var g geometry
	switch len(s) {
	case 1:
		if len(p.Resize) != 2 {
			return g, fmt.Errorf("a flat input shape %v needs resize [H,W] to say the image size", shape)
		}
		g.h, g.w = p.Resize[0], p.Resize[1]
		if s[0]%int64(g.h*g.w) != 0 {
			return g, fmt.Errorf("input shape %v is not a multiple of resize %dx%d", shape, g.h, g.w)
		}
		g.c = int(s[0] / int64(g.h*g.w))
		g.nhwc = true // a flattened image is row after row, pixel after pixel
	case 2:
		g.c, g.h, g.w = 1, int(s[0]), int(s[1])
	case 3:
		if p.Layout == LayoutNHWC {
			g.h, g.w, g.c, g.nhwc = int(s[0]), int(s[1]), int(s[2]), true
		} else {
			g.c, g.h, g.w = int(s[0]), int(s[1]), int(s[2])
		}
	default:
		return g, fmt.Errorf("input shape %v is not an image ([H,W], [C,H,W] or [H,W,C])", shape)
	}
	if g.c != 1 && g.c != 3 {
		return g, fmt.Errorf("input shape %v has %d channels; images give 1 (grey) or 3 (rgb, bgr)", shape, g.c)
	}
	mode := p.colorMode(g.c)
	if (mode == ColorGrey) != (g.c == 1) {
		return g, fmt.Errorf("color %s does not fit the %d channels of input shape %v", mode, g.c, shape)
	}
	if len(p.Resize) == 2 && (p.Resize[0] != g.h || p.Resize[1] != g.w) {
		return g, fmt.Errorf("resize %dx%d differs from the model's %dx%d (input shape %v)", p.Resize[0], p.Resize[1], g.h, g.w, shape)
	}
	for _, v := range [][]float64{p.Mean, p.Std} {
		if len(v) > 1 && len(v) != g.c {
			return g, fmt.Errorf("mean and std need 1 or %d values (one per channel), got %d", g.c, len(v))
		}
	}
	return g, nil
}

func (p Preprocess) colorMode(channels int) string {
	if p.ColorMode != "" {
		return p.ColorMode
	}
	if channels == 1 {
		return ColorGrey
	}
	return ColorRGB
}

// Apply turns an image into the values of one sample of shape.
func (p Preprocess) Apply(img image.Image, shape []int64) ([]float32, error) {
	g, err := p.geometryOf(shape)
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	if b.Dx() != g.w || b.Dy() != g.h {
		if len(p.Resize) == 0 {
			return nil, fmt.Errorf("image is %dx%d (WxH), the model takes %dx%d: declare resize %d,%d", b.Dx(), b.Dy(), g.w, g.h, g.h, g.w)
		}
	}
	dst := image.Rect(0, 0, g.w, g.h)
	var levels func(x, y int) [3]uint8
	if g.c == 1 {
		grey := image.NewGray(dst)
		if b.Size() == dst.Size() {
			draw.Draw(grey, dst, img, b.Min, draw.Src)
		} else {
			draw.BiLinear.Scale(grey, dst, img, b, draw.Src, nil)
		}
		levels = func(x, y int) [3]uint8 { return [3]uint8{grey.Pix[y*grey.Stride+x]} }
	} else {
		rgba := image.NewNRGBA(dst)
		if b.Size() == dst.Size() {
			draw.Draw(rgba, dst, img, b.Min, draw.Src)
		} else {
			draw.BiLinear.Scale(rgba, dst, img, b, draw.Src, nil)
		}
		bgr := p.colorMode(3) == ColorBGR
		levels = func(x, y int) [3]uint8 {
			i := y*rgba.Stride + 4*x
			if bgr {
				return [3]uint8{rgba.Pix[i+2], rgba.Pix[i+1], rgba.Pix[i]}
			}
			return [3]uint8{rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2]}
		}
	}
	// The default divides by 255 rather than multiplying by 1/255: float32(level)/255 is what
	// the Fashion-MNIST loader and dataset.DecodeInput compute for uint8 data, so a PNG and a
	// uint8 .npy of the same image give bit-identical values (and the same content key).
	level := func(l uint8) float64 { return float64(float32(l) / 255) }
	if p.Scale != 0 {
		level = func(l uint8) float64 { return float64(l) * p.Scale }
	}
	mean := func(c int) float64 { return pick(p.Mean, c, 0) }
	std := func(c int) float64 { return pick(p.Std, c, 1) }
	out := make([]float32, g.c*g.h*g.w)
	for y := 0; y < g.h; y++ {
		for x := 0; x < g.w; x++ {
			px := levels(x, y)
			for c := 0; c < g.c; c++ {
				v := level(px[c])
				if len(p.Mean) > 0 || len(p.Std) > 0 {
					v = (v - mean(c)) / std(c)
				}
				var i int
				if g.nhwc {
					i = (y*g.w+x)*g.c + c
				} else {
					i = (c*g.h+y)*g.w + x
				}
				out[i] = float32(v)
			}
		}
	}
	return out, nil
}

func pick(v []float64, c int, def float64) float64 {
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	return v[c]
}

// String describes the pre-processing for a manifest's Source.
func (p Preprocess) String() string {
	var parts []string
	if len(p.Resize) == 2 {
		parts = append(parts, fmt.Sprintf("resize=%d,%d", p.Resize[0], p.Resize[1]))
	}
	if p.Layout != "" {
		parts = append(parts, "layout="+p.Layout)
	}
	if p.ColorMode != "" {
		parts = append(parts, "color="+p.ColorMode)
	}
	if p.Scale != 0 {
		parts = append(parts, fmt.Sprintf("scale=%g", p.Scale))
	}
	if len(p.Mean) > 0 {
		parts = append(parts, fmt.Sprintf("mean=%v", p.Mean))
	}
	if len(p.Std) > 0 {
		parts = append(parts, fmt.Sprintf("std=%v", p.Std))
	}
	return strings.Join(parts, " ")
}
