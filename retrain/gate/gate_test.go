package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/trainers/go"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fashion is Fashion-MNIST's test set, loaded once for the tests that need it. The tests use
// it for everything (reference slice, captured samples, training data, in disjoint ranges):
// decoding the 60,000 training images takes ten seconds under the race detector.
type fashion struct {
	once sync.Once
	test *fmnist.Dataset
	err  error
}

var realData fashion

func (f *fashion) load(t *testing.T) *fmnist.Dataset {
	t.Helper()
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	f.once.Do(func() { f.test, f.err = fmnist.Load(dir, fmnist.Test) })
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.test
}

// Ranges of the test set: the default reference slice lies within the first trainStart
// images (TestLoadEvalSet checks), the test models train on [trainStart, capturedStart), and
// the captured samples come from capturedStart on, so no model has seen an image it is
// evaluated on.
const (
	trainStart    = 3000
	capturedStart = 9400
)

// writeCapturedShard writes n test images from capturedStart as captured samples in a shard,
// the way the collector stores them: every third labelled in its JSON by index, every third
// by a posted label (by name) in a JSONL label file, the rest unlabelled. It returns the
// dataset manifest and the labelled images.
func writeCapturedShard(t *testing.T, train *fmnist.Dataset, n int) (trainer.Manifest, *fmnist.Dataset) {
	t.Helper()
	dir := t.TempDir()
	classes := fmnist.ClassNames()
	var samples []*sample.Sample
	var posted bytes.Buffer
	labelled := &fmnist.Dataset{}
	for i := range n {
		idx := capturedStart + i
		img, label := train.Image(idx), int(train.Labels[idx])
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, []int{1, 28, 28}, img); err != nil {
			t.Fatal(err)
		}
		meta := sample.Meta{
			Model: "fashion", Version: "1", Node: "edge-1", Time: time.Date(2026, 11, 29, 3, 0, 0, i, time.UTC),
			Prediction: 0, Scores: make([]float32, 10), ScoresKind: sample.ScoresLogits,
			Confidence: map[string]float64{"max_softmax": 0.1}, Reason: "low_confidence",
			Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
		}
		if i%3 == 0 {
			meta.Label = sample.IndexLabel(label)
		}
		s, err := sample.New(meta, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 1 {
			fmt.Fprintf(&posted, "{\"key\": %q, \"label\": %q}\n", s.Meta.Key, classes[label])
		}
		if i%3 != 2 {
			labelled.Images = append(labelled.Images, img...)
			labelled.Labels = append(labelled.Labels, uint8(label))
		}
		samples = append(samples, s)
	}
	var tarball bytes.Buffer
	if err := sample.WriteTar(&tarball, samples); err != nil {
		t.Fatal(err)
	}
	m := trainer.Manifest{Shards: []string{filepath.Join(dir, "00.tar")}, Labels: []string{filepath.Join(dir, "labels.jsonl")}}
	if err := os.WriteFile(m.Shards[0], tarball.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Labels[0], posted.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return m, labelled
}

func TestHeldOutSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ds := &fmnist.Dataset{}
	const n = 5000
	for i := range n {
		for range fmnist.Pixels {
			ds.Images = append(ds.Images, rng.Float32())
		}
		ds.Labels = append(ds.Labels, uint8(i%10))
	}
	train, held := trainer.SplitSamples(ds)
	if train.Len()+held.Len() != n || len(train.Images)+len(held.Images) != len(ds.Images) {
		t.Fatalf("split %d + %d of %d images", train.Len(), held.Len(), n)
	}
	// About 1 in 10, with a binomial standard deviation of 21 images.
	if frac := float64(held.Len()) / n; frac < 0.085 || frac > 0.115 {
		t.Errorf("held out %d of %d (%.3f), want about 1 in %d", held.Len(), n, frac, trainer.HoldoutBuckets)
	}
	for i := range held.Len() {
		if !trainer.HeldOut(held.Image(i)) {
			t.Fatalf("held-out image %d is not HeldOut", i)
		}
	}
	for i := range train.Len() {
		if trainer.HeldOut(train.Image(i)) {
			t.Fatalf("training image %d is HeldOut", i)
		}
	}
	// The split depends on the values only: a copy lands on the same side.
	for i := range 100 {
		img := slices.Clone(ds.Image(i))
		if trainer.HeldOut(img) != trainer.HeldOut(ds.Image(i)) {
			t.Fatal("the same values hashed to different sides")
		}
	}
	// The documented definition, checked against Python's
	// int.from_bytes(hashlib.sha256(x.astype('<f4').tobytes()).digest()[:8], 'big') % 10
	// for x = (i mod k)/k, i = 0..783: 0 (held out) for k = 5, 14, 19, 26; else 8, 9, 2, 3, 4, 1.
	for k, want := range map[int]bool{5: true, 14: true, 19: true, 26: true, 1: false, 2: false, 3: false, 4: false, 6: false, 7: false} {
		x := make([]float32, fmnist.Pixels)
		for i := range x {
			x[i] = float32(i%k) / float32(k)
		}
		if trainer.HeldOut(x) != want {
			t.Errorf("trainer.HeldOut((i mod %d)/%d) = %v, want %v", k, k, !want, want)
		}
	}
}

func TestReferenceSlice(t *testing.T) {
	// Classes 0..9 repeating, but class 3 rare: it appears only in the second half.
	ds := &fmnist.Dataset{}
	for i := range 400 {
		c := uint8(i % 10)
		if c == 3 && i < 200 {
			c = 4
		}
		ds.Labels = append(ds.Labels, c)
		ds.Images = append(ds.Images, make([]float32, fmnist.Pixels)...)
		ds.Images[i*fmnist.Pixels] = float32(i)
	}
	tests := []struct {
		n        int
		perClass []int
	}{
		{100, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}},
		{23, []int{3, 3, 3, 2, 2, 2, 2, 2, 2, 2}},
		{1000, nil}, // more than there are: everything, capped at each class's share
	}
	for _, tt := range tests {
		got := ReferenceSlice(ds, tt.n)
		counts := make([]int, 10)
		last := -1.0
		for i, l := range got.Labels {
			counts[l]++
			if v := float64(got.Image(i)[0]); v <= last {
				t.Errorf("n=%d: images out of order", tt.n)
			} else {
				last = v
			}
		}
		if tt.perClass != nil && !slices.Equal(counts, tt.perClass) {
			t.Errorf("n=%d: per-class counts %v, want %v", tt.n, counts, tt.perClass)
		}
		if len(got.Images) != got.Len()*fmnist.Pixels || got.Len() > tt.n {
			t.Errorf("n=%d: %d images, %d values", tt.n, got.Len(), len(got.Images))
		}
	}
}

func TestLoadEvalSet(t *testing.T) {
	test := realData.load(t)
	if !slices.Equal(ReferenceSlice(test, 2000).Labels, ReferenceSlice(&fmnist.Dataset{Images: test.Images[:trainStart*fmnist.Pixels], Labels: test.Labels[:trainStart]}, 2000).Labels) {
		t.Fatalf("the default reference slice reaches past image %d, into the test models' training data", trainStart)
	}
	data, labelled := writeCapturedShard(t, test, 600)
	cfg := DefaultConfig()
	set, err := LoadEvalSet(cfg, data, discard())
	if err != nil {
		t.Fatal(err)
	}
	_, wantHeld := trainer.SplitSamples(labelled)
	if set.Captured != wantHeld.Len() || set.Captured == 0 {
		t.Fatalf("captured %d held-out samples, want %d (of %d labelled)", set.Captured, wantHeld.Len(), labelled.Len())
	}
	if want := (trainer.SampleStats{Shards: 1, Labelled: 400, Unlabelled: 200}); set.Samples != want {
		t.Errorf("sample stats %+v, want %+v", set.Samples, want)
	}
	// The held-out captured samples come first, as the split picked them (order may differ:
	// LoadSamples reads the tar in key order).
	gotHeld := map[string]uint8{}
	for i := range set.Captured {
		gotHeld[fmt.Sprint(set.Images[i*fmnist.Pixels:(i+1)*fmnist.Pixels])] = set.Labels[i]
	}
	for i := range wantHeld.Len() {
		if l, ok := gotHeld[fmt.Sprint(wantHeld.Image(i))]; !ok || l != wantHeld.Labels[i] {
			t.Fatalf("held-out sample %d missing or mislabelled", i)
		}
	}
	ref := ReferenceSlice(test, cfg.ReferenceImages)
	if set.Len()-set.Captured != 2000 || !slices.Equal(set.Labels[set.Captured:], ref.Labels) || !slices.Equal(set.Images[set.Captured*fmnist.Pixels:], ref.Images) {
		t.Fatalf("reference part: %d images, want the 2000 of ReferenceSlice", set.Len()-set.Captured)
	}
	if set.Width != fmnist.Pixels || !slices.Equal(set.Classes, fmnist.ClassNames()) || len(set.Sources) != 3 {
		t.Errorf("width %d, classes %q, sources %q", set.Width, set.Classes, set.Sources)
	}
	again, err := LoadEvalSet(cfg, data, discard())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != set.Digest || len(set.Digest) != 64 {
		t.Errorf("digests %s and %s of the same data", set.Digest, again.Digest)
	}
	cfg.ReferenceImages = 0
	only, err := LoadEvalSet(cfg, data, discard())
	if err != nil {
		t.Fatal(err)
	}
	if only.Len() != set.Captured || only.Digest == set.Digest {
		t.Errorf("captured only: %d images (want %d), digest %s", only.Len(), set.Captured, only.Digest)
	}
}

// trained is a model trained for a test.
type trained struct {
	path    string
	metrics trainer.Metrics
}

// train trains a small model on n test images from trainStart for epochs (with the labels
// shuffled when shuffle is set), evaluating it on eval, and writes model.onnx.
func train(t *testing.T, n, epochs int, shuffle bool, eval *fmnist.Dataset) trained {
	t.Helper()
	all := realData.load(t)
	if trainStart+n > capturedStart {
		t.Fatalf("%d training images overlap the captured samples", n)
	}
	ds := &fmnist.Dataset{Images: all.Images[trainStart*fmnist.Pixels : (trainStart+n)*fmnist.Pixels], Labels: slices.Clone(all.Labels[trainStart : trainStart+n])}
	if shuffle {
		rng := rand.New(rand.NewPCG(9, 9))
		rng.Shuffle(n, func(i, j int) { ds.Labels[i], ds.Labels[j] = ds.Labels[j], ds.Labels[i] })
	}
	cfg := trainer.DefaultConfig()
	cfg.Hidden, cfg.Epochs, cfg.BatchSize, cfg.LearningRate = []int{32}, epochs, 64, 3e-3
	res, err := trainer.Train(context.Background(), cfg, &trainer.Data{Train: ds, Eval: eval, Classes: fmnist.ClassNames()}, discard())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := trainer.WriteOutputs(dir, res, fmnist.ClassNames(), cfg); err != nil {
		t.Fatal(err)
	}
	return trained{path: filepath.Join(dir, trainer.ModelFile), metrics: res.Metrics}
}

// TestGateOnTrainedModels trains real candidates and checks the gate tells them apart: a
// model trained on shuffled labels is refused against a properly trained one (and as a first
// model), a better-trained model is promoted over a weaker one and not the reverse.
func TestGateOnTrainedModels(t *testing.T) {
	data, _ := writeCapturedShard(t, realData.load(t), 600)
	cfg := DefaultConfig()
	set, err := LoadEvalSet(cfg, data, discard())
	if err != nil {
		t.Fatal(err)
	}
	evalDS := &fmnist.Dataset{Images: set.Images, Labels: set.Labels}

	// The numbers in the comments are from linux/amd64; training is deterministic, so they
	// change only with the trainer or the data.
	weak := train(t, 1600, 1, false, evalDS)    // ≈ 0.65
	strong := train(t, 6400, 10, false, evalDS) // ≈ 0.85, no class more than 0.01 below weak's
	shuffled := train(t, 6400, 1, true, evalDS) // ≈ 0.10: learned nothing
	epoch1 := train(t, 6400, 1, false, evalDS)  // ≈ 0.75
	epoch2 := train(t, 6400, 2, false, evalDS)  // ≈ 0.79, but Coat 0.82 → 0.76
	ctx := context.Background()
	report := func(m trained) *Report {
		r, err := EvaluateFile(ctx, m.path, set, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rWeak, rStrong, rShuffled, rEpoch1, rEpoch2 := report(weak), report(strong), report(shuffled), report(epoch1), report(epoch2)
	t.Logf("held-out set: %d images (%d captured); accuracy (loss): weak %.4f (%.3f), strong %.4f (%.3f), shuffled %.4f (%.3f), 1 epoch %.4f (%.3f), 2 epochs %.4f (%.3f)",
		set.Len(), set.Captured, rWeak.Accuracy, rWeak.Loss, rStrong.Accuracy, rStrong.Loss, rShuffled.Accuracy, rShuffled.Loss,
		rEpoch1.Accuracy, rEpoch1.Loss, rEpoch2.Accuracy, rEpoch2.Loss)

	// The gate measures what the trainer measures on the same images: same accuracy (up to
	// predictions whose top two scores are within float32 rounding of each other, as the two
	// compute in different orders), loss and reference histogram.
	for _, c := range []struct {
		name string
		m    trained
		r    *Report
	}{{"weak", weak, rWeak}, {"strong", strong, rStrong}, {"shuffled", shuffled, rShuffled}} {
		tol := 2.0 / float64(set.Len())
		if d := math.Abs(c.r.Accuracy - c.m.metrics.Accuracy); d > tol {
			t.Errorf("%s: gate accuracy %.5f, trainer %.5f", c.name, c.r.Accuracy, c.m.metrics.Accuracy)
		}
		if d := math.Abs(c.r.Loss - c.m.metrics.Loss); d > 1e-4 {
			t.Errorf("%s: gate loss %.6f, trainer %.6f", c.name, c.r.Loss, c.m.metrics.Loss)
		}
		if d := math.Abs(c.r.MeanConfidence - c.m.metrics.MeanConfidence); d > 1e-4 {
			t.Errorf("%s: gate mean confidence %.6f, trainer %.6f", c.name, c.r.MeanConfidence, c.m.metrics.MeanConfidence)
		}
		for b := range HistogramBins {
			if d := math.Abs(c.r.ConfidenceHistogram[b] - c.m.metrics.ConfidenceHistogram[b]); d > tol {
				t.Errorf("%s: gate histogram %v, trainer %v", c.name, c.r.ConfidenceHistogram, c.m.metrics.ConfidenceHistogram)
				break
			}
		}
		if c.r.Output != trainer.ProbabilitiesName || c.r.OutputKind != "probabilities" || len(c.r.ModelSHA256) != 64 || c.r.EvalDigest != set.Digest {
			t.Errorf("%s: output %q (%s), model sha256 %q, digest %q", c.name, c.r.Output, c.r.OutputKind, c.r.ModelSHA256, c.r.EvalDigest)
		}
		n, right := 0, 0
		for _, pc := range c.r.PerClass {
			n, right = n+pc.Samples, right+pc.Correct
		}
		if n != set.Len() || right != c.r.Correct || c.r.Captured.Samples != set.Captured || c.r.Captured.Correct+c.r.Reference.Correct != c.r.Correct {
			t.Errorf("%s: per-class %d/%d, parts %+v %+v, overall %d/%d", c.name, right, n, c.r.Captured, c.r.Reference, c.r.Correct, c.r.Samples)
		}
	}
	if !(rShuffled.Accuracy < 0.3 && rWeak.Accuracy > 0.6 && rStrong.Accuracy > rWeak.Accuracy+0.05 && rEpoch2.Accuracy > rEpoch1.Accuracy) {
		t.Fatalf("the models did not train as expected")
	}
	loose := cfg
	loose.MaxClassRegression = 0.1

	tests := []struct {
		name               string
		cfg                Config
		candidate, current *Report
		promote            bool
		reason             string
	}{
		{"shuffled over strong", cfg, rShuffled, rStrong, false, fmt.Sprintf("refused: candidate accuracy %.4f < current %.4f + margin 0.0000; class ", rShuffled.Accuracy, rStrong.Accuracy)},
		{"shuffled as first model", cfg, rShuffled, nil, false, fmt.Sprintf("refused: first model: candidate accuracy %.4f < first_model_min_accuracy 0.5000", rShuffled.Accuracy)},
		{"strong as first model", cfg, rStrong, nil, true, "≥ first_model_min_accuracy 0.5000"},
		{"strong over weak", cfg, rStrong, rWeak, true, fmt.Sprintf("promoted: candidate accuracy %.4f ≥ current %.4f + margin 0.0000; no class regressed", rStrong.Accuracy, rWeak.Accuracy)},
		{"weak over strong", cfg, rWeak, rStrong, false, "refused: candidate accuracy"},
		{"strong over itself", cfg, rStrong, rStrong, true, "worst:"},
		// Better on average, yet one class lost 5 points: the class rule alone refuses.
		{"2 epochs over 1", cfg, rEpoch2, rEpoch1, false, "refused: class Coat regressed by 0.0"},
		{"2 epochs over 1, 10 points tolerated", loose, rEpoch2, rEpoch1, true, "promoted"},
	}
	for _, tt := range tests {
		d := Decide(tt.cfg, tt.candidate, tt.current)
		t.Logf("%s: %s", tt.name, d.Reason)
		if d.Promote != tt.promote || !strings.Contains(d.Reason, tt.reason) {
			t.Errorf("%s: promote %v, reason %q; want %v and a reason containing %q", tt.name, d.Promote, d.Reason, tt.promote, tt.reason)
		}
	}
	// A report on another held-out set is never compared.
	other := *rWeak
	other.EvalDigest = strings.Repeat("0", 64)
	if d := Decide(cfg, rStrong, &other); d.Promote || !strings.Contains(d.Reason, "different held-out sets") {
		t.Errorf("reports on different sets: %+v", d)
	}
	if b, err := json.Marshal(Decide(cfg, rStrong, rWeak)); err != nil || !bytes.Contains(b, []byte(`"per_class_delta"`)) {
		t.Errorf("decision JSON %s, %v", b, err)
	}
}
