package main

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// side is the width and height of a Fashion-MNIST image.
const side = 28

// A drift transforms one 28×28 image (values in [0, 1], row-major) into dst.
type drift struct {
	// Family groups drifts of one kind: none, photometric, noise, geometric, occlusion.
	Family string
	// Name says the kind and strength, as the table prints it.
	Name string
	// apply writes the drifted src into dst; rng drives the random ones.
	apply func(dst, src []float32, rng *rand.Rand)
}

// drifts are the conditions the benchmark measures: each family at a few strengths, from
// mild to severe. The photometric ones follow the demo's x′ = clamp(c·x + b, 0, 1).
func drifts() []drift {
	ds := []drift{{Family: "none", Name: "none", apply: func(dst, src []float32, _ *rand.Rand) { copy(dst, src) }}}
	for _, p := range []struct{ c, b float32 }{{1, 0.1}, {1, 0.2}, {1, 0.3}, {0.7, 0}, {0.5, 0}, {0.3, 0}, {0.7, 0.15}, {0.5, 0.35}} {
		ds = append(ds, drift{Family: "photometric", Name: fmt.Sprintf("contrast %.1f brightness %+.2f", p.c, p.b),
			apply: func(dst, src []float32, _ *rand.Rand) {
				for i, v := range src {
					dst[i] = clamp01(p.c*v + p.b)
				}
			}})
	}
	for _, sigma := range []float64{0.1, 0.2, 0.3, 0.5} {
		ds = append(ds, drift{Family: "noise", Name: fmt.Sprintf("gaussian noise σ %.1f", sigma),
			apply: func(dst, src []float32, rng *rand.Rand) {
				for i, v := range src {
					dst[i] = clamp01(v + float32(sigma*rng.NormFloat64()))
				}
			}})
	}
	for _, deg := range []float64{10, 20, 30, 45} {
		ds = append(ds, drift{Family: "geometric", Name: fmt.Sprintf("rotation %.0f°", deg),
			apply: func(dst, src []float32, _ *rand.Rand) { rotate(dst, src, deg*math.Pi/180) }})
	}
	for _, px := range []int{2, 4, 6} {
		ds = append(ds, drift{Family: "geometric", Name: fmt.Sprintf("shift %d px right and down", px),
			apply: func(dst, src []float32, _ *rand.Rand) { shift(dst, src, px, px) }})
	}
	for _, size := range []int{6, 10, 14} {
		ds = append(ds, drift{Family: "occlusion", Name: fmt.Sprintf("black square %d×%d", size, size),
			apply: func(dst, src []float32, rng *rand.Rand) { occlude(dst, src, size, rng) }})
	}
	return ds
}

func clamp01(v float32) float32 { return min(1, max(0, v)) }

// rotate turns the image by theta about its centre, with bilinear interpolation and black
// outside.
func rotate(dst, src []float32, theta float64) {
	c := float64(side-1) / 2
	sin, cos := math.Sincos(theta)
	for y := range side {
		for x := range side {
			// The source point that lands on (x, y).
			dx, dy := float64(x)-c, float64(y)-c
			sx, sy := cos*dx+sin*dy+c, -sin*dx+cos*dy+c
			dst[y*side+x] = bilinear(src, sx, sy)
		}
	}
}

func bilinear(src []float32, x, y float64) float32 {
	x0, y0 := int(math.Floor(x)), int(math.Floor(y))
	fx, fy := float32(x-float64(x0)), float32(y-float64(y0))
	at := func(x, y int) float32 {
		if x < 0 || y < 0 || x >= side || y >= side {
			return 0
		}
		return src[y*side+x]
	}
	top := at(x0, y0)*(1-fx) + at(x0+1, y0)*fx
	bottom := at(x0, y0+1)*(1-fx) + at(x0+1, y0+1)*fx
	return top*(1-fy) + bottom*fy
}

// shift moves the image dx pixels right and dy down, filling with black.
func shift(dst, src []float32, dx, dy int) {
	for y := range side {
		for x := range side {
			sx, sy := x-dx, y-dy
			v := float32(0)
			if sx >= 0 && sy >= 0 && sx < side && sy < side {
				v = src[sy*side+sx]
			}
			dst[y*side+x] = v
		}
	}
}

// occlude blacks out a size×size square at a random place inside the central 20×20, where the
// garment is.
func occlude(dst, src []float32, size int, rng *rand.Rand) {
	copy(dst, src)
	lo, hi := 4, 24-size
	x0, y0 := lo, lo
	if hi > lo {
		x0, y0 = lo+rng.IntN(hi-lo+1), lo+rng.IntN(hi-lo+1)
	}
	for y := y0; y < y0+size; y++ {
		for x := x0; x < x0+size; x++ {
			dst[y*side+x] = 0
		}
	}
}
