package dataset_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

var (
	fashionSpec = dataset.Spec{Shape: []int64{1, 28, 28}, Datatype: "FP32", Classes: []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}}
	rgbSpec     = dataset.Spec{Shape: []int64{3, 32, 32}, Datatype: "FP32", Classes: []string{"cat", "dog", "bird"}}
)

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec dataset.Spec
		want string // substring of the error; "" for valid
	}{
		{"fashion", fashionSpec, ""},
		{"rgb", rgbSpec, ""},
		{"no shape", dataset.Spec{Datatype: "FP32", Classes: []string{"a"}}, "shape: must have at least one dimension"},
		{"batch dim", dataset.Spec{Shape: []int64{-1, 784}, Datatype: "FP32", Classes: []string{"a"}}, "shape[0]: must be > 0"},
		{"zero dim", dataset.Spec{Shape: []int64{28, 0}, Datatype: "FP32", Classes: []string{"a"}}, "shape[1]: must be > 0"},
		{"too wide", dataset.Spec{Shape: []int64{1 << 20, 1 << 20}, Datatype: "FP32", Classes: []string{"a"}}, "more than"},
		{"overflow", dataset.Spec{Shape: []int64{4, 1 << 62, 4}, Datatype: "FP32", Classes: []string{"a"}}, "more than"},
		{"too many dims", dataset.Spec{Shape: []int64{1, 1, 1, 1, 1, 1, 1, 1, 1}, Datatype: "FP32", Classes: []string{"a"}}, "at most 8 dimensions"},
		{"dtype", dataset.Spec{Shape: []int64{4}, Datatype: "UINT8", Classes: []string{"a"}}, `datatype: only "FP32"`},
		{"no classes", dataset.Spec{Shape: []int64{4}, Datatype: "FP32"}, "classes: must name at least one class"},
		{"empty class", dataset.Spec{Shape: []int64{4}, Datatype: "FP32", Classes: []string{"a", ""}}, "classes[1]"},
		{"twice", dataset.Spec{Shape: []int64{4}, Datatype: "FP32", Classes: []string{"a", "b", "a"}}, `classes[2]: "a" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if w := fashionSpec.Width(); w != 784 {
		t.Errorf("fashion Width = %d", w)
	}
	if w := rgbSpec.Width(); w != 3072 {
		t.Errorf("rgb Width = %d", w)
	}
	if w := (dataset.Spec{Shape: []int64{4, 1 << 62, 4}}).Width(); w != 0 {
		t.Errorf("Width of an overflowing shape = %d, want 0", w)
	}
	if w := (dataset.Spec{Shape: []int64{-1, 3}}).Width(); w != 0 {
		t.Errorf("Width of an invalid shape = %d, want 0", w)
	}
}

func TestSpecOf(t *testing.T) {
	for _, tc := range []struct {
		shape []int64
		want  []int64 // nil: an error
	}{
		{[]int64{-1, 1, 28, 28}, []int64{1, 28, 28}},
		{[]int64{-1, 784}, []int64{784}},
		{[]int64{1, 3, 32, 32}, []int64{3, 32, 32}}, // a fixed batch of one: capture stores rows of [3 32 32]
		{[]int64{8, 784}, []int64{784}},             // a fixed batch of eight, likewise
		{[]int64{-1, -1, 28}, nil},
		{[]int64{-1}, nil},
	} {
		m := &modelrepo.Manifest{Model: "m", Version: 2, Classes: []string{"a", "b"}, Input: modelrepo.Tensor{Name: "x", Datatype: "FP32", Shape: tc.shape}}
		s, err := dataset.SpecOf(m)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), "model m version 2") {
				t.Errorf("SpecOf(%v) = %v, %v, want an error", tc.shape, s, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(s.Shape, tc.want) || s.Datatype != "FP32" || !reflect.DeepEqual(s.Classes, []string{"a", "b"}) {
			t.Errorf("SpecOf(%v) = %+v, %v", tc.shape, s, err)
		}
	}
}

func TestShapeMatches(t *testing.T) {
	for _, tc := range []struct {
		got  []int
		want []int64
		ok   bool
	}{
		{[]int{1, 28, 28}, []int64{1, 28, 28}, true},
		{[]int{28, 28}, []int64{1, 28, 28}, true},
		{[]int{1, 1, 28, 28}, []int64{1, 28, 28}, true},
		{[]int{784}, []int64{1, 28, 28}, false},
		{[]int{28, 28, 1}, []int64{1, 28, 28}, false},
		{[]int{1, 784}, []int64{784}, true},
		{[]int{3, 32, 32}, []int64{3, 32, 32}, true},
		{[]int{32, 32, 3}, []int64{3, 32, 32}, false},
		{[]int{1, 3, 32, 32}, []int64{3, 32, 32}, true},
		{[]int{}, []int64{1}, true}, // a scalar is one value, a [1] after dropping 1s
		{[]int{2}, []int64{1}, false},
	} {
		if ok := dataset.ShapeMatches(tc.got, tc.want); ok != tc.ok {
			t.Errorf("ShapeMatches(%v, %v) = %v, want %v", tc.got, tc.want, ok, tc.ok)
		}
	}
}

// npyFile builds a .npy file by hand, for dtypes the npy package does not write.
func npyFile(descr string, shape []int, data []byte) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	pad := (64 - (10+len(dict)+1)%64) % 64
	var b bytes.Buffer
	b.WriteString(npy.Magic)
	b.Write([]byte{1, 0})
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(dict)+pad+1))
	b.WriteString(dict + strings.Repeat(" ", pad) + "\n")
	b.Write(data)
	return b.Bytes()
}

func f32npy(t testing.TB, shape []int, data []float32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, shape, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pattern returns n values in [0, 1) that depend on seed.
func pattern(n, seed int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7+seed*13)%256) / 255
	}
	return v
}

func TestDecodeInput(t *testing.T) {
	img := pattern(784, 1)
	u8 := make([]byte, 784)
	want8 := make([]float32, 784)
	for i := range u8 {
		u8[i] = byte(i % 256)
		want8[i] = float32(u8[i]) / 255
	}
	f64 := make([]byte, 8*784)
	for i, v := range img {
		binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(float64(v)))
	}
	nan := append([]float32(nil), img...)
	nan[5] = float32(math.NaN())
	inf := append([]float32(nil), img...)
	inf[783] = float32(math.Inf(-1))
	for _, tc := range []struct {
		name   string
		data   []byte
		want   []float32
		reason string
	}{
		{"float32 [1,28,28]", f32npy(t, []int{1, 28, 28}, img), img, ""},
		{"float32 [28,28]", f32npy(t, []int{28, 28}, img), img, ""},
		{"float32 batch of one", f32npy(t, []int{1, 1, 28, 28}, img), img, ""},
		{"uint8 divided by 255", npyFile("|u1", []int{1, 28, 28}, u8), want8, ""},
		{"float64", npyFile("<f8", []int{28, 28}, f64), img, ""},
		{"flat 784", f32npy(t, []int{784}, img), nil, dataset.ReasonShape},
		{"HWC", f32npy(t, []int{28, 28, 1}, img), nil, dataset.ReasonShape},
		{"too few", f32npy(t, []int{1, 27, 28}, img[:756]), nil, dataset.ReasonShape},
		{"int32", npyFile("<i4", []int{1, 28, 28}, make([]byte, 4*784)), nil, dataset.ReasonDtype},
		{"NaN", f32npy(t, []int{1, 28, 28}, nan), nil, dataset.ReasonNonFinite},
		{"-Inf", f32npy(t, []int{1, 28, 28}, inf), nil, dataset.ReasonNonFinite},
		{"garbage", []byte("not an array"), nil, dataset.ReasonNPY},
		{"truncated", f32npy(t, []int{1, 28, 28}, img)[:500], nil, dataset.ReasonNPY},
		{"empty", nil, nil, dataset.ReasonNPY},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dataset.DecodeInput(tc.data, fashionSpec)
			if tc.reason != "" {
				var r *dataset.RefusedError
				if !errors.As(err, &r) || r.Reason != tc.reason {
					t.Fatalf("DecodeInput error = %v, want reason %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeInput: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("DecodeInput values differ")
			}
		})
	}
}

func TestHeldOut(t *testing.T) {
	// The split must be the reference trainer's split by values (docs/evalsets.md):
	// int.from_bytes(sha256(x.astype('<f4').tobytes()).digest()[:8], 'big') % 10 == 0.
	held := 0
	const n = 5000
	for seed := range n {
		v := pattern(64, seed)
		v[0] = float32(seed) // make every input distinct
		var raw bytes.Buffer
		_ = binary.Write(&raw, binary.LittleEndian, v)
		sum := sha256.Sum256(raw.Bytes())
		want := binary.BigEndian.Uint64(sum[:8])%10 == 0
		key := dataset.ContentKey(v)
		if len(key) != 32 || !sample.ValidKey(key) {
			t.Fatalf("ContentKey = %q, want 32 lowercase hex digits", key)
		}
		if got := dataset.HeldOut(key); got != want {
			t.Fatalf("seed %d: HeldOut(%s) = %v, want %v", seed, key, got, want)
		}
		if want {
			held++
		}
	}
	if held < n/10-100 || held > n/10+100 {
		t.Errorf("%d of %d held out, want about 1 in 10", held, n)
	}
	// Any other string is hashed: deterministic, and about 1 in 10 as well.
	other := 0
	for i := range n {
		k := fmt.Sprintf("not-a-content-key-%d", i)
		first, second := dataset.HeldOut(k), dataset.HeldOut(k)
		if first != second {
			t.Fatal("HeldOut is not deterministic")
		}
		if first {
			other++
		}
	}
	if other < n/10-100 || other > n/10+100 {
		t.Errorf("%d of %d other strings held out, want about 1 in 10", other, n)
	}
}

// member is one file of a hand-made shard.
type member struct {
	name string
	data []byte
}

func writeTar(t testing.TB, path string, gz bool, members ...member) {
	t.Helper()
	var b bytes.Buffer
	writeTarTo(t, &b, members...)
	data := b.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTarTo writes members as a tar to b.
func writeTarTo(t testing.TB, b *bytes.Buffer, members ...member) {
	t.Helper()
	tw := tar.NewWriter(b)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// pair is a sample of a hand-made shard: <key>.json with label (omitted when nil) and npy.
func pair(key string, label any, npyData []byte) []member {
	meta := map[string]any{"key": key}
	if label != nil {
		meta["label"] = label
	}
	js, _ := json.Marshal(meta)
	ms := []member{{key + ".json", js}}
	if npyData != nil {
		ms = append(ms, member{key + ".input.npy", npyData})
	}
	return ms
}

// captured returns a real captured sample (sample.New) of img with the given label.
func captured(t testing.TB, seed int, img []float32, shape []int, label json.RawMessage) *sample.Sample {
	t.Helper()
	shape64 := make([]int64, len(shape))
	for i, d := range shape {
		shape64[i] = int64(d)
	}
	s, err := sample.New(sample.Meta{
		Model: "fashion", Version: "3", Node: fmt.Sprintf("edge-%04d", seed),
		Time:       time.Date(2026, 12, 1, 10, 0, 0, seed, time.UTC),
		Prediction: 0, Scores: []float32{1, 0}, ScoresKind: sample.ScoresProbabilities,
		Confidence: map[string]float64{"max_softmax": 0.5}, Reason: "low_confidence", Label: label,
		Input: sample.InputInfo{Name: "input", Datatype: "FP32", Shape: shape64, File: sample.NPYFile},
	}, f32npy(t, shape, img))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadLabelled(t *testing.T) {
	dir := t.TempDir()
	img := func(seed int) []float32 { return pattern(784, seed) }
	nan := img(9)
	nan[0] = float32(math.NaN())
	// Shard a (a real collector shard, written by sample.WriteTar): captured samples of the
	// same image on two nodes count once.
	var realShard bytes.Buffer
	s1 := captured(t, 1, img(1), []int{1, 28, 28}, sample.IndexLabel(7))
	s1again := captured(t, 2, img(1), []int{1, 1, 28, 28}, sample.NameLabel("Sneaker"))
	s2 := captured(t, 3, img(2), []int{28, 28}, nil) // labelled by the label file
	s3 := captured(t, 4, img(3), []int{1, 28, 28}, sample.NameLabel("Trouser"))
	if err := sample.WriteTar(&realShard, []*sample.Sample{s1, s1again, s2, s3}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "shards"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shards", "a.tar"), realShard.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Shard b (gzipped, in a subdirectory): one of each refusal.
	var b []member
	b = append(b, pair("b01", 2, f32npy(t, []int{1, 28, 28}, img(4)))...)         // ok
	b = append(b, pair("b02", "Pullover", f32npy(t, []int{784}, img(5)))...)      // shape
	b = append(b, pair("b03", "Unicorn", f32npy(t, []int{1, 28, 28}, img(6)))...) // label
	b = append(b, pair("b04", 10, f32npy(t, []int{1, 28, 28}, img(7)))...)        // label: index out of range
	b = append(b, pair("b05", 1, npyFile("<i2", []int{1, 28, 28}, make([]byte, 2*784)))...)
	b = append(b, pair("b06", 1, []byte("junk"))...)                             // npy
	b = append(b, pair("b07", 1, nil)...)                                        // npy: missing
	b = append(b, pair("b08", 1, f32npy(t, []int{1, 28, 28}, nan))...)           // nonfinite
	b = append(b, pair("b09", nil, f32npy(t, []int{1, 28, 28}, img(8)))...)      // unlabelled
	b = append(b, member{"b10.input.npy", f32npy(t, []int{1, 28, 28}, img(10))}) // meta: no json
	b = append(b, pair("b11", "4", f32npy(t, []int{1, 28, 28}, img(11)))...)     // "4" is an index
	b = append(b, member{"b11.input.png", []byte("ignored")}, member{"README", []byte("ignored")})
	writeTar(t, filepath.Join(dir, "shards", "sub", "b.tar.gz"), true, b...)
	// A file that is not a shard is not read.
	if err := os.WriteFile(filepath.Join(dir, "shards", "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	labels := filepath.Join(dir, "labels.jsonl")
	posted := fmt.Sprintf("{\"key\":%q,\"label\":\"Coat\"}\n\n{\"key\":\"b09\",\"label\":null}\n{\"key\":%q,\"label\":5}\n", s2.Meta.Key, s3.Meta.Key)
	if err := os.WriteFile(labels, []byte(posted), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l, err := dataset.ReadLabelled([]string{filepath.Join(dir, "shards")}, []string{labels}, fashionSpec, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	wantStats := dataset.Stats{Shards: 2, Labelled: 5, Unlabelled: 1, Duplicates: 1, Rejected: map[string]int{
		"shape": 1, "label": 2, "dtype": 1, "npy": 2, "nonfinite": 1, "meta": 1,
	}}
	if !reflect.DeepEqual(l.Stats, wantStats) {
		t.Errorf("Stats = %+v\nwant    %+v", l.Stats, wantStats)
	}
	wantShards := []string{filepath.Join(dir, "shards", "a.tar"), filepath.Join(dir, "shards", "sub", "b.tar.gz")}
	if !reflect.DeepEqual(l.Shards, wantShards) {
		t.Errorf("Shards = %v, want %v", l.Shards, wantShards)
	}
	// Reading order: s1 (7), s2 (Coat by the label file), s3 (Sandal: the label file wins over
	// its own Trouser), b01 (2), b11 (4).
	if want := []int{7, 4, 5, 2, 4}; !reflect.DeepEqual(l.Labels, want) {
		t.Errorf("Labels = %v, want %v", l.Labels, want)
	}
	if !reflect.DeepEqual(l.SampleKeys, []string{s1.Meta.Key, s2.Meta.Key, s3.Meta.Key, "b01", "b11"}) {
		t.Errorf("SampleKeys = %v", l.SampleKeys)
	}
	if l.Len() != 5 || len(l.Inputs) != 5*784 || l.Width != 784 {
		t.Fatalf("%d samples, %d values, width %d", l.Len(), len(l.Inputs), l.Width)
	}
	for i, seed := range []int{1, 2, 3, 4, 11} {
		if !reflect.DeepEqual(l.Input(i), img(seed)) {
			t.Errorf("sample %d: values differ from image %d", i, seed)
		}
		if l.Keys[i] != dataset.ContentKey(img(seed)) {
			t.Errorf("sample %d: key %s is not the content key", i, l.Keys[i])
		}
	}
	// The first five refusals are logged, then a summary.
	if n := strings.Count(logs.String(), "sample refused"); n != 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "more samples refused") {
		t.Errorf("no summary of the refusals:\n%s", logs.String())
	}

	train, held := l.Split()
	if train.Len()+held.Len() != l.Len() {
		t.Fatalf("Split: %d + %d samples of %d", train.Len(), held.Len(), l.Len())
	}
	for _, side := range []struct {
		l    *dataset.Labelled
		held bool
	}{{train, false}, {held, true}} {
		if !reflect.DeepEqual(side.l.Stats, l.Stats) || side.l.Width != 784 {
			t.Errorf("Split side: stats or width not copied")
		}
		for i, k := range side.l.Keys {
			if dataset.HeldOut(k) != side.held {
				t.Errorf("key %s on the wrong side", k)
			}
			if !reflect.DeepEqual(side.l.Input(i), img(seedOf(t, l, k))) {
				t.Errorf("key %s: values moved", k)
			}
		}
	}
	held.Stats.Rejected["shape"]++ // the copies are independent
	if l.Stats.Rejected["shape"] != 1 {
		t.Error("Split shares the Rejected map")
	}
}

// seedOf finds the image seed of a content key among l's samples.
func seedOf(t *testing.T, l *dataset.Labelled, key string) int {
	t.Helper()
	for seed := range 20 {
		if dataset.ContentKey(pattern(784, seed)) == key {
			return seed
		}
	}
	t.Fatalf("no seed for key %s", key)
	return 0
}

func TestReadLabelledRGB(t *testing.T) {
	dir := t.TempDir()
	var ms []member
	for i := range 30 {
		ms = append(ms, pair(fmt.Sprintf("k%02d", i), rgbSpec.Classes[i%3], f32npy(t, []int{1, 3, 32, 32}, pattern(3072, i)))...)
	}
	// A Fashion-MNIST sample in an RGB model's shards is refused by shape, not misread.
	ms = append(ms, pair("grey", "cat", f32npy(t, []int{1, 28, 28}, pattern(784, 1)))...)
	ms = append(ms, pair("nhwc", "cat", f32npy(t, []int{32, 32, 3}, pattern(3072, 99)))...)
	writeTar(t, filepath.Join(dir, "rgb.tar"), false, ms...)
	l, err := dataset.ReadLabelled([]string{filepath.Join(dir, "rgb.tar")}, nil, rgbSpec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Stats.Labelled != 30 || l.Stats.Rejected["shape"] != 2 || len(l.Inputs) != 30*3072 {
		t.Fatalf("Stats = %+v, %d values", l.Stats, len(l.Inputs))
	}
	for i := range 30 {
		if l.Labels[i] != i%3 {
			t.Fatalf("label %d = %d", i, l.Labels[i])
		}
	}
	train, held := l.Split()
	t.Logf("RGB split: %d train, %d held out", train.Len(), held.Len())
}

func TestReadLabelledErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	writeTar(t, good, false, pair("a", 1, f32npy(t, []int{1, 28, 28}, pattern(784, 1)))...)
	big := filepath.Join(dir, "big.tar")
	writeTar(t, big, false, member{"x.input.npy", make([]byte, dataset.MaxMemberBytes+1)})
	trunc := filepath.Join(dir, "trunc.tar")
	data, _ := os.ReadFile(good)
	os.WriteFile(trunc, data[:1024+512+300], 0o644)
	badgz := filepath.Join(dir, "bad.tar.gz")
	os.WriteFile(badgz, []byte{0x1f, 0x8b, 0, 1, 2, 3}, 0o644)
	for _, tc := range []struct {
		name          string
		shards, label []string
		spec          dataset.Spec
		want          string
	}{
		{"bad spec", []string{good}, nil, dataset.Spec{Shape: []int64{-1}}, "dataset spec"},
		{"missing shard", []string{filepath.Join(dir, "nope.tar")}, nil, fashionSpec, "no such file"},
		{"member too large", []string{big}, nil, fashionSpec, "more than the 8388608 a sample file may have"},
		{"truncated tar", []string{trunc}, nil, fashionSpec, "trunc.tar"},
		{"broken gzip", []string{badgz}, nil, fashionSpec, "bad.tar.gz"},
		{"missing label file", []string{good}, []string{filepath.Join(dir, "nope.jsonl")}, fashionSpec, "no such file"},
		{"label file without key", []string{good}, []string{"testdata/labels-nokey.jsonl"}, fashionSpec, "labels-nokey.jsonl:2: want a JSON object with a key and a label"},
		{"label file not JSON", []string{good}, []string{"testdata/labels-notjson.jsonl"}, fashionSpec, "labels-notjson.jsonl:1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dataset.ReadLabelled(tc.shards, tc.label, tc.spec, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadLabelled = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseLabel(t *testing.T) {
	classes := []string{"a", "b", "7"}
	for _, tc := range []struct {
		raw  string
		want int // -1: an error
	}{
		{`0`, 0}, {`2`, 2}, {`"b"`, 1}, {`"1"`, 1}, {`"7"`, 2}, // a name wins over an index
		{`3`, -1}, {`-1`, -1}, {`1.5`, -1}, {`"c"`, -1}, {`true`, -1}, {`[1]`, -1}, {`{`, -1},
	} {
		got, err := dataset.ParseLabel(json.RawMessage(tc.raw), classes)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("ParseLabel(%s) = %d, want an error", tc.raw, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLabel(%s) = %d, %v, want %d", tc.raw, got, err, tc.want)
		}
	}
}

func TestFashionMNISTShards(t *testing.T) {
	// Real images through the whole path: Fashion-MNIST test images stored as uint8 .npy (what
	// a client sending raw pixels produces) come back as the loader's [0,1] values.
	test, err := fmnist.Load(testenv.FashionMNIST(t, fmnist.DefaultDir), fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var ms []member
	for i := range n {
		raw := make([]byte, fmnist.Pixels)
		for j, v := range test.Image(i) {
			raw[j] = byte(math.Round(float64(v) * 255))
		}
		ms = append(ms, pair(fmt.Sprintf("img%04d", i), fmnist.ClassNames()[test.Labels[i]], npyFile("|u1", []int{1, 28, 28}, raw))...)
	}
	shard := filepath.Join(t.TempDir(), "fmnist.tar.gz")
	writeTar(t, shard, true, ms...)
	l, err := dataset.ReadLabelled([]string{shard}, nil, fashionSpec, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Fashion-MNIST's test set repeats a few images; those count as duplicates.
	if l.Stats.Labelled+l.Stats.Duplicates != n || l.Stats.RejectedTotal() != 0 {
		t.Fatalf("Stats = %+v", l.Stats)
	}
	for i, k := range l.SampleKeys {
		var idx int
		fmt.Sscanf(k, "img%04d", &idx)
		if !reflect.DeepEqual(l.Input(i), test.Image(idx)) || l.Labels[i] != int(test.Labels[idx]) {
			t.Fatalf("sample %s differs from test image %d", k, idx)
		}
	}
	train, held := l.Split()
	t.Logf("%d Fashion-MNIST images: %d labelled, %d duplicates, %d train, %d held out", n, l.Stats.Labelled, l.Stats.Duplicates, train.Len(), held.Len())
	if held.Len() < n/20 || held.Len() > n/5 {
		t.Errorf("%d of %d held out, want about 1 in 10", held.Len(), l.Len())
	}
}
