//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// createEvalSet makes the evaluation set evalsets/<model>/<name>/ in bucketURL with the real
// CLI, `edgeloop evalset create --from-dir`, from samples (each of the per-sample shape) and
// their class indexes, and returns the command's summary line.
func createEvalSet(t *testing.T, env []string, bucketURL, model, name string, shape []int, classes []string, samples [][]float32, labels []int) string {
	t.Helper()
	dir, csv := testenv.EvalFiles(t, shape, samples, labels)
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	out := run(t, env, "evalset", "create", "--bucket", bucketURL, "--model", model, "--name", name,
		"--from-dir", dir, "--labels", csv, "--shape", strings.Join(dims, ","), "--classes", strings.Join(classes, ","))
	if !strings.Contains(out, "created evalset "+model+"/"+name+": "+strconv.Itoa(len(samples))+" samples") {
		t.Fatalf("evalset create %s/%s: %s", model, name, out)
	}
	return strings.TrimSpace(out)
}

// fmnistImages returns images [from, to) of d, each shifted by shift when it is not nil, and
// their labels.
func fmnistImages(d *fmnist.Dataset, from, to int, shift func(dst, src []float32) []float32) ([][]float32, []int) {
	idx := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		idx = append(idx, i)
	}
	return fmnistPick(d, idx, shift)
}

// fmnistPick returns the images of d numbered in idx, each shifted by shift when it is not
// nil, and their labels.
func fmnistPick(d *fmnist.Dataset, idx []int, shift func(dst, src []float32) []float32) ([][]float32, []int) {
	var images [][]float32
	var labels []int
	for _, i := range idx {
		img := append([]float32(nil), d.Image(i)...)
		if shift != nil {
			img = shift(make([]float32, len(img)), d.Image(i))
		}
		images = append(images, img)
		labels = append(labels, int(d.Labels[i]))
	}
	return images, labels
}

// gateRecord is the part of a published version's gate.json these tests read.
type gateRecord struct {
	Report struct {
		Evaluator  string `json:"evaluator"`
		EvalDigest string `json:"eval_digest"`
		Samples    int    `json:"samples"`
		Accuracy   float64
		Parts      []struct {
			Name    string `json:"name"`
			Samples int    `json:"samples"`
		} `json:"parts"`
	} `json:"report"`
	Set gate.SetSummary `json:"set"`
}

// readGateRecord reads gate.json of a published version from the repository bucket.
func readGateRecord(t *testing.T, bucket objstore.Bucket, model string, version int) gateRecord {
	t.Helper()
	data, _, err := objstore.ReadAll(context.Background(), bucket, fmt.Sprintf("models/%s/%d/gate.json", model, version), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	var g gateRecord
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("gate.json of %s version %d: %v", model, version, err)
	}
	return g
}
