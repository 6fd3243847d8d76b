package trainer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
)

// SampleStats counts what LoadSamples found.
type SampleStats struct {
	// Shards is the number of shard files read.
	Shards int `json:"shards"`
	// Labelled samples were added to the training data.
	Labelled int `json:"labelled"`
	// Unlabelled samples have no label yet and were skipped.
	Unlabelled int `json:"unlabelled"`
	// Rejected samples were skipped: no or unreadable input.npy, not 784 finite values, or a
	// label that names no class.
	Rejected int `json:"rejected"`
	// Duplicates are samples whose key was seen before (keys are content-derived).
	Duplicates int `json:"duplicates"`
	// HeldOut labelled samples were kept out of training: the evaluation gate's side of the
	// split (HeldOut). Set by the training run, not by LoadSamples.
	HeldOut int `json:"held_out,omitempty"`
}

// maxMember bounds one file inside a shard: a sample's JSON or its 28×28 input is a few KiB.
const maxMember = 1 << 20

// maxRejectLogs is how many rejected samples are logged one by one before the rest are only
// counted.
const maxRejectLogs = 5

// SampleSet is what LoadSamples read.
type SampleSet struct {
	// Data holds the labelled samples' inputs and labels.
	Data *fmnist.Dataset
	// Stats counts what was found.
	Stats SampleStats
	// Shards are the shard files read, in the order read.
	Shards []string
}

// sample is one WebDataset sample as read from a shard: its files by extension.
type sample struct {
	key  string
	json []byte
	npy  []byte
}

// LoadSamples reads the labelled samples of WebDataset shards: tar files (optionally gzipped)
// of <key>.json and <key>.input.npy pairs, or directories searched for *.tar, *.tar.gz and
// *.tgz. A sample's label is the "label" field of its JSON: a class index or a class name.
// labelFiles are JSONL files of {"key": ..., "label": ...} lines whose labels take precedence
// (labels posted after capture). Samples without a label, or that cannot be used, are skipped
// and counted; unreadable shards are errors.
func LoadSamples(shards, labelFiles []string, classes []string, logger *slog.Logger) (*SampleSet, error) {
	labels := map[string]json.RawMessage{}
	for _, f := range labelFiles {
		if err := readLabelFile(f, labels); err != nil {
			return nil, fmt.Errorf("load samples: %w", err)
		}
	}
	files, err := shardFiles(shards)
	if err != nil {
		return nil, fmt.Errorf("load samples: %w", err)
	}
	set := &SampleSet{Data: &fmnist.Dataset{}, Shards: files}
	out, stats := set.Data, &set.Stats
	seen := map[string]bool{}
	rejects := 0
	for _, f := range files {
		samples, err := readShard(f)
		if err != nil {
			return nil, fmt.Errorf("load samples: %s: %w", f, err)
		}
		stats.Shards++
		for _, s := range samples {
			if seen[s.key] {
				stats.Duplicates++
				continue
			}
			seen[s.key] = true
			label, ok, err := sampleLabel(s, labels, classes)
			if err == nil && !ok {
				stats.Unlabelled++
				continue
			}
			var img []float32
			if err == nil {
				img, err = sampleInput(s)
			}
			if err != nil {
				stats.Rejected++
				if rejects++; rejects <= maxRejectLogs {
					logger.Warn("sample skipped", "shard", f, "key", s.key, "err", err)
				}
				continue
			}
			out.Images = append(out.Images, img...)
			out.Labels = append(out.Labels, uint8(label))
			stats.Labelled++
		}
	}
	return set, nil
}

// shardFiles expands directories into their shard files, in lexical order so that a run is
// reproducible.
func shardFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(f string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && (strings.HasSuffix(f, ".tar") || strings.HasSuffix(f, ".tar.gz") || strings.HasSuffix(f, ".tgz")) {
				files = append(files, f)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// readShard returns a shard's samples in the order their first file appears. Files group into
// samples by key, WebDataset's rule: the path up to the first dot of the file name.
func readShard(name string) ([]*sample, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	tr := tar.NewReader(r)
	byKey := map[string]*sample{}
	var order []*sample
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return order, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dir, base := path.Split(path.Clean(h.Name))
		dot := strings.IndexByte(base, '.')
		if dot <= 0 {
			continue
		}
		key, ext := dir+base[:dot], base[dot+1:]
		if ext != "json" && ext != "input.npy" {
			continue // other inputs (encoded images) and extra files are not for this trainer
		}
		s := byKey[key]
		if s == nil {
			s = &sample{key: base[:dot]} // keys are content-derived IDs; the directory is not part of one
			byKey[key] = s
			order = append(order, s)
		}
		if h.Size > maxMember {
			return nil, fmt.Errorf("%s: %d bytes, more than the %d a sample file may have", h.Name, h.Size, maxMember)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		if ext == "json" {
			s.json = data
		} else {
			s.npy = data
		}
	}
}

// sampleLabel is the sample's class index; ok is false when it has no label.
func sampleLabel(s *sample, posted map[string]json.RawMessage, classes []string) (label int, ok bool, err error) {
	raw, wasPosted := posted[s.key]
	if !wasPosted {
		if s.json == nil {
			return 0, false, errors.New("no .json metadata")
		}
		var meta struct {
			Label json.RawMessage `json:"label"`
		}
		if err := json.Unmarshal(s.json, &meta); err != nil {
			return 0, false, fmt.Errorf("metadata: %w", err)
		}
		raw = meta.Label
	}
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return 0, false, nil
	}
	label, err = parseLabel(raw, classes)
	return label, err == nil, err
}

// parseLabel accepts a class index (7 or "7") or a class name ("Sneaker").
func parseLabel(raw json.RawMessage, classes []string) (int, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("label: %w", err)
	}
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && v >= 0 && int(v) < len(classes) {
			return int(v), nil
		}
	case string:
		for i, c := range classes {
			if v == c {
				return i, nil
			}
		}
		if i, err := strconv.Atoi(v); err == nil && i >= 0 && i < len(classes) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("label %s names no class (want an index below %d or a class name)", raw, len(classes))
}

// sampleInput decodes the sample's input.npy: 784 finite values in any shape ([1,28,28],
// [28,28], [784], ...); uint8 arrays are grey levels and scaled to [0, 1] like Fashion-MNIST.
func sampleInput(s *sample) ([]float32, error) {
	if s.npy == nil {
		return nil, errors.New("no input.npy")
	}
	a, err := npy.Read(bytes.NewReader(s.npy))
	if err != nil {
		return nil, err
	}
	if len(a.Data) != fmnist.Pixels {
		return nil, fmt.Errorf("input of shape %v has %d values, want %d", a.Shape, len(a.Data), fmnist.Pixels)
	}
	for i, v := range a.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("input value %d is %v", i, v)
		}
		if a.Descr == "|u1" {
			a.Data[i] = v / 255
		}
	}
	return a.Data, nil
}

// readLabelFile adds the labels of a JSONL file of {"key": ..., "label": ...} lines to labels.
func readLabelFile(name string, labels map[string]json.RawMessage) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxMember)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l struct {
			Key   string          `json:"key"`
			Label json.RawMessage `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Key == "" {
			return fmt.Errorf("%s:%d: want a JSON object with a key and a label (%v)", name, line, err)
		}
		labels[l.Key] = l.Label
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Manifest is a dataset manifest, the job contract's list of data beyond Fashion-MNIST.
type Manifest struct {
	// Shards are sample shards: files, directories or file:// URIs.
	Shards []string `json:"shards"`
	// Labels are JSONL label files ({"key": ..., "label": ...} per line).
	Labels []string `json:"labels"`
}

// ReadManifest reads a dataset manifest. Relative paths in it are relative to the manifest's
// directory; the reference trainer reads local files only, so other URI schemes are errors.
func ReadManifest(name string) (*Manifest, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	for _, list := range []*[]string{&m.Shards, &m.Labels} {
		for i, p := range *list {
			if (*list)[i], err = localPath(p, filepath.Dir(name)); err != nil {
				return nil, fmt.Errorf("read manifest %s: %w", name, err)
			}
		}
	}
	return &m, nil
}

func localPath(p, base string) (string, error) {
	if u, err := url.Parse(p); err == nil && u.Scheme != "" && len(u.Scheme) > 1 { // not a Windows drive letter
		if u.Scheme != "file" {
			return "", fmt.Errorf("%q: the reference trainer reads local files only; copy %s:// objects to a local directory first", p, u.Scheme)
		}
		p = u.Path
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return p, nil
}
