package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/classify"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// syntheticStream is a stream of n frames without the data set: items of random images seen
// for burst consecutive frames each (with jitter), random logits, spread over nodes.
func syntheticStream(t *testing.T, n, burst, nodes int) *stream {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	s := &stream{}
	img := make([]float32, fmnist.Pixels)
	for item := 0; len(s.labels) < n; item++ {
		for i := range img {
			img[i] = rng.Float32()
		}
		logits := make([]float32, fmnist.NumClasses)
		for i := range logits {
			logits[i] = float32(3 * rng.NormFloat64())
		}
		sc, err := classify.Score(logits, classify.Logits)
		if err != nil {
			t.Fatal(err)
		}
		node := rng.IntN(nodes)
		for range min(burst, n-len(s.labels)) {
			for _, v := range img {
				s.frames = append(s.frames, min(1, max(0, v+float32(jitter*rng.NormFloat64()))))
			}
			s.labels, s.item, s.node = append(s.labels, 0), append(s.item, item), append(s.node, node)
			s.scores, s.draws, s.wrong = append(s.scores, sc), append(s.draws, rng.Float64()), append(s.wrong, sc.Class != 0)
		}
	}
	return s
}

// TestSelectUploads checks that every strategy meets the budget through the sampler, that
// without dedup the uploads are exactly the budget lowest keys (the strategy's semantics),
// and that dedup trades repeated items for new ones.
func TestSelectUploads(t *testing.T) {
	const n, burst, nodes, budget = 600, 3, 2, 50
	s := syntheticStream(t, n, burst, nodes)
	for _, st := range strategies() {
		t.Run(st.Name, func(t *testing.T) {
			up, param, err := selectUploads(s, st, false, nodes, budget)
			if err != nil {
				t.Fatal(err)
			}
			if len(up) != budget || !slices.IsSorted(up) {
				t.Fatalf("%d uploads (sorted %v), want %d in time order", len(up), slices.IsSorted(up), budget)
			}
			keys := make([]float64, n)
			for i := range keys {
				keys[i] = st.key(s, i)
			}
			sorted := slices.Clone(keys)
			sort.Float64s(sorted)
			for _, i := range up {
				if keys[i] > sorted[budget-1] || !(keys[i] < param) {
					t.Fatalf("upload %d has key %g: above the budget's %g or not below the parameter %g", i, keys[i], sorted[budget-1], param)
				}
			}

			dd, _, err := selectUploads(s, st, true, nodes, budget)
			if err != nil {
				t.Fatal(err)
			}
			if len(dd) != budget {
				t.Fatalf("dedup: %d uploads, want %d", len(dd), budget)
			}
			// The perceptual hash of a noise image moves more than 4 bits under the jitter now
			// and then, so a few repeats get through. Random draws each frame of a burst on its own,
			// so it repeats items rarely anyway; the others take whole bursts, which share a score.
			if r, rd := repeats(s, up), repeats(s, dd); st.Name != "random" && r < budget/5 || rd > budget/10 {
				t.Errorf("repeated items: %d without dedup, %d with: want at least %d without, at most %d with", r, rd, budget/5, budget/10)
			}
			t.Logf("%s: parameter %.4f; repeats %d without dedup, %d with", st.Name, param, repeats(s, up), repeats(s, dd))
		})
	}
}

// repeats counts uploads that show an item already uploaded.
func repeats(s *stream, up []int) int {
	seen, r := map[int]bool{}, 0
	for _, i := range up {
		if seen[s.item[i]] {
			r++
		}
		seen[s.item[i]] = true
	}
	return r
}

// TestSelectUploadsShort: when dedup leaves fewer candidates than the budget, the uploads are
// all of them.
func TestSelectUploadsShort(t *testing.T) {
	s := syntheticStream(t, 60, 6, 1) // 10 items of 6 frames
	up, _, err := selectUploads(s, strategies()[1], true, 1, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(up) < 10 || len(up) >= 30 {
		t.Errorf("%d uploads from 10 items of 6 near-identical frames, want 10 to 29", len(up))
	}
}

func TestStat(t *testing.T) {
	s := stat([]float64{1, 2, 3, 4})
	// mean 2.5, sd √(5/3), t(3) 3.182: half width 3.182·√(5/3)/2.
	if half := 3.182 * math.Sqrt(5.0/3) / 2; s.Mean != 2.5 || math.Abs(s.Hi-s.Mean-half) > 1e-9 || math.Abs(s.Mean-s.Lo-half) > 1e-9 {
		t.Errorf("stat = %+v, want 2.5 ± %.4f", s, half)
	}
	if tQuantile975(9) != 2.262 || math.Abs(tQuantile975(30)-2.042) > 0.01 || math.Abs(tQuantile975(100)-1.984) > 0.01 {
		t.Errorf("t quantiles %v %v %v", tQuantile975(9), tQuantile975(30), tQuantile975(100))
	}
}

func TestUploadsTo(t *testing.T) {
	ps := []Point{{Uploads: 50, Drifted: Stat{Mean: 0.6}}, {Uploads: 200, Drifted: Stat{Mean: 0.8}}, {Uploads: 800, Drifted: Stat{Mean: 0.9}}}
	for _, tc := range []struct{ target, want float64 }{
		{0.5, 50}, {0.6, 50}, {0.7, 100}, {0.8, 200}, {0.85, 400}, {0.95, 0},
	} {
		if got := uploadsTo(ps, tc.target); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("uploadsTo(%v) = %v, want %v", tc.target, got, tc.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := defaultOptions()
	o.Budgets, o.Conditions = []int{50, 100}, conditionNames()
	if err := o.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := o
	bad.Budgets, bad.Conditions, bad.Seeds, bad.Burst = []int{100, 50}, []string{"fog"}, 1, 0.5
	err := bad.validate()
	for _, want := range []string{"-seeds", "-budgets", `"fog"`, "-burst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestRunSmall runs the whole benchmark on a tiny scale through its command line: a base model
// of one epoch on 2,000 images, two seeds, two budgets, the photometric and class-mix
// conditions. It checks the plumbing: every arm has every point, without dedup the uploads
// meet the budget, the photometric drift hurts the base model and a fine-tune on its uploads
// recovers some of it, and the JSON, the tables and the plots are written.
func TestRunSmall(t *testing.T) {
	dir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-data", dir, "-work", filepath.Join(out, "work"), "-seeds", "2", "-budgets", "20,60", "-conditions", "photometric,class-mix",
		"-stream", "400", "-test", "300", "-clean", "200", "-base-train", "4000", "-base-epochs", "2", "-replay", "100", "-epochs", "2", "-lr", "0.001",
		"-out", filepath.Join(out, "r.json"), "-md", filepath.Join(out, "r.md"), "-svg", filepath.Join(out, "img")}
	if err := mainErr(args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Conditions) != 2 {
		t.Fatalf("%d conditions, want 2", len(res.Conditions))
	}
	points := 0
	for _, c := range res.Conditions {
		if len(c.Arms) != 10 {
			t.Fatalf("%s: %d arms, want 5 strategies × dedup off and on", c.Name, len(c.Arms))
		}
		for _, a := range c.Arms {
			for _, p := range a.Points {
				points++
				if len(p.Drifted.Values) != 2 || p.Drifted.Mean < 0 || p.Drifted.Mean > 1 || p.Clean.Mean < 0.3 {
					t.Errorf("%s %s at %d: %+v", c.Name, a.Label(), p.Budget, p)
				}
				if !a.Dedup && p.Uploads != float64(p.Budget) {
					t.Errorf("%s %s: %v uploads at budget %d", c.Name, a.Label(), p.Uploads, p.Budget)
				}
			}
		}
	}
	photo := res.Conditions[0]
	if photo.BaseDrifted.Mean >= photo.BaseClean.Mean-0.1 {
		t.Errorf("photometric drift: base %.3f drifted, %.3f clean: want a drop", photo.BaseDrifted.Mean, photo.BaseClean.Mean)
	}
	var recovered float64
	for _, a := range photo.Arms {
		recovered += a.Points[1].Drifted.Mean / float64(len(photo.Arms))
	}
	if recovered <= photo.BaseDrifted.Mean {
		t.Errorf("photometric: fine-tuned models average %.3f at 60 uploads, base %.3f: no recovery", recovered, photo.BaseDrifted.Mean)
	}
	md, _ := os.ReadFile(filepath.Join(out, "r.md"))
	if !strings.Contains(string(md), "| threshold + dedup |") || !strings.Contains(stdout.String(), "Uploads needed") {
		t.Errorf("tables incomplete:\n%s", md)
	}
	for _, c := range []string{"photometric", "class-mix"} {
		svg, err := os.ReadFile(filepath.Join(out, "img", "sampling-"+c+".svg"))
		if err != nil || !strings.HasPrefix(string(svg), "<svg") || strings.Count(string(svg), "<polyline") != 10 {
			t.Errorf("plot of %s: %v, %d lines", c, err, strings.Count(string(svg), "<polyline"))
		}
	}
	// -from redraws the tables and plots of a run without running it.
	var again bytes.Buffer
	if err := mainErr([]string{"-from", filepath.Join(out, "r.json"), "-svg", filepath.Join(out, "img2")}, &again, &stderr); err != nil {
		t.Fatal(err)
	}
	if again.String() != stdout.String() {
		t.Errorf("-from printed other tables:\n%s\nwant\n%s", again.String(), stdout.String())
	}
	if _, err := os.Stat(filepath.Join(out, "img2", "sampling-class-mix.svg")); err != nil {
		t.Error(err)
	}
	t.Logf("%d points; photometric base %.3f → %.3f\n%s", points, photo.BaseDrifted.Mean, recovered, stdout.String())
}

// TestParallel: the worker pool runs every index once and returns the first error.
func TestParallel(t *testing.T) {
	done := make([]int, 100)
	if err := parallel(context.Background(), 3, len(done), func(i int) error { done[i]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for i, n := range done {
		if n != 1 {
			t.Fatalf("index %d ran %d times", i, n)
		}
	}
	want := os.ErrInvalid
	if err := parallel(context.Background(), 2, 10, func(i int) error { return want }); err != want {
		t.Errorf("error %v, want %v", err, want)
	}
}
