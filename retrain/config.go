// Package retrain is edgeloop's retrain controller (`edgeloop retrain`): it takes triggers
// (Alertmanager webhooks, operators, its own policy), decides whether to train, runs the
// training job on a backend (retrain/jobs), gates the candidate against the serving version
// (retrain/gate) and publishes it signed (retrain/publish). docs/retrain.md describes it.
package retrain

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"regexp"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	ds "github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/internal/tokenurl"
	"github.com/edgeloop/edgeloop/internal/web"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
	"github.com/edgeloop/edgeloop/retrain/jobs/localjob"
)

// Defaults of docs/architecture.md's port plan and the file system layout.
const (
	DefaultListen   = ":9752"
	DefaultStateDir = "/var/lib/edgeloop/retrain"
)

// Config is the controller's whole configuration file (retrain.yaml), documented key by key in
// docs/retrain.md.
type Config struct {
	// Log configures the structured log on stderr.
	Log telemetry.LogConfig `yaml:"log"`
	// Tracing configures OpenTelemetry trace export (off by default).
	Tracing telemetry.TracingConfig `yaml:"tracing"`
	// Web is the listener: listen (default :9752), web_config_file (TLS), pprof.
	Web web.Config `yaml:",inline"`
	// ExternalURL is the controller's address as jobs reach it (the http backend's completion
	// callbacks). Default: http://127.0.0.1 and the listen port.
	ExternalURL string `yaml:"external_url"`
	// StateDir holds the controller's state (jobs, decisions, watermarks) and the local jobs'
	// directories. One active controller per state directory.
	StateDir string `yaml:"state_dir"`
	// Auth names the credentials of Alertmanager and of operators.
	Auth AuthConfig `yaml:"auth"`
	// Repository is the model repository: where the serving versions are read and new ones
	// published.
	Repository RepositoryConfig `yaml:"repository"`
	// Dataset says where the training data comes from.
	Dataset DatasetConfig `yaml:"dataset"`
	// Models lists the models this controller may retrain.
	Models []ModelConfig `yaml:"models"`
	// Alerts lists the alert names that trigger a retrain of the model in their `model` label.
	Alerts []string `yaml:"alerts"`
	// Policy decides which triggers start a job.
	Policy PolicyConfig `yaml:"policy"`
	// Backend runs the jobs.
	Backend BackendConfig `yaml:"backend"`
	// Gate is the evaluation gate (docs/gate.md).
	Gate gate.Config `yaml:"gate"`
	// Publish says how a promoted candidate is rolled out.
	Publish PublishConfig `yaml:"publish"`
	// Drift makes the controller watch exporters itself (no Prometheus needed).
	Drift DriftConfig `yaml:"drift"`
}

// AuthConfig is the `auth:` section. Both files use the collector's tokens format (lines
// "<id> sha256:<hex>", reloaded on SIGHUP).
type AuthConfig struct {
	// WebhookTokensFile holds Alertmanager's credentials: its http_config bearer token, or the
	// password of its basic_auth with the id as the user name. Required.
	WebhookTokensFile string `yaml:"webhook_tokens_file"`
	// OperatorTokensFile holds operators' tokens for the jobs API and manual retrains. Jobs
	// calling back (the http backend) use the token in the callback URL instead.
	OperatorTokensFile string `yaml:"operator_tokens_file"`
}

// RepositoryConfig is the `repository:` section.
type RepositoryConfig struct {
	// Bucket is the model repository's object store: s3://... or file:///dir. Required.
	Bucket string `yaml:"bucket"`
	// SigningKeyFile is the ed25519 private key new versions are signed with
	// (`edgeloop model keygen`). Required.
	SigningKeyFile string `yaml:"signing_key_file"`
	// PublicKeyFiles verify the serving version before the gate evaluates it. Default: the
	// signing key's own public half.
	PublicKeyFiles []string `yaml:"public_key_files"`
}

// DatasetConfig is the `dataset:` section.
type DatasetConfig struct {
	// CollectorURL is the collector whose dataset manifests (GET /v1/datasets/{model}) list the
	// shards and label files to train on. Required.
	CollectorURL string `yaml:"collector_url"`
	// TokenFile holds an operator token of the collector.
	TokenFile string `yaml:"token_file"`
	// AllowInsecureToken lets token_file's token go to an http:// collector_url that is not a
	// loopback address. Off by default (docs/security.md).
	AllowInsecureToken bool `yaml:"allow_insecure_token"`
	// Bucket is the bucket the manifests' keys are in, with credentials. Default: the
	// repository's bucket.
	Bucket string `yaml:"bucket"`
	// Timeout bounds each request to the collector. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// ModelConfig is one entry of `models:`.
type ModelConfig struct {
	// Name is the model's name in the repository.
	Name string `yaml:"name"`
	// Serving selects the version candidates are compared with and retrained from: "latest",
	// an alias ("stable") or a version number. Default: "stable" when publish.stable is set and
	// the alias exists, else "latest".
	Serving string `yaml:"serving"`
	// Classes are the model's classes in output order, for a first model whose ONNX file
	// carries no "classes" metadata (later versions take them from the serving manifest).
	Classes []string `yaml:"classes"`
	// EvalSets replaces gate.eval_sets for this model: the evaluation sets
	// (evalsets/<model>/<name>/) its versions are scored on besides the held-out samples.
	EvalSets []string `yaml:"eval_sets"`
	// Gate overrides the gate's defaults for this model: the evaluator and any rule key.
	Gate ModelGateConfig `yaml:"gate"`
}

// ModelGateConfig is models[].gate: what differs from the `gate:` defaults for one model.
type ModelGateConfig struct {
	// Evaluator replaces gate.evaluator: builtin, oip or job.
	Evaluator string `yaml:"evaluator"`
	// RulesOverride holds the rule keys (primary_metric, min_improvement, ...) that replace
	// gate's.
	gate.RulesOverride `yaml:",inline"`
}

// PolicyConfig is the `policy:` section (docs/retrain.md, "Policy").
type PolicyConfig struct {
	// Cooldown is the least time between the end of a model's job and the start of its next.
	Cooldown time.Duration `yaml:"cooldown"`
	// MinNewLabels is how many labelled samples must have arrived since the model's last
	// training for a trigger to start a job. 0 trains on triggers alone.
	MinNewLabels int `yaml:"min_new_labels"`
	// DailyBudget is the most jobs per model started in one UTC day.
	DailyBudget int `yaml:"daily_budget"`
	// EveryNewLabels starts a job (source "labels") whenever this many new labelled samples
	// have arrived. 0: off.
	EveryNewLabels int `yaml:"every_new_labels"`
	// Schedule starts a job (source "schedule") this long after the model's last job started.
	// 0: off.
	Schedule time.Duration `yaml:"schedule"`
	// CheckInterval is how often the label and schedule policies are evaluated.
	CheckInterval time.Duration `yaml:"check_interval"`
	// JobTimeout cancels a job that runs longer.
	JobTimeout time.Duration `yaml:"job_timeout"`
	// DedupeWindow is how long a webhook's groupKey and fingerprint are remembered, so that
	// Alertmanager's re-sends (every group_interval) and retries start nothing.
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// KeepJobs is how many finished jobs the state keeps (and the API lists).
	KeepJobs int `yaml:"keep_jobs"`
}

// BackendConfig is the `backend:` section: type picks one of the others.
type BackendConfig struct {
	// Type is "local", "kubernetes" or "http".
	Type       string          `yaml:"type"`
	Local      localjob.Config `yaml:"local"`
	Kubernetes kubejob.Config  `yaml:"kubernetes"`
	HTTP       httpjob.Config  `yaml:"http"`
	// Output is where remote jobs (kubernetes, http) write: a bucket URL whose prefix
	// jobs/<model>/<job>/ receives model.onnx and metrics.json, and where their dataset
	// manifest is put. Default: the dataset bucket. The local backend uses state_dir.
	Output string `yaml:"output"`
}

// PublishConfig is the `publish:` section.
type PublishConfig struct {
	// Canary points the "canary" alias at a promoted version.
	Canary bool `yaml:"canary"`
	// Stable points the "stable" alias at it: at once, or after Soak when Canary is set too.
	Stable bool `yaml:"stable"`
	// Soak is how long a version stays on canary before stable follows (with canary and
	// stable both set). 0: at once.
	Soak time.Duration `yaml:"soak"`
}

// DriftConfig is the `drift:` section: a built-in trigger for sites without Prometheus.
type DriftConfig struct {
	// Targets are exporter /metrics URLs to read edgeloop_confidence_psi from. Empty: off.
	Targets []string `yaml:"targets"`
	// PSIThreshold is the PSI above which a model on a node is drifting (0.25 is the usual
	// "significant shift").
	PSIThreshold float64 `yaml:"psi_threshold"`
	// For is how long the PSI must stay above the threshold before a retrain is triggered.
	For time.Duration `yaml:"for"`
	// Interval is how often the targets are read.
	Interval time.Duration `yaml:"interval"`
}

// DefaultConfig returns the configuration `edgeloop retrain` runs with when given no file.
func DefaultConfig() Config {
	return Config{
		Log:      telemetry.DefaultLogConfig(),
		Tracing:  telemetry.DefaultTracingConfig(),
		Web:      web.Config{Listen: DefaultListen},
		StateDir: DefaultStateDir,
		Dataset:  DatasetConfig{Timeout: 30 * time.Second},
		Alerts:   []string{"EdgeloopConfidenceDrift", "EdgeloopEstimatedAccuracyDrop"},
		Policy: PolicyConfig{
			Cooldown: 6 * time.Hour, MinNewLabels: 100, DailyBudget: 4, CheckInterval: time.Minute,
			JobTimeout: 4 * time.Hour, DedupeWindow: 24 * time.Hour, KeepJobs: 200,
		},
		Backend: BackendConfig{
			Type: "local", Local: localjob.DefaultConfig(),
			Kubernetes: kubejob.DefaultConfig(), HTTP: httpjob.DefaultConfig(),
		},
		Gate:    gate.DefaultConfig(),
		Publish: PublishConfig{Stable: true},
		Drift:   DriftConfig{PSIThreshold: 0.25, For: 5 * time.Minute, Interval: 15 * time.Second},
	}
}

var alertNameRE = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)

// Validate checks every section, naming fields by their path in the file.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs,
		config.Nest("log", c.Log.Validate()),
		config.Nest("tracing", c.Tracing.Validate()),
		c.Web.Validate(),
		config.Nest("auth", c.Auth.Validate()),
		config.Nest("repository", c.Repository.Validate()),
		config.Nest("dataset", c.Dataset.Validate()),
		config.Nest("policy", c.Policy.Validate()),
		config.Nest("backend", c.Backend.Validate()),
		config.Nest("gate", c.Gate.Validate()),
		config.Nest("publish", c.Publish.Validate()),
		config.Nest("drift", c.Drift.Validate()),
	)
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		errs = append(errs, config.Errorf("state_dir", "must be an absolute directory path, got %q", c.StateDir))
	}
	if c.ExternalURL != "" {
		if err := httpURL(c.ExternalURL); err != nil {
			errs = append(errs, config.Errorf("external_url", "%v", err))
		}
	}
	if c.Backend.Type == "http" && c.Backend.HTTP.Mode == httpjob.ModeCallback && c.ExternalURL == "" {
		errs = append(errs, config.Errorf("external_url", "must be set with backend.http.mode callback: remote jobs call the controller back at it"))
	}
	if len(c.Models) == 0 {
		errs = append(errs, config.Errorf("models", "must list at least one model to retrain"))
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		if err := modelrepo.ValidateModelName(m.Name); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("models[%d].name", i), "%v", err))
		} else if seen[m.Name] {
			errs = append(errs, config.Errorf(fmt.Sprintf("models[%d].name", i), "%q is listed twice", m.Name))
		}
		seen[m.Name] = true
		if m.Serving != "" {
			if err := modelrepo.ValidateSelector(m.Serving); err != nil {
				errs = append(errs, config.Errorf(fmt.Sprintf("models[%d].serving", i), "%v", err))
			}
		}
		if len(m.Classes) > 0 {
			if err := (ds.Spec{Shape: []int64{1}, Datatype: ds.DatatypeFP32, Classes: m.Classes}).Validate(); err != nil {
				errs = append(errs, config.Errorf(fmt.Sprintf("models[%d].classes", i), "%v", err))
			}
		}
		// A model that overrides the gate must be valid as a whole with its overrides (the
		// defaults alone are checked as gate.*).
		if g := c.modelGate(m); m.Gate.Evaluator != "" || m.EvalSets != nil || g.Rules != c.Gate.Rules {
			errs = append(errs, config.Nest(fmt.Sprintf("models[%d].gate", i), g.Validate()))
		}
	}
	for i, a := range c.Alerts {
		if !alertNameRE.MatchString(a) {
			errs = append(errs, config.Errorf(fmt.Sprintf("alerts[%d]", i), "%q is not a Prometheus alert name", a))
		}
	}
	return errors.Join(errs...)
}

// modelGate is the gate configuration of one model: the `gate:` defaults with the model's
// overrides.
func (c *Config) modelGate(m ModelConfig) gate.Config {
	g := c.Gate
	g.Rules = m.Gate.Apply(g.Rules)
	if m.Gate.Evaluator != "" {
		g.Evaluator = m.Gate.Evaluator
	}
	if m.EvalSets != nil {
		g.EvalSets = m.EvalSets
	}
	return g
}

// Validate checks the section.
func (c AuthConfig) Validate() error {
	var errs []error
	if c.WebhookTokensFile == "" {
		errs = append(errs, config.Errorf("webhook_tokens_file", "must be set: Alertmanager authenticates with a bearer token or basic auth"))
	}
	for _, f := range []struct{ field, path string }{{"webhook_tokens_file", c.WebhookTokensFile}, {"operator_tokens_file", c.OperatorTokensFile}} {
		if f.path == "" {
			continue
		}
		if _, err := token.LoadList(f.path); err != nil {
			errs = append(errs, config.Errorf(f.field, "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the section.
func (c RepositoryConfig) Validate() error {
	var errs []error
	if err := objstore.CheckWritableURL(c.Bucket); err != nil {
		errs = append(errs, config.Errorf("bucket", "%v", err))
	}
	if c.SigningKeyFile == "" {
		errs = append(errs, config.Errorf("signing_key_file", "must be set: new versions are signed (edgeloop model keygen)"))
	} else if _, err := modelrepo.LoadSigner(c.SigningKeyFile); err != nil {
		errs = append(errs, config.Errorf("signing_key_file", "%v", err))
	}
	if len(c.PublicKeyFiles) > 0 {
		if _, err := modelrepo.LoadVerifier(c.PublicKeyFiles...); err != nil {
			errs = append(errs, config.Errorf("public_key_files", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the section.
func (c DatasetConfig) Validate() error {
	var errs []error
	if err := httpURL(c.CollectorURL); err != nil {
		errs = append(errs, config.Errorf("collector_url", "%v", err))
	} else if err := tokenurl.Check(c.CollectorURL, c.TokenFile != "", c.AllowInsecureToken); err != nil {
		errs = append(errs, config.Errorf("collector_url", "%v", err))
	}
	if c.TokenFile != "" {
		// A hash list here (the collector's operator_tokens_file) used to pass and show only
		// at the first trigger, as a 503 wrapping the collector's 401. A file not there (yet)
		// is the first trigger's error: configurations are checked where secrets are not.
		if _, err := token.ReadSecret(c.TokenFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, config.Errorf("token_file", "%v", err))
		}
	}
	if c.Bucket != "" {
		if err := objstore.CheckWritableURL(c.Bucket); err != nil {
			errs = append(errs, config.Errorf("bucket", "%v", err))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Validate checks the section.
func (c PolicyConfig) Validate() error {
	var errs []error
	if c.Cooldown < 0 {
		errs = append(errs, config.Errorf("cooldown", "must not be negative, got %s", c.Cooldown))
	}
	if c.MinNewLabels < 0 {
		errs = append(errs, config.Errorf("min_new_labels", "must not be negative, got %d", c.MinNewLabels))
	}
	if c.DailyBudget < 1 {
		errs = append(errs, config.Errorf("daily_budget", "must be at least 1, got %d", c.DailyBudget))
	}
	if c.EveryNewLabels < 0 {
		errs = append(errs, config.Errorf("every_new_labels", "must not be negative, got %d", c.EveryNewLabels))
	}
	if c.Schedule < 0 {
		errs = append(errs, config.Errorf("schedule", "must not be negative, got %s", c.Schedule))
	}
	if c.CheckInterval < 100*time.Millisecond {
		errs = append(errs, config.Errorf("check_interval", "must be at least 100ms, got %s", c.CheckInterval))
	}
	if c.JobTimeout < time.Second {
		errs = append(errs, config.Errorf("job_timeout", "must be at least 1s, got %s", c.JobTimeout))
	}
	if c.DedupeWindow < time.Minute {
		errs = append(errs, config.Errorf("dedupe_window", "must be at least 1m (longer than Alertmanager's group_interval), got %s", c.DedupeWindow))
	}
	if c.KeepJobs < 1 {
		errs = append(errs, config.Errorf("keep_jobs", "must be at least 1, got %d", c.KeepJobs))
	}
	return errors.Join(errs...)
}

// Validate checks the section: the chosen backend's settings only.
func (c BackendConfig) Validate() error {
	var errs []error
	switch c.Type {
	case "local":
		errs = append(errs, config.Nest("local", c.Local.Validate()))
	case "kubernetes":
		errs = append(errs, config.Nest("kubernetes", c.Kubernetes.Validate()))
	case "http":
		errs = append(errs, config.Nest("http", c.HTTP.Validate()))
	default:
		errs = append(errs, config.Errorf("type", `must be "local", "kubernetes" or "http", got %q`, c.Type))
	}
	if c.Output != "" {
		if err := objstore.CheckWritableURL(c.Output); err != nil {
			errs = append(errs, config.Errorf("output", "%v", err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the section.
func (c PublishConfig) Validate() error {
	var errs []error
	if !c.Canary && !c.Stable {
		errs = append(errs, config.Errorf("stable", "canary or stable must be set: a promoted version nobody follows by alias reaches only nodes on \"latest\""))
	}
	if c.Soak < 0 {
		errs = append(errs, config.Errorf("soak", "must not be negative, got %s", c.Soak))
	}
	if c.Soak > 0 && !(c.Canary && c.Stable) {
		errs = append(errs, config.Errorf("soak", "needs both canary and stable: the soak is the time between them"))
	}
	return errors.Join(errs...)
}

// Validate checks the section.
func (c DriftConfig) Validate() error {
	var errs []error
	for i, t := range c.Targets {
		if err := httpURL(t); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("targets[%d]", i), "%v", err))
		}
	}
	if !(c.PSIThreshold > 0) {
		errs = append(errs, config.Errorf("psi_threshold", "must be positive, got %v", c.PSIThreshold))
	}
	if c.For < 0 {
		errs = append(errs, config.Errorf("for", "must not be negative, got %s", c.For))
	}
	if c.Interval < 100*time.Millisecond {
		errs = append(errs, config.Errorf("interval", "must be at least 100ms, got %s", c.Interval))
	}
	return errors.Join(errs...)
}

func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an http:// or https:// URL, got %q", s)
	}
	return nil
}

// LoadConfig returns the defaults overlaid with the file at path, validated.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path == "" {
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("config: defaults: %w", err)
		}
		return cfg, nil
	}
	err := config.LoadFile(path, &cfg)
	return cfg, err
}
