package testenv_test

import (
	"slices"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// TestEvalFiles reads what EvalFiles writes with the builder `edgeloop evalset create
// --from-dir` uses: every sample, its exact values and its label.
func TestEvalFiles(t *testing.T) {
	samples := [][]float32{{0, 0.25, 0.5, 1}, {1, 2, 3, 4}, {-1, 0.5, 7, 0}}
	labels := []int{2, 0, 1}
	dir, csv := testenv.EvalFiles(t, []int{1, 2, 2}, samples, labels)
	spec := dataset.Spec{Shape: []int64{1, 2, 2}, Datatype: dataset.DatatypeFP32, Classes: []string{"a", "b", "c"}}
	set, err := evalset.FromFiles(dir, csv, spec, evalset.Preprocess{})
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != len(samples) {
		t.Fatalf("%d samples, want %d", set.Len(), len(samples))
	}
	// The set may order samples its own way: compare as (label, values) pairs.
	want := map[int][]float32{}
	for i, s := range samples {
		want[labels[i]] = s
	}
	for i := range set.Len() {
		got := set.Inputs[i*4 : (i+1)*4]
		if w, ok := want[set.Labels[i]]; !ok || !slices.Equal(got, w) {
			t.Errorf("sample %d: label %d values %v, want %v", i, set.Labels[i], got, w)
		}
	}
}
