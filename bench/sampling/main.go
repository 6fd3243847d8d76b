// Command sampling measures what the capture strategies buy: a simulated fleet under a drift
// sees a stream of drifted Fashion-MNIST images, the base model scores each, every strategy of
// exporter/sampler (random, threshold, margin, entropy, close_to_threshold; with and without
// its near-duplicate suppression) picks the uploads under one upload budget, the uploads are
// labelled from ground truth, and the base model is fine-tuned once on them plus a replay of
// its clean training data (trainers/go). The fine-tuned model's accuracy on held-out drifted
// test images, against the number of uploads, is the strategy's curve; 10 paired seeds give
// confidence intervals. docs/benchmarks.md ("Sampling strategies against random") holds the
// results and the method.
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
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/fmnist"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sampling:", err)
		os.Exit(1)
	}
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sampling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := defaultOptions()
	var budgets, conditions, svgDir, md, from string
	cache, _ := os.UserCacheDir()
	fs.StringVar(&o.DataDir, "data", fmnist.DefaultDir, "Fashion-MNIST's IDX files")
	fs.StringVar(&o.Work, "work", filepath.Join(cache, "edgeloop", "bench-sampling"), "directory that caches the base model (trained once per -base-train, -base-epochs)")
	fs.IntVar(&o.Seeds, "seeds", o.Seeds, "paired seeds: each draws its own stream, test images, replay and fine-tune order, the same for every strategy")
	fs.StringVar(&budgets, "budgets", "50,100,200,400,800", "upload budgets, comma-separated, ascending")
	fs.StringVar(&conditions, "conditions", strings.Join(conditionNames(), ","), "drift conditions to run, comma-separated")
	fs.IntVar(&o.Stream, "stream", o.Stream, "frames the fleet sees per condition and seed")
	fs.Float64Var(&o.Burst, "burst", o.Burst, "mean frames per item: a camera sees each item for a geometric number of consecutive frames (1 means no repeats)")
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "nodes of the fleet: each has its own sampler, so duplicates are suppressed per node")
	fs.IntVar(&o.Test, "test", o.Test, "drifted test images the retrained model is measured on (per seed)")
	fs.IntVar(&o.Clean, "clean", o.Clean, "clean test images, to show nothing regressed (per seed)")
	fs.IntVar(&o.BaseTrain, "base-train", o.BaseTrain, "clean training images of the base model (the first N of the training split; the stream draws from the rest)")
	fs.IntVar(&o.BaseEpochs, "base-epochs", o.BaseEpochs, "epochs of the base model")
	fs.IntVar(&o.Replay, "replay", o.Replay, "clean base training images replayed in each fine-tune")
	fs.IntVar(&o.Repeat, "repeat", o.Repeat, "times each upload joins the fine-tune's data")
	fs.IntVar(&o.Epochs, "epochs", o.Epochs, "fine-tune epochs")
	fs.Float64Var(&o.LR, "lr", o.LR, "fine-tune learning rate (Adam, cosine-decayed)")
	fs.IntVar(&o.Parallel, "parallel", o.Parallel, "fine-tunes run at once (each on one core)")
	fs.StringVar(&o.Out, "out", "", "write the result as JSON to this file")
	fs.StringVar(&md, "md", "", "write the Markdown tables to this file (they also go to stdout)")
	fs.StringVar(&from, "from", "", "write the tables and plots of this -out file instead of running")
	fs.StringVar(&svgDir, "svg", "", "write one SVG plot per condition into this directory (sampling-CONDITION.svg)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, b := range strings.Split(budgets, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 1 {
			return fmt.Errorf("-budgets: %q is not a positive number", b)
		}
		o.Budgets = append(o.Budgets, n)
	}
	o.Conditions = strings.Split(conditions, ",")
	if err := o.validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	write := func(res *Result) error {
		var tables strings.Builder
		writeTables(&tables, res)
		if md != "" {
			if err := os.WriteFile(md, []byte(tables.String()), 0o644); err != nil {
				return err
			}
		}
		if svgDir != "" {
			if err := writePlots(svgDir, res); err != nil {
				return err
			}
		}
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
	if from != "" {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		var res Result
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
		o.Out = ""
		writeTables(stdout, &res)
		return write(&res)
	}
	res, err := run(ctx, o, logger, write)
	if err != nil {
		return err
	}
	writeTables(stdout, res)
	return nil
}
