package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/onnx"
)

// Output file names under the output directory, as the job contract names them.
const (
	ModelFile   = "model.onnx"
	MetricsFile = "metrics.json"
)

// Run is the whole job: load the data, train, and write ModelFile and then MetricsFile into
// outDir (created if missing). Each file is written to a temporary name and renamed, and the
// metrics last, so a crash never leaves a half-written file and a directory with metrics.json
// holds a complete result.
func Run(ctx context.Context, cfg Config, outDir string, logger *slog.Logger) (*Result, error) {
	data, err := LoadData(cfg, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("training", "model", cfg.Model, "train_images", data.Train.Len(), "eval_images", data.Eval.Len(),
		"eval_split", cfg.EvalSplit, "hidden", cfg.Hidden, "epochs", cfg.Epochs, "batch", cfg.BatchSize,
		"lr", cfg.LearningRate, "seed", cfg.Seed, "workers", cfg.workers())
	res, err := Train(ctx, cfg, data, logger)
	if err != nil {
		return nil, err
	}
	if err := WriteOutputs(outDir, res, data, cfg); err != nil {
		return nil, err
	}
	return res, nil
}

// WriteOutputs writes res, trained on data, as ModelFile and MetricsFile into outDir.
func WriteOutputs(outDir string, res *Result, data *Data, cfg Config) error {
	m, err := ToONNX(res.Network, data.Classes, cfg.Model, cfg.BaseVersion, data.Preprocessing)
	if err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	model, err := onnx.Encode(m)
	if err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	metrics, err := json.MarshalIndent(res.Metrics, "", "  ")
	if err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(outDir, ModelFile), model, 0o644); err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(outDir, MetricsFile), append(metrics, '\n'), 0o644); err != nil {
		return fmt.Errorf("write outputs: %w", err)
	}
	return nil
}
