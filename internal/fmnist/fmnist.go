// Package fmnist reads Fashion-MNIST, edgeloop's reference data set, from the gzipped IDX files
// that Debian's dataset-fashion-mnist package installs under DefaultDir:
//
//	train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   60,000 training images
//	t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    10,000 test images
//
// Images are 28×28 grey levels, returned as float32 in [0, 1] (the byte divided by 255),
// row-major, which is the input the reference model takes (flattened to 784 values).
//
// The package also ships the benchmark set-up of the data set's authors
// (/usr/share/doc/dataset-fashion-mnist/benchmark/baselines.json: the scikit-learn classifiers
// and the parameter grid each was run with, among them MLPClassifier with activation tanh or
// relu and hidden_layer_sizes (10,), (100,), (10,10) and (100,10)). The accuracies those runs
// reached are not in the package but in the data set's paper (Xiao, Rasul and Vollgraf 2017,
// arXiv:1708.07747, Table 3) and on the benchmark page its README links to; docs/trainer.md
// quotes the MLPClassifier rows (0.840 to 0.871 test accuracy).
package fmnist

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DefaultDir is where Debian's dataset-fashion-mnist package installs the data set.
const DefaultDir = "/usr/share/datasets/fashion-mnist"

// Sizes of the data set.
const (
	// Rows and Cols are the height and width of an image.
	Rows, Cols = 28, 28
	// Pixels is the number of values in one (flattened) image.
	Pixels = Rows * Cols
	// NumClasses is the number of labels.
	NumClasses = 10
	// TrainSize and TestSize are the number of images of the two splits.
	TrainSize, TestSize = 60000, 10000
)

// MaxImages bounds the image count a file header may declare. Memory is only allocated for
// data actually present, so it exists to keep size arithmetic far from overflow.
const MaxImages = 1 << 24

// IDX magic numbers: two zero bytes, the element type (0x08 unsigned byte), the number of
// dimensions.
const (
	imagesMagic = 0x00000803
	labelsMagic = 0x00000801
)

// ClassNames returns the class names in label order (label 0 is "T-shirt/top"), as the data
// set's README lists them. Each call returns a new slice.
func ClassNames() []string {
	return []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
}

// Split names one of the data set's two parts.
type Split string

const (
	// Train is the 60,000 training images (files train-*).
	Train Split = "train"
	// Test is the 10,000 test images (files t10k-*).
	Test Split = "test"
)

// filePrefix is how the split's file names begin.
func (s Split) filePrefix() (string, error) {
	switch s {
	case Train:
		return "train", nil
	case Test:
		return "t10k", nil
	}
	return "", fmt.Errorf("unknown split %q (want %q or %q)", s, Train, Test)
}

// Dataset is a set of labelled images.
type Dataset struct {
	// Images holds Len()×Pixels values in [0, 1], one image after the other, row-major.
	Images []float32
	// Labels holds one class index (0 to NumClasses−1) per image.
	Labels []uint8
}

// Len is the number of images.
func (d *Dataset) Len() int { return len(d.Labels) }

// Image returns image i's Pixels values (a slice of Images, not a copy).
func (d *Dataset) Image(i int) []float32 { return d.Images[i*Pixels : (i+1)*Pixels] }

// Load reads one split from dir (usually DefaultDir) and checks that images and labels agree.
func Load(dir string, split Split) (*Dataset, error) {
	prefix, err := split.filePrefix()
	if err != nil {
		return nil, fmt.Errorf("fmnist load: %w", err)
	}
	var d Dataset
	if err := readGzip(filepath.Join(dir, prefix+"-images-idx3-ubyte.gz"), func(r io.Reader) (err error) {
		d.Images, err = ReadImages(r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("fmnist load %s: %w", split, err)
	}
	if err := readGzip(filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz"), func(r io.Reader) (err error) {
		d.Labels, err = ReadLabels(r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("fmnist load %s: %w", split, err)
	}
	if n := len(d.Images) / Pixels; n != len(d.Labels) {
		return nil, fmt.Errorf("fmnist load %s: %d images but %d labels", split, n, len(d.Labels))
	}
	return &d, nil
}

// readGzip opens a gzip file and hands its decompressed content to read.
func readGzip(path string, read func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := read(zr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadImages reads an uncompressed IDX image file of 28×28 unsigned bytes (magic 0x00000803)
// and returns its images as float32 in [0, 1]. The file must hold exactly the images its
// header declares.
func ReadImages(r io.Reader) ([]float32, error) {
	var h [4]uint32
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return nil, fmt.Errorf("idx images header: %w", err)
	}
	if h[0] != imagesMagic {
		return nil, fmt.Errorf("idx images: magic %#08x, want %#08x (3-dimensional unsigned bytes)", h[0], imagesMagic)
	}
	if h[2] != Rows || h[3] != Cols {
		return nil, fmt.Errorf("idx images: %d×%d pixels, want %d×%d", h[2], h[3], Rows, Cols)
	}
	raw, err := readExactly(r, int64(h[1]), Pixels)
	if err != nil {
		return nil, fmt.Errorf("idx images: %w", err)
	}
	img := make([]float32, len(raw))
	for i, b := range raw {
		img[i] = float32(b) / 255
	}
	return img, nil
}

// ReadLabels reads an uncompressed IDX label file (magic 0x00000801) and checks that every
// label is a class index.
func ReadLabels(r io.Reader) ([]uint8, error) {
	labels, err := readIDXLabels(r)
	if err != nil {
		return nil, err
	}
	for i, l := range labels {
		if l >= NumClasses {
			return nil, fmt.Errorf("idx labels: label %d of item %d is not below %d", l, i, NumClasses)
		}
	}
	return labels, nil
}

// readExactly reads count items of size bytes and checks that nothing follows. It reads what
// is there rather than allocating what the header declares, so a lying header costs nothing.
func readExactly(r io.Reader, count int64, size int) ([]byte, error) {
	if count > MaxImages {
		return nil, fmt.Errorf("header declares %d items, more than the limit of %d", count, MaxImages)
	}
	want := count * int64(size)
	data, err := io.ReadAll(io.LimitReader(r, want+1))
	if err != nil {
		return nil, err
	}
	switch {
	case int64(len(data)) < want:
		return nil, fmt.Errorf("truncated: header declares %d items (%d bytes), file holds %d bytes: %w", count, want, len(data), io.ErrUnexpectedEOF)
	case int64(len(data)) > want:
		return nil, errors.New("data after the declared items")
	}
	return data, nil
}

// MaxIDXPixels bounds the pixels of one image ReadIDXImages accepts: the most values one
// sample may have (internal/dataset.MaxWidth).
const MaxIDXPixels = 1 << 24

// IDX is one split of IDX image data of any image size, such as Fashion-MNIST's or MNIST's:
// what `edgeloop train --data` reads when the data is not necessarily Fashion-MNIST.
type IDX struct {
	// Images holds Len()×Rows×Cols values in [0, 1] (the byte divided by 255), one image after
	// the other, row-major.
	Images []float32
	// Labels holds one label byte per image; what they name is up to the caller.
	Labels []uint8
	// Rows and Cols are the height and width of every image.
	Rows, Cols int
}

// Len is the number of images.
func (d *IDX) Len() int { return len(d.Labels) }

// LoadIDX reads one split from dir like Load, but takes images of any size (all of one size,
// as an IDX file declares it) and any label byte. Files may be gzipped (<name>.gz, as Debian
// installs them) or not (<name>).
func LoadIDX(dir string, split Split) (*IDX, error) {
	prefix, err := split.filePrefix()
	if err != nil {
		return nil, fmt.Errorf("idx load: %w", err)
	}
	var d IDX
	if err := readMaybeGzip(filepath.Join(dir, prefix+"-images-idx3-ubyte"), func(r io.Reader) (err error) {
		d.Images, d.Rows, d.Cols, err = ReadIDXImages(r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("idx load %s: %w", split, err)
	}
	if err := readMaybeGzip(filepath.Join(dir, prefix+"-labels-idx1-ubyte"), func(r io.Reader) (err error) {
		d.Labels, err = readIDXLabels(r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("idx load %s: %w", split, err)
	}
	if n := len(d.Images) / (d.Rows * d.Cols); n != len(d.Labels) {
		return nil, fmt.Errorf("idx load %s: %d images but %d labels", split, n, len(d.Labels))
	}
	return &d, nil
}

// readMaybeGzip reads base.gz when it exists (gunzipped), base otherwise.
func readMaybeGzip(base string, read func(io.Reader) error) error {
	if _, err := os.Stat(base + ".gz"); err == nil {
		return readGzip(base+".gz", read)
	}
	f, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("neither %s.gz nor %s: %w", base, filepath.Base(base), err)
	}
	defer f.Close()
	if err := read(bufio.NewReader(f)); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	return nil
}

// ReadIDXImages reads an uncompressed IDX image file of unsigned bytes (magic 0x00000803) of
// any image size and returns its images as float32 in [0, 1] with the size of one image. The
// file must hold exactly the images its header declares.
func ReadIDXImages(r io.Reader) (images []float32, rows, cols int, err error) {
	var h [4]uint32
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return nil, 0, 0, fmt.Errorf("idx images header: %w", err)
	}
	if h[0] != imagesMagic {
		return nil, 0, 0, fmt.Errorf("idx images: magic %#08x, want %#08x (3-dimensional unsigned bytes)", h[0], imagesMagic)
	}
	if h[2] == 0 || h[3] == 0 || uint64(h[2])*uint64(h[3]) > MaxIDXPixels {
		return nil, 0, 0, fmt.Errorf("idx images: %d×%d pixels: want 1 to %d pixels per image", h[2], h[3], MaxIDXPixels)
	}
	rows, cols = int(h[2]), int(h[3])
	raw, err := readExactly(r, int64(h[1]), rows*cols)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("idx images: %w", err)
	}
	images = make([]float32, len(raw))
	for i, b := range raw {
		images[i] = float32(b) / 255
	}
	return images, rows, cols, nil
}

// readIDXLabels reads an uncompressed IDX label file (magic 0x00000801) of any label byte.
func readIDXLabels(r io.Reader) ([]uint8, error) {
	var h [2]uint32
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return nil, fmt.Errorf("idx labels header: %w", err)
	}
	if h[0] != labelsMagic {
		return nil, fmt.Errorf("idx labels: magic %#08x, want %#08x (1-dimensional unsigned bytes)", h[0], labelsMagic)
	}
	labels, err := readExactly(r, int64(h[1]), 1)
	if err != nil {
		return nil, fmt.Errorf("idx labels: %w", err)
	}
	return labels, nil
}
