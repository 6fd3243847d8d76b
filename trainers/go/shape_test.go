package trainer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// writeIDX writes split's IDX image and label files into dir (gzipped when gz): images of
// rows×cols bytes, one label byte each.
func writeIDX(t *testing.T, dir, prefix string, rows, cols int, images [][]byte, labels []byte, gz bool) {
	t.Helper()
	var img, lab bytes.Buffer
	_ = binary.Write(&img, binary.BigEndian, []uint32{0x803, uint32(len(images)), uint32(rows), uint32(cols)})
	for _, im := range images {
		img.Write(im)
	}
	_ = binary.Write(&lab, binary.BigEndian, []uint32{0x801, uint32(len(labels))})
	lab.Write(labels)
	for name, data := range map[string][]byte{prefix + "-images-idx3-ubyte": img.Bytes(), prefix + "-labels-idx1-ubyte": lab.Bytes()} {
		if gz {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			_, _ = zw.Write(data)
			_ = zw.Close()
			name, data = name+".gz", z.Bytes()
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// syntheticIDX writes n training and n/4 test images of rows×cols into a new directory:
// label l's images are bright in the l-th horizontal band, dark elsewhere, with noise.
func syntheticIDX(t *testing.T, rows, cols, classes, n int, gz bool) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, split := range []struct {
		prefix string
		n      int
	}{{"train", n}, {"t10k", n / 4}} {
		var images [][]byte
		var labels []byte
		for i := range split.n {
			l := i % classes
			im := make([]byte, rows*cols)
			for p := range im {
				v := rng.IntN(60)
				if (p/cols)*classes/rows == l {
					v += 180
				}
				im[p] = byte(v)
			}
			images, labels = append(images, im), append(labels, byte(l))
		}
		writeIDX(t, dir, split.prefix, rows, cols, images, labels, gz)
	}
	return dir
}

// TestIDXWithClasses trains on IDX files of another image size and class count, named by
// Config.Classes (--classes).
func TestIDXWithClasses(t *testing.T) {
	dir := syntheticIDX(t, 5, 6, 3, 600, false)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Hidden, cfg.Epochs, cfg.BatchSize = dir, []int{16}, 10, 32

	// Not Fashion-MNIST's format, and no classes: refused, naming the flag.
	if _, err := LoadData(cfg, discard()); err == nil || !strings.Contains(err.Error(), "--classes") {
		t.Fatalf("IDX data of 5×6 images without classes: %v, want an error naming --classes", err)
	}
	// Fewer classes than the labels name.
	cfg.Classes = []string{"low", "mid"}
	if _, err := LoadData(cfg, discard()); err == nil || !strings.Contains(err.Error(), "label 2 of image 2 names no class") {
		t.Fatalf("labels beyond the classes: %v", err)
	}

	cfg.Classes = []string{"top", "middle", "bottom"}
	out := t.TempDir()
	res, err := Run(context.Background(), cfg, out, discard())
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics
	if m.Accuracy < 0.9 || m.TrainSize != 600 || m.EvalSize != 150 || !slices.Equal(m.Classes, cfg.Classes) || !slices.Equal(m.InputShape, []int64{30}) {
		t.Errorf("accuracy %v, sizes %d/%d, classes %q, input shape %v", m.Accuracy, m.TrainSize, m.EvalSize, m.Classes, m.InputShape)
	}
	model := readModel(t, out)
	checkGraph(t, model, 30, cfg.Classes)
	if got := model.Metadata["edgeloop.preprocessing"]; got != "5x6 grey levels divided by 255, row-major, flattened to 30" {
		t.Errorf("preprocessing metadata %q", got)
	}

	// 28×28 images labelled 0 to 9 without --classes are taken as Fashion-MNIST's; with
	// --classes (MNIST's digits) they are named by it.
	mnist := syntheticIDX(t, 28, 28, 10, 40, true)
	cfg = DefaultConfig()
	cfg.DataDir = mnist
	d, err := LoadData(cfg, discard())
	if err != nil || d.Classes[0] != "T-shirt/top" || d.Width() != 784 {
		t.Fatalf("28×28 IDX data without classes: %v, %+v", err, d)
	}
	cfg.Classes = strings.Split("0,1,2,3,4,5,6,7,8,9", ",")
	if d, err = LoadData(cfg, discard()); err != nil || !slices.Equal(d.Classes, cfg.Classes) {
		t.Fatalf("28×28 IDX data with --classes: %v, %+v", err, d)
	}
}

// TestTrainShardsAlone trains on shards alone (no --data) of 3×8×8 images and 4 classes: the
// shape comes from the first labelled sample, samples of other shapes are refused and
// counted, and the held-out side of the samples is the evaluation data.
func TestTrainShardsAlone(t *testing.T) {
	classes := []string{"red", "green", "blue", "grey"}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	names, files := []string(nil), map[string][]byte{}
	for i := range 800 {
		l := i % len(classes)
		img := make([]float32, 3*8*8)
		for c := range 3 {
			for p := range 64 {
				v := rng.Float32() * 0.3
				if l == c || l == 3 {
					v += 0.6
				}
				img[c*64+p] = v
			}
		}
		shape := []int{3, 8, 8}
		if i%2 == 0 {
			shape = []int{1, 3, 8, 8} // a batch of one fits too
		}
		key := fmt.Sprintf("s%04d", i)
		label := fmt.Sprintf(`{"label": %q}`, classes[l])
		if i%3 == 0 {
			label = fmt.Sprintf(`{"label": %d}`, l)
		}
		names = append(names, key+".json", key+".input.npy")
		files[key+".json"], files[key+".input.npy"] = []byte(label), npyBytes(t, shape, img)
	}
	// Another layout of the same values, and another shape: refused as "shape".
	names = append(names, "x.json", "x.input.npy", "y.json", "y.input.npy")
	files["x.json"], files["x.input.npy"] = []byte(`{"label": 0}`), npyBytes(t, []int{8, 8, 3}, make([]float32, 192))
	files["y.json"], files["y.input.npy"] = []byte(`{"label": 0}`), npyBytes(t, []int{784}, make([]float32, 784))
	writeShard(t, filepath.Join(dir, "shards", "00.tar"), names, files)

	cfg := DefaultConfig()
	cfg.DataDir, cfg.Samples, cfg.Hidden, cfg.Epochs, cfg.BatchSize = "", []string{filepath.Join(dir, "shards")}, []int{16}, 15, 32
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "classes: required") {
		t.Fatalf("shards alone without classes: %v", err)
	}
	cfg.Classes = classes
	out := t.TempDir()
	res, err := Run(context.Background(), cfg, out, discard())
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics
	held := 0
	for i := range 800 {
		if dataset.HeldOut(dataset.ContentKey(npyValues(t, files[fmt.Sprintf("s%04d.input.npy", i)]))) {
			held++
		}
	}
	if m.Samples.Labelled != 800 || m.Samples.HeldOut != held || m.Samples.Rejected != 2 || m.RejectedByReason[dataset.ReasonShape] != 2 ||
		m.TrainSize != 800-held || m.EvalSize != held || !slices.Equal(m.InputShape, []int64{3, 8, 8}) {
		t.Errorf("samples %+v (held out %d), rejected %v, sizes %d/%d, input shape %v", m.Samples, held, m.RejectedByReason, m.TrainSize, m.EvalSize, m.InputShape)
	}
	if m.Accuracy < 0.95 || !slices.Equal(m.Classes, classes) {
		t.Errorf("accuracy %v on the held-out samples, classes %q", m.Accuracy, m.Classes)
	}
	model := readModel(t, out)
	checkGraph(t, model, 192, classes)

	// A fraction of the training data works as with IDX data.
	cfg.EvalSplit = "0.25"
	d, err := LoadData(cfg, discard())
	if err != nil || d.Train.Len()+d.Eval.Len() != 800-held {
		t.Fatalf("eval-split 0.25: %v", err)
	}
}

func npyValues(t *testing.T, b []byte) []float32 {
	t.Helper()
	v, err := dataset.DecodeInput(b, dataset.Spec{Shape: []int64{3, 8, 8}, Datatype: dataset.DatatypeFP32, Classes: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readModel(t *testing.T, out string) *onnx.Model {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkGraph checks the exported model's contract: input "input" [-1, width], outputs logits
// and probabilities of len(classes), the classes metadata.
// checkGraph checks the graph's input and outputs: logits, probabilities and, the networks of
// these tests having 16 hidden units, the embedding.
func checkGraph(t *testing.T, m *onnx.Model, width int, classes []string) {
	t.Helper()
	batch := onnx.Dim{Value: -1, Param: BatchParam}
	wantIn := []onnx.ValueInfo{{Name: InputName, ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: int64(width)}}}}
	k := onnx.Dim{Value: int64(len(classes))}
	wantOut := []onnx.ValueInfo{
		{Name: LogitsName, ElemType: onnx.Float, Shape: []onnx.Dim{batch, k}},
		{Name: ProbabilitiesName, ElemType: onnx.Float, Shape: []onnx.Dim{batch, k}},
		{Name: EmbeddingName, ElemType: onnx.Float, Shape: []onnx.Dim{batch, {Value: 16}}},
	}
	if got := m.Metadata[modelrepo.MetadataEmbeddingOutput]; got != EmbeddingName {
		t.Errorf("embedding metadata %q, want %q", got, EmbeddingName)
	}
	if !slices.EqualFunc(m.Graph.Inputs, wantIn, valueInfoEqual) || !slices.EqualFunc(m.Graph.Outputs, wantOut, valueInfoEqual) {
		t.Errorf("inputs %+v, outputs %+v", m.Graph.Inputs, m.Graph.Outputs)
	}
	_, got, err := FromONNX(m)
	if err != nil || !slices.Equal(got, classes) {
		t.Errorf("classes metadata %q, %v; want %q", got, err, classes)
	}
}
