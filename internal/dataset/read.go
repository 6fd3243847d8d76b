package dataset

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
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits on what a shard may make ReadShard allocate.
const (
	// MaxMemberBytes bounds one file inside a shard: a sample's JSON or its input. It is
	// sample.MaxInputBytes, the largest input a node may send.
	MaxMemberBytes = 8 << 20
	// MaxShardSamples bounds the samples of one shard (the collector closes a shard far
	// earlier).
	MaxShardSamples = 1 << 20
	// MaxShardBytes bounds one shard's uncompressed tar stream, so that a gzip bomb ends as
	// an error.
	MaxShardBytes = 16 << 30
	// maxLabelLine bounds one line of a JSONL label file.
	maxLabelLine = 1 << 20
	// maxRefusalLogs is how many refused samples ReadLabelled logs one by one before it only
	// counts them.
	maxRefusalLogs = 5
)

// Stats counts what ReadLabelled found.
type Stats struct {
	// Shards is the number of shard files read.
	Shards int `json:"shards"`
	// Labelled samples fit the Spec and are in the result.
	Labelled int `json:"labelled"`
	// Unlabelled samples have no label yet and were skipped.
	Unlabelled int `json:"unlabelled"`
	// Duplicates are samples whose content key was seen before; the first one is kept.
	Duplicates int `json:"duplicates"`
	// Rejected counts refused samples by reason (the Reason constants: "shape", "dtype",
	// "label", "npy", "nonfinite", "meta").
	Rejected map[string]int `json:"rejected,omitempty"`
}

// RejectedTotal is the number of refused samples, all reasons together.
func (s Stats) RejectedTotal() int {
	n := 0
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// Labelled holds samples that fit the Spec, in reading order (shards in lexical order).
type Labelled struct {
	// Keys are the samples' content keys (ContentKey of the values), one per sample.
	Keys []string
	// SampleKeys are the keys the samples have in their shards (sample.Key, what label files
	// name), one per sample; for tracing a sample back to its capture.
	SampleKeys []string
	// Inputs holds len(Keys) * Spec.Width() values, row-major, one sample after the other.
	Inputs []float32
	// Labels holds the class index of each sample.
	Labels []int
	// Stats counts what was found.
	Stats Stats
	// Shards are the shard files read, in the order read.
	Shards []string
	// Width is Spec.Width() of the spec the samples were read with.
	Width int
}

// Len is the number of samples.
func (l *Labelled) Len() int { return len(l.Keys) }

// Input returns sample i's values (a slice of Inputs, not a copy).
func (l *Labelled) Input(i int) []float32 { return l.Inputs[i*l.Width : (i+1)*l.Width] }

// Split returns the training side and the held-out side of l (by HeldOut of the content key),
// each with its Keys, Inputs and Labels (Stats copied).
func (l *Labelled) Split() (train, held *Labelled) {
	train, held = l.emptyLike(), l.emptyLike()
	for i := range l.Keys {
		to := train
		if HeldOut(l.Keys[i]) {
			to = held
		}
		to.add(l.Keys[i], l.sampleKey(i), l.Input(i), l.Labels[i])
	}
	return train, held
}

func (l *Labelled) emptyLike() *Labelled {
	st := l.Stats
	st.Rejected = make(map[string]int, len(l.Stats.Rejected))
	for k, v := range l.Stats.Rejected {
		st.Rejected[k] = v
	}
	return &Labelled{Stats: st, Shards: append([]string(nil), l.Shards...), Width: l.Width}
}

func (l *Labelled) sampleKey(i int) string {
	if i < len(l.SampleKeys) {
		return l.SampleKeys[i]
	}
	return ""
}

func (l *Labelled) add(key, sampleKey string, input []float32, label int) {
	l.Keys = append(l.Keys, key)
	l.SampleKeys = append(l.SampleKeys, sampleKey)
	l.Inputs = append(l.Inputs, input...)
	l.Labels = append(l.Labels, label)
}

// ReadLabelled reads shards (tar, tar.gz, or directories searched for *.tar, *.tar.gz and
// *.tgz, in lexical order) and JSONL label files ({"key":..., "label": index or class name},
// which take precedence over a sample's own label, the later file winning). A sample whose
// input does not fit spec (ShapeMatches, DecodeInput), whose values are not finite, or whose
// label names no class of spec.Classes is refused and counted under its reason; the first few
// refusals are logged. Samples without a label are counted and skipped. A content key seen
// twice counts as a duplicate and only the first is kept. A shard that cannot be read at all
// is an error.
func ReadLabelled(shards, labelFiles []string, spec Spec, logger *slog.Logger) (*Labelled, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("read labelled: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	labels := map[string]json.RawMessage{}
	for _, f := range labelFiles {
		if err := ReadLabelFile(f, labels); err != nil {
			return nil, fmt.Errorf("read labelled: %w", err)
		}
	}
	files, err := ShardFiles(shards)
	if err != nil {
		return nil, fmt.Errorf("read labelled: %w", err)
	}
	out := &Labelled{Shards: files, Width: spec.Width(), Stats: Stats{Rejected: map[string]int{}}}
	seen := map[string]bool{}
	refusals := 0
	for _, f := range files {
		samples, err := readShardFile(f)
		if err != nil {
			return nil, fmt.Errorf("read labelled: %s: %w", f, err)
		}
		out.Stats.Shards++
		for _, s := range samples {
			label, ok, err := s.label(labels, spec.Classes)
			if err == nil && !ok {
				out.Stats.Unlabelled++
				continue
			}
			var values []float32
			if err == nil {
				values, err = DecodeInput(s.NPY, spec)
			}
			if err != nil {
				reason := ReasonOf(err)
				out.Stats.Rejected[reason]++
				if refusals++; refusals <= maxRefusalLogs {
					logger.Warn("sample refused", "shard", f, "key", s.Key, "reason", reason, "err", err)
				}
				continue
			}
			key := ContentKey(values)
			if seen[key] {
				out.Stats.Duplicates++
				continue
			}
			seen[key] = true
			out.add(key, s.Key, values, label)
			out.Stats.Labelled++
		}
	}
	if n := out.Stats.RejectedTotal(); n > maxRefusalLogs {
		logger.Warn("more samples refused", "logged", maxRefusalLogs, "total", n, "by_reason", out.Stats.Rejected)
	}
	return out, nil
}

// ShardFiles expands directories into the shard files below them (*.tar, *.tar.gz, *.tgz), in
// lexical order so that a run is reproducible; files named directly are kept in the given
// order.
func ShardFiles(paths []string) ([]string, error) {
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
		// WalkDir visits entries in lexical order.
		err = filepath.WalkDir(p, func(f string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && isShardName(f) {
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

func isShardName(f string) bool {
	return strings.HasSuffix(f, ".tar") || strings.HasSuffix(f, ".tar.gz") || strings.HasSuffix(f, ".tgz")
}

// ShardSample is one WebDataset sample of a shard: its key and the files this package reads.
type ShardSample struct {
	// Key is the member names' key: the base name up to its first dot.
	Key string
	// JSON is <key>.json, nil when absent.
	JSON []byte
	// NPY is <key>.input.npy, nil when absent.
	NPY []byte
}

// label returns the sample's class index; ok is false when it has no label. A posted label
// (from a label file) takes precedence over the sample's own.
func (s *ShardSample) label(posted map[string]json.RawMessage, classes []string) (label int, ok bool, err error) {
	raw, wasPosted := posted[s.Key]
	if !wasPosted {
		if raw, err = s.OwnLabel(); err != nil {
			return 0, false, err
		}
	}
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return 0, false, nil
	}
	label, err = ParseLabel(raw, classes)
	if err != nil {
		return 0, false, &RefusedError{Reason: ReasonLabel, Err: err}
	}
	return label, true, nil
}

// OwnLabel returns the "label" field of the sample's JSON (nil when it has none). The error
// is a *RefusedError with ReasonMeta.
func (s *ShardSample) OwnLabel() (json.RawMessage, error) {
	if s.JSON == nil {
		return nil, refused(ReasonMeta, "no %s.json", s.Key)
	}
	var meta struct {
		Label json.RawMessage `json:"label"`
	}
	if err := json.Unmarshal(s.JSON, &meta); err != nil {
		return nil, refused(ReasonMeta, "%s.json: %v", s.Key, err)
	}
	return meta.Label, nil
}

// ParseLabel accepts a class index (7 or "7") or a class name ("Sneaker") of classes; a name
// wins over its reading as a number.
func ParseLabel(raw json.RawMessage, classes []string) (int, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("label: %w", err)
	}
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && v >= 0 && v < float64(len(classes)) {
			return int(v), nil
		}
	case string:
		if i := ClassIndex(classes, v); i >= 0 {
			return i, nil
		}
		if i, err := strconv.Atoi(v); err == nil && i >= 0 && i < len(classes) {
			return i, nil
		}
	}
	shown := string(raw)
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return 0, fmt.Errorf("label %s names no class (want an index below %d or one of the class names)", shown, len(classes))
}

// readShardFile reads the shard file name (tar or gzipped tar).
func readShardFile(name string) ([]*ShardSample, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadShard(f)
}

// ReadShard returns a shard's samples in the order their first file appears. r holds a tar,
// gzipped or not (told by its first bytes). Files group into samples by key, WebDataset's
// rule: the base name up to its first dot; only <key>.json and <key>.input.npy are kept, other
// members (encoded images, index files) are skipped. A member above MaxMemberBytes, more than
// MaxShardSamples samples or MaxShardBytes of tar, or a broken tar is an error.
func ReadShard(r io.Reader) ([]*ShardSample, error) {
	return readShard(r, MaxShardBytes)
}

// readShard is ReadShard with maxBytes of tar.
func readShard(r io.Reader, maxBytes int64) ([]*ShardSample, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		src = zr
	}
	lr := &io.LimitedReader{R: src, N: maxBytes + 1}
	tr := tar.NewReader(lr)
	byKey := map[string]*ShardSample{}
	var order []*ShardSample
	for {
		h, err := tr.Next()
		if lr.N <= 0 {
			// Checked first: the limit reads as an end of stream to the tar reader.
			return nil, fmt.Errorf("shard: more than %d bytes of tar", maxBytes)
		}
		if errors.Is(err, io.EOF) {
			return order, nil
		}
		if err != nil {
			return nil, fmt.Errorf("shard: %w", err)
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
			continue
		}
		s := byKey[key]
		if s == nil {
			if len(order) == MaxShardSamples {
				return nil, fmt.Errorf("shard: more than %d samples", MaxShardSamples)
			}
			s = &ShardSample{Key: base[:dot]} // the directory is not part of a key
			byKey[key] = s
			order = append(order, s)
		}
		if h.Size > MaxMemberBytes {
			return nil, fmt.Errorf("shard: member %.64q: %d bytes, more than the %d a sample file may have", h.Name, h.Size, MaxMemberBytes)
		}
		data := make([]byte, h.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("shard: member %.64q: %w", h.Name, err)
		}
		if ext == "json" {
			s.JSON = data
		} else {
			s.NPY = data
		}
	}
}

// ReadLabelFile adds the labels of a JSONL file of {"key": ..., "label": ...} lines to labels;
// a later line for the same key wins.
func ReadLabelFile(name string, labels map[string]json.RawMessage) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLabelLine)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l struct {
			Key   string          `json:"key"`
			Label json.RawMessage `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Key == "" {
			if err == nil {
				err = errors.New("no key")
			}
			return fmt.Errorf("%s:%d: want a JSON object with a key and a label: %w", name, line, err)
		}
		labels[l.Key] = l.Label
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
