package main

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// testImage is a 28×28 image with a bright 10×10 square in the middle on grey 0.2.
func testImage() []float32 {
	img := make([]float32, side*side)
	for i := range img {
		img[i] = 0.2
	}
	for y := 9; y < 19; y++ {
		for x := 9; x < 19; x++ {
			img[y*side+x] = 0.9
		}
	}
	return img
}

func TestTransforms(t *testing.T) {
	src := testImage()
	dst := make([]float32, len(src))
	rng := rand.New(rand.NewPCG(1, 2))

	rotate(dst, src, 0)
	for i := range src {
		if math.Abs(float64(dst[i]-src[i])) > 1e-6 {
			t.Fatalf("rotation by 0 changed pixel %d: %v → %v", i, src[i], dst[i])
		}
	}
	// A quarter turn of a centred square is the same square.
	rotate(dst, src, math.Pi/2)
	if math.Abs(float64(dst[13*side+13]-0.9)) > 1e-4 || math.Abs(float64(dst[5*side+13]-0.2)) > 1e-4 {
		t.Errorf("quarter turn: centre %v, above the square %v", dst[13*side+13], dst[5*side+13])
	}

	shift(dst, src, 2, 3)
	if dst[(9+3)*side+9+2] != 0.9 || dst[0] != 0 || dst[3*side+2] != 0.2 {
		t.Errorf("shift: moved corner %v, uncovered %v, first source pixel %v", dst[(9+3)*side+9+2], dst[0], dst[3*side+2])
	}

	occlude(dst, src, 6, rng)
	zeros := 0
	for y := range side {
		for x := range side {
			if dst[y*side+x] == 0 {
				zeros++
				if x < 4 || y < 4 || x >= 24 || y >= 24 {
					t.Errorf("occlusion outside the central 20×20 at (%d, %d)", x, y)
				}
			}
		}
	}
	if zeros != 36 {
		t.Errorf("occlusion of 6×6 blacked %d pixels", zeros)
	}

	var names []string
	for _, d := range drifts() {
		names = append(names, d.Name)
		d.apply(dst, src, rng)
		for i, v := range dst {
			if v < 0 || v > 1 || v != v {
				t.Fatalf("%s: pixel %d is %v, outside [0, 1]", d.Name, i, v)
			}
		}
	}
	if len(names) != 23 || names[0] != "none" {
		t.Errorf("%d drifts %q", len(names), names)
	}
}

// TestRunSmall runs the whole benchmark on a small scale: a model trained for two epochs on
// 5000 images (one worker, so the same weights on every machine), calibrated on 600 test
// images, measured on 600 others without drift and with noise. It checks the plumbing, not the model: the estimates come back for every condition,
// the calibrated estimate is within 0.05 of the accuracy without drift, and the input signals
// read noise as noise (spread up, sketch moved) and no drift as none.
func TestRunSmall(t *testing.T) {
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	o := options{DataDir: dir, Work: t.TempDir(), TrainLimit: 5000, Epochs: 2, CalImages: 600, EvalImages: 600, Seed: 1, Workers: 1,
		Families: []string{"none", "noise"}}
	res, err := run(context.Background(), o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 5 {
		t.Fatalf("%d rows, want none and 4 noise levels", len(res.Rows))
	}
	if !(res.Temperature > 0) || res.ReferenceSample != 600 {
		t.Errorf("temperature %v, reference over %d samples", res.Temperature, res.ReferenceSample)
	}
	none := res.Rows[0]
	if math.Abs(none.Calibrated-none.Accuracy) > 0.05 {
		t.Errorf("no drift: calibrated estimate %.3f, accuracy %.3f", none.Calibrated, none.Accuracy)
	}
	if none.SketchPSI > 0.1 || math.Abs(none.MeanShift) > 0.1 || math.Abs(none.StdRatio-1) > 0.05 || none.ClassMixJS > 0.15 {
		t.Errorf("no drift reads as drift: %+v", none)
	}
	worst := res.Rows[4] // σ 0.5
	if worst.Accuracy >= none.Accuracy || worst.ConfidencePSI <= none.ConfidencePSI || worst.ClassMixJS <= none.ClassMixJS {
		t.Errorf("strong noise: %+v, none %+v", worst, none)
	}
	for _, r := range res.Rows {
		if math.Abs(r.Calibrated-r.CalibratedProbs) > 1e-3 {
			t.Errorf("%s: calibrated estimates from logits %.4f and probabilities %.4f differ", r.Drift, r.Calibrated, r.CalibratedProbs)
		}
	}
	var out bytes.Buffer
	writeTable(&out, res)
	if !strings.Contains(out.String(), "| all | 5 |") {
		t.Errorf("table lacks the summary:\n%s", out.String())
	}
	t.Logf("no drift: accuracy %.3f, calibrated estimate %.3f\n%s", none.Accuracy, none.Calibrated, out.String())
}
