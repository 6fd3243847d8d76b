package evalset_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

var (
	fashionSpec = dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}
	rgbSpec     = dataset.Spec{Shape: []int64{3, 32, 32}, Datatype: "FP32", Classes: []string{"red", "green", "blue"}}
)

func fsBucket(t *testing.T) objstore.Bucket {
	t.Helper()
	b, err := newFS(t)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newFS returns a filesystem bucket in a temporary directory, closed when the test ends.
func newFS(t testing.TB) (objstore.Bucket, error) {
	b, err := objstore.NewFS(t.TempDir())
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

// pattern returns n values in [0, 1] that depend on seed.
func pattern(n, seed int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7+seed*13)%256) / 255
	}
	return v
}

// smallSet returns a set of n samples of spec with labels cycling over the classes.
func smallSet(spec dataset.Spec, model, name string, n int) *evalset.Set {
	s := &evalset.Set{Manifest: evalset.Manifest{
		Model: model, Name: name, Classes: spec.Classes,
		Input: evalset.Input{Shape: spec.Shape, Datatype: spec.Datatype}, Source: "test",
	}}
	for i := range n {
		v := pattern(spec.Width(), i)
		v[0] = float32(i) // distinct content
		s.Keys = append(s.Keys, dataset.ContentKey(v))
		s.Labels = append(s.Labels, i%len(spec.Classes))
		s.Inputs = append(s.Inputs, v...)
	}
	return s
}

// roundTrip is the store test every bucket passes: the filesystem here, MinIO in
// store_integration_test.go.
func roundTrip(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	s := smallSet(fashionSpec, "fashion", "golden-v1", 25)
	s.Manifest.Description = "25 synthetic images"
	m, err := evalset.Write(ctx, b, s)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if m.Count != 25 || m.SchemaVersion != 1 || m.Task != "classification" || len(m.Shards) != 1 || m.Shards[0] != "shard-000000.tar" {
		t.Errorf("manifest = %+v", m)
	}
	if want := []int{3, 3, 3, 3, 3, 2, 2, 2, 2, 2}; !reflect.DeepEqual(m.ClassCounts, want) {
		t.Errorf("ClassCounts = %v, want %v", m.ClassCounts, want)
	}
	if m.Digest != s.ComputeDigest() || len(m.Digest) != 64 {
		t.Errorf("Digest = %s", m.Digest)
	}
	if m.Created.IsZero() {
		t.Error("Created not filled")
	}
	got, err := evalset.Load(ctx, b, "fashion", "golden-v1")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got.Keys, s.Keys) || !reflect.DeepEqual(got.Labels, s.Labels) || !reflect.DeepEqual(got.Inputs, s.Inputs) {
		t.Fatal("Load returned other content")
	}
	if got.Manifest.Digest != m.Digest || got.Manifest.Description != "25 synthetic images" || !got.Manifest.Created.Equal(m.Created) {
		t.Errorf("loaded manifest = %+v", got.Manifest)
	}
	if err := got.Check(dataset.Spec{Shape: []int64{-1, 1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}); err != nil {
		t.Errorf("Check against the model's own input: %v", err)
	}
	// Immutable.
	again := smallSet(fashionSpec, "fashion", "golden-v1", 3)
	if _, err := evalset.Write(ctx, b, again); !errors.Is(err, evalset.ErrExists) {
		t.Errorf("second Write = %v, want ErrExists", err)
	}
	// More sets for List: another of the model, one of another model, and a half-written one
	// (shards, no manifest), which does not exist.
	if _, err := evalset.Write(ctx, b, smallSet(fashionSpec, "fashion", "alpha", 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := evalset.Write(ctx, b, smallSet(rgbSpec, "cifar3", "rgb", 6)); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "evalsets/fashion/partial/shard-000000.tar", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	all, err := evalset.List(ctx, b, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, m := range all {
		names = append(names, m.Model+"/"+m.Name)
	}
	if want := []string{"cifar3/rgb", "fashion/alpha", "fashion/golden-v1"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}
	one, err := evalset.List(ctx, b, "cifar3")
	if err != nil || len(one) != 1 || one[0].Count != 6 || !reflect.DeepEqual(one[0].Input.Shape, []int64{3, 32, 32}) {
		t.Errorf("List(cifar3) = %+v, %v", one, err)
	}
	if none, err := evalset.List(ctx, b, "nothing"); err != nil || len(none) != 0 {
		t.Errorf("List(nothing) = %v, %v", none, err)
	}
	if _, err := evalset.Stat(ctx, b, "fashion", "partial"); !errors.Is(err, evalset.ErrNotFound) {
		t.Errorf("Stat of a set without manifest = %v, want ErrNotFound", err)
	}
	if _, err := evalset.Load(ctx, b, "fashion", "nope"); !errors.Is(err, evalset.ErrNotFound) {
		t.Errorf("Load of a missing set = %v, want ErrNotFound", err)
	}
	// Tampering: one value of one sample changed in the shard.
	tamper(t, b, "evalsets/fashion/alpha/shard-000000.tar", func(name string, data []byte) []byte {
		if strings.HasSuffix(name, ".input.npy") {
			data[len(data)-1] ^= 0x01 // an exponent bit of the last value: still finite, not the same
		}
		return data
	})
	if _, err := evalset.Load(ctx, b, "fashion", "alpha"); !errors.Is(err, evalset.ErrDigest) {
		t.Errorf("Load of a tampered set = %v, want ErrDigest", err)
	}
	// A broken manifest does not hide the other sets from List.
	if err := b.Put(ctx, "evalsets/cifar3/broken/manifest.json", strings.NewReader("{"), 1); err != nil {
		t.Fatal(err)
	}
	all, err = evalset.List(ctx, b, "")
	if err == nil || !strings.Contains(err.Error(), "cifar3/broken") || len(all) != 3 {
		t.Errorf("List with a broken manifest = %d sets, %v", len(all), err)
	}
}

// tamper rewrites the tar object at key, passing every member through f.
func tamper(t *testing.T, b objstore.Bucket, key string, f func(name string, data []byte) []byte) {
	t.Helper()
	ctx := context.Background()
	raw, _, err := objstore.ReadAll(ctx, b, key, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data = f(h.Name, data)
		if data == nil {
			continue
		}
		h.Size = int64(len(data))
		tw.WriteHeader(h)
		tw.Write(data)
	}
	tw.Close()
	if err := b.Put(ctx, key, bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripFS(t *testing.T) { roundTrip(t, fsBucket(t)) }

func TestLoadRefusesTampering(t *testing.T) {
	ctx := context.Background()
	first := true
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, b objstore.Bucket)
		want   error  // wrapped error, or nil to match text
		text   string // substring
	}{
		{"value changed", func(t *testing.T, b objstore.Bucket) {
			tamper(t, b, "evalsets/fashion/set/shard-000000.tar", func(name string, data []byte) []byte {
				if strings.HasSuffix(name, ".input.npy") && first {
					first = false
					data[len(data)-4] ^= 0x40 // a float32's low byte: the value stays finite
				}
				return data
			})
		}, evalset.ErrDigest, ""},
		{"label changed", func(t *testing.T, b objstore.Bucket) {
			tamper(t, b, "evalsets/fashion/set/shard-000000.tar", func(name string, data []byte) []byte {
				if strings.HasSuffix(name, ".json") {
					return bytes.Replace(data, []byte(`"label":0`), []byte(`"label":1`), 1)
				}
				return data
			})
		}, evalset.ErrDigest, ""},
		{"sample removed", func(t *testing.T, b objstore.Bucket) {
			n := 0
			tamper(t, b, "evalsets/fashion/set/shard-000000.tar", func(name string, data []byte) []byte {
				if n++; n <= 2 {
					return nil
				}
				return data
			})
		}, evalset.ErrDigest, ""},
		{"sample added", func(t *testing.T, b objstore.Bucket) {
			other := smallSet(fashionSpec, "fashion", "other", 12)
			if _, err := evalset.Write(ctx, b, other); err != nil {
				t.Fatal(err)
			}
			data, _, _ := objstore.ReadAll(ctx, b, "evalsets/fashion/other/shard-000000.tar", 1<<30)
			b.Put(ctx, "evalsets/fashion/set/shard-000000.tar", bytes.NewReader(data), int64(len(data)))
		}, evalset.ErrDigest, ""},
		{"manifest digest edited", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["digest"] = strings.Repeat("ab", 32) })
		}, evalset.ErrDigest, ""},
		{"manifest classes renamed", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["classes"].([]any)[0] = "Tee" })
		}, evalset.ErrDigest, ""},
		{"shard deleted", func(t *testing.T, b objstore.Bucket) {
			b.Delete(ctx, "evalsets/fashion/set/shard-000000.tar")
		}, objstore.ErrNotFound, ""},
		{"shard garbage", func(t *testing.T, b objstore.Bucket) {
			b.Put(ctx, "evalsets/fashion/set/shard-000000.tar", strings.NewReader("garbage!"), 8)
		}, nil, "shard-000000.tar"},
		{"shard name escapes", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["shards"] = []string{"../../models/x.tar"} })
		}, nil, "is not a shard name"},
		{"manifest unknown field", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["extra"] = 1 })
		}, nil, `unknown field "extra"`},
		{"manifest of another set", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["name"] = "elsewhere" })
		}, nil, `names set "elsewhere"`},
		{"manifest count huge", func(t *testing.T, b objstore.Bucket) {
			editManifest(t, b, func(m map[string]any) { m["count"] = 1 << 40 })
		}, nil, "count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fsBucket(t)
			if _, err := evalset.Write(ctx, b, smallSet(fashionSpec, "fashion", "set", 10)); err != nil {
				t.Fatal(err)
			}
			if _, err := evalset.Load(ctx, b, "fashion", "set"); err != nil {
				t.Fatalf("Load before the change: %v", err)
			}
			tc.change(t, b)
			_, err := evalset.Load(ctx, b, "fashion", "set")
			if err == nil {
				t.Fatal("Load succeeded after the change")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Load = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Load = %v, want it to contain %q", err, tc.text)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func editManifest(t *testing.T, b objstore.Bucket, f func(map[string]any)) {
	t.Helper()
	ctx := context.Background()
	key := "evalsets/fashion/set/manifest.json"
	data, _, err := objstore.ReadAll(ctx, b, key, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, _ = json.Marshal(m)
	if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func TestWriteRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(s *evalset.Set)
		want   string
	}{
		{"bad model name", func(s *evalset.Set) { s.Manifest.Model = "../x" }, "model name"},
		{"bad set name", func(s *evalset.Set) { s.Manifest.Name = "a/b" }, "set name"},
		{"dot name", func(s *evalset.Set) { s.Manifest.Name = ".." }, "set name"},
		{"no samples", func(s *evalset.Set) { s.Keys, s.Labels, s.Inputs = nil, nil, nil }, "no samples"},
		{"short inputs", func(s *evalset.Set) { s.Inputs = s.Inputs[:100] }, "call for"},
		{"label range", func(s *evalset.Set) { s.Labels[2] = 10 }, "label 10 is not a class index below 10"},
		{"bad key", func(s *evalset.Set) { s.Keys[1] = "../../etc" }, "not 32 lowercase hex"},
		{"same key", func(s *evalset.Set) { s.Keys[1] = s.Keys[0] }, "same key"},
		{"NaN", func(s *evalset.Set) { s.Inputs[800] = float32(math.NaN()) }, "is NaN"},
		{"task", func(s *evalset.Set) { s.Manifest.Task = "detection" }, "task"},
		{"shape", func(s *evalset.Set) { s.Manifest.Input.Shape = []int64{-1, 784} }, "shape[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fsBucket(t)
			s := smallSet(fashionSpec, "fashion", "set", 3)
			tc.change(s)
			_, err := evalset.Write(ctx, b, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tc.want)
			}
			if keys, _ := objstore.List(ctx, b, "", true); len(keys) != 0 {
				t.Errorf("a refused Write stored %v", keys)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	s := smallSet(fashionSpec, "fashion", "set", 3)
	for _, tc := range []struct {
		name string
		spec dataset.Spec
		want string // "" fits
	}{
		{"same", fashionSpec, ""},
		{"batch dim", dataset.Spec{Shape: []int64{-1, 1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, ""},
		{"batch, no channel dim", dataset.Spec{Shape: []int64{-1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, ""},
		{"fixed batch of one", dataset.Spec{Shape: []int64{1, 1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, ""},
		{"variable height", dataset.Spec{Shape: []int64{-1, 1, -1, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, "shape"},
		{"no channel dim", dataset.Spec{Shape: []int64{28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()}, ""},
		{"flat", dataset.Spec{Shape: []int64{-1, 784}, Datatype: "FP32", Classes: fmnist.ClassNames()}, "the set's samples have shape [1 28 28], the model takes [-1 784]"},
		{"rgb", rgbSpec, "shape"},
		{"dtype", dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP16", Classes: fmnist.ClassNames()}, `datatype is "FP32", the model takes "FP16"`},
		{"unknown and missing", dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: append(fmnist.ClassNames()[:9], "Hat")}, `classes unknown to the model: ["Ankle boot"]; model classes missing from the set: ["Hat"]`},
		{"fewer", dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: fmnist.ClassNames()[:8]}, `classes unknown to the model: ["Bag", "Ankle boot"]`},
		{"order", dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: append([]string{"Trouser", "T-shirt/top"}, fmnist.ClassNames()[2:]...)}, "the same classes in another order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Check(tc.spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, evalset.ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want ErrMismatch containing %q", err, tc.want)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	s := smallSet(fashionSpec, "fashion", "set", 5)
	d := s.ComputeDigest()
	// Names, times and descriptions are not content.
	s2 := smallSet(fashionSpec, "other", "name", 5)
	s2.Manifest.Created = time.Now()
	s2.Manifest.Description = "x"
	if s2.ComputeDigest() != d {
		t.Error("the digest depends on names or times")
	}
	for _, tc := range []struct {
		name   string
		change func(s *evalset.Set)
	}{
		{"value", func(s *evalset.Set) { s.Inputs[3] += 1e-6 }},
		{"label", func(s *evalset.Set) { s.Labels[4] = 9 }},
		{"key", func(s *evalset.Set) { s.Keys[0] = strings.Repeat("0", 32) }},
		{"order", func(s *evalset.Set) { s.Keys[0], s.Keys[1] = s.Keys[1], s.Keys[0] }},
		{"class name", func(s *evalset.Set) { s.Manifest.Classes = append([]string{"Tee"}, s.Manifest.Classes[1:]...) }},
		{"shape", func(s *evalset.Set) { s.Manifest.Input.Shape = []int64{28, 28} }},
		{"dtype", func(s *evalset.Set) { s.Manifest.Input.Datatype = "FP16" }},
		{"fewer", func(s *evalset.Set) { s.Keys, s.Labels, s.Inputs = s.Keys[:4], s.Labels[:4], s.Inputs[:4*784] }},
	} {
		c := smallSet(fashionSpec, "fashion", "set", 5)
		tc.change(c)
		if c.ComputeDigest() == d {
			t.Errorf("%s: the digest did not change", tc.name)
		}
	}
}

// writePNG writes img as a PNG file.
func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFromFilesFashionMNISTPNG(t *testing.T) {
	test, err := fmnist.Load(testenv.FashionMNIST(t, fmnist.DefaultDir), fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("file,label\n")
	classes := fmnist.ClassNames()
	for i := range n {
		img := image.NewGray(image.Rect(0, 0, 28, 28))
		for j, v := range test.Image(i) {
			img.Pix[j] = uint8(math.Round(float64(v) * 255))
		}
		name := fmt.Sprintf("img-%04d.png", i)
		writePNG(t, filepath.Join(dir, name), img)
		if i%2 == 0 {
			fmt.Fprintf(&csv, "%s,%s\n", name, classes[test.Labels[i]]) // by name
		} else {
			fmt.Fprintf(&csv, "%s,%d\n", name, test.Labels[i]) // by index
		}
	}
	labels := filepath.Join(t.TempDir(), "labels.csv")
	os.WriteFile(labels, []byte(csv.String()), 0o644)
	start := time.Now()
	s, err := evalset.FromFiles(dir, labels, fashionSpec, evalset.Preprocess{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FromFiles: %d PNGs in %v", n, time.Since(start))
	if s.Len()+s.Duplicates != n {
		t.Fatalf("%d samples + %d duplicates of %d files", s.Len(), s.Duplicates, n)
	}
	// Bit-identical to the IDX loader's values.
	for i := range s.Len() {
		if !reflect.DeepEqual(s.Input(i), test.Image(i)) || s.Labels[i] != int(test.Labels[i]) {
			t.Fatalf("sample %d differs from Fashion-MNIST test image %d", i, i)
		}
	}
	if !strings.HasPrefix(s.Manifest.Source, "files:"+dir) {
		t.Errorf("Source = %q", s.Manifest.Source)
	}
	s.Manifest.Model, s.Manifest.Name = "fashion", "fmnist-test-300"
	b := fsBucket(t)
	m, err := evalset.Write(context.Background(), b, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evalset.Load(context.Background(), b, "fashion", "fmnist-test-300")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Inputs, s.Inputs) || got.Manifest.Digest != m.Digest {
		t.Fatal("round trip changed the set")
	}
	var sum int
	for _, c := range m.ClassCounts {
		sum += c
	}
	t.Logf("class counts %v (sum %d), digest %s", m.ClassCounts, sum, m.Digest[:16])

	// The same images as a frozen set of captured samples (uint8 .npy in a shard) have the
	// same content keys, so a set from files and a frozen set can be compared sample by sample.
	l := &dataset.Labelled{Keys: s.Keys, Inputs: s.Inputs, Labels: s.Labels, Width: 784}
	f, err := evalset.Freeze(l, fashionSpec, "fashion", "frozen")
	if err != nil {
		t.Fatal(err)
	}
	if f.ComputeDigest() != m.Digest || f.Manifest.Source != fmt.Sprintf("frozen:%d samples of fashion", s.Len()) {
		t.Errorf("Freeze: digest %s, source %q", f.ComputeDigest(), f.Manifest.Source)
	}
}

// rgbImage returns a w×h image whose pixel (x,y) is (x*8, y*8, 100+seed).
func rgbImage(w, h, seed int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x * 8), uint8(y * 8), uint8(100 + seed), 255})
		}
	}
	return img
}

func TestFromFilesRGB(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		writePNG(t, filepath.Join(dir, fmt.Sprintf("%d.png", i)), rgbImage(32, 32, i))
		writePNG(t, filepath.Join(dir, fmt.Sprintf("big%d.png", i)), rgbImage(64, 48, i))
	}
	var jb bytes.Buffer
	jpeg.Encode(&jb, rgbImage(32, 32, 9), &jpeg.Options{Quality: 100})
	os.WriteFile(filepath.Join(dir, "photo.jpg"), jb.Bytes(), 0o644)
	labels := filepath.Join(t.TempDir(), "labels.csv")
	os.WriteFile(labels, []byte("0.png,red\n1.png,green\n2.png,blue\nphoto.jpg,2\n"), 0o644)

	// NCHW, rgb: channel planes.
	s, err := evalset.FromFiles(dir, labels, rgbSpec, evalset.Preprocess{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 4 || len(s.Inputs) != 4*3072 {
		t.Fatalf("%d samples, %d values", s.Len(), len(s.Inputs))
	}
	at := func(v []float32, c, y, x int) float32 { return v[(c*32+y)*32+x] }
	v := s.Input(1)
	if at(v, 0, 5, 7) != float32(56)/255 || at(v, 1, 5, 7) != float32(40)/255 || at(v, 2, 5, 7) != float32(101)/255 {
		t.Errorf("NCHW pixel (7,5) = %v %v %v", at(v, 0, 5, 7), at(v, 1, 5, 7), at(v, 2, 5, 7))
	}
	if j := s.Input(3); math.Abs(float64(at(j, 2, 10, 10))-109.0/255) > 3.0/255 {
		t.Errorf("JPEG blue = %v, want about %v", at(j, 2, 10, 10)*255, 109)
	}

	// NHWC, bgr, mean and std: interleaved, channels swapped, normalised.
	nhwc := dataset.Spec{Shape: []int64{32, 32, 3}, Datatype: "FP32", Classes: rgbSpec.Classes}
	pre := evalset.Preprocess{Layout: "NHWC", ColorMode: "bgr", Scale: 1, Mean: []float64{10, 20, 30}, Std: []float64{2, 4, 8}}
	s2, err := evalset.FromFiles(dir, labels, nhwc, pre)
	if err != nil {
		t.Fatal(err)
	}
	v2 := s2.Input(1)
	px := v2[(5*32+7)*3 : (5*32+7)*3+3]
	if want := []float32{(101 - 10) / 2.0, (40 - 20) / 4.0, (56 - 30) / 8.0}; !reflect.DeepEqual(px, want) {
		t.Errorf("NHWC bgr pixel (7,5) = %v, want %v", px, want)
	}
	if !strings.Contains(s2.Manifest.Source, "layout=NHWC color=bgr scale=1") {
		t.Errorf("Source = %q", s2.Manifest.Source)
	}

	// Larger images need a declared resize; with it they are scaled (bilinear).
	os.WriteFile(labels, []byte("big0.png,red\nbig1.png,green\n"), 0o644)
	if _, err := evalset.FromFiles(dir, labels, rgbSpec, evalset.Preprocess{}); err == nil || !strings.Contains(err.Error(), "image is 64x48 (WxH), the model takes 32x32: declare resize 32,32") {
		t.Fatalf("FromFiles without resize = %v", err)
	}
	s3, err := evalset.FromFiles(dir, labels, rgbSpec, evalset.Preprocess{Resize: []int{32, 32}})
	if err != nil {
		t.Fatal(err)
	}
	// The blue plane is constant, so resizing keeps it exactly; red grows along x.
	v3 := s3.Input(1)
	if at(v3, 2, 20, 20) != float32(101)/255 || !(at(v3, 0, 0, 31) > at(v3, 0, 0, 0)) {
		t.Errorf("resized: blue %v, red %v..%v", at(v3, 2, 20, 20)*255, at(v3, 0, 0, 0), at(v3, 0, 0, 31))
	}
	if _, err := evalset.FromFiles(dir, labels, rgbSpec, evalset.Preprocess{Resize: []int{28, 28}}); err == nil || !strings.Contains(err.Error(), "resize 28x28 differs from the model's 32x32") {
		t.Errorf("FromFiles with another resize = %v", err)
	}
	// A grey colour mode for three channels is refused.
	if _, err := evalset.FromFiles(dir, labels, rgbSpec, evalset.Preprocess{ColorMode: "grey", Resize: []int{32, 32}}); err == nil || !strings.Contains(err.Error(), "color grey does not fit the 3 channels") {
		t.Errorf("grey for RGB = %v", err)
	}
}

func TestFromFilesErrors(t *testing.T) {
	dir := t.TempDir()
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	writePNG(t, filepath.Join(dir, "a.png"), img)
	img2 := image.NewGray(image.Rect(0, 0, 28, 28))
	img2.Pix[0] = 255
	writePNG(t, filepath.Join(dir, "b.png"), img2)
	writePNG(t, filepath.Join(dir, "a-copy.png"), img)
	writePNG(t, filepath.Join(dir, "small.png"), image.NewGray(image.Rect(0, 0, 14, 14)))
	var nb bytes.Buffer
	npy.WriteFloat32(&nb, []int{1, 28, 28}, pattern(784, 3))
	os.WriteFile(filepath.Join(dir, "ok.npy"), nb.Bytes(), 0o644)
	nb.Reset()
	npy.WriteFloat32(&nb, []int{784}, pattern(784, 4))
	os.WriteFile(filepath.Join(dir, "flat.npy"), nb.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "fake.png"), []byte("not a png"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	for _, tc := range []struct {
		csv  string // a file in testdata/
		want []string
	}{
		{"unknown-class.csv", []string{"unknown-class.csv:3: label \"Hat\" names no class of the model"}},
		{"index-out-of-range.csv", []string{"index-out-of-range.csv:2: label \"10\" names no class"}},
		{"fields.csv", []string{"fields.csv:2: want 2 fields (file,label), got 3", "fields.csv:3: want 2 fields (file,label), got 1"}},
		{"escape.csv", []string{"escape.csv:1: file \"../secret.png\" must be a relative path inside the directory", "escape.csv:2: file \"/etc/passwd\""}},
		{"missing-file.csv", []string{"missing-file.csv:2: nope.png: open", "no such file or directory"}},
		{"wrong-shape.csv", []string{"wrong-shape.csv:2: flat.npy: shape: input of shape [784] does not fit [1 28 28]", "wrong-shape.csv:3: small.png: image is 14x14 (WxH), the model takes 28x28: declare resize 28,28"}},
		{"types.csv", []string{"types.csv:1: notes.txt: unsupported file type \".txt\"", "types.csv:2: fake.png: not a readable image", "types.csv:3: sub: not a regular file"}},
		{"conflict.csv", []string{"conflict.csv:2: a-copy.png: same content as a.png (line 1) but labelled \"Coat\", not \"Trouser\""}},
		{"empty.csv", []string{"lists no files"}},
		{"quote.csv", []string{"quote.csv", "bare \" in non-quoted-field"}},
	} {
		t.Run(tc.csv, func(t *testing.T) {
			_, err := evalset.FromFiles(dir, filepath.Join("testdata", tc.csv), fashionSpec, evalset.Preprocess{})
			if err == nil {
				t.Fatal("FromFiles succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("FromFiles = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
	// Good: header, comment, blank line, an npy file, and a duplicate dropped.
	s, err := evalset.FromFiles(dir, "testdata/good.csv", fashionSpec, evalset.Preprocess{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || s.Duplicates != 1 || !reflect.DeepEqual(s.Labels, []int{1, 7, 9}) {
		t.Errorf("good.csv: %d samples, %d duplicates, labels %v", s.Len(), s.Duplicates, s.Labels)
	}
	if _, err := evalset.FromFiles(dir, "testdata/nope.csv", fashionSpec, evalset.Preprocess{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing CSV = %v", err)
	}
	if _, err := evalset.FromFiles(dir, "testdata/good.csv", dataset.Spec{Shape: []int64{784}}, evalset.Preprocess{}); err == nil || !strings.Contains(err.Error(), "datatype") {
		t.Errorf("bad spec = %v", err)
	}
}

func TestPreprocessValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    evalset.Preprocess
		want string
	}{
		{"zero", evalset.Preprocess{}, ""},
		{"full", evalset.Preprocess{Resize: []int{224, 224}, Layout: "NHWC", ColorMode: "bgr", Scale: 1, Mean: []float64{123.7, 116.3, 103.5}, Std: []float64{58.4, 57.1, 57.4}}, ""},
		{"resize one", evalset.Preprocess{Resize: []int{28}}, "resize: want [H, W]"},
		{"resize zero", evalset.Preprocess{Resize: []int{0, 28}}, "resize"},
		{"layout", evalset.Preprocess{Layout: "CHW"}, `layout: want NCHW or NHWC, got "CHW"`},
		{"color", evalset.Preprocess{ColorMode: "gray"}, `color: want grey, rgb or bgr, got "gray"`},
		{"scale", evalset.Preprocess{Scale: -1}, "scale"},
		{"scale NaN", evalset.Preprocess{Scale: math.NaN()}, "scale"},
		{"std zero", evalset.Preprocess{Std: []float64{1, 0, 1}}, "std[1]: must be finite and not 0"},
		{"mean inf", evalset.Preprocess{Mean: []float64{math.Inf(1)}}, "mean[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDefaultScaleMatchesLoader(t *testing.T) {
	// Every grey level becomes exactly float32(level)/255, the IDX loader's and
	// dataset.DecodeInput's value for uint8 data.
	img := image.NewGray(image.Rect(0, 0, 16, 16))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	v, err := evalset.Preprocess{}.Apply(img, []int64{16, 16})
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range v {
		if want := float32(i) / 255; got != want {
			t.Fatalf("level %d: %v, want %v", i, got, want)
		}
	}
}

func TestFreeze(t *testing.T) {
	l := &dataset.Labelled{Width: 784}
	for i := range 40 {
		v := pattern(784, i)
		l.Keys = append(l.Keys, dataset.ContentKey(v))
		l.Inputs = append(l.Inputs, v...)
		l.Labels = append(l.Labels, i%10)
	}
	_, held := l.Split()
	s, err := evalset.Freeze(held, fashionSpec, "fashion", "held-out-2026-12")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != held.Len() || s.Manifest.Model != "fashion" || s.Manifest.Name != "held-out-2026-12" {
		t.Errorf("Freeze = %d samples, %+v", s.Len(), s.Manifest)
	}
	s.Inputs[0] = 42 // a copy
	if held.Len() > 0 && held.Inputs[0] == 42 {
		t.Error("Freeze shares the inputs")
	}
	for _, tc := range []struct {
		name       string
		l          *dataset.Labelled
		model, set string
		want       string
	}{
		{"empty", &dataset.Labelled{}, "fashion", "x", "no labelled samples"},
		{"nil", nil, "fashion", "x", "no labelled samples"},
		{"bad name", l, "fashion", "a b", "set name"},
		{"bad model", l, "-x", "a", "model name"},
		{"width", &dataset.Labelled{Keys: []string{"a"}, Labels: []int{0}, Inputs: make([]float32, 10)}, "fashion", "x", "do not make samples of 784 values"},
		{"label", &dataset.Labelled{Keys: []string{"a"}, Labels: []int{11}, Inputs: make([]float32, 784)}, "fashion", "x", "label 11"},
	} {
		if _, err := evalset.Freeze(tc.l, fashionSpec, tc.model, tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Freeze = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParseManifest(t *testing.T) {
	data, err := os.ReadFile("testdata/manifest-valid.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := evalset.ParseManifest(data)
	if err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	if m.Count != 3 || m.Spec().Width() != 4 || m.Created.IsZero() {
		t.Errorf("parsed %+v", m)
	}
	// One file per invalid case in testdata/manifests, each the valid one with one change.
	cases := []struct{ file, want string }{
		{"schema-version.json", "schema_version: this edgeloop reads 1 to 1, got 2"},
		{"model-name.json", "model name"},
		{"set-name.json", "set name"},
		{"task.json", `task: must be "classification"`},
		{"shape.json", "shape[0]: must be > 0"},
		{"datatype.json", `datatype: only "FP32"`},
		{"classes-twice.json", `"a" appears twice`},
		{"count.json", "count: must be > 0"},
		{"class-counts-len.json", "class_counts: 1 entries for 2 classes"},
		{"class-counts-sum.json", "class_counts: sum to 2, count is 3"},
		{"class-counts-negative.json", "class_counts[1]: negative"},
		{"no-shards.json", "shards: must list at least one shard"},
		{"shard-path.json", "is not a shard name"},
		{"digest.json", "digest: must be 64 lowercase hex digits"},
		{"digest-upper.json", "digest: must be 64 lowercase hex digits"},
		{"unknown-field.json", `unknown field "extra"`},
		{"trailing.json", "data after the JSON object"},
		{"not-json.json", "manifest: invalid character"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/manifests", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = evalset.ParseManifest(data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseManifest = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir("testdata/manifests"); len(entries) != len(cases) {
		t.Errorf("%d files in testdata/manifests, %d in the table", len(entries), len(cases))
	}
}
