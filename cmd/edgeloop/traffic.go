package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/demo"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/token"
)

// trafficFlags are the flags of `edgeloop traffic`.
type trafficFlags struct {
	data       string
	exporters  modelStrings // name=url
	drifted    modelStrings
	driftAfter time.Duration
	contrast   float64
	brightness float64
	rate       int
	duration   time.Duration
	every      time.Duration
	model      string
	input      string
	shape      string
	classes    int
	// the simulated annotators
	labelURL, labelTokenFile, labelBucket string
	labelDelay                            time.Duration
	// --eval-out: write the never-sent half and exit
	evalOut string
}

func (f *trafficFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", fmnist.DefaultDir, "directory of the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)")
	fs.Var(&f.exporters, "exporter", "NAME=URL of an exporter's inference port, e.g. edge-1=http://127.0.0.1:8001 (repeatable; NAME is the node's name)")
	fs.Var(&f.drifted, "drift", "NAME of an exporter whose stream drifts after --drift-after (repeatable or comma-separated)")
	fs.DurationVar(&f.driftAfter, "drift-after", time.Minute, "when the drift starts; 0 drifts from the first request")
	fs.Float64Var(&f.contrast, "drift-contrast", float64(demo.DefaultDrift.Contrast), "the drift: each pixel x becomes clamp(contrast·x + brightness, 0, 1)")
	fs.Float64Var(&f.brightness, "drift-brightness", float64(demo.DefaultDrift.Brightness), "the drift's brightness shift (see --drift-contrast)")
	fs.IntVar(&f.rate, "rate", 50, "images per second sent to each exporter (in batches of 10)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	fs.DurationVar(&f.every, "report-every", 10*time.Second, "how often to print each node's version and accuracy")
	fs.StringVar(&f.model, "model", "fashion", "the model's name in the inference URL and the labels")
	fs.StringVar(&f.input, "input", "input", "the model's input tensor name")
	fs.StringVar(&f.shape, "shape", "784", "the model's per-sample input shape (784 for edgeloop train's MLP, 1,28,28 for a CNN)")
	fs.IntVar(&f.classes, "classes", fmnist.NumClasses, "the model's number of classes")
	fs.StringVar(&f.labelURL, "label", "", "collector base URL: play the annotators, posting the true class of each captured sample this traffic sent to its /v1/labels")
	fs.StringVar(&f.labelTokenFile, "label-token-file", "", "with --label: a collector operator token (a *.token file)")
	fs.StringVar(&f.labelBucket, "label-bucket", "", "with --label: the collector's bucket URL, where the annotators read the captured samples (S3 credentials from the environment)")
	fs.DurationVar(&f.labelDelay, "label-delay", 2*time.Second, "with --label: how long after a shard appears its samples are labelled (a labelling queue's delay)")
	fs.StringVar(&f.evalOut, "eval-out", "", "write the evaluation half of the split (200 images of each class, never sent) as DIR/images/*.npy and DIR/labels.csv for 'edgeloop evalset create', and exit")
}

// runTraffic is `edgeloop traffic`: the demo's traffic and annotators, pointed at exporters a
// person started (docs/deploy-by-hand.md).
func runTraffic(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop traffic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f trafficFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgeloop traffic --exporter NAME=URL... [flags]\n"+
			"       edgeloop traffic --eval-out DIR\n\n"+
			"Replays Fashion-MNIST test images to exporters' inference ports, drifting on some of them, and\n"+
			"prints what each node answers. With --label it also plays the annotators. docs/deploy-by-hand.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "edgeloop traffic: %s\n", fmt.Sprintf(format, a...))
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	test, err := fmnist.Load(f.data, fmnist.Test)
	if err != nil {
		fmt.Fprintf(stderr, "edgeloop traffic: %v\n", err)
		return exitFailure
	}
	// The demo's split: the evaluation half is never sent, so a gate scoring on it never sees
	// an image a node captured and a job trained on.
	split, err := demo.SplitTest(test, demo.EvalPerClass)
	if err != nil {
		fmt.Fprintf(stderr, "edgeloop traffic: %v\n", err)
		return exitFailure
	}
	if f.evalOut != "" {
		if len(f.exporters) > 0 {
			return usageErr("--eval-out writes files and exits: it takes no --exporter")
		}
		if err := writeEvalImages(f.evalOut, test, split.Eval); err != nil {
			fmt.Fprintf(stderr, "edgeloop traffic: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "wrote %d evaluation images (never sent by edgeloop traffic) to %s and their labels to %s\n",
			len(split.Eval), filepath.Join(f.evalOut, "images"), filepath.Join(f.evalOut, "labels.csv"))
		return exitOK
	}
	m, nodes, drifted, err := f.check()
	if err != nil {
		return usageErr("%v", err)
	}
	ctx, stop := signalContext()
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	truth := demo.NewTruth()
	// The probes are never labelled: accuracy on them is on images no job trained on.
	truth.Withhold(split.Probes)
	const batch = 10
	interval := time.Second * batch / time.Duration(f.rate)
	gens := make([]*demo.Generator, len(nodes))
	done := make(chan struct{}, len(nodes)+1)
	for i, n := range nodes {
		drift := demo.ImageDrift{Kind: demo.KindPhotometric, Photometric: demo.Drift{Contrast: float32(f.contrast), Brightness: float32(f.brightness)}}
		gens[i] = demo.NewGenerator(n.name, n.url, m, test, split.Traffic, truth, drift, batch, interval, i*3331)
		go func() { gens[i].Run(ctx); done <- struct{}{} }()
	}
	running := len(nodes)
	var labeller *demo.Labeler
	if f.labelURL != "" {
		l, closeBucket, err := f.labeller(ctx, m, truth, test, logger)
		if err != nil {
			fmt.Fprintf(stderr, "edgeloop traffic: %v\n", err)
			return exitFailure
		}
		defer closeBucket()
		labeller = l
		go func() { l.Run(ctx, time.Second); done <- struct{}{} }()
		running++
	}
	fmt.Fprintf(stdout, "traffic: %d images/s to each of %s; drift (contrast %g, brightness %+g) on %s after %s\n",
		f.rate, names(nodes), f.contrast, f.brightness, orDash(strings.Join(drifted, ", ")), f.driftAfter)
	// What each node's stream is and which versions answered it, for the lines and the summary.
	drifting := make([]bool, len(nodes))
	seen := make([][]string, len(nodes))
	driftTimer := time.After(f.driftAfter)
	tick := time.NewTicker(f.every)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-driftTimer:
			for i, n := range nodes {
				if slices.Contains(drifted, n.name) {
					gens[i].SetDrift(true)
					drifting[i] = true
				}
			}
			if len(drifted) > 0 {
				fmt.Fprintf(stdout, "traffic: drift on %s\n", strings.Join(drifted, ", "))
			}
		case <-tick.C:
			for i, n := range nodes {
				w, version := gens[i].Take()
				if version != "" && !slices.Contains(seen[i], version) {
					seen[i] = append(seen[i], version)
				}
				state := "clean"
				if drifting[i] {
					state = "drifted"
				}
				fmt.Fprintf(stdout, "%s: version %s, %s, %d images, accuracy %.3f, confidence %.3f\n",
					n.name, orDash(version), state, w.N, w.Accuracy(), w.MeanConfidence())
			}
			if labeller != nil {
				fmt.Fprintf(stdout, "labels posted: %d\n", labeller.Labelled())
			}
		}
	}
	for range running {
		<-done
	}
	// The summary: each node's totals by version and stream, on every image sent.
	for i, n := range nodes {
		for _, v := range sortVersions(seen[i]) {
			for _, d := range []bool{false, true} {
				if t := gens[i].Total(v, d); t.N > 0 {
					state := "clean"
					if d {
						state = "drifted"
					}
					fmt.Fprintf(stdout, "total %s: version %s, %s, %d images, accuracy %.3f\n", n.name, v, state, t.N, t.Accuracy())
				}
			}
		}
	}
	return exitOK
}

type trafficNode struct{ name, url string }

func names(nodes []trafficNode) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.name)
	}
	return strings.Join(s, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sortVersions sorts version names in numeric order.
func sortVersions(vs []string) []string {
	slices.SortFunc(vs, func(a, b string) int {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		if errA == nil && errB == nil {
			return x - y
		}
		return strings.Compare(a, b)
	})
	return vs
}

// check validates the flags of a traffic run and returns the model's description, the nodes
// and the drifted nodes' names.
func (f *trafficFlags) check() (demo.ModelIO, []trafficNode, []string, error) {
	m := demo.ModelIO{Name: f.model, Input: f.input, Classes: f.classes}
	if len(f.exporters) == 0 {
		return m, nil, nil, errors.New("at least one --exporter NAME=URL is required")
	}
	for _, d := range strings.Split(f.shape, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
		if err != nil || n <= 0 {
			return m, nil, nil, fmt.Errorf("--shape %q: want positive integers separated by commas", f.shape)
		}
		m.Shape = append(m.Shape, n)
	}
	if m.Width() != fmnist.Pixels {
		return m, nil, nil, fmt.Errorf("--shape %q holds %d values; a Fashion-MNIST image has %d", f.shape, m.Width(), fmnist.Pixels)
	}
	if f.classes < 2 {
		return m, nil, nil, fmt.Errorf("--classes must be at least 2, got %d", f.classes)
	}
	if f.rate < 1 || f.rate > 10000 {
		return m, nil, nil, fmt.Errorf("--rate must be 1 to 10000 images per second, got %d", f.rate)
	}
	if f.contrast < 0 || f.contrast > 10 || f.brightness < -1 || f.brightness > 1 {
		return m, nil, nil, fmt.Errorf("--drift-contrast must be 0 to 10 and --drift-brightness -1 to 1, got %g and %g", f.contrast, f.brightness)
	}
	if f.every <= 0 || f.driftAfter < 0 || f.duration < 0 {
		return m, nil, nil, errors.New("--report-every must be positive, --drift-after and --duration not negative")
	}
	var nodes []trafficNode
	for _, e := range f.exporters {
		name, u, ok := strings.Cut(e, "=")
		if !ok || name == "" || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
			return m, nil, nil, fmt.Errorf("--exporter %q: want NAME=http://host:port", e)
		}
		if slices.ContainsFunc(nodes, func(n trafficNode) bool { return n.name == name }) {
			return m, nil, nil, fmt.Errorf("--exporter: node %s given twice", name)
		}
		nodes = append(nodes, trafficNode{name: name, url: strings.TrimSuffix(u, "/")})
	}
	var drifted []string
	for _, d := range f.drifted {
		for _, name := range strings.Split(d, ",") {
			if !slices.ContainsFunc(nodes, func(n trafficNode) bool { return n.name == name }) {
				return m, nil, nil, fmt.Errorf("--drift %q is not an --exporter's name", name)
			}
			drifted = append(drifted, name)
		}
	}
	if f.labelURL != "" && (f.labelTokenFile == "" || f.labelBucket == "") {
		return m, nil, nil, errors.New("--label needs --label-token-file (an operator token) and --label-bucket (the collector's bucket URL)")
	}
	if f.labelURL == "" && (f.labelTokenFile != "" || f.labelBucket != "") {
		return m, nil, nil, errors.New("--label-token-file and --label-bucket go with --label")
	}
	return m, nodes, drifted, nil
}

// labeller returns the simulated annotators and a function closing their bucket.
func (f *trafficFlags) labeller(ctx context.Context, m demo.ModelIO, truth *demo.Truth, test *fmnist.Dataset, logger *slog.Logger) (*demo.Labeler, func(), error) {
	tok, err := token.ReadSecret(f.labelTokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--label-token-file: %w", err)
	}
	b, err := objstore.Open(ctx, f.labelBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("--label-bucket: %w", err)
	}
	l := demo.NewLabeler(strings.TrimSuffix(f.labelURL, "/"), tok, b, m, truth, test, f.labelDelay, logger)
	return l, func() { _ = b.Close() }, nil
}

// writeEvalImages writes the test images numbered in idx as dir/images/NNNNNN.npy ([784]
// float32, 0 to 1) and dir/labels.csv (file,label with the class index), the input of
// `edgeloop evalset create --from-dir`. The CSV lies outside images/, where it would be taken
// for a sample.
func writeEvalImages(dir string, test *fmnist.Dataset, idx []int) error {
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return fmt.Errorf("eval images: %w", err)
	}
	var csv strings.Builder
	csv.WriteString("file,label\n")
	for _, i := range idx {
		name := fmt.Sprintf("%06d.npy", i)
		var b bytes.Buffer
		if err := npy.WriteFloat32(&b, []int{fmnist.Pixels}, test.Image(i)); err != nil {
			return fmt.Errorf("eval images: %w", err)
		}
		if err := os.WriteFile(filepath.Join(images, name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("eval images: %w", err)
		}
		fmt.Fprintf(&csv, "%s,%d\n", name, test.Labels[i])
	}
	if err := os.WriteFile(filepath.Join(dir, "labels.csv"), []byte(csv.String()), 0o644); err != nil {
		return fmt.Errorf("eval images: %w", err)
	}
	return nil
}
