package evalset

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // FromFiles decodes JPEG images
	_ "image/png"  // and PNG images
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/dataset"
)

// Limits of FromFiles.
const (
	// MaxFileBytes bounds one input file (.npy or image).
	MaxFileBytes = 64 << 20
	// MaxCSVBytes bounds the labels CSV.
	MaxCSVBytes = 256 << 20
	// maxFileErrors is how many per-file problems FromFiles reports before it only counts.
	maxFileErrors = 20
)

// headerNames are the first-column names that mark an optional header line of a labels CSV.
var headerNames = map[string]bool{"file": true, "filename": true, "path": true, "image": true, "name": true}

// FromFiles builds a set from a directory of .npy files or PNG/JPEG images plus a CSV of labels
// (file,label with label a class name or index of spec.Classes; header optional; files are
// relative to dir and must stay inside it), applying pre to images (.npy files are taken as
// they are, with dataset.DecodeInput's rules: shape, uint8 divided by 255, finite values). The
// manifest's Model and Name are left for the caller to fill. Every problem is reported with
// the CSV's line number, up to 20 of them in one error. A file whose values repeat an earlier
// file's with the same label is dropped (Set.Duplicates); with another label it is an error.
func FromFiles(dir, labelsCSV string, spec dataset.Spec, pre Preprocess) (*Set, error) {
	return FromFilesProgress(dir, labelsCSV, spec, pre, nil)
}

// FromFilesProgress is FromFiles calling progress (when not nil) after each file with the
// number of files read and the number listed, so a command can report on a long build.
func FromFilesProgress(dir, labelsCSV string, spec dataset.Spec, pre Preprocess, progress func(done, total int)) (*Set, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("evalset: from files: %w", err)
	}
	if err := pre.Validate(); err != nil {
		return nil, fmt.Errorf("evalset: from files: %w", err)
	}
	rows, err := readLabelsCSV(labelsCSV, spec.Classes)
	if err != nil {
		return nil, fmt.Errorf("evalset: from files: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("evalset: from files: %s lists no files", labelsCSV)
	}
	s := &Set{Manifest: Manifest{
		Task:    TaskClassification,
		Classes: append([]string(nil), spec.Classes...),
		Input:   Input{Shape: append([]int64(nil), spec.Shape...), Datatype: spec.Datatype},
		Source:  "files:" + dir,
	}}
	if p := pre.String(); p != "" {
		s.Manifest.Source += " (" + p + ")"
	}
	w := spec.Width()
	if int64(len(rows))*int64(w) > MaxValues {
		return nil, fmt.Errorf("evalset: from files: %d files of %d values are more than the %d values a set may hold", len(rows), w, MaxValues)
	}
	var problems []string
	nproblems := 0
	problem := func(r labelRow, format string, args ...any) {
		if nproblems++; nproblems <= maxFileErrors {
			problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", labelsCSV, r.line, r.file, fmt.Sprintf(format, args...)))
		}
	}
	// Grown once rather than by doubling: the values are most of the memory a build takes.
	s.Inputs = make([]float32, 0, min(len(rows)*w, 1<<26))
	seen := map[string]labelRow{}
	for i, r := range rows {
		if progress != nil {
			progress(i, len(rows))
		}
		values, err := readInput(dir, r.file, spec, pre)
		if err != nil {
			problem(r, "%v", err)
			continue
		}
		key := dataset.ContentKey(values)
		if prev, dup := seen[key]; dup {
			if prev.label != r.label {
				problem(r, "same content as %s (line %d) but labelled %q, not %q", prev.file, prev.line, spec.Classes[r.label], spec.Classes[prev.label])
			} else {
				s.Duplicates++
			}
			continue
		}
		seen[key] = r
		s.Keys = append(s.Keys, key)
		s.Labels = append(s.Labels, r.label)
		s.Inputs = append(s.Inputs, values...)
	}
	if progress != nil {
		progress(len(rows), len(rows))
	}
	if nproblems > 0 {
		if nproblems > maxFileErrors {
			problems = append(problems, fmt.Sprintf("... and %d more", nproblems-maxFileErrors))
		}
		return nil, fmt.Errorf("evalset: from files: %d of %d files cannot be used:\n  %s", nproblems, len(rows), strings.Join(problems, "\n  "))
	}
	return s, nil
}

// labelRow is one line of a labels CSV.
type labelRow struct {
	line  int
	file  string
	label int
}

// readLabelsCSV reads file,label lines; a first line whose first field is a header name
// ("file", "filename", "path", "image", "name") and whose label is not a class is a header.
func readLabelsCSV(name string, classes []string) ([]labelRow, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > MaxCSVBytes {
		return nil, fmt.Errorf("labels: %s is %d bytes, more than %d", name, st.Size(), MaxCSVBytes)
	}
	cr := csv.NewReader(io.LimitReader(f, MaxCSVBytes))
	cr.FieldsPerRecord = -1 // checked below, with a message naming the line
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var rows []labelRow
	var errs []string
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("labels: %s: %w", name, err) // csv's error names the line
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != 2 {
			errs = append(errs, fmt.Sprintf("%s:%d: want 2 fields (file,label), got %d", name, line, len(rec)))
			continue
		}
		file, lab := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		label, lerr := parseCSVLabel(lab, classes)
		if first && lerr != nil && headerNames[strings.ToLower(file)] {
			continue
		}
		switch {
		case file == "":
			errs = append(errs, fmt.Sprintf("%s:%d: empty file name", name, line))
		case !filepath.IsLocal(filepath.FromSlash(file)):
			errs = append(errs, fmt.Sprintf("%s:%d: file %.80q must be a relative path inside the directory", name, line, file))
		case lerr != nil:
			errs = append(errs, fmt.Sprintf("%s:%d: %v", name, line, lerr))
		default:
			rows = append(rows, labelRow{line: line, file: file, label: label})
		}
		if len(errs) > maxFileErrors {
			break
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("labels:\n  %s", strings.Join(errs, "\n  "))
	}
	return rows, nil
}

// parseCSVLabel reads a class name, or a class index when no class has that name.
func parseCSVLabel(s string, classes []string) (int, error) {
	if i := dataset.ClassIndex(classes, s); i >= 0 {
		return i, nil
	}
	if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(classes) {
		return i, nil
	}
	return 0, fmt.Errorf("label %.80q names no class of the model (want a class name or an index below %d; classes: %s)", s, len(classes), quoteList(classes))
}

// readInput reads one file of the directory into one sample's values.
func readInput(dir, file string, spec dataset.Spec, pre Preprocess) ([]float32, error) {
	data, err := readBounded(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		return nil, err
	}
	switch ext := strings.ToLower(filepath.Ext(file)); ext {
	case ".npy":
		return dataset.DecodeInput(data, spec)
	case ".png", ".jpg", ".jpeg":
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("not a readable image: %w", err)
		}
		if int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels {
			return nil, fmt.Errorf("%s image of %dx%d is more than %d pixels", format, cfg.Width, cfg.Height, MaxImagePixels)
		}
		img, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		return pre.Apply(img, spec.Shape)
	default:
		return nil, fmt.Errorf("unsupported file type %q (want .npy, .png, .jpg or .jpeg)", ext)
	}
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d an input file may have", st.Size(), MaxFileBytes)
	}
	return io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
}

// Freeze builds a set from labelled captured samples (dataset.ReadLabelled of shards and label
// files, read with spec); pass the held-out side of l.Split() to freeze only samples no
// trainer has seen. Keys are the samples' content keys.
func Freeze(l *dataset.Labelled, spec dataset.Spec, model, name string) (*Set, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("evalset: freeze: %w", err)
	}
	if err := ValidateNames(model, name); err != nil {
		return nil, err
	}
	w := spec.Width()
	switch {
	case l == nil || len(l.Keys) == 0:
		return nil, errors.New("evalset: freeze: no labelled samples to freeze")
	case len(l.Labels) != len(l.Keys) || len(l.Inputs) != len(l.Keys)*w:
		return nil, fmt.Errorf("evalset: freeze: %d keys, %d labels and %d values do not make samples of %d values", len(l.Keys), len(l.Labels), len(l.Inputs), w)
	}
	for i, lab := range l.Labels {
		if lab < 0 || lab >= len(spec.Classes) {
			return nil, fmt.Errorf("evalset: freeze: sample %d: label %d is not a class index below %d", i, lab, len(spec.Classes))
		}
	}
	s := &Set{
		Manifest: Manifest{
			Model: model, Name: name, Task: TaskClassification,
			Classes: append([]string(nil), spec.Classes...),
			Input:   Input{Shape: append([]int64(nil), spec.Shape...), Datatype: spec.Datatype},
			Source:  fmt.Sprintf("frozen:%d samples of %s", len(l.Keys), model),
		},
		Keys:   append([]string(nil), l.Keys...),
		Labels: append([]int(nil), l.Labels...),
		Inputs: append([]float32(nil), l.Inputs...),
	}
	return s, nil
}
