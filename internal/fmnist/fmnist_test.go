package fmnist

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

// realDir returns DefaultDir, or skips (fails in CI) when dataset-fashion-mnist is not installed.
func realDir(t *testing.T) string {
	t.Helper()
	return testenv.FashionMNIST(t, DefaultDir)
}

func TestLoadReal(t *testing.T) {
	dir := realDir(t)
	for _, tt := range []struct {
		split      Split
		n          int
		firstTen   []uint8
		firstImage float32 // the sum of the first image's pixels, in grey levels
	}{
		// Reference values computed from the same files with Python's gzip and struct modules.
		{Train, TrainSize, []uint8{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247},
		{Test, TestSize, []uint8{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456},
	} {
		t.Run(string(tt.split), func(t *testing.T) {
			d, err := Load(dir, tt.split)
			if err != nil {
				t.Fatal(err)
			}
			if d.Len() != tt.n || len(d.Images) != tt.n*Pixels {
				t.Fatalf("Len() = %d, %d pixel values; want %d images", d.Len(), len(d.Images), tt.n)
			}
			if got := d.Labels[:10]; !bytes.Equal(got, tt.firstTen) {
				t.Errorf("first labels %v, want %v", got, tt.firstTen)
			}
			var perClass [NumClasses]int
			for _, l := range d.Labels {
				perClass[l]++
			}
			for c, n := range perClass { // both splits are balanced
				if n != tt.n/NumClasses {
					t.Errorf("class %d has %d images, want %d", c, n, tt.n/NumClasses)
				}
			}
			var sum float64
			for _, v := range d.Image(0) {
				sum += float64(v)
			}
			if got := sum * 255; got < float64(tt.firstImage)-0.5 || got > float64(tt.firstImage)+0.5 {
				t.Errorf("first image sums to %.1f grey levels, want %v", got, tt.firstImage)
			}
			lo, hi := float32(1), float32(0)
			for _, v := range d.Images {
				lo, hi = min(lo, v), max(hi, v)
			}
			if lo != 0 || hi != 1 {
				t.Errorf("pixel range [%v, %v], want [0, 1]", lo, hi)
			}
		})
	}
}

func TestClassNames(t *testing.T) {
	names := ClassNames()
	if len(names) != NumClasses || names[0] != "T-shirt/top" || names[9] != "Ankle boot" {
		t.Errorf("ClassNames() = %q", names)
	}
	names[0] = "changed"
	if ClassNames()[0] != "T-shirt/top" {
		t.Error("ClassNames returns shared state")
	}
}

// idx builds an IDX file: big-endian header words, then the data.
func idx(header []uint32, data []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, header)
	b.Write(data)
	return b.Bytes()
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeSplit writes a hand-made test split (already gzipped, or not, as given) into dir.
func writeSplit(t *testing.T, dir string, images, labels []byte) {
	t.Helper()
	for name, data := range map[string][]byte{"t10k-images-idx3-ubyte.gz": images, "t10k-labels-idx1-ubyte.gz": labels} {
		if data == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadHandMade(t *testing.T) {
	pixels := make([]byte, 2*Pixels)
	pixels[0], pixels[Pixels-1], pixels[Pixels] = 255, 51, 1
	dir := t.TempDir()
	writeSplit(t, dir, gz(t, idx([]uint32{imagesMagic, 2, 28, 28}, pixels)), gz(t, idx([]uint32{labelsMagic, 2}, []byte{3, 9})))
	d, err := Load(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || !bytes.Equal(d.Labels, []byte{3, 9}) {
		t.Fatalf("labels %v", d.Labels)
	}
	if got := []float32{d.Image(0)[0], d.Image(0)[Pixels-1], d.Image(1)[0], d.Image(1)[1]}; got[0] != 1 || got[1] != 0.2 || got[2] != float32(1)/255 || got[3] != 0 {
		t.Errorf("pixels %v, want [1 0.2 1/255 0]", got)
	}
}

func TestLoadErrors(t *testing.T) {
	good := idx([]uint32{imagesMagic, 1, 28, 28}, make([]byte, Pixels))
	goodLabels := idx([]uint32{labelsMagic, 1}, []byte{0})
	tests := []struct {
		name           string
		images, labels []byte // written gzipped unless raw is set
		raw            bool
		split          Split
		want           string
	}{
		{name: "unknown split", split: "validation", want: `unknown split "validation"`},
		{name: "missing files", want: "no such file"},
		{name: "not gzip", images: good, raw: true, labels: goodLabels, want: "gzip: invalid header"},
		{name: "bad image magic", images: idx([]uint32{labelsMagic, 1, 28, 28}, make([]byte, Pixels)), labels: goodLabels, want: "magic 0x00000801, want 0x00000803"},
		{name: "wrong image size", images: idx([]uint32{imagesMagic, 1, 32, 32}, make([]byte, 1024)), labels: goodLabels, want: "32×32 pixels, want 28×28"},
		{name: "short header", images: []byte{0, 0, 8, 3, 0}, labels: goodLabels, want: "idx images header: unexpected EOF"},
		{name: "truncated images", images: idx([]uint32{imagesMagic, 2, 28, 28}, make([]byte, Pixels+5)), labels: goodLabels, want: "truncated: header declares 2 items (1568 bytes), file holds 789 bytes"},
		{name: "trailing data", images: append(good, 7), labels: goodLabels, want: "data after the declared items"},
		{name: "absurd count", images: idx([]uint32{imagesMagic, 1 << 30, 28, 28}, nil), labels: goodLabels, want: "more than the limit"},
		{name: "bad label magic", images: good, labels: idx([]uint32{imagesMagic, 1}, []byte{0}), want: "idx labels: magic 0x00000803, want 0x00000801"},
		{name: "label out of range", images: good, labels: idx([]uint32{labelsMagic, 1}, []byte{10}), want: "label 10 of item 0 is not below 10"},
		{name: "count mismatch", images: good, labels: idx([]uint32{labelsMagic, 2}, []byte{1, 2}), want: "1 images but 2 labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			images, labels := tt.images, tt.labels
			if !tt.raw {
				if images != nil {
					images = gz(t, images)
				}
				if labels != nil {
					labels = gz(t, labels)
				}
			}
			writeSplit(t, dir, images, labels)
			split := tt.split
			if split == "" {
				split = Test
			}
			d, err := Load(dir, split)
			if err == nil {
				t.Fatalf("Load succeeded with %d images", d.Len())
			}
			if !strings.HasPrefix(err.Error(), "fmnist load") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCorruptGzip(t *testing.T) {
	data := gz(t, idx([]uint32{labelsMagic, 3}, []byte{1, 2, 3}))
	data[len(data)-8]++ // the CRC-32 in the gzip trailer
	dir := t.TempDir()
	writeSplit(t, dir, gz(t, idx([]uint32{imagesMagic, 3, 28, 28}, make([]byte, 3*Pixels))), data)
	if _, err := Load(dir, Test); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("Load of a file with a bad checksum: %v, want a checksum error", err)
	}
}

// TestLoadIDX reads IDX files of another image size and label range, gzipped and not.
func TestLoadIDX(t *testing.T) {
	dir := t.TempDir()
	writeSplit(t, dir, gz(t, idx([]uint32{imagesMagic, 2, 2, 3}, []byte{255, 0, 0, 0, 0, 51, 1, 2, 3, 4, 5, 6})), nil)
	if err := os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte"), idx([]uint32{labelsMagic, 2}, []byte{42, 200}), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadIDX(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.Rows != 2 || d.Cols != 3 || !bytes.Equal(d.Labels, []byte{42, 200}) || d.Images[0] != 1 || d.Images[5] != 0.2 {
		t.Fatalf("got %+v", d)
	}
	for _, tt := range []struct {
		images []byte
		want   string
	}{
		{idx([]uint32{imagesMagic, 1, 0, 3}, nil), "0×3 pixels: want 1 to 16777216 pixels per image"},
		{idx([]uint32{imagesMagic, 1, 1 << 13, 1 << 12}, nil), "pixels per image"},
		{idx([]uint32{imagesMagic, 2, 2, 3}, make([]byte, 6)), "truncated"},
		{idx([]uint32{imagesMagic, 3, 2, 3}, make([]byte, 18)), "3 images but 2 labels"},
	} {
		writeSplit(t, dir, gz(t, tt.images), nil)
		if _, err := LoadIDX(dir, Test); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("images %x: %v, want an error containing %q", tt.images[:16], err, tt.want)
		}
	}
	if _, err := LoadIDX(t.TempDir(), Train); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("no files: %v", err)
	}
}
