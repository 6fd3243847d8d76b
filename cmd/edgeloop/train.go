package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/trainers/go"
)

// hiddenFlag is a comma-separated list of layer widths, such as --hidden 256,128.
type hiddenFlag []int

func (l *hiddenFlag) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *hiddenFlag) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not a comma-separated list of integers", v)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// classesFlag is a comma-separated list of class names, such as --classes cat,dog,bird.
type classesFlag []string

func (l *classesFlag) String() string { return strings.Join(*l, ",") }

func (l *classesFlag) Set(v string) error {
	var out []string
	for _, f := range strings.Split(v, ",") {
		out = append(out, strings.TrimSpace(f))
	}
	*l = out
	return nil
}

// samplesFlag is the repeatable --samples flag.
type samplesFlag []string

func (l *samplesFlag) String() string     { return strings.Join(*l, ",") }
func (l *samplesFlag) Set(v string) error { *l = append(*l, v); return nil }

// runTrain is `edgeloop train`: the reference training job. Logic lives in trainers/go.
func runTrain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgeloop train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The job contract's environment variables give the defaults; flags win over them.
	cfg := trainer.DefaultConfig()
	if v := os.Getenv(jobenv.Model); v != "" {
		cfg.Model = v
	}
	cfg.BaseVersion = os.Getenv(jobenv.BaseVersion)
	cfg.Manifest = os.Getenv(jobenv.DatasetManifest)
	out := os.Getenv(jobenv.Output)
	hidden := hiddenFlag(cfg.Hidden)
	var samples samplesFlag
	var classes classesFlag
	logCfg := telemetry.DefaultLogConfig()

	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, `base dataset: directory of IDX image files (train-* and t10k-*; Fashion-MNIST's from Debian package dataset-fashion-mnist by default, or any such as MNIST); "" for the shards alone (--samples, --dataset-manifest)`)
	fs.Var(&classes, "classes", "class names in label order, comma-separated; required with shards alone and with IDX data other than 28x28 images labelled 0-9 (which get Fashion-MNIST's names)")
	fs.StringVar(&out, "out", out, "output directory, or object URL prefix (s3://bucket/prefix/?endpoint=...): model.onnx and metrics.json are written there (env "+jobenv.Output+"; required)")
	fs.Var(&samples, "samples", "WebDataset shard (.tar, .tar.gz) or directory of shards whose labelled samples are added to the training data (repeatable)")
	fs.StringVar(&cfg.Manifest, "dataset-manifest", cfg.Manifest, "dataset manifest (JSON: shards and label files; a path or an object URL) to add to the training data (env "+jobenv.DatasetManifest+")")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "model name, written into the model's metadata and metrics.json (env "+jobenv.Model+")")
	fs.StringVar(&cfg.BaseVersion, "base-version", cfg.BaseVersion, "version this run retrains, written into the metadata and metrics.json (env "+jobenv.BaseVersion+")")
	fs.IntVar(&cfg.SamplesRepeat, "samples-repeat", cfg.SamplesRepeat, "how many times each labelled collected sample joins the training data (oversampling a shifted distribution)")
	fs.Var(&hidden, "hidden", "hidden layer widths, comma-separated")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "passes over the training data")
	fs.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "images per optimiser step")
	fs.Float64Var(&cfg.LearningRate, "lr", cfg.LearningRate, "initial Adam learning rate (decays along a cosine to 0)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed: the same seed and data give the same model, bit for bit")
	fs.StringVar(&cfg.EvalSplit, "eval-split", cfg.EvalSplit, `evaluate on "test" (the IDX test split; with shards alone, the held-out samples) or on a held-out fraction of the training data, such as 0.1`)
	fs.IntVar(&cfg.TrainLimit, "train-limit", cfg.TrainLimit, "use only the first N IDX training images (0: all)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "goroutines for the matrix kernels (0: GOMAXPROCS); does not change the result")
	fs.StringVar(&logCfg.Format, "log.format", logCfg.Format, "log format: logfmt or json")
	fs.StringVar(&logCfg.Level, "log.level", logCfg.Level, "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: edgeloop train --out DIR [flags]\n\n"+
			"Trains the reference MLP on a base dataset (IDX files, Fashion-MNIST by default, or shards\n"+
			"alone) plus labelled samples, and writes model.onnx and metrics.json into DIR.\n"+
			"Environment: %s, %s, %s, %s. Docs: docs/trainer.md.\n\n",
			jobenv.Model, jobenv.BaseVersion, jobenv.DatasetManifest, jobenv.Output)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "edgeloop train: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	cfg.Hidden, cfg.Samples, cfg.Classes = hidden, samples, classes
	if out == "" {
		fmt.Fprintf(stderr, "edgeloop train: --out (or %s) is required\n", jobenv.Output)
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgeloop train: invalid settings:\n%v\n", err)
		return exitUsage
	}
	if err := logCfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "edgeloop train: invalid log settings:\n%v\n", err)
		return exitUsage
	}
	logger := telemetry.NewLogger(stderr, logCfg).With("component", "train")
	ctx, stop := signalContext()
	defer stop()
	// A remote job gets object URLs (docs/job-backends.md): fetch the dataset, train in a
	// scratch directory, upload the outputs.
	remoteOut := ""
	if trainer.IsRemote(cfg.Manifest) || trainer.IsRemote(out) {
		scratch, err := os.MkdirTemp("", "edgeloop-train-")
		if err != nil {
			logger.Error("training failed", "err", err)
			return exitFailure
		}
		defer os.RemoveAll(scratch)
		if trainer.IsRemote(cfg.Manifest) {
			if cfg.Manifest, err = trainer.FetchDataset(ctx, cfg.Manifest, filepath.Join(scratch, "data"), logger); err != nil {
				logger.Error("training failed", "err", err)
				return exitFailure
			}
		}
		if trainer.IsRemote(out) {
			remoteOut, out = out, filepath.Join(scratch, "output")
		}
	}
	res, err := trainer.Run(ctx, cfg, out, logger)
	if err != nil {
		logger.Error("training failed", "err", err)
		return exitFailure
	}
	if remoteOut != "" {
		if err := trainer.UploadOutputs(ctx, out, remoteOut, logger); err != nil {
			logger.Error("training failed", "err", err)
			return exitFailure
		}
		out = remoteOut
	}
	m := res.Metrics
	fmt.Fprintf(stdout, "edgeloop train: accuracy %.4f on %d evaluation images (eval-split %s) after %d epochs in %s; wrote %s and %s in %s\n",
		m.Accuracy, m.EvalSize, m.EvalSplit, m.Epochs, time.Duration(m.DurationSeconds*float64(time.Second)).Round(100*time.Millisecond),
		trainer.ModelFile, trainer.MetricsFile, out)
	return exitOK
}
