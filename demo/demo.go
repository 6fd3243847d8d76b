// Package demo is `edgeloop demo`: the whole loop in one process on loopback (an embedded
// S3 server, a collector, a retrain controller with the local backend, simulated edge nodes
// replaying Fashion-MNIST, a labeller), with drift injected on some nodes, until the drifted
// nodes serve a retrained model. docs/demo.md describes it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/collector"
	"github.com/edgeloop/edgeloop/exporter"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/evalset"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/serverconfig"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/retrain"
	"github.com/edgeloop/edgeloop/retrain/publish"
)

// Config is what `edgeloop demo` runs with; its flags set it.
type Config struct {
	// Model is the kind of model the loop trains and serves: ModelMLP or ModelCNN.
	Model string
	// Python is the interpreter that runs the PyTorch job (ModelCNN); PyTorchJob is the job's
	// train.py.
	Python, PyTorchJob string
	// DataDir holds the Fashion-MNIST IDX files.
	DataDir string
	// WorkDir keeps the base model and signing key between runs, and each run's files
	// (configurations, logs, the bucket, the report) under run/.
	WorkDir string
	// Nodes is the number of simulated edge nodes; Drifted of them get the drift.
	Nodes, Drifted int
	// Rate is the images per second each node classifies.
	Rate int
	// DriftAfter is when the drift starts, from the moment every node serves the base model.
	DriftAfter time.Duration
	// Drift is what happens to the drifted nodes' inputs (--drift); zero: ModelDrift(Model), a
	// brightness and contrast shift.
	Drift ImageDrift
	// Deadline ends the demo with a failure when the drifted nodes have not recovered.
	Deadline time.Duration
	// Settle is how long the drifted nodes are measured on the recovered model before the end.
	Settle time.Duration
	// RecoveryShare is the share of the accuracy the drift took from the drifted nodes that
	// they must regain (on images no retrain trained on) for the loop to count as closed;
	// serving a new version is not enough. Until then the controller's policy may retrain
	// again, within the deadline.
	RecoveryShare float64
	// BaseEpochs and RetrainEpochs are the training epochs of the base model and of a retrain;
	// 0 takes the model's default (MLP: 5 and 5, CNN: 1 and 1).
	BaseEpochs, RetrainEpochs int
	// Live draws a live terminal view; otherwise progress lines are printed.
	Live bool
	// Report is the report's path (default WorkDir/run/report.html).
	Report string
}

// DefaultConfig returns the demo's defaults: the Go MLP, three nodes, two of them drifted 30s
// after every node serves the base model, a ten-minute deadline. PyTorchJob is left empty: the
// command finds train.py.
func DefaultConfig() Config {
	dir := filepath.Join(os.TempDir(), "edgeloop-demo")
	if cache, err := os.UserCacheDir(); err == nil {
		dir = filepath.Join(cache, "edgeloop", "demo")
	}
	return Config{
		Model: ModelMLP, Python: "/usr/bin/python3",
		DataDir: fmnist.DefaultDir, WorkDir: dir, Nodes: 3, Drifted: 2, Rate: 50,
		DriftAfter: 30 * time.Second, Deadline: 10 * time.Minute, Settle: 10 * time.Second,
		RecoveryShare: DefaultRecoveryShare,
	}
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	switch c.Model {
	case ModelMLP:
	case ModelCNN:
		if c.PyTorchJob == "" {
			errs = append(errs, errors.New("--pytorch-job is empty: --model cnn needs the path of trainers/pytorch/train.py"))
		}
		if c.Python == "" {
			errs = append(errs, errors.New("--python is empty: --model cnn runs the PyTorch job with it"))
		}
	default:
		errs = append(errs, fmt.Errorf("--model must be %s or %s, got %q", ModelMLP, ModelCNN, c.Model))
	}
	if c.BaseEpochs < 0 || c.BaseEpochs > 100 {
		errs = append(errs, fmt.Errorf("--base-epochs must be between 0 (the model's default) and 100, got %d", c.BaseEpochs))
	}
	if c.RetrainEpochs < 0 || c.RetrainEpochs > 100 {
		errs = append(errs, fmt.Errorf("--retrain-epochs must be between 0 (the model's default) and 100, got %d", c.RetrainEpochs))
	}
	if c.Nodes < 1 || c.Nodes > 20 {
		errs = append(errs, fmt.Errorf("--nodes must be between 1 and 20, got %d", c.Nodes))
	}
	if c.Drifted < 1 || c.Drifted > c.Nodes {
		errs = append(errs, fmt.Errorf("--drifted must be between 1 and --nodes (%d), got %d", c.Nodes, c.Drifted))
	}
	if c.Rate < 10 || c.Rate > 1000 {
		errs = append(errs, fmt.Errorf("--rate must be between 10 and 1000 images per second, got %d", c.Rate))
	}
	if c.DriftAfter < 5*time.Second {
		errs = append(errs, fmt.Errorf("--drift-after must be at least 5s, got %s", c.DriftAfter))
	}
	if !(c.RecoveryShare > 0 && c.RecoveryShare <= 1) {
		errs = append(errs, fmt.Errorf("--recovery-share must be above 0 and at most 1, got %g", c.RecoveryShare))
	}
	if c.Deadline < time.Minute {
		errs = append(errs, fmt.Errorf("--deadline must be at least 1m, got %s", c.Deadline))
	}
	if c.WorkDir == "" {
		errs = append(errs, errors.New("--work-dir is empty"))
	}
	return errors.Join(errs...)
}

// node is one simulated edge node.
type node struct {
	name    string
	drifted bool
	exp     *exporter.Exporter
	gen     *Generator
	series  NodeSeries
	version string
}

// demo is one run.
type demo struct {
	cfg     Config
	out     io.Writer
	logger  *slog.Logger
	started time.Time
	run     string // WorkDir/run
	keys    modelrepo.KeyFiles
	s3      *s3Server
	bucket  objstore.Bucket
	coll    *collector.Server
	ctrl    *retrain.Controller
	nodes   []*node
	labels  *Labeler
	truth   *Truth
	test    *fmnist.Dataset
	split   *Split
	spec    dataset.Spec
	io      ModelIO // the served model's input and classes, from its manifest

	mu       sync.Mutex
	timeline Timeline
	jobSeen  map[string]Phase
	summary  Summary
	onset    time.Time // drift onset (zero before)
	servedAt time.Time // every node served the base model
	newVer   string    // the version a retrain promoted
	lastLine time.Time
}

// Phase is a retrain job's phase, as the demo shows it.
type Phase = retrain.Phase

// retrainEveryLabels is the demo controller's policy.every_new_labels: a second retrain once
// this many labels came in after the first, should the first not regain enough. It must stay
// above what the nodes capture before the drift trigger fires (500 did not: a run's first job
// came from the labels, ten seconds after the onset, on mostly clean samples).
const retrainEveryLabels = 1000

const (
	bucketName  = "edgeloop"
	modelName   = "fashion"
	operatorTok = "demo-operator-token"
	webhookTok  = "demo-webhook-token"
)

// Run runs the demo and returns its summary; the error is set when the loop did not close
// (the summary's Reason says why) or could not start.
func Run(ctx context.Context, cfg Config, out io.Writer) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Drift.Kind == "" {
		cfg.Drift = ImageDrift{Kind: KindPhotometric, Photometric: ModelDrift(cfg.Model)}
	}
	d := &demo{cfg: cfg, out: out, started: time.Now(), run: filepath.Join(cfg.WorkDir, "run"), truth: NewTruth(), jobSeen: map[string]Phase{}}
	d.timeline.Started = d.started
	if err := os.RemoveAll(d.run); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := os.MkdirAll(d.run, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	logFile, err := os.Create(filepath.Join(d.run, "demo.log"))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	// The parts log to a file: the terminal shows the view and the summary.
	d.logger = slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d.say("edgeloop demo: work directory %s (logs: %s)", cfg.WorkDir, logFile.Name())

	if cfg.Model == ModelCNN {
		if err := checkTorch(ctx, cfg.Python, cfg.PyTorchJob); err != nil {
			return nil, err
		}
	}
	if d.test, err = fmnist.Load(cfg.DataDir, fmnist.Test); err != nil {
		return nil, fmt.Errorf("demo: %w (on Debian: apt-get install dataset-fashion-mnist, or run make demo)", err)
	}
	if d.split, err = SplitTest(d.test, EvalPerClass); err != nil {
		return nil, err
	}
	d.truth.Withhold(d.split.Probes)
	d.summary.Model = cfg.Model
	base, err := d.baseModel(ctx)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		if d.s3 != nil {
			d.s3.close()
		}
	}()
	if err := d.start(ctx, &wg, base); err != nil {
		return nil, err
	}
	sum := d.loop(ctx)
	d.say("%s", SummaryText(sum))
	if err := d.writeReport(sum); err != nil {
		d.say("edgeloop demo: cannot write the report: %v", err)
	} else {
		d.say("report: %s", d.reportPath())
	}
	if !sum.OK {
		return sum, errors.New(sum.Reason)
	}
	return sum, nil
}

// say prints a line for the user.
func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

// baseModel returns the directory of the base model, training it first when the work
// directory has none.
func (d *demo) baseModel(ctx context.Context) (string, error) {
	dir := filepath.Join(d.cfg.WorkDir, "base")
	keysDir := filepath.Join(dir, "keys")
	d.keys = modelrepo.KeyFiles{Private: filepath.Join(keysDir, modelrepo.PrivateKeyFile), Public: filepath.Join(keysDir, modelrepo.PublicKeyFile)}
	if _, err := os.Stat(d.keys.Private); err != nil {
		if _, err := modelrepo.GenerateKey(keysDir); err != nil {
			return "", fmt.Errorf("demo: signing key: %w", err)
		}
	}
	// One base model per kind, so that switching --model does not train the other again.
	model := filepath.Join(dir, d.cfg.Model)
	if _, err := os.Stat(filepath.Join(model, modelrepo.MetricsFile)); err == nil {
		d.say("base model: %s (delete it to train again)", model)
		return model, nil
	}
	t0 := time.Now()
	tmp := model + ".tmp"
	os.RemoveAll(tmp)
	acc, err := d.trainBase(ctx, tmp)
	if err != nil {
		return "", fmt.Errorf("demo: base model: %w", err)
	}
	if err := os.Rename(tmp, model); err != nil {
		return "", fmt.Errorf("demo: base model: %w", err)
	}
	d.summary.BaseTraining = time.Since(t0)
	d.say("base model trained in %s: accuracy %.4f on the test set", d.summary.BaseTraining.Round(100*time.Millisecond), acc)
	return model, nil
}

// start brings up the S3 server, publishes the base model, and starts the collector, the
// controller, the nodes, their traffic and the labeller.
func (d *demo) start(ctx context.Context, wg *sync.WaitGroup, base string) error {
	if err := d.startS3(ctx); err != nil {
		return err
	}
	if err := d.publishBase(ctx, base); err != nil {
		return err
	}
	files, err := d.writeCredentials()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	collURL, err := d.startCollector(ctx, wg, files)
	if err != nil {
		return err
	}
	if err := d.startNodes(ctx, wg, files, collURL); err != nil {
		return err
	}
	if err := d.startController(ctx, wg, files, collURL); err != nil {
		return err
	}
	d.startTraffic(ctx, wg, collURL)
	d.say("started: embedded S3 at %s, collector at %s, retrain at %s, %d nodes (%d to drift); configurations in %s",
		d.s3.addr, d.coll.Addr(), d.ctrl.Addr(), len(d.nodes), d.cfg.Drifted, files.dir)
	return nil
}

// startS3 starts the embedded S3 server and opens the bucket. Every part opens the bucket by
// URL, taking the credentials from the environment, as in production; the training jobs
// inherit them.
func (d *demo) startS3(ctx context.Context) error {
	var err error
	if d.s3, err = startS3(filepath.Join(d.run, "s3"), bucketName, d.logger); err != nil {
		return err
	}
	os.Setenv(objstore.EnvAccessKey, s3AccessKey)
	os.Setenv(objstore.EnvSecretKey, s3SecretKey)
	if d.bucket, err = objstore.Open(ctx, d.s3.url(bucketName)); err != nil {
		return fmt.Errorf("demo: bucket: %w", err)
	}
	return nil
}

// demoFiles are the configuration and credential files the demo writes for its parts.
type demoFiles struct {
	dir string
	// nodeTokens, operators and webhooks are hash lists; collectorToken is the controller's
	// operator token for the collector.
	nodeTokens, operators, webhooks, collectorToken string
}

// write writes one file into the configuration directory and returns its path.
func (f demoFiles) write(name, content string) (string, error) {
	p := filepath.Join(f.dir, name)
	return p, os.WriteFile(p, []byte(content), 0o600)
}

// nodeToken is the path of node name's token file.
func (f demoFiles) nodeToken(name string) string { return filepath.Join(f.dir, name+".token") }

// writeCredentials writes every token file: each node's token and the hash lists the
// collector and the controller check them against.
func (d *demo) writeCredentials() (demoFiles, error) {
	f := demoFiles{dir: filepath.Join(d.run, "config")}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return f, err
	}
	var nodeTokens strings.Builder
	for i := range d.cfg.Nodes {
		name := nodeName(i)
		nodeTokens.WriteString(token.HashLine(name, "token-"+name) + "\n")
		if _, err := f.write(name+".token", "token-"+name+"\n"); err != nil {
			return f, err
		}
	}
	var err error
	for _, w := range []struct {
		path          *string
		name, content string
	}{
		{&f.nodeTokens, "nodes.sha256", nodeTokens.String()},
		{&f.operators, "operators.sha256", token.HashLine("demo", operatorTok) + "\n"},
		{&f.webhooks, "webhook.sha256", token.HashLine("alertmanager", webhookTok) + "\n"},
		{&f.collectorToken, "collector-operator.token", operatorTok + "\n"},
	} {
		if *w.path, err = f.write(w.name, w.content); err != nil {
			return f, err
		}
	}
	return f, nil
}

// nodeName is the i-th simulated node's name.
func nodeName(i int) string { return fmt.Sprintf("edge-%d", i+1) }

// startCollector starts the collector and returns its base URL.
func (d *demo) startCollector(ctx context.Context, wg *sync.WaitGroup, files demoFiles) (string, error) {
	// Shards cut small and often, so that samples reach the bucket within seconds.
	content, err := serverconfig.Collector{Instance: "demo", Tokens: files.nodeTokens, Operators: files.operators,
		Bucket: d.s3.url(bucketName), WALDir: filepath.Join(d.run, "collector-wal"),
		ShardTargetBytes: 1 << 20, ShardMaxAge: 2 * time.Second}.YAML()
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	file, err := files.write("collector.yaml", content)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	cfg, err := collector.LoadConfig(file)
	if err != nil {
		return "", fmt.Errorf("demo: collector: %w", err)
	}
	if d.coll, err = collector.New(cfg, collector.Options{Logger: d.logger}); err != nil {
		return "", fmt.Errorf("demo: collector: %w", err)
	}
	d.goRun(ctx, wg, "collector", d.coll.Run)
	return "http://" + d.coll.Addr(), nil
}

// startNodes starts the simulated edge nodes' exporters, each with its traffic generator
// (started later, by startTraffic).
func (d *demo) startNodes(ctx context.Context, wg *sync.WaitGroup, files demoFiles, collURL string) error {
	for i := range d.cfg.Nodes {
		name := nodeName(i)
		file, err := files.write(name+".yaml", NodeConfig{Node: name, Model: modelName, Repository: d.s3.url(bucketName), TrustedKey: d.keys.Public,
			PollInterval: 2 * time.Second, DriftWindow: 500, Collector: collURL, TokenFile: files.nodeToken(name),
			Dir: filepath.Join(d.run, name)}.YAML())
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		cfg, err := exporter.LoadConfig(file)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		e, err := exporter.New(cfg, exporter.Options{Logger: d.logger.With("node", name)})
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		d.goRun(ctx, wg, name, e.Run)
		n := &node{name: name, drifted: i >= d.cfg.Nodes-d.cfg.Drifted, exp: e}
		n.series = NodeSeries{Node: name, Drifted: n.drifted}
		every := time.Second / 5
		n.gen = NewGenerator(name, "http://"+e.InferenceAddr(), d.io, d.test, d.split.Traffic, d.truth, d.cfg.Drift, max(1, d.cfg.Rate/5), every, i*1667)
		d.nodes = append(d.nodes, n)
	}
	return nil
}

// startController starts the retrain controller, fed by the nodes' drift signals (no
// Prometheus in the demo).
func (d *demo) startController(ctx context.Context, wg *sync.WaitGroup, files demoFiles, collURL string) error {
	var targets []string
	for _, n := range d.nodes {
		targets = append(targets, "http://"+n.exp.MetricsAddr()+"/metrics")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	// A retrain once enough labels came in after a drift signal, trained by a local command,
	// gated on the evaluation set, published stable.
	content, err := serverconfig.Controller{StateDir: filepath.Join(d.run, "retrain"),
		WebhookTokens: files.webhooks, OperatorTokens: files.operators, Bucket: d.s3.url(bucketName), SigningKey: d.keys.Private,
		CollectorURL: collURL, CollectorToken: files.collectorToken, Models: []string{modelName},
		// every_new_labels: a retrain that regained too little is followed by another once
		// enough further labels came in (the drift watcher alone would not: the retrained
		// model is confident on the shifted inputs, so its PSI stays low).
		Policy: serverconfig.Policy{MinNewLabels: 300, EveryNewLabels: retrainEveryLabels, Cooldown: 20 * time.Second,
			DailyBudget: 20, JobTimeout: 10 * time.Minute, CheckInterval: time.Second},
		Command: d.retrainCommand(exe), EvalSets: []string{EvalSetName}, MaxClassRegression: 0.05, PublishStable: true,
		Drift: &serverconfig.Drift{Targets: targets, PSIThreshold: 0.25, For: 10 * time.Second, Interval: time.Second}}.YAML()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	file, err := files.write("retrain.yaml", content)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cfg, err := retrain.LoadConfig(file)
	if err != nil {
		return fmt.Errorf("demo: retrain: %w", err)
	}
	if d.ctrl, err = retrain.New(cfg, retrain.Options{Logger: d.logger}); err != nil {
		return fmt.Errorf("demo: retrain: %w", err)
	}
	d.goRun(ctx, wg, "retrain", d.ctrl.Run)
	return nil
}

// startTraffic starts every node's traffic generator and the labeller.
func (d *demo) startTraffic(ctx context.Context, wg *sync.WaitGroup, collURL string) {
	for _, n := range d.nodes {
		g := n.gen
		wg.Add(1)
		go func() { defer wg.Done(); g.Run(ctx) }()
	}
	d.labels = NewLabeler(collURL, operatorTok, d.bucket, d.io, d.truth, d.test, 3*time.Second, d.logger.With("component", "labeller"))
	wg.Add(1)
	go func() { defer wg.Done(); d.labels.Run(ctx, time.Second) }()
}

// goRun runs a part until ctx ends, logging an early failure.
func (d *demo) goRun(ctx context.Context, wg *sync.WaitGroup, name string, run func(context.Context) error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			d.logger.Error("part stopped", "part", name, "err", err)
		}
	}()
}

// publishBase publishes the base model as version 1, signed, with stable pointing at it.
func (d *demo) publishBase(ctx context.Context, dir string) error {
	signer, err := modelrepo.LoadSigner(d.keys.Private)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	draft, err := modelrepo.DraftManifest(dir)
	if err != nil {
		return fmt.Errorf("demo: base model: %w", err)
	}
	draft.Model = modelName
	// The traffic, the labeller and the evaluation set follow the model's manifest, not the
	// demo's knowledge of the model: [784] for the Go MLP, [1,28,28] for the CNN.
	if d.spec, err = dataset.SpecOf(draft); err != nil {
		return fmt.Errorf("demo: base model: %w", err)
	}
	d.io = ModelIO{Name: modelName, Input: draft.Input.Name, Shape: d.spec.Shape, Classes: len(d.spec.Classes)}
	if d.io.Width() != fmnist.Pixels || d.io.Classes != fmnist.NumClasses {
		return fmt.Errorf("demo: base model: input %v and %d classes; the demo replays Fashion-MNIST (%d values, %d classes)", draft.Input.Shape, d.io.Classes, fmnist.Pixels, fmnist.NumClasses)
	}
	if err := d.writeEvalSet(ctx); err != nil {
		return err
	}
	files, err := modelrepo.DirFiles(dir)
	if err != nil {
		return fmt.Errorf("demo: base model: %w", err)
	}
	// Measured on the evaluation set as `edgeloop model publish --eval-set` does, version 1
	// carries the fitted temperature and the drift signals' reference, as a retrained one does.
	record, r, err := publish.MeasureForPublish(ctx, d.bucket, dir, draft, []string{EvalSetName}, d.logger)
	if err != nil {
		return fmt.Errorf("demo: base model: %w", err)
	}
	repo := modelrepo.New(d.bucket)
	m, err := repo.Publish(ctx, modelName, *draft, append(files, record), signer, modelrepo.PublishOptions{})
	if err != nil {
		return fmt.Errorf("demo: publish the base model: %w", err)
	}
	if err := repo.SetAlias(ctx, modelName, "stable", m.Version); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.summary.BaseVersion = strconv.FormatInt(m.Version, 10)
	d.say("version %d published: accuracy %.4f on %s, with a fitted temperature and the drift signals' reference", m.Version, r.Accuracy, EvalSetName)
	return nil
}

// writeEvalSet writes the split's evaluation images to the bucket as the model's evaluation
// set, in the served model's input shape.
func (d *demo) writeEvalSet(ctx context.Context) error {
	set, err := d.split.EvalSet(d.test, d.spec, modelName)
	if err != nil {
		return err
	}
	m, err := evalset.Write(ctx, d.bucket, set)
	if err != nil {
		return fmt.Errorf("demo: evaluation set: %w", err)
	}
	d.say("evaluation set %s/%s: %d test images (%d per class, indexes below %d), input %v; the traffic replays the %d images from index %d on",
		modelName, m.Name, m.Count, EvalPerClass, d.split.Reserved, m.Input.Shape, len(d.split.Traffic), d.split.Reserved)
	return nil
}

// loop samples the run every second until the drifted nodes have recovered or the deadline
// passes, and returns the summary.
func (d *demo) loop(ctx context.Context) *Summary {
	deadline := time.NewTimer(d.cfg.Deadline)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var recoveredAt time.Time
	for {
		select {
		case <-ctx.Done():
			return d.finish("interrupted", false)
		case <-deadline.C:
			return d.finish(d.stuckReason(), false)
		case <-tick.C:
		}
		now := time.Now()
		d.watchJobs() // before sample: a version is published before nodes serve it
		d.sample(now)
		if d.servedAt.IsZero() && d.allServe(d.summary.BaseVersion) {
			d.servedAt = now
			d.say("every node serves version %s; drift starts on %d nodes in %s", d.summary.BaseVersion, d.cfg.Drifted, d.cfg.DriftAfter)
		}
		if d.onset.IsZero() && !d.servedAt.IsZero() && now.Sub(d.servedAt) >= d.cfg.DriftAfter {
			d.onset = now
			for _, n := range d.nodes {
				if n.drifted {
					n.gen.SetDrift(true)
				}
			}
			d.event(EventDrift, "", fmt.Sprintf("%s on %d nodes", driftText(d.cfg.Drift), d.cfg.Drifted))
		}
		d.watchSignals(now)
		// Recovered: the drifted nodes serve the newest promoted version and have regained the
		// set share of what they lost, and still have after Settle more seconds of traffic.
		if d.newVer != "" && recoveredAt.IsZero() && d.driftedServe(d.newVer) && d.recovered(d.newVer) {
			recoveredAt = now
			share, _ := d.regained(d.newVer)
			d.say("the drifted nodes regained %.1f%% of the accuracy they lost on version %s (target %.0f%%); measuring for %s",
				100*share, d.newVer, 100*d.cfg.RecoveryShare, d.cfg.Settle)
		}
		if !recoveredAt.IsZero() && now.Sub(recoveredAt) >= d.cfg.Settle {
			if d.driftedServe(d.newVer) && d.recovered(d.newVer) {
				return d.finish("", true)
			}
			share, _ := d.regained(d.newVer)
			d.say("after %s, the drifted nodes regained %.1f%% on version %s, below the target %.0f%%: waiting for more traffic or another retrain",
				d.cfg.Settle, 100*share, d.newVer, 100*d.cfg.RecoveryShare)
			recoveredAt = time.Time{}
		}
		d.render(now)
	}
}

// allServe reports whether every node last answered with version v.
func (d *demo) allServe(v string) bool {
	for _, n := range d.nodes {
		if n.version != v {
			return false
		}
	}
	return true
}

func (d *demo) driftedServe(v string) bool {
	for _, n := range d.nodes {
		if n.drifted && n.version != v {
			return false
		}
	}
	return true
}

// sample adds a point per node.
func (d *demo) sample(now time.Time) {
	t := now.Sub(d.started)
	for _, n := range d.nodes {
		w, version := n.gen.Take()
		g := n.exp.Registry()
		p := Point{T: t, Requests: w.N, Accuracy: w.Accuracy(), Confidence: w.MeanConfidence(), Version: version,
			PSI: gaugeMax(g, "edgeloop_confidence_psi"), Estimated: gaugeMax(g, "edgeloop_estimated_accuracy"), Captured: int(metricSum(g, "edgeloop_samples_captured_total")),
			Spool: int(metricSum(g, "edgeloop_spool_records"))}
		n.series.Points = append(n.series.Points, p)
		if version != "" && version != n.version {
			if n.version != "" {
				d.event(EventServing, n.name, "serves version "+version)
			}
			n.version = version
		}
	}
}

// watchJobs turns the controller's jobs into events.
func (d *demo) watchJobs() {
	for _, j := range d.ctrl.Jobs() {
		prev, seen := d.jobSeen[j.ID]
		if !seen {
			d.event(EventJob, "", fmt.Sprintf("job %s started (%s: %s)", j.ID, j.Trigger.Source, j.Trigger.Reason))
		}
		if prev != j.Phase {
			d.jobSeen[j.ID] = j.Phase
			switch j.Phase {
			case retrain.PhasePublishing, retrain.PhaseRejected:
				if j.Gate != nil {
					d.event(EventGate, "", "gate: "+j.Gate.Reason)
					d.summary.Gate = j.Gate.Reason
				}
			case retrain.PhasePromoted:
				if j.Gate != nil && (prev != retrain.PhasePublishing) {
					d.event(EventGate, "", "gate: "+j.Gate.Reason)
					d.summary.Gate = j.Gate.Reason
				}
				d.newVer = strconv.FormatInt(j.Version, 10)
				if !j.Started.IsZero() && !j.Finished.IsZero() {
					d.summary.RetrainJob = j.Finished.Sub(j.Started)
				}
				d.event(EventPublished, "", fmt.Sprintf("version %d published (parent %d, %d labelled samples)", j.Version, j.BaseVersion, j.Dataset.Labels))
			case retrain.PhaseFailed, retrain.PhaseTimedOut, retrain.PhaseError, retrain.PhaseCancelled:
				d.event(EventJob, "", fmt.Sprintf("job %s %s: %s", j.ID, j.Phase, j.Error))
			}
		}
	}
}

// event records an event and prints it.
func (d *demo) event(kind, node, text string) {
	t := time.Since(d.started)
	d.mu.Lock()
	d.timeline.Events = append(d.timeline.Events, Event{T: t, Kind: kind, Node: node, Text: text})
	d.mu.Unlock()
	if !d.cfg.Live {
		who := ""
		if node != "" {
			who = node + " "
		}
		d.say("%7s  %s%s", fmtDur(t), who, text)
	}
}

// stuckReason says why the loop did not close by the deadline.
func (d *demo) stuckReason() string {
	switch {
	case d.servedAt.IsZero():
		return fmt.Sprintf("deadline %s passed before every node served the base model (see %s)", d.cfg.Deadline, filepath.Join(d.run, "demo.log"))
	case d.onset.IsZero():
		return fmt.Sprintf("deadline %s passed before the drift started", d.cfg.Deadline)
	case len(d.jobSeen) == 0:
		ds := d.ctrl.Decisions()
		last := "none"
		if len(ds) > 0 {
			last = ds[len(ds)-1].Skipped + ": " + ds[len(ds)-1].Detail
		}
		return fmt.Sprintf("deadline %s passed and no retrain job started; the controller's last decision: %s", d.cfg.Deadline, last)
	case d.newVer == "":
		return fmt.Sprintf("deadline %s passed and no retrain job was promoted (jobs: %s)", d.cfg.Deadline, d.jobsText())
	case !d.driftedServe(d.newVer):
		return fmt.Sprintf("deadline %s passed before the drifted nodes served version %s", d.cfg.Deadline, d.newVer)
	default:
		share, images := d.regained(d.newVer)
		return fmt.Sprintf("deadline %s passed: the drifted nodes serve version %s but regained %.1f%% of the accuracy they lost (target %.0f%%, %d images not trained on)",
			d.cfg.Deadline, d.newVer, 100*share, 100*d.cfg.RecoveryShare, images)
	}
}

func (d *demo) jobsText() string {
	var parts []string
	for _, j := range d.ctrl.Jobs() {
		parts = append(parts, j.ID+" "+string(j.Phase))
	}
	return strings.Join(parts, ", ")
}

// finish computes the summary.
func (d *demo) finish(reason string, ok bool) *Summary {
	s := d.summary
	s.OK, s.Reason, s.NewVersion = ok, reason, d.newVer
	s.Duration = time.Since(d.started)
	d.event(EventEnd, "", map[bool]string{true: "recovered", false: "stopped: " + reason}[ok])
	// The base model trained on no captured sample; the retrained one is scored only on the
	// probes, which the labeller never labels, and compared with the base model on them.
	var before, drift, driftFresh, after, clean Tally
	mayBeTrained := func(index int) bool { return !d.truth.Withheld(index) }
	for _, n := range d.nodes {
		s.Requests += n.gen.Requests()
		if n.drifted {
			before.add(n.gen.Total(s.BaseVersion, false))
			drift.add(n.gen.Total(s.BaseVersion, true))
			if d.newVer != "" {
				after.add(n.gen.TotalExcept(d.newVer, true, mayBeTrained))
				driftFresh.add(n.gen.TotalExcept(s.BaseVersion, true, mayBeTrained))
			}
		} else if d.newVer != "" {
			clean.add(n.gen.TotalExcept(d.newVer, false, mayBeTrained))
		}
		g := n.exp.Registry()
		s.Captured += int(metricSum(g, "edgeloop_samples_captured_total"))
		s.UplinkBytes += int64(metricSum(g, "edgeloop_sender_bytes_sent_total"))
	}
	s.AccuracyBefore, s.AccuracyDrift, s.AccuracyAfter, s.AccuracyClean = before.Accuracy(), drift.Accuracy(), after.Accuracy(), clean.Accuracy()
	s.AccuracyDriftFresh, s.FreshImages = driftFresh.Accuracy(), after.N
	s.EstimatedBefore, s.EstimatedDrift, s.EstimatedAfter = d.estimates(d.newVer)
	s.RecoveryTarget, s.Regained = d.cfg.RecoveryShare, regainedShare(s.AccuracyBefore, s.AccuracyDrift, s.AccuracyAfter)
	sortSignals(s.Signals)
	s.Labelled, s.Withheld = int(d.labels.labelled.Load()), int(d.labels.withheld.Load())
	s.ShardBytes = int64(metricSum(d.coll.Registry(), "edgeloop_collector_shard_upload_bytes_total"))
	if !d.onset.IsZero() {
		for _, e := range d.timeline.Events {
			if e.Kind == EventServing && e.Text == "serves version "+d.newVer && d.isDrifted(e.Node) {
				s.TimeToRecover = e.T - d.onset.Sub(d.started)
				break
			}
		}
	}
	for _, n := range d.nodes {
		d.timeline.Nodes = append(d.timeline.Nodes, n.series)
	}
	return &s
}

func (d *demo) isDrifted(name string) bool {
	for _, n := range d.nodes {
		if n.name == name {
			return n.drifted
		}
	}
	return false
}

func (d *demo) reportPath() string {
	if d.cfg.Report != "" {
		return d.cfg.Report
	}
	return filepath.Join(d.run, "report.html")
}

func (d *demo) writeReport(s *Summary) error {
	f, err := os.Create(d.reportPath())
	if err != nil {
		return err
	}
	if err := WriteReport(f, &d.timeline, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// metricSum sums every sample of a counter or gauge family in g.
func metricSum(g prometheus.Gatherer, name string) float64 {
	sum := 0.0
	forEach(g, name, func(v float64) { sum += v })
	return sum
}

// gaugeMax is the largest sample of a family, NaN when it has none.
func gaugeMax(g prometheus.Gatherer, name string) float64 { return gaugeMaxOf(g, name, nil) }

// gaugeMaxOf is the largest f(v) over a family's samples v (v itself when f is nil), skipping
// NaN; NaN when there is none.
func gaugeMaxOf(g prometheus.Gatherer, name string, f func(float64) float64) float64 {
	m := math.NaN()
	forEach(g, name, func(v float64) {
		if f != nil {
			v = f(v)
		}
		if !math.IsNaN(v) && (math.IsNaN(m) || v > m) {
			m = v
		}
	})
	return m
}

func forEach(g prometheus.Gatherer, name string, f func(float64)) {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				f(m.GetCounter().GetValue())
			case m.Gauge != nil:
				f(m.GetGauge().GetValue())
			}
		}
	}
}

// fmtDur prints a duration as m:ss.
func fmtDur(t time.Duration) string {
	s := int(t.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
