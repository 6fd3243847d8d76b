package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
)

// evalsetCommands are the subcommands of `edgeloop evalset`; docs/evalsets.md shows them at
// work.
func evalsetCommands() []command {
	return []command{
		{"create", "build an evaluation set from files (images, .npy) or frozen captured samples and store it", runEvalsetCreate},
		{"ls", "list the evaluation sets of a bucket", runEvalsetLs},
		{"show", "print one evaluation set's manifest and per-class counts", runEvalsetShow},
	}
}

func evalsetUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeloop evalset <command> [flags]\n\ncommands:")
	for _, c := range evalsetCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nBuckets are URLs: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=true")
	fmt.Fprintln(w, "(credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). See docs/evalsets.md.")
}

// runEvalset is `edgeloop evalset`: labelled evaluation sets in the object store.
func runEvalset(args []string, stdout, stderr io.Writer) int {
	return dispatch("edgeloop evalset", evalsetCommands(), evalsetUsage, args, stdout, stderr)
}

func newEvalsetFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edgeloop evalset "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgeloop evalset %s [flags]\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// evalsetFail reports a failure while running (exit 1).
func evalsetFail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "edgeloop evalset %s: %v\n", cmd, err)
	return exitFailure
}

// evalsetUsageError reports bad usage (exit 2).
func evalsetUsageError(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// createFlags are the flags of `edgeloop evalset create`.
type createFlags struct {
	bucket, model, name, description string
	// what the model takes
	shape, datatype, classes, classesFromModel, modelVersion string
	// --from-dir
	fromDir, labels                         string
	resize, color, layout, scale, mean, std string
	// --freeze
	freeze      bool
	shards      modelStrings
	labelFiles  modelStrings
	heldOutOnly bool
}

func (f *createFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bucket, "bucket", "", "bucket URL to store the set in: file:///path or s3://bucket/prefix?endpoint=host:port")
	fs.StringVar(&f.model, "model", "", "model the set is for (evalsets/<model>/<name>/)")
	fs.StringVar(&f.name, "name", "", "the set's name; sets are immutable, so a new set needs a new name")
	fs.StringVar(&f.description, "description", "", "free text stored in the manifest")
	fs.StringVar(&f.shape, "shape", "", "per-sample input shape without the batch dimension, e.g. 1,28,28 (default: from --classes-from-model)")
	fs.StringVar(&f.datatype, "datatype", "", "input datatype (default: FP32, or the model's)")
	fs.StringVar(&f.classes, "classes", "", "comma-separated class names in the model's output order")
	fs.StringVar(&f.classesFromModel, "classes-from-model", "", "model repository URL: take classes, shape and datatype from --model's manifest there")
	fs.StringVar(&f.modelVersion, "model-version", modelrepo.SelectorLatest, "version or alias of --model read by --classes-from-model")
	fs.StringVar(&f.fromDir, "from-dir", "", "directory of .npy files or PNG/JPEG images (with --labels)")
	fs.StringVar(&f.labels, "labels", "", "CSV of file,label lines (label: class name or index; header optional)")
	fs.StringVar(&f.resize, "resize", "", "H,W images are resized to (bilinear); must be the model's size")
	fs.StringVar(&f.color, "color", "", "colour mode of images: grey, rgb or bgr (default: by the channel count)")
	fs.StringVar(&f.layout, "layout", "", "channel layout of the input shape: NCHW (default) or NHWC")
	fs.StringVar(&f.scale, "scale", "", "factor applied to 0-255 pixel levels (default: divide by 255)")
	fs.StringVar(&f.mean, "mean", "", "per-channel mean subtracted after scaling, comma-separated")
	fs.StringVar(&f.std, "std", "", "per-channel standard deviation divided by after the mean, comma-separated")
	fs.BoolVar(&f.freeze, "freeze", false, "freeze labelled captured samples (--shards, --label-files) into a set")
	fs.Var(&f.shards, "shards", "shard file, directory, file:// URL or bucket URL (s3://..., every .tar/.tar.gz below it); repeatable")
	fs.Var(&f.labelFiles, "label-files", "JSONL label file, file:// URL or bucket URL (every .jsonl below it); repeatable")
	fs.BoolVar(&f.heldOutOnly, "held-out-only", false, "with --freeze: keep only the held-out side of the split (samples no trainer sees)")
}

func runEvalsetCreate(args []string, stdout, stderr io.Writer) int {
	fs := newEvalsetFlagSet("create", stderr)
	var f createFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	switch {
	case fs.NArg() != 0:
		return evalsetUsageError(stderr, fs, "no arguments are taken, got %q", fs.Args())
	case f.bucket == "" || f.model == "" || f.name == "":
		return evalsetUsageError(stderr, fs, "--bucket, --model and --name are required")
	case f.freeze == (f.fromDir != ""):
		return evalsetUsageError(stderr, fs, "give either --from-dir DIR --labels CSV or --freeze --shards ...")
	case f.fromDir != "" && f.labels == "":
		return evalsetUsageError(stderr, fs, "--from-dir needs --labels CSV")
	case f.freeze && len(f.shards) == 0:
		return evalsetUsageError(stderr, fs, "--freeze needs --shards")
	case !f.freeze && (len(f.shards) > 0 || len(f.labelFiles) > 0 || f.heldOutOnly):
		return evalsetUsageError(stderr, fs, "--shards, --label-files and --held-out-only go with --freeze")
	case f.freeze && (f.resize != "" || f.color != "" || f.layout != "" || f.scale != "" || f.mean != "" || f.std != ""):
		return evalsetUsageError(stderr, fs, "image pre-processing flags go with --from-dir")
	case f.classes != "" && f.classesFromModel != "":
		return evalsetUsageError(stderr, fs, "give --classes or --classes-from-model, not both")
	case f.classes == "" && f.classesFromModel == "":
		return evalsetUsageError(stderr, fs, "the model's classes are required: --classes a,b,c or --classes-from-model REPO_URL")
	case f.classes != "" && f.shape == "":
		return evalsetUsageError(stderr, fs, "--shape is required with --classes")
	}
	if err := evalset.ValidateNames(f.model, f.name); err != nil {
		return evalsetUsageError(stderr, fs, "%v", err)
	}
	pre, err := f.preprocess()
	if err != nil {
		return evalsetUsageError(stderr, fs, "%v", err)
	}
	ctx, stop := signalContext()
	defer stop()
	spec, err := f.spec(ctx)
	if err != nil {
		return evalsetFail(stderr, "create", err)
	}
	bucket, err := objstore.Open(ctx, f.bucket)
	if err != nil {
		return evalsetUsageError(stderr, fs, "--bucket: %v", err)
	}
	defer bucket.Close()
	// Refused early: reading thousands of images only to find the name taken wastes minutes.
	if _, err := evalset.Stat(ctx, bucket, f.model, f.name); err == nil {
		return evalsetFail(stderr, "create", fmt.Errorf("set %s/%s: %w (sets are immutable: choose another name)", f.model, f.name, evalset.ErrExists))
	} else if !errors.Is(err, evalset.ErrNotFound) {
		return evalsetFail(stderr, "create", err)
	}
	start := time.Now()
	var set *evalset.Set
	if f.freeze {
		set, err = f.frozen(ctx, spec, stderr)
	} else {
		fmt.Fprintf(stderr, "reading %s (labels %s) for input %v, %d classes\n", f.fromDir, f.labels, spec.Shape, len(spec.Classes))
		set, err = evalset.FromFilesProgress(f.fromDir, f.labels, spec, pre, progressPrinter(stderr, "files"))
	}
	if err != nil {
		return evalsetFail(stderr, "create", err)
	}
	set.Manifest.Model, set.Manifest.Name, set.Manifest.Description = f.model, f.name, f.description
	if set.Duplicates > 0 {
		fmt.Fprintf(stderr, "%d files repeat an earlier file's content and label and were left out\n", set.Duplicates)
	}
	fmt.Fprintf(stderr, "writing %d samples to %s\n", set.Len(), evalset.Prefix(f.model, f.name))
	m, err := evalset.Write(ctx, bucket, set)
	if err != nil {
		return evalsetFail(stderr, "create", err)
	}
	fmt.Fprintf(stdout, "created evalset %s/%s: %d samples, %d classes, input %v %s, %d shard(s), digest %s (%.1fs)\n",
		m.Model, m.Name, m.Count, len(m.Classes), m.Input.Shape, m.Input.Datatype, len(m.Shards), m.Digest, time.Since(start).Seconds())
	return exitOK
}

// progressPrinter reports progress about every 2 seconds and at the end, on stderr.
func progressPrinter(w io.Writer, what string) func(done, total int) {
	last := time.Now()
	return func(done, total int) {
		if done == total || time.Since(last) >= 2*time.Second {
			last = time.Now()
			fmt.Fprintf(w, "  %d/%d %s\n", done, total, what)
		}
	}
}

// spec is what the model takes: from flags, or from its manifest in a model repository.
func (f *createFlags) spec(ctx context.Context) (dataset.Spec, error) {
	spec := dataset.Spec{Datatype: dataset.DatatypeFP32}
	if f.classesFromModel != "" {
		b, err := objstore.Open(ctx, f.classesFromModel)
		if err != nil {
			return spec, fmt.Errorf("--classes-from-model: %w", err)
		}
		defer b.Close()
		repo := modelrepo.New(b)
		v, err := repo.Resolve(ctx, f.model, f.modelVersion)
		if err != nil {
			return spec, fmt.Errorf("--classes-from-model: model %s %s: %w", f.model, f.modelVersion, err)
		}
		// The signature is not checked: the manifest only tells the set's shape and classes,
		// and Check compares them again with every version the gate scores.
		m, err := repo.UnverifiedManifest(ctx, f.model, v)
		if err != nil {
			return spec, fmt.Errorf("--classes-from-model: %w", err)
		}
		if len(m.Classes) == 0 {
			return spec, fmt.Errorf("--classes-from-model: %s version %d names no classes; give --classes", f.model, v)
		}
		spec.Classes, spec.Datatype = m.Classes, m.Input.Datatype
		spec.Shape = m.Input.Shape
		if len(spec.Shape) > 1 && spec.Shape[0] <= 0 {
			spec.Shape = spec.Shape[1:] // the batch dimension
		}
	} else {
		for c := range strings.SplitSeq(f.classes, ",") {
			spec.Classes = append(spec.Classes, strings.TrimSpace(c))
		}
	}
	if f.shape != "" {
		shape, err := parseInts(f.shape)
		if err != nil {
			return spec, fmt.Errorf("--shape: %w", err)
		}
		spec.Shape = make([]int64, len(shape))
		for i, d := range shape {
			spec.Shape[i] = int64(d)
		}
	}
	if f.datatype != "" {
		spec.Datatype = f.datatype
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	return spec, nil
}

func (f *createFlags) preprocess() (evalset.Preprocess, error) {
	p := evalset.Preprocess{Layout: f.layout, ColorMode: f.color}
	var err error
	if f.resize != "" {
		if p.Resize, err = parseInts(f.resize); err != nil {
			return p, fmt.Errorf("--resize: %w", err)
		}
	}
	if f.scale != "" {
		if p.Scale, err = strconv.ParseFloat(f.scale, 64); err != nil || p.Scale <= 0 {
			return p, fmt.Errorf("--scale: want a positive number, got %q", f.scale)
		}
	}
	if p.Mean, err = parseFloats(f.mean); err != nil {
		return p, fmt.Errorf("--mean: %w", err)
	}
	if p.Std, err = parseFloats(f.std); err != nil {
		return p, fmt.Errorf("--std: %w", err)
	}
	return p, p.Validate()
}

// frozen reads the captured samples and freezes them.
func (f *createFlags) frozen(ctx context.Context, spec dataset.Spec, stderr io.Writer) (*evalset.Set, error) {
	tmp, err := os.MkdirTemp("", "edgeloop-evalset-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	shards, err := localFiles(ctx, f.shards, filepath.Join(tmp, "shards"), isShardObject, stderr)
	if err != nil {
		return nil, fmt.Errorf("--shards: %w", err)
	}
	labels, err := localFiles(ctx, f.labelFiles, filepath.Join(tmp, "labels"), func(k string) bool { return strings.HasSuffix(k, ".jsonl") }, stderr)
	if err != nil {
		return nil, fmt.Errorf("--label-files: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	fmt.Fprintf(stderr, "reading labelled samples for input %v, %d classes\n", spec.Shape, len(spec.Classes))
	l, err := dataset.ReadLabelled(shards, labels, spec, logger)
	if err != nil {
		return nil, err
	}
	st := l.Stats
	fmt.Fprintf(stderr, "%d shards: %d labelled, %d unlabelled, %d duplicates, %d refused %v\n",
		st.Shards, st.Labelled, st.Unlabelled, st.Duplicates, st.RejectedTotal(), st.Rejected)
	if f.heldOutOnly {
		_, held := l.Split()
		fmt.Fprintf(stderr, "keeping the held-out side: %d of %d samples\n", held.Len(), l.Len())
		l = held
	}
	return evalset.Freeze(l, spec, f.model, f.name)
}

func isShardObject(k string) bool {
	return strings.HasSuffix(k, ".tar") || strings.HasSuffix(k, ".tar.gz") || strings.HasSuffix(k, ".tgz")
}

// maxRemoteObjects bounds how many objects one bucket URL of --shards or --label-files may
// bring down.
const maxRemoteObjects = 100_000

// localFiles turns the arguments into local paths: a path or file:// URL is used as it is;
// any other bucket URL (s3://...) names a prefix whose objects that keep are downloaded below
// dir, in lexical order.
func localFiles(ctx context.Context, args []string, dir string, keep func(string) bool, stderr io.Writer) ([]string, error) {
	var out []string
	for i, a := range args {
		u, err := url.Parse(a)
		if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // a Windows drive letter is a path
			out = append(out, a)
			continue
		}
		if u.Scheme == "file" {
			out = append(out, filepath.FromSlash(u.Path))
			continue
		}
		b, err := objstore.Open(ctx, a)
		if err != nil {
			return nil, err
		}
		keys, err := objstore.List(ctx, b, "", true)
		if err != nil {
			b.Close()
			return nil, err
		}
		sub := filepath.Join(dir, strconv.Itoa(i))
		n := 0
		for _, k := range keys {
			if !keep(k) {
				continue
			}
			if n++; n > maxRemoteObjects {
				b.Close()
				return nil, fmt.Errorf("%s: more than %d objects", u.Redacted(), maxRemoteObjects)
			}
			// Keys were validated by the store (no "..", no leading "/"); the name keeps the
			// lexical order of the keys.
			local := filepath.Join(sub, fmt.Sprintf("%06d-%s", n, path.Base(k)))
			if err := objstore.Download(ctx, b, k, local); err != nil {
				b.Close()
				return nil, err
			}
			out = append(out, local)
		}
		b.Close()
		fmt.Fprintf(stderr, "downloaded %d objects from %s\n", n, u.Redacted())
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for p := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("want comma-separated integers, got %q", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for p := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("want comma-separated numbers, got %q", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// openExisting opens a bucket URL for reading; a file:// directory that does not exist is an
// error rather than created, as listing must not create anything.
func openExisting(ctx context.Context, rawURL string) (objstore.Bucket, error) {
	target, err := objstore.ParseURL(rawURL, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if target.Dir != "" {
		if _, err := os.Stat(target.Dir); err != nil {
			return nil, fmt.Errorf("no bucket at %s: %w", rawURL, err)
		}
	}
	return target.Open(ctx)
}

func runEvalsetLs(args []string, stdout, stderr io.Writer) int {
	fs := newEvalsetFlagSet("ls", stderr)
	bucketURL := fs.String("bucket", "", "bucket URL: file:///path or s3://bucket/prefix?endpoint=host:port")
	model := fs.String("model", "", "list only this model's sets")
	asJSON := fs.Bool("json", false, "print the manifests as a JSON array")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *bucketURL == "" || fs.NArg() != 0 {
		return evalsetUsageError(stderr, fs, "--bucket is required and no arguments are taken")
	}
	ctx, stop := signalContext()
	defer stop()
	b, err := openExisting(ctx, *bucketURL)
	if err != nil {
		return evalsetFail(stderr, "ls", err)
	}
	defer b.Close()
	sets, listErr := evalset.List(ctx, b, *model)
	if *asJSON {
		if sets == nil {
			sets = []evalset.Manifest{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sets); err != nil {
			return evalsetFail(stderr, "ls", err)
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MODEL\tNAME\tCOUNT\tCLASSES\tSHAPE\tDIGEST\tCREATED")
		for _, m := range sets {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Model, m.Name, m.Count, len(m.Classes),
				shapeString(m.Input.Shape), m.Digest[:12], m.Created.UTC().Format(time.RFC3339))
		}
		tw.Flush()
	}
	if listErr != nil {
		// The good sets are listed; the broken ones are named here.
		return evalsetFail(stderr, "ls", listErr)
	}
	return exitOK
}

func shapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, "x")
}

func runEvalsetShow(args []string, stdout, stderr io.Writer) int {
	fs := newEvalsetFlagSet("show", stderr)
	bucketURL := fs.String("bucket", "", "bucket URL: file:///path or s3://bucket/prefix?endpoint=host:port")
	model := fs.String("model", "", "model name")
	name := fs.String("name", "", "set name")
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	verify := fs.Bool("verify", false, "also load every sample and check the digest")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *bucketURL == "" || *model == "" || *name == "" || fs.NArg() != 0 {
		return evalsetUsageError(stderr, fs, "--bucket, --model and --name are required and no arguments are taken")
	}
	if err := evalset.ValidateNames(*model, *name); err != nil {
		return evalsetUsageError(stderr, fs, "%v", err)
	}
	ctx, stop := signalContext()
	defer stop()
	b, err := openExisting(ctx, *bucketURL)
	if err != nil {
		return evalsetFail(stderr, "show", err)
	}
	defer b.Close()
	m, err := evalset.Stat(ctx, b, *model, *name)
	if err != nil {
		return evalsetFail(stderr, "show", err)
	}
	if *verify {
		if _, err := evalset.Load(ctx, b, *model, *name); err != nil {
			return evalsetFail(stderr, "show", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(m); err != nil {
			return evalsetFail(stderr, "show", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\nname\t%s\ncreated\t%s\ntask\t%s\ncount\t%d\ninput\t%s %s\ndigest\t%s\nshards\t%d\nsource\t%s\n",
		m.Model, m.Name, m.Created.UTC().Format(time.RFC3339), m.Task, m.Count, shapeString(m.Input.Shape), m.Input.Datatype, m.Digest, len(m.Shards), m.Source)
	if m.Description != "" {
		fmt.Fprintf(tw, "description\t%s\n", m.Description)
	}
	if *verify {
		fmt.Fprintf(tw, "verified\tevery sample read, digest matches\n")
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tCLASS\tCOUNT\tSHARE")
	for i, c := range m.Classes {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f%%\n", i, c, m.ClassCounts[i], 100*float64(m.ClassCounts[i])/float64(m.Count))
	}
	tw.Flush()
	return exitOK
}
