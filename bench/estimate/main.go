// Command estimate measures the exporter's label-free accuracy estimate against true accuracy
// on Fashion-MNIST under drifts of several kinds and strengths (photometric, noise, geometric,
// occlusion), uncalibrated (the mean top-1 probability) and calibrated with the temperature
// the gate fits on held-out labelled data, and reads the drift signals on the same windows.
// It trains `edgeloop train`'s reference MLP, evaluates and calibrates it with the gate
// (retrain/gate), and feeds the drifted windows to the exporter's telemetry core
// (exporter/observe): the code paths the product runs. docs/benchmarks.md ("Label-free
// accuracy estimate") holds the results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "estimate:", err)
		os.Exit(1)
	}
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("estimate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var families string
	fs.StringVar(&o.DataDir, "data", fmnist.DefaultDir, "Fashion-MNIST's IDX files")
	fs.StringVar(&o.Work, "work", "", "directory for the trained model (default: a temporary one)")
	fs.IntVar(&o.TrainLimit, "train-limit", 20000, "training images (the first N of the training split)")
	fs.IntVar(&o.Epochs, "epochs", 5, "training epochs")
	fs.IntVar(&o.CalImages, "cal", 5000, "test images the gate calibrates on (the first N)")
	fs.IntVar(&o.EvalImages, "eval", 5000, "test images each drift is measured on (the next N): the window")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of training and of the random drifts")
	fs.IntVar(&o.Workers, "workers", 0, "training goroutines (0: GOMAXPROCS)")
	fs.StringVar(&o.Out, "out", "", "write the result as JSON to this file")
	fs.StringVar(&families, "families", "", "comma-separated drift families to run (none, photometric, noise, geometric, occlusion); default all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if families != "" {
		o.Families = strings.Split(families, ",")
	}
	if o.Work == "" {
		dir, err := os.MkdirTemp("", "estimate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.Work = dir
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := run(ctx, o, logger)
	if err != nil {
		return err
	}
	writeTable(stdout, res)
	if o.Out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.Out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeTable prints the result as the Markdown table docs/benchmarks.md holds.
func writeTable(w io.Writer, r *Result) {
	images := "all 60000"
	if r.Options.TrainLimit > 0 {
		images = fmt.Sprint(r.Options.TrainLimit)
	}
	fmt.Fprintf(w, "temperature %.3f (ECE %.3f → %.3f), calibration-set accuracy %.3f, %s training images × %d epochs (%.0f s), windows of %d images\n\n",
		r.Temperature, r.ECEBefore, r.ECEAfter, r.CleanAccuracy, images, r.Options.Epochs, r.TrainSeconds, r.Options.EvalImages)
	fmt.Fprintln(w, "| family | drift | true accuracy | raw estimate (error) | calibrated (error) | calibrated, probabilities output | ATC (offline) | ATC-NE (offline) | confidence PSI | class-mix JS | input mean shift | input std ratio | sketch PSI (max) | embedding MMD (mean, max) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %.3f | %.3f (%+.3f) | %.3f (%+.3f) | %.3f | %.3f | %.3f | %.3f | %.3f | %+.2f | %.2f | %.2f | %.3f, %.3f |\n",
			x.Family, x.Drift, x.Accuracy, x.Raw, x.Raw-x.Accuracy, x.Calibrated, x.Calibrated-x.Accuracy, x.CalibratedProbs, x.ATC, x.ATCEntropy,
			x.ConfidencePSI, x.ClassMixJS, x.MeanShift, x.StdRatio, x.SketchPSI, x.EmbeddingMMD, x.EmbeddingMMDMax)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| family | conditions | MAE raw | MAE calibrated | MAE ATC | MAE ATC-NE |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	var families []string
	by := map[string][]Row{}
	for _, x := range r.Rows {
		if _, ok := by[x.Family]; !ok {
			families = append(families, x.Family)
		}
		by[x.Family] = append(by[x.Family], x)
	}
	for _, f := range families {
		raw, cal, a, ah := mae(by[f])
		fmt.Fprintf(w, "| %s | %d | %.3f | %.3f | %.3f | %.3f |\n", f, len(by[f]), raw, cal, a, ah)
	}
	if len(r.Rows) > 0 {
		raw, cal, a, ah := mae(r.Rows)
		fmt.Fprintf(w, "| all | %d | %.3f | %.3f | %.3f | %.3f |\n", len(r.Rows), raw, cal, a, ah)
	}
}
