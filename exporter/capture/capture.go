// Package capture is the exporter's capture pipeline: for every prediction the inference front
// serves, the sampler decides whether its input is worth a label; a captured sample is encoded
// (internal/sample), appended to the crash-safe spool, and shipped to the collector by the
// sender. Capture never fails an inference, and delays only a captured one, by its append to
// the spool (the answer names the sample): whatever goes wrong is counted, and the request is
// answered as if nothing had been captured.
package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/sampler"
	"github.com/edgeloop/edgeloop/exporter/sender"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// DefaultSpoolDir is where captured samples wait for the collector.
const DefaultSpoolDir = "/var/lib/edgeloop/spool"

// Config is the exporter's `capture:` section. Its sampler keys sit at the top level, so the
// section reads like Roboflow Inference's `active_learning` block (docs/sampler.md).
type Config struct {
	// Sampler says which predictions to capture, and how many at most.
	Sampler sampler.Config `yaml:",inline"`
	// Models limits capture to these models; empty means every model served.
	Models []string `yaml:"models"`
	// Spool is the on-disk queue between capture and the sender.
	Spool SpoolConfig `yaml:"spool"`
	// Sender ships the spool to the collector.
	Sender sender.Config `yaml:"sender"`
}

// SpoolConfig is the `capture.spool:` section: the spool's settings and its directory.
type SpoolConfig struct {
	// Dir holds the spool's segment files. Default /var/lib/edgeloop/spool.
	Dir          string `yaml:"dir"`
	spool.Config `yaml:",inline"`
}

// DefaultConfig returns the section's defaults: capture off.
func DefaultConfig() Config {
	return Config{
		Sampler: sampler.DefaultConfig(),
		Spool:   SpoolConfig{Dir: DefaultSpoolDir, Config: spool.DefaultConfig()},
		Sender:  sender.DefaultConfig(),
	}
}

// Enabled reports whether capture is on.
func (c Config) Enabled() bool { return c.Sampler.Enabled }

// Validate checks every part; with capture on, a collector must be configured.
func (c Config) Validate() error {
	errs := []error{c.Sampler.Validate(), config.Nest("spool", c.Spool.Config.Validate()), config.Nest("sender", c.Sender.Validate())}
	if c.Spool.Dir == "" || !filepath.IsAbs(c.Spool.Dir) {
		errs = append(errs, config.Errorf("spool.dir", "must be an absolute directory path, got %q", c.Spool.Dir))
	}
	if c.Enabled() && !c.Sender.Enabled() {
		errs = append(errs, config.Errorf("sender.url", "must be set when capture is enabled: captured samples go to the collector"))
	}
	for i, m := range c.Models {
		if m == "" {
			errs = append(errs, config.Errorf("models", "entry %d is empty", i))
		}
	}
	return errors.Join(errs...)
}

// Options are what a Pipeline works with besides its configuration.
type Options struct {
	// Node names this edge node in every sample.
	Node       string
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Tracing    *telemetry.Tracing
	// Now is the clock samples are stamped with; nil means time.Now.
	Now func() time.Time
}

// Pipeline is the capture pipeline. It implements infer.Capturer.
type Pipeline struct {
	cfg     Config
	opts    Options
	logger  *slog.Logger
	sampler *sampler.Sampler
	spool   *spool.Spool
	sender  *sender.Sender
	models  map[string]bool // nil: every model
}

// New opens the spool and builds the sampler and the sender. The spool's directory is created
// if needed; a spool left by a crash is recovered.
func New(cfg Config, opts Options) (*Pipeline, error) {
	p := &Pipeline{cfg: cfg, opts: opts, logger: opts.Logger}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.opts.Now == nil {
		p.opts.Now = time.Now
	}
	if len(cfg.Models) > 0 {
		p.models = map[string]bool{}
		for _, m := range cfg.Models {
			p.models[m] = true
		}
	}
	var err error
	if p.sampler, err = sampler.New(cfg.Sampler, sampler.Options{Registerer: opts.Registerer}); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if p.spool, err = spool.Open(cfg.Spool.Dir, cfg.Spool.Config, spool.Options{Registerer: opts.Registerer, Logger: p.logger}); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if p.sender, err = sender.New(cfg.Sender, queue{p.spool}, sender.Options{
		Node: opts.Node, Registerer: opts.Registerer, Logger: p.logger, Tracing: opts.Tracing,
	}); err != nil {
		p.spool.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	return p, nil
}

// Run ships the spool to the collector until ctx is done.
func (p *Pipeline) Run(ctx context.Context) error { return p.sender.Run(ctx) }

// Close flushes and closes the spool. Call it after Run has returned.
func (p *Pipeline) Close() error {
	p.sender.Close()
	return p.spool.Close()
}

// Spool is the pipeline's spool, for tests and status.
func (p *Pipeline) Spool() *spool.Spool { return p.spool }

// Wants reports whether predictions of model are considered for capture.
func (p *Pipeline) Wants(model string) bool { return p.models == nil || p.models[model] }

// Consider offers every row of a successful request to the sampler, stores the rows it
// chooses, and returns their sample keys for the response's infer.CaptureKeyHeader. It is
// called before the response is written: a captured request waits for its append.
func (p *Pipeline) Consider(ctx context.Context, pred *infer.Prediction) []string {
	return p.capture(ctx, pred)
}

// Capture is Consider, returning how many rows were stored: once it returns, they are in the
// spool and survive a crash of the process (and a power cut after the next group commit).
func (p *Pipeline) Capture(ctx context.Context, pred *infer.Prediction) int {
	return len(p.capture(ctx, pred))
}

// capture is Consider.
func (p *Pipeline) capture(ctx context.Context, pred *infer.Prediction) []string {
	rows := int(firstDim(pred.Input.Shape))
	if rows < 1 || len(pred.Scores)%rows != 0 || len(pred.Input.Data)%rows != 0 {
		p.sampler.Skipped(pred.Model, "shape")
		return nil
	}
	var stored []string
	k, width := len(pred.Scores)/rows, len(pred.Input.Data)/rows
	rowShape := pred.Input.Shape[1:]
	for i := range rows {
		row := pred.Scores[i*k : (i+1)*k]
		scores, err := observe.Score(row, pred.Kind)
		if err != nil {
			continue // counted by the telemetry core as a confidence error
		}
		c := sampler.Candidate{
			Model: pred.Model, Scores: scores, ClassName: className(pred.Classes, scores.Class),
			Input: pred.Input.Data[i*width : (i+1)*width], Shape: rowShape,
			Size: int64(width*4 + 1024), // the .npy input and the JSON beside it, near enough
		}
		d := p.sampler.Decide(&c)
		if !d.Capture {
			continue
		}
		if key, ok := p.store(ctx, pred, i, row, scores, &c, d.Reason); ok {
			stored = append(stored, key)
		}
	}
	return stored
}

// store encodes one chosen row as a sample and appends it to the spool; it returns the
// sample's key and whether the sample was stored.
func (p *Pipeline) store(ctx context.Context, pred *infer.Prediction, i int, row []float32, scores observe.Scores, c *sampler.Candidate, reason string) (string, bool) {
	shape := make([]int, len(c.Shape))
	for j, d := range c.Shape {
		shape[j] = int(d)
	}
	var input bytes.Buffer
	if err := npy.WriteFloat32(&input, shape, c.Input); err != nil {
		p.sampler.Skipped(pred.Model, "encode")
		return "", false
	}
	requestID := pred.RequestID
	if requestID != "" && firstDim(pred.Input.Shape) > 1 {
		requestID = fmt.Sprintf("%s#%d", requestID, i)
	}
	kind := sample.ScoresProbabilities
	if pred.Kind == observe.Logits {
		kind = sample.ScoresLogits
	}
	s, err := sample.New(sample.Meta{
		Model: pred.Model, Version: pred.Version, Node: p.opts.Node, Time: p.opts.Now().UTC(),
		RequestID: requestID, Prediction: scores.Class, PredictedClass: c.ClassName,
		Scores: slices.Clone(row), ScoresKind: kind,
		Confidence: map[string]float64{
			string(observe.MaxSoftmax): scores.MaxSoftmax, string(observe.Margin): scores.Margin, string(observe.Entropy): scores.Entropy,
		},
		Reason: reason, TraceID: pred.TraceID,
		Input: sample.InputInfo{Name: pred.Input.Name, Datatype: "FP32", Shape: slices.Clone(c.Shape), File: sample.NPYFile},
	}, input.Bytes())
	if err != nil {
		p.logger.Warn("cannot encode a captured sample", "model", pred.Model, "err", err)
		p.sampler.Skipped(pred.Model, "encode")
		return "", false
	}
	rec, err := s.MarshalRecord()
	if err != nil {
		p.sampler.Skipped(pred.Model, "encode")
		return "", false
	}
	if _, err := p.spool.Append(ctx, rec); err != nil {
		reason := "spool_unavailable"
		switch {
		case errors.Is(err, spool.ErrFull):
			reason = "spool_full"
		case errors.Is(err, spool.ErrTooLarge):
			reason = "too_large"
		case ctx.Err() != nil:
			reason = "canceled"
		}
		p.sampler.Skipped(pred.Model, reason)
		return "", false
	}
	return s.Meta.Key, true
}

func firstDim(shape []int64) int64 {
	if len(shape) == 0 {
		return 0
	}
	return shape[0]
}

func className(classes []string, i int) string {
	if i >= 0 && i < len(classes) {
		return classes[i]
	}
	return ""
}

// queue adapts the spool to the sender's Queue.
type queue struct{ s *spool.Spool }

func (q queue) Peek(max int, maxBytes int64) ([]sender.Record, error) {
	recs, err := q.s.Peek(max, maxBytes)
	out := make([]sender.Record, len(recs))
	for i, r := range recs {
		out[i] = sender.Record{Seq: r.Seq, Time: r.Time, Data: r.Data}
	}
	return out, err
}

func (q queue) Ack(through uint64) error       { return q.s.Ack(through) }
func (q queue) Wait(ctx context.Context) error { return q.s.Wait(ctx) }
