// Package preview draws a sample's input tensor as a picture for people: the collector's Label
// Studio tasks and, later, thumbnails in Grafana. It knows nothing of any one model: the layout
// is read off the tensor's shape, so a Fashion-MNIST [1, 28, 28], an RGB [3, 224, 224] (NCHW)
// and a [224, 224, 3] (NHWC) camera frame all render.
package preview

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"

	"github.com/edgeloop/edgeloop/internal/npy"
)

// MaxSide bounds each side of a rendered image: far above any classifier's input, small enough
// that a hostile shape cannot make the renderer allocate gigabytes.
const MaxSide = 4096

// ErrNotImage says that a tensor's shape has no image reading.
var ErrNotImage = errors.New("the input is not image-shaped: want [H,W], [C,H,W] or [H,W,C] with C of 1, 3 or 4 (leading 1s ignored), or a square number of values")

// Layout is how a tensor's values map to pixels.
type Layout struct {
	// Height and Width are the image's size.
	Height, Width int
	// Channels is 1 (grey) or 3 (RGB); a fourth channel (alpha) in the tensor is ignored.
	Channels int
	// ChannelsFirst is true for [C,H,W] (NCHW without the batch), false for [H,W,C].
	ChannelsFirst bool
	// stride is the tensor's channel count (4 where alpha is skipped).
	stride int
}

// LayoutOf reads an image layout off a tensor shape. Leading dimensions of size 1 (a batch of
// one, a single channel) are dropped; then [H,W] is grey, [C,H,W] and [H,W,C] with C of 1, 3
// or 4 are grey or colour (channels first wins when both readings fit, as PyTorch models take
// NCHW), and a flat vector of k×k values is a k×k grey square (an MLP's flattened image).
func LayoutOf(shape []int) (Layout, error) {
	dims := shape
	for len(dims) > 2 && dims[0] == 1 {
		dims = dims[1:]
	}
	var l Layout
	switch {
	case len(dims) == 1:
		k := int(math.Sqrt(float64(dims[0])))
		for k*k < dims[0] {
			k++
		}
		if k < 2 || k*k != dims[0] {
			return Layout{}, ErrNotImage
		}
		l = Layout{Height: k, Width: k, Channels: 1, stride: 1}
	case len(dims) == 2:
		l = Layout{Height: dims[0], Width: dims[1], Channels: 1, stride: 1}
	case len(dims) == 3 && isChannels(dims[0]):
		l = Layout{Height: dims[1], Width: dims[2], Channels: min(dims[0], 3), ChannelsFirst: true, stride: dims[0]}
	case len(dims) == 3 && isChannels(dims[2]):
		l = Layout{Height: dims[0], Width: dims[1], Channels: min(dims[2], 3), stride: dims[2]}
	default:
		return Layout{}, ErrNotImage
	}
	if l.Height < 1 || l.Width < 1 || l.Height > MaxSide || l.Width > MaxSide {
		return Layout{}, fmt.Errorf("%w: %d×%d is not between 1 and %d on each side", ErrNotImage, l.Height, l.Width, MaxSide)
	}
	return l, nil
}

func isChannels(c int) bool { return c == 1 || c == 3 || c == 4 }

// Image renders a decoded .npy array. Values map to 0-255 by one rule for the whole tensor:
// uint8 arrays as they are, values within [0, 1] times 255, values within [0, 255] as they
// are, anything else (a normalised input) stretched from its minimum to its maximum. NaNs are
// black.
func Image(a *npy.Array) (image.Image, error) {
	l, err := LayoutOf(a.Shape)
	if err != nil {
		return nil, err
	}
	if l.Height*l.Width*l.stride != len(a.Data) {
		return nil, fmt.Errorf("%w: shape %v does not hold %d values", ErrNotImage, a.Shape, len(a.Data))
	}
	scale := levels(a)
	at := func(y, x, c int) uint8 {
		i := (y*l.Width+x)*l.stride + c
		if l.ChannelsFirst {
			i = (c*l.Height+y)*l.Width + x
		}
		g := float64(scale(a.Data[i]))
		if g != g { // NaN
			return 0
		}
		return uint8(max(0, min(255, math.Round(g))))
	}
	rect := image.Rect(0, 0, l.Width, l.Height)
	if l.Channels == 1 {
		img := image.NewGray(rect)
		for y := range l.Height {
			for x := range l.Width {
				img.SetGray(x, y, color.Gray{Y: at(y, x, 0)})
			}
		}
		return img, nil
	}
	img := image.NewRGBA(rect)
	for y := range l.Height {
		for x := range l.Width {
			img.SetRGBA(x, y, color.RGBA{R: at(y, x, 0), G: at(y, x, 1), B: at(y, x, 2), A: 255})
		}
	}
	return img, nil
}

// levels returns the mapping of the array's values to grey levels (see Image).
func levels(a *npy.Array) func(float32) float32 {
	if strings.HasSuffix(a.Descr, "u1") {
		return func(v float32) float32 { return v }
	}
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range a.Data {
		if v == v {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	switch {
	case lo >= 0 && hi <= 1:
		return func(v float32) float32 { return v * 255 }
	case lo >= 0 && hi <= 255:
		return func(v float32) float32 { return v }
	case hi > lo:
		return func(v float32) float32 { return (v - lo) / (hi - lo) * 255 }
	}
	return func(float32) float32 { return 0 }
}
