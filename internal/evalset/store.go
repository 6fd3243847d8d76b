package evalset

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// shardNameRE is the form of a shard name in a manifest; anything else (a path, "..") is
// refused before it becomes an object key.
var shardNameRE = regexp.MustCompile(`^shard-[0-9]{6}\.tar$`)

// shardName is the name of shard i.
func shardName(i int) string { return fmt.Sprintf("shard-%06d.tar", i) }

// sampleMeta is the <key>.json of a sample in a set's shard: the fields of the sample
// format a WebDataset reader needs (key, label, input), plus the class name for people.
type sampleMeta struct {
	SchemaVersion int    `json:"schema_version"`
	Key           string `json:"key"`
	Label         int    `json:"label"`
	Class         string `json:"class"`
	Input         struct {
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
		File     string  `json:"file"`
	} `json:"input"`
}

// Write stores s under evalsets/<model>/<name>/: the shards first, the manifest last, so a
// reader never sees a set without all its data. It fills the manifest's SchemaVersion, Count,
// ClassCounts, Digest, Shards (and Created when zero, Task when empty) and returns it. A name
// that already holds a manifest is refused (ErrExists): sets are immutable. Two writers racing
// for one new name are not detected (the store has no conditional put); the later manifest wins.
func Write(ctx context.Context, b objstore.Bucket, s *Set) (*Manifest, error) {
	return write(ctx, b, s, max(1, shardTargetBytes/(4*max(1, s.Width()))))
}

// write is Write with perShard samples in each shard.
func write(ctx context.Context, b objstore.Bucket, s *Set, perShard int) (*Manifest, error) {
	m := &s.Manifest
	if m.Task == "" {
		m.Task = TaskClassification
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	m.SchemaVersion = SchemaVersion
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("evalset: write %s/%s: %w", m.Model, m.Name, err)
	}
	if err := refuseExisting(ctx, b, m.Model, m.Name); err != nil {
		return nil, err
	}
	m.Count = s.Len()
	m.ClassCounts = s.ClassCounts()
	m.Digest = s.ComputeDigest()
	m.Shards = nil
	w := s.Width()
	prefix := Prefix(m.Model, m.Name)
	for first := 0; first < s.Len(); first += perShard {
		end := min(first+perShard, s.Len())
		var buf bytes.Buffer
		// A sample is three 512-byte tar blocks (two headers, the JSON) plus its .npy rounded
		// up to a block, and the tar ends with two zero blocks: sized once, as growing by
		// doubling would hold up to twice the shard.
		buf.Grow((end-first)*(3*512+(128+4*w+511)/512*512) + 2*512)
		if err := s.writeShard(&buf, first, end); err != nil {
			return nil, fmt.Errorf("evalset: write %s/%s: %w", m.Model, m.Name, err)
		}
		name := shardName(len(m.Shards))
		if err := b.Put(ctx, prefix+name, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			return nil, fmt.Errorf("evalset: write %s/%s: %w", m.Model, m.Name, err)
		}
		m.Shards = append(m.Shards, name)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("evalset: write %s/%s: %w", m.Model, m.Name, err)
	}
	data = append(data, '\n')
	// Checked again: writing the shards took time, and a manifest once written is never
	// replaced.
	if err := refuseExisting(ctx, b, m.Model, m.Name); err != nil {
		return nil, err
	}
	if err := b.Put(ctx, ManifestKey(m.Model, m.Name), bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, fmt.Errorf("evalset: write %s/%s: %w", m.Model, m.Name, err)
	}
	out := *m
	return &out, nil
}

func refuseExisting(ctx context.Context, b objstore.Bucket, model, name string) error {
	ok, err := b.Exists(ctx, ManifestKey(model, name))
	if err != nil {
		return fmt.Errorf("evalset: write %s/%s: %w", model, name, err)
	}
	if ok {
		return fmt.Errorf("evalset: write %s/%s: %w (sets are immutable: choose another name)", model, name, ErrExists)
	}
	return nil
}

// writeShard writes samples [first, end) as a tar of <key>.json and <key>.input.npy pairs,
// byte for byte the same for the same content (fixed modes, times and owners).
func (s *Set) writeShard(w io.Writer, first, end int) error {
	m := &s.Manifest
	shape := make([]int, len(m.Input.Shape))
	for i, d := range m.Input.Shape {
		shape[i] = int(d)
	}
	mtime := m.Created.UTC().Truncate(time.Second)
	tw := tar.NewWriter(w)
	var npyBuf bytes.Buffer
	for i := first; i < end; i++ {
		meta := sampleMeta{SchemaVersion: sample.SchemaVersion, Key: s.Keys[i], Label: s.Labels[i], Class: m.Classes[s.Labels[i]]}
		meta.Input.Datatype = m.Input.Datatype
		meta.Input.Shape = m.Input.Shape
		meta.Input.File = sample.NPYFile
		js, err := json.Marshal(&meta)
		if err != nil {
			return err
		}
		npyBuf.Reset()
		if err := npy.WriteFloat32(&npyBuf, shape, s.Input(i)); err != nil {
			return err
		}
		for _, f := range []struct {
			name string
			data []byte
		}{{s.Keys[i] + ".json", js}, {s.Keys[i] + "." + sample.NPYFile, npyBuf.Bytes()}} {
			h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: int64(len(f.data)), Mode: 0o644, ModTime: mtime, Format: tar.FormatUSTAR}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// Stat reads and checks the manifest of a set without its data. A set without a manifest is
// ErrNotFound.
func Stat(ctx context.Context, b objstore.Bucket, model, name string) (*Manifest, error) {
	if err := ValidateNames(model, name); err != nil {
		return nil, err
	}
	data, _, err := objstore.ReadAll(ctx, b, ManifestKey(model, name), MaxManifestBytes)
	if objstore.IsNotFound(err) {
		return nil, fmt.Errorf("evalset: %s/%s: %w", model, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("evalset: %s/%s: %w", model, name, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("evalset: %s/%s: %w", model, name, err)
	}
	if m.Model != model || m.Name != name {
		return nil, fmt.Errorf("evalset: %s/%s: the manifest names set %.80q of model %.80q", model, name, m.Name, m.Model)
	}
	return m, nil
}

// ParseManifest decodes a manifest strictly (unknown fields are errors) and checks it.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks a manifest as read from a store, reporting every problem in one error.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.SchemaVersion < 1 || m.SchemaVersion > SchemaVersion {
		bad("schema_version: this edgeloop reads 1 to %d, got %d", SchemaVersion, m.SchemaVersion)
	}
	if err := ValidateNames(m.Model, m.Name); err != nil {
		errs = append(errs, err)
	}
	if m.Task != TaskClassification {
		bad("task: must be %q, got %.40q", TaskClassification, m.Task)
	}
	spec := m.Spec()
	if err := spec.Validate(); err != nil {
		errs = append(errs, err)
	}
	if m.Count <= 0 {
		bad("count: must be > 0, got %d", m.Count)
	} else if w := spec.Width(); w > 0 && int64(m.Count)*int64(w) > MaxValues {
		bad("count: %d samples of %d values are more than the %d values a set may hold", m.Count, w, MaxValues)
	}
	if len(m.ClassCounts) != len(m.Classes) {
		bad("class_counts: %d entries for %d classes", len(m.ClassCounts), len(m.Classes))
	} else {
		sum := 0
		for i, c := range m.ClassCounts {
			if c < 0 {
				bad("class_counts[%d]: negative", i)
			}
			sum += c
		}
		if sum != m.Count {
			bad("class_counts: sum to %d, count is %d", sum, m.Count)
		}
	}
	switch {
	case len(m.Shards) == 0:
		bad("shards: must list at least one shard")
	case len(m.Shards) > MaxShards:
		bad("shards: at most %d, got %d", MaxShards, len(m.Shards))
	}
	for i, s := range m.Shards {
		if !shardNameRE.MatchString(s) {
			bad("shards[%d]: %.80q is not a shard name (shard-NNNNNN.tar)", i, s)
			break
		}
	}
	if len(m.Digest) != 64 || strings.Trim(m.Digest, "0123456789abcdef") != "" {
		bad("digest: must be 64 lowercase hex digits")
	}
	if len(m.Description) > MaxDescription {
		bad("description: at most %d bytes", MaxDescription)
	}
	if len(errs) > 0 {
		return fmt.Errorf("manifest: %w", errors.Join(errs...))
	}
	return nil
}

// Load reads a whole set and verifies it: every sample must fit the manifest's shape and
// classes, the count and per-class counts must match, and the digest computed over what was
// read must equal the manifest's (ErrDigest otherwise), so a tampered or truncated shard fails.
func Load(ctx context.Context, b objstore.Bucket, model, name string) (*Set, error) {
	m, err := Stat(ctx, b, model, name)
	if err != nil {
		return nil, err
	}
	s := &Set{Manifest: *m}
	spec := m.Spec()
	w := spec.Width()
	// Capacity follows the manifest only up to a bound: a hostile manifest may claim a count
	// its shards do not hold, and memory should grow with what is actually read.
	count := min(m.Count, 1<<16)
	s.Keys = make([]string, 0, count)
	s.Labels = make([]int, 0, count)
	s.Inputs = make([]float32, 0, min(m.Count*w, 1<<24))
	fail := func(format string, args ...any) (*Set, error) {
		return nil, fmt.Errorf("evalset: load %s/%s: %s", model, name, fmt.Sprintf(format, args...))
	}
	seen := make(map[string]bool, m.Count)
	prefix := Prefix(model, name)
	for _, shard := range m.Shards {
		rc, _, err := b.Get(ctx, prefix+shard)
		if err != nil {
			return nil, fmt.Errorf("evalset: load %s/%s: %w", model, name, err)
		}
		samples, err := dataset.ReadShard(rc)
		rc.Close()
		if err != nil {
			return fail("%s: %v", shard, err)
		}
		for _, smp := range samples {
			if len(s.Keys) == m.Count {
				return nil, fmt.Errorf("evalset: load %s/%s: %s: more samples than the manifest's %d: %w", model, name, shard, m.Count, ErrDigest)
			}
			if !sample.ValidKey(smp.Key) || seen[smp.Key] {
				return fail("%s: sample key %.40q is malformed or repeated", shard, smp.Key)
			}
			seen[smp.Key] = true
			raw, err := smp.OwnLabel()
			if err != nil {
				return fail("%s: %v", shard, err)
			}
			label, err := dataset.ParseLabel(raw, m.Classes)
			if err != nil {
				return fail("%s: sample %s: %v", shard, smp.Key, err)
			}
			values, err := dataset.DecodeInput(smp.NPY, spec)
			if err != nil {
				return fail("%s: sample %s: %v", shard, smp.Key, err)
			}
			s.Keys = append(s.Keys, smp.Key)
			s.Labels = append(s.Labels, label)
			s.Inputs = append(s.Inputs, values...)
		}
	}
	if len(s.Keys) != m.Count {
		return nil, fmt.Errorf("evalset: load %s/%s: %d samples, the manifest says %d: %w", model, name, len(s.Keys), m.Count, ErrDigest)
	}
	if d := s.ComputeDigest(); d != m.Digest {
		return nil, fmt.Errorf("evalset: load %s/%s: content digest %s, the manifest says %s: %w", model, name, d, m.Digest, ErrDigest)
	}
	return s, nil
}

// List returns the manifests of the sets of model ("" for every model), ordered by model and
// name. Prefixes without a manifest (a set being written, or abandoned) are not sets and are
// skipped. A manifest that cannot be read or is invalid does not hide the others: List returns
// every good manifest and, joined in its error, the problem of each bad one.
func List(ctx context.Context, b objstore.Bucket, model string) ([]Manifest, error) {
	var models []string
	if model != "" {
		if err := modelNameErr(model); err != nil {
			return nil, err
		}
		models = []string{model}
	} else {
		dirs, err := objstore.List(ctx, b, Root, false)
		if err != nil {
			return nil, fmt.Errorf("evalset: list: %w", err)
		}
		for _, d := range dirs {
			if m, ok := strings.CutSuffix(strings.TrimPrefix(d, Root), "/"); ok {
				models = append(models, m)
			}
		}
	}
	var out []Manifest
	var errs []error
	for _, mod := range models {
		if modelNameErr(mod) != nil {
			continue // not something Write makes
		}
		dirs, err := objstore.List(ctx, b, Root+mod+"/", false)
		if err != nil {
			return out, fmt.Errorf("evalset: list %s: %w", mod, err)
		}
		for _, d := range dirs {
			name, ok := strings.CutSuffix(strings.TrimPrefix(d, Root+mod+"/"), "/")
			if !ok || !sample.ValidName(name) {
				continue
			}
			m, err := Stat(ctx, b, mod, name)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case err != nil:
				errs = append(errs, err)
			default:
				out = append(out, *m)
			}
		}
	}
	return out, errors.Join(errs...)
}

func modelNameErr(model string) error {
	if err := ValidateNames(model, "x"); err != nil {
		return err
	}
	return nil
}
