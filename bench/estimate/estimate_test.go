package main

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestRunSmall runs the whole benchmark on a small scale: a model trained for two epochs on
// 5000 images (one worker, so the same weights on every machine), calibrated on 600 test
// images, measured on 600 others without drift and with noise. It checks the plumbing, not the model: the estimates come back for every condition,
// the calibrated estimate is within 0.05 of the accuracy without drift, and the input signals
// read noise as noise (spread up, sketch moved) and no drift as none, and so does the
// embedding distance.
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
	// The embedding distance: two windows of 256 in 600 images; noise moves the embeddings.
	if !(none.EmbeddingMMD >= 0) || none.EmbeddingMMDMax < none.EmbeddingMMD || worst.EmbeddingMMD < 2*none.EmbeddingMMD || worst.EmbeddingMMD < 0.1 {
		t.Errorf("embedding distance: no drift %.3f (max %.3f), σ 0.5 %.3f", none.EmbeddingMMD, none.EmbeddingMMDMax, worst.EmbeddingMMD)
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
