package demo

import (
	"slices"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// checkDisjoint fails the test when an evaluation image is also a traffic image, by index or
// by pixels, or two traffic images have the same pixels, and returns the number of traffic
// images checked.
func checkDisjoint(t *testing.T, test *fmnist.Dataset, s *Split) int {
	t.Helper()
	evalIdx, evalKeys := map[int]bool{}, map[string]int{}
	for _, i := range s.Eval {
		if i >= s.Reserved {
			t.Errorf("evaluation image %d is not below the reserved bound %d", i, s.Reserved)
		}
		evalIdx[i] = true
		evalKeys[dataset.ContentKey(test.Image(i))] = i
	}
	trafficKeys := map[string]int{}
	for _, i := range s.Traffic {
		if evalIdx[i] {
			t.Errorf("image %d is both an evaluation and a traffic image", i)
		}
		k := dataset.ContentKey(test.Image(i))
		if j, ok := evalKeys[k]; ok {
			t.Errorf("traffic image %d has the pixels of evaluation image %d", i, j)
		}
		if j, ok := trafficKeys[k]; ok {
			t.Errorf("traffic images %d and %d have the same pixels", j, i)
		}
		trafficKeys[k] = i
	}
	return len(s.Traffic)
}

// TestSplitFashionMNIST splits the real test set: 200 distinct images of each class, none of
// them sent as traffic by index or by pixels, the traffic being the second half.
func TestSplitFashionMNIST(t *testing.T) {
	test, err := fmnist.Load(testenv.FashionMNIST(t, fmnist.DefaultDir), fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	s, err := SplitTest(test, EvalPerClass)
	if err != nil {
		t.Fatal(err)
	}
	if s.Reserved != 5000 || len(s.Eval) != EvalPerClass*fmnist.NumClasses {
		t.Fatalf("reserved %d, %d evaluation images; want 5000 and %d", s.Reserved, len(s.Eval), EvalPerClass*fmnist.NumClasses)
	}
	if len(s.Traffic)+s.Dropped != 5000 || !slices.IsSorted(s.Traffic) || s.Traffic[0] < 5000 {
		t.Errorf("traffic: %d images + %d dropped, first %d; want the 5000 images from index 5000 on", len(s.Traffic), s.Dropped, s.Traffic[0])
	}
	counts := make([]int, fmnist.NumClasses)
	for _, i := range s.Eval {
		counts[test.Labels[i]]++
	}
	for c, n := range counts {
		if n != EvalPerClass {
			t.Errorf("class %d: %d evaluation images, want %d", c, n, EvalPerClass)
		}
	}
	n := checkDisjoint(t, test, s)
	if len(s.Probes) != len(s.Traffic)/ProbeEvery || s.Probes[0] != s.Traffic[ProbeEvery-1] {
		t.Errorf("%d probes, the first %d; want every %dth of %d traffic images", len(s.Probes), s.Probes[0], ProbeEvery, len(s.Traffic))
	}
	t.Logf("%d evaluation images, %d traffic images checked, %d dropped for repeating an evaluation image's pixels", len(s.Eval), n, s.Dropped)

	// The set built from it has the model's shape, one key per sample, the split's labels.
	spec := dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}
	set, err := s.EvalSet(test, spec, "fashion")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Check(spec); err != nil {
		t.Error(err)
	}
	if set.Len() != len(s.Eval) || set.Labels[0] != int(test.Labels[s.Eval[0]]) || set.Input(7)[300] != test.Image(s.Eval[7])[300] {
		t.Errorf("set of %d samples does not hold the split's images and labels", set.Len())
	}
	if _, err := s.EvalSet(test, dataset.Spec{Shape: []int64{3, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, "fashion"); err == nil {
		t.Error("a 3x28x28 model got a Fashion-MNIST evaluation set")
	}
}

// TestSplitRule checks the rule on a hand-made test set: class balance taken in index order,
// repeated pixels kept once in the evaluation set and dropped from the traffic, too few images
// of a class refused.
func TestSplitRule(t *testing.T) {
	// 40 images: image i has label i%10 and pixels unique to i, except that image 25 repeats
	// image 3's pixels, image 11 repeats image 1's (the same class, so the set skips it) and
	// image 37 repeats image 32's.
	test := &fmnist.Dataset{Images: make([]float32, 40*fmnist.Pixels), Labels: make([]uint8, 40)}
	for i := range 40 {
		test.Labels[i] = uint8(i % 10)
		test.Image(i)[0] = float32(i) / 100
	}
	copy(test.Image(25), test.Image(3))
	test.Labels[25] = 3
	copy(test.Image(11), test.Image(1))
	copy(test.Image(37), test.Image(32))
	cases := []struct {
		name      string
		perClass  int
		wantEval  []int
		wantErr   bool
		wantDrops int
	}{
		{name: "one per class", perClass: 1, wantEval: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, wantDrops: 2},
		{name: "two per class skip the repeat", perClass: 2, wantErr: true}, // class 1 has 1 and 11 (a repeat) below 20
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SplitTest(test, tc.perClass)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("split %v, want an error", s.Eval)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Eval, tc.wantEval) || s.Dropped != tc.wantDrops {
				t.Errorf("eval %v, dropped %d; want %v, %d", s.Eval, s.Dropped, tc.wantEval, tc.wantDrops)
			}
			if slices.Contains(s.Traffic, 25) || slices.Contains(s.Traffic, 37) || !slices.Contains(s.Traffic, 32) || len(s.Traffic) != 18 {
				t.Errorf("traffic %v: want 20..39 without 25 and 37", s.Traffic)
			}
			checkDisjoint(t, test, s)
		})
	}
}
