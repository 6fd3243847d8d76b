package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/trainers/go"
)

// The models `edgeloop demo --model` runs.
const (
	// ModelMLP is the default: `edgeloop train`'s multilayer perceptron, in Go, trained in
	// seconds with nothing but the edgeloop binary.
	ModelMLP = "mlp"
	// ModelCNN is a small convolutional network trained and fine-tuned by the PyTorch job
	// (trainers/pytorch/train.py), which needs Debian's python3-torch.
	ModelCNN = "cnn"
)

// The CNN's training budget, small enough for a demo of a few minutes on two shared cores: the
// base model sees the first cnnBaseImages training images, a retrain fine-tunes the serving
// version's weights on the first cnnRetrainImages of them plus each labelled sample
// cnnSamplesRepeat times. The jobs evaluate themselves on cnnEvalImages test images (their
// metrics.json only; the gate scores on the evaluation set).
const (
	cnnBaseImages    = 10000
	cnnRetrainImages = 2000
	cnnSamplesRepeat = 3
	cnnEvalImages    = 1000
	cnnThreads       = 2
	cnnRetrainLR     = "0.001"
)

// epochs returns the base and retrain epochs: the configured ones, or the model's defaults.
func (c Config) epochs() (base, retrain int) {
	base, retrain = c.BaseEpochs, c.RetrainEpochs
	defBase, defRetrain := 5, 5
	if c.Model == ModelCNN {
		defBase, defRetrain = 1, 1
	}
	if base == 0 {
		base = defBase
	}
	if retrain == 0 {
		retrain = defRetrain
	}
	return base, retrain
}

// checkTorch fails with what to install when the Python interpreter cannot import what the
// PyTorch job needs. The job itself would fail too, but only once a retrain starts, minutes
// into the demo.
func checkTorch(ctx context.Context, python, job string) error {
	if _, err := os.Stat(job); err != nil {
		return fmt.Errorf("demo: --model cnn: the PyTorch job %s: %w (pass --pytorch-job with the path of trainers/pytorch/train.py)", job, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, "-c", "import torch, onnx, numpy")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		why := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(why, '\n'); i >= 0 {
			why = why[i+1:]
		}
		if why == "" {
			why = err.Error()
		}
		return fmt.Errorf("demo: --model cnn needs PyTorch, ONNX and NumPy in %s, which says: %s "+
			"(on Debian: apt-get install python3-torch python3-onnx python3-numpy, as scripts/debs.sh does; --model mlp needs nothing but edgeloop)", python, why)
	}
	return nil
}

// trainBase trains the base model into dir (which must not exist) and returns its accuracy
// as the trainer measured it on the test set.
func (d *demo) trainBase(ctx context.Context, dir string) (float64, error) {
	epochs, _ := d.cfg.epochs()
	if d.cfg.Model == ModelMLP {
		d.say("training the base model: the Go MLP, %s on the 60,000 Fashion-MNIST training images...", plural(epochs, "epoch"))
		tc := trainer.DefaultConfig()
		tc.DataDir, tc.Epochs, tc.Model = d.cfg.DataDir, epochs, modelName
		res, err := trainer.Run(ctx, tc, dir, d.logger.With("component", "train"))
		if err != nil {
			return 0, err
		}
		return res.Metrics.Accuracy, nil
	}
	d.say("training the base model: a CNN by the PyTorch job, %s on the first %d Fashion-MNIST training images (log: %s)...", plural(epochs, "epoch"), cnnBaseImages, filepath.Join(d.run, "base-train.log"))
	logPath := filepath.Join(d.run, "base-train.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, d.cfg.Python, d.cfg.PyTorchJob, "--out", dir, "--model", modelName, "--arch", "cnn",
		"--base-data", d.cfg.DataDir, "--epochs", strconv.Itoa(epochs), "--train-limit", strconv.Itoa(cnnBaseImages),
		"--eval-limit", strconv.Itoa(cnnEvalImages), "--threads", strconv.Itoa(cnnThreads), "--log.format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("the PyTorch job: %w; the end of %s:\n%s", err, logPath, lastLines(string(log), 10))
	}
	tm, err := modelrepo.ReadTrainerMetrics(filepath.Join(dir, modelrepo.MetricsFile))
	if err != nil {
		return 0, err
	}
	if tm.Accuracy == nil {
		return 0, errors.New("the PyTorch job's metrics.json has no accuracy")
	}
	return *tm.Accuracy, nil
}

// retrainCommand is the local backend's command for a retrain job (retrain.yaml's
// `backend.local.command`), one argument per element. The contract's variables (EDGELOOP_OUTPUT,
// EDGELOOP_DATASET_MANIFEST, EDGELOOP_BASE_MODEL, ...) carry the job's inputs; the flags are
// the demo's training budget and the job's base training data.
func (d *demo) retrainCommand(exe string) []string {
	_, epochs := d.cfg.epochs()
	var args []string
	if d.cfg.Model == ModelMLP {
		args = []string{exe, "train", "--out", "{{.Output}}", "--dataset-manifest", "{{.DatasetManifest}}", "--model", "{{.Model}}",
			"--base-version", "{{.BaseVersion}}", "--data", d.cfg.DataDir, "--epochs", strconv.Itoa(epochs), "--samples-repeat", "10",
			"--log.format", "json"}
	} else {
		// A fine-tune: the job starts from EDGELOOP_BASE_MODEL's checkpoint.pt (the serving
		// version, which the controller downloads for the local backend).
		args = []string{d.cfg.Python, d.cfg.PyTorchJob, "--arch", "cnn", "--base-data", d.cfg.DataDir,
			"--train-limit", strconv.Itoa(cnnRetrainImages), "--samples-repeat", strconv.Itoa(cnnSamplesRepeat),
			"--epochs", strconv.Itoa(epochs), "--lr", cnnRetrainLR, "--eval-limit", strconv.Itoa(cnnEvalImages),
			"--threads", strconv.Itoa(cnnThreads), "--log.format", "json"}
	}
	return args
}

// plural is "1 epoch" or "5 epochs".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
