package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/edgeloop/edgeloop/demo"
)

// runDemo is `edgeloop demo` (what `make demo` runs): the whole loop in one process.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := demo.DefaultConfig()
	plain := false
	fs.StringVar(&cfg.Model, "model", cfg.Model, "the model the loop trains and serves: mlp (edgeloop train's MLP, in Go) or cnn (a CNN by the PyTorch job; needs python3-torch)")
	fs.StringVar(&cfg.PyTorchJob, "pytorch-job", "", "--model cnn: the PyTorch job's train.py (default: trainers/pytorch/train.py found beside the binary, in the working directory or in the source tree it was built from)")
	fs.StringVar(&cfg.Python, "python", cfg.Python, "--model cnn: the Python interpreter with PyTorch, ONNX and NumPy")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory of the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)")
	fs.StringVar(&cfg.WorkDir, "work-dir", cfg.WorkDir, "keeps the base model and key between runs; each run's files go to run/ under it")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated edge nodes")
	fs.IntVar(&cfg.Drifted, "drifted", cfg.Drifted, "how many of the nodes get the drift")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "images per second each node classifies")
	fs.DurationVar(&cfg.DriftAfter, "drift-after", cfg.DriftAfter, "when the drift starts, after every node serves the base model")
	drift := fs.String("drift", "", "what happens to the drifted nodes' images: photometric, noise, rotation, shift or occlusion, at the demo's strength for it, or with one (rotation:30, noise:0.2, shift:4, occlusion:10, photometric:0.5,0.35); default: the model's brightness and contrast shift")
	fs.DurationVar(&cfg.Deadline, "deadline", cfg.Deadline, "give up (exit 1) when the drifted nodes have not recovered by then")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "how long the recovered model is measured before the end")
	fs.Float64Var(&cfg.RecoveryShare, "recovery-share", cfg.RecoveryShare, "the share of the accuracy the drift took that the drifted nodes must regain, on images no retrain trained on, for the loop to count as closed (serving a new version is not enough)")
	fs.IntVar(&cfg.BaseEpochs, "base-epochs", cfg.BaseEpochs, "training epochs of the base model (trained once, kept in the work directory); 0: the model's default, mlp 5, cnn 1")
	fs.IntVar(&cfg.RetrainEpochs, "retrain-epochs", cfg.RetrainEpochs, "training epochs of a retrain job; 0: the model's default, mlp 5, cnn 1")
	fs.StringVar(&cfg.Report, "report", "", "where to write the HTML report (default: <work-dir>/run/report.html)")
	fs.BoolVar(&plain, "plain", false, "print progress lines instead of the live view (the default without a terminal)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: edgeloop demo [flags]\n\n"+
			"Runs the whole loop on loopback: an embedded S3 server, a collector, a retrain controller and\n"+
			"simulated edge nodes replaying Fashion-MNIST; drift hits some nodes, and the demo ends when they\n"+
			"have regained --recovery-share of the accuracy they lost (exit 0) or at the deadline (exit 1). Docs: docs/demo.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "edgeloop demo: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	var err error
	if cfg.Drift, err = demo.ParseDemoDrift(*drift, cfg.Model); err != nil {
		fmt.Fprintf(stderr, "edgeloop demo: %v\n", err)
		return exitUsage
	}
	cfg.Live = !plain && isTerminal(stdout)
	if cfg.Model == demo.ModelCNN && cfg.PyTorchJob == "" {
		cfg.PyTorchJob = findPyTorchJob()
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgeloop demo: %v\n", err)
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	if _, err := demo.Run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "edgeloop demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// pytorchJobPath is train.py's path within the source tree and a release's share directory.
const pytorchJobPath = "trainers/pytorch/train.py"

// findPyTorchJob returns the first train.py of: beside the binary (bin/edgeloop in a checkout,
// whose parent holds trainers/), a release's share/edgeloop/pytorch/, /opt/edgeloop/pytorch/
// (the job's image), the working directory's trainers/, and the source tree this file was
// compiled in (`go build` without -trimpath records it). "" when none exists: Validate then
// asks for --pytorch-job.
func findPyTorchJob() string {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dir := filepath.Dir(exe)
			candidates = append(candidates, filepath.Join(dir, "..", pytorchJobPath), filepath.Join(dir, pytorchJobPath),
				filepath.Join(dir, "..", "share", "edgeloop", "pytorch", "train.py"))
		}
	}
	candidates = append(candidates, "/opt/edgeloop/pytorch/train.py", pytorchJobPath)
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", pytorchJobPath))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			if abs, err := filepath.Abs(c); err == nil {
				return abs // the job runs in its job directory: a relative path would not resolve there
			}
		}
	}
	return ""
}

// isTerminal reports whether w is a character device (a terminal), where a live view can be
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
