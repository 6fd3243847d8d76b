package preview

import (
	"errors"
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/edgeloop/edgeloop/internal/npy"
)

func TestLayoutOf(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		want  Layout
	}{
		{[]int{784}, Layout{Height: 28, Width: 28, Channels: 1, stride: 1}},
		{[]int{28, 28}, Layout{Height: 28, Width: 28, Channels: 1, stride: 1}},
		{[]int{1, 28, 28}, Layout{Height: 28, Width: 28, Channels: 1, stride: 1}},
		{[]int{1, 1, 28, 28}, Layout{Height: 28, Width: 28, Channels: 1, stride: 1}},
		{[]int{3, 32, 16}, Layout{Height: 32, Width: 16, Channels: 3, ChannelsFirst: true, stride: 3}},
		{[]int{1, 3, 32, 16}, Layout{Height: 32, Width: 16, Channels: 3, ChannelsFirst: true, stride: 3}},
		{[]int{32, 16, 3}, Layout{Height: 32, Width: 16, Channels: 3, stride: 3}},
		{[]int{32, 16, 4}, Layout{Height: 32, Width: 16, Channels: 3, stride: 4}},
		{[]int{28, 28, 1}, Layout{Height: 28, Width: 28, Channels: 1, stride: 1}},
	} {
		got, err := LayoutOf(tc.shape)
		if err != nil || got != tc.want {
			t.Errorf("LayoutOf(%v) = %+v, %v; want %+v", tc.shape, got, err, tc.want)
		}
	}
	for _, shape := range [][]int{{10}, {1}, {2, 5, 5, 5}, {5, 7, 9}, {2, 28, 28}, {0, 28}, {1, 5000, 2}} {
		if l, err := LayoutOf(shape); !errors.Is(err, ErrNotImage) {
			t.Errorf("LayoutOf(%v) = %+v, %v; want ErrNotImage", shape, l, err)
		}
	}
}

func TestImageGreyScales(t *testing.T) {
	for _, tc := range []struct {
		name  string
		descr string
		data  []float32
		want  []uint8
	}{
		{"uint8 as is", "|u1", []float32{0, 7, 128, 255}, []uint8{0, 7, 128, 255}},
		{"unit range", "<f4", []float32{0, 0.5, 1, 0.25}, []uint8{0, 128, 255, 64}},
		{"0 to 255", "<f4", []float32{0, 2, 200, 255}, []uint8{0, 2, 200, 255}},
		{"normalised, stretched", "<f4", []float32{-1, 0, 1, 3}, []uint8{0, 64, 128, 255}},
		{"NaN is black", "<f4", []float32{float32(math.NaN()), 0.5, 1, 0}, []uint8{0, 128, 255, 0}},
	} {
		img, err := Image(&npy.Array{Descr: tc.descr, Shape: []int{1, 2, 2}, Data: tc.data})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		g, ok := img.(*image.Gray)
		if !ok || g.Bounds() != image.Rect(0, 0, 2, 2) {
			t.Fatalf("%s: got %T %v, want a 2×2 grey image", tc.name, img, img.Bounds())
		}
		for i, w := range tc.want {
			if y := g.GrayAt(i%2, i/2).Y; y != w {
				t.Errorf("%s: pixel %d = %d, want %d", tc.name, i, y, w)
			}
		}
	}
}

// TestImageColourLayouts renders the same 2×3 RGB picture stored channels first and channels
// last: both must give the same pixels.
func TestImageColourLayouts(t *testing.T) {
	const h, w = 2, 3
	px := func(y, x int) [3]float32 { return [3]float32{float32(10*y + x), float32(100 + x), float32(200 + y)} }
	chw := make([]float32, 0, 3*h*w)
	for c := range 3 {
		for y := range h {
			for x := range w {
				chw = append(chw, px(y, x)[c])
			}
		}
	}
	hwc := make([]float32, 0, 3*h*w)
	for y := range h {
		for x := range w {
			p := px(y, x)
			hwc = append(hwc, p[:]...)
		}
	}
	for name, a := range map[string]*npy.Array{
		"NCHW": {Descr: "<f4", Shape: []int{1, 3, h, w}, Data: chw},
		"HWC":  {Descr: "<f4", Shape: []int{h, w, 3}, Data: hwc},
	} {
		img, err := Image(a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for y := range h {
			for x := range w {
				p := px(y, x)
				want := color.RGBA{R: uint8(p[0]), G: uint8(p[1]), B: uint8(p[2]), A: 255}
				if got := img.At(x, y); got != want {
					t.Errorf("%s: (%d,%d) = %v, want %v", name, x, y, got, want)
				}
			}
		}
	}
}

func TestImageRefusesMismatchedData(t *testing.T) {
	_, err := Image(&npy.Array{Descr: "<f4", Shape: []int{3, 4, 4}, Data: make([]float32, 47)})
	if !errors.Is(err, ErrNotImage) {
		t.Fatalf("got %v, want ErrNotImage", err)
	}
}
