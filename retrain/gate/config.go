// Package gate is the retrain controller's evaluation gate: it scores a candidate model and
// the serving version on the same evaluation set, measures both the same way, and decides by
// the model's rule whether the candidate may replace the serving version. docs/gate.md
// describes the evaluation set, the evaluators, the metrics, the rules and the calibration.
//
// The gate measures every version itself rather than trusting the numbers in a job's
// metrics.json: a training job (possibly a user's container) grades its own homework on a
// split of its choosing, while the gate grades every version the same way on the same
// samples. Nothing in it knows a particular data set: the input shape, datatype and classes
// come from the serving version's manifest (or, for a first model, from the candidate).
package gate

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/jobs/httpjob"
	"github.com/edgeloop/edgeloop/retrain/jobs/kubejob"
	"github.com/edgeloop/edgeloop/retrain/jobs/localjob"
	"go.yaml.in/yaml/v3"
)

// The primary metrics a Rules may compare versions by.
const (
	MetricAccuracy = "accuracy"
	MetricMacroF1  = "macro_f1"
	MetricTopK     = "top_k"
)

// The evaluators (Config.Evaluator).
const (
	EvaluatorBuiltin = "builtin"
	EvaluatorOIP     = "oip"
	EvaluatorJob     = "job"
)

// The ways the oip evaluator makes the versions available to the server (OIPConfig.Mode).
const (
	OIPModeTriton = "triton"
	OIPModePoll   = "poll"
)

// Rules is the decision rule of one model: docs/gate.md, "Rules".
type Rules struct {
	// PrimaryMetric is what the candidate must improve: accuracy, macro_f1 or top_k.
	PrimaryMetric string `yaml:"primary_metric"`
	// MinImprovement is how much the candidate's primary metric must exceed the serving
	// version's: candidate ≥ current + MinImprovement. A negative value tolerates a small loss
	// (for example to adopt a model trained on fresher data).
	MinImprovement float64 `yaml:"min_improvement"`
	// MaxClassRegression is the most recall any one class may lose against the serving
	// version, so that a better average cannot hide a class the candidate has forgotten.
	MaxClassRegression float64 `yaml:"max_class_regression"`
	// MinClassSamples is how many evaluation samples a class needs for its regression to be
	// judged; below it one sample is several points of recall and the check would be noise.
	MinClassSamples int `yaml:"min_class_samples"`
	// MaxECEIncrease is the most the expected calibration error (after temperature scaling
	// when calibrate is on) may grow against the serving version's; negative turns it off.
	MaxECEIncrease float64 `yaml:"max_ece_increase"`
	// MinEvalSamples is the smallest evaluation set a decision may rest on.
	MinEvalSamples int `yaml:"min_eval_samples"`
	// FirstModelMin is the primary metric a candidate needs when no version is serving yet,
	// there being nothing to compare with.
	FirstModelMin float64 `yaml:"first_model_min"`
	// TopK is the k of the top_k accuracy, capped at the number of classes.
	TopK int `yaml:"top_k"`
}

// RulesOverride is a model's partial override of the default Rules (models[].gate.rules):
// only the keys it sets replace the defaults.
type RulesOverride struct {
	PrimaryMetric      *string  `yaml:"primary_metric"`
	MinImprovement     *float64 `yaml:"min_improvement"`
	MaxClassRegression *float64 `yaml:"max_class_regression"`
	MinClassSamples    *int     `yaml:"min_class_samples"`
	MaxECEIncrease     *float64 `yaml:"max_ece_increase"`
	MinEvalSamples     *int     `yaml:"min_eval_samples"`
	FirstModelMin      *float64 `yaml:"first_model_min"`
	TopK               *int     `yaml:"top_k"`
}

// Apply returns r with the override's set keys replacing its values.
func (o RulesOverride) Apply(r Rules) Rules {
	set := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	seti := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	if o.PrimaryMetric != nil {
		r.PrimaryMetric = *o.PrimaryMetric
	}
	set(&r.MinImprovement, o.MinImprovement)
	set(&r.MaxClassRegression, o.MaxClassRegression)
	seti(&r.MinClassSamples, o.MinClassSamples)
	set(&r.MaxECEIncrease, o.MaxECEIncrease)
	seti(&r.MinEvalSamples, o.MinEvalSamples)
	set(&r.FirstModelMin, o.FirstModelMin)
	seti(&r.TopK, o.TopK)
	return r
}

// OIPConfig configures the oip evaluator (gate.oip).
type OIPConfig struct {
	// URL is the Open Inference Protocol server's base URL (http://triton:8000).
	URL string `yaml:"url"`
	// Mode is how both versions reach the server: "triton" writes them into RepositoryDir and
	// loads them through the repository API; "poll" publishes them into ScratchBucket, which an
	// edgeloop exporter's model_sync follows, and waits until they are ready.
	Mode string `yaml:"mode"`
	// RepositoryDir is the server's model repository directory (triton mode), as this
	// controller sees it.
	RepositoryDir string `yaml:"repository_dir"`
	// ScratchBucket is the scratch model repository (poll mode): a bucket URL.
	ScratchBucket string `yaml:"scratch_bucket"`
	// CandidateName and CurrentName are the model names the two versions are served under.
	CandidateName string `yaml:"candidate_name"`
	CurrentName   string `yaml:"current_name"`
	// BatchSize is how many samples one inference request carries.
	BatchSize int `yaml:"batch_size"`
	// ReadyTimeout bounds the wait for a version to be ready (poll mode) or loaded (triton).
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// RequestTimeout bounds one inference request.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// JobConfig configures the job evaluator (gate.job).
type JobConfig struct {
	// Timeout bounds an evaluation job.
	Timeout time.Duration `yaml:"timeout"`
	// Backend is the job backend that runs evaluation jobs: local (the default), kubernetes or
	// http. A kubernetes or http job gets its request, the set and both models staged in the
	// bucket (docs/gate.md, "The evaluation job").
	Backend string `yaml:"backend"`
	// Local is the local backend that runs evaluation jobs: its command (default `edgeloop
	// evaluate --request {{.DatasetManifest}} --out {{.Output}}`), env, kill grace. The job
	// contract's variables are set as for a training job (docs/gate.md).
	Local localjob.Config `yaml:"local"`
	// Kubernetes is the kubernetes backend for evaluation jobs, configured like backend.kubernetes
	// (its image has no default; the default command is `edgeloop evaluate`, which reads the
	// contract's variables).
	Kubernetes kubejob.Config `yaml:"kubernetes"`
	// HTTP is the http backend for evaluation jobs, configured like backend.http, in poll mode
	// only: callbacks reach the controller's job API, which knows training jobs only.
	HTTP httpjob.Config `yaml:"http"`
}

// The backends an evaluation job runs on (gate.job.backend).
const (
	JobBackendLocal      = "local"
	JobBackendKubernetes = "kubernetes"
	JobBackendHTTP       = "http"
)

// Validate reports every invalid setting of the section the backend uses, naming it by its
// YAML key.
func (c JobConfig) Validate() error {
	var errs []error
	if c.Timeout < time.Second {
		errs = append(errs, config.Errorf("timeout", "must be at least 1s, got %s", c.Timeout))
	}
	switch c.Backend {
	case JobBackendLocal:
		errs = append(errs, config.Nest("local", c.Local.Validate()))
	case JobBackendKubernetes:
		errs = append(errs, config.Nest("kubernetes", c.Kubernetes.Validate()))
	case JobBackendHTTP:
		errs = append(errs, config.Nest("http", c.HTTP.Validate()))
		if c.HTTP.Mode != httpjob.ModePoll {
			errs = append(errs, config.Errorf("http.mode", "must be %q for evaluation jobs (callbacks reach the controller's API for training jobs only), got %q", httpjob.ModePoll, c.HTTP.Mode))
		}
	default:
		errs = append(errs, config.Errorf("backend", "must be %q, %q or %q, got %q", JobBackendLocal, JobBackendKubernetes, JobBackendHTTP, c.Backend))
	}
	return errors.Join(errs...)
}

// Config is the gate's part of the retrain configuration (the `gate:` section): the default
// rule and evaluator of every model.
type Config struct {
	// Rules is the default decision rule, inline: `gate: {min_improvement: 0.01, ...}`.
	Rules `yaml:",inline"`
	// Evaluator is the default evaluator: builtin, oip or job.
	Evaluator string `yaml:"evaluator"`
	// Calibrate fits a softmax temperature on the evaluation set and records it in the
	// published manifest.
	Calibrate bool `yaml:"calibrate"`
	// EvalSets are the evaluation sets (evalsets/<model>/<name>/) every model is scored on,
	// besides its held-out captured samples; models[].eval_sets replaces it for one model.
	EvalSets []string `yaml:"eval_sets"`
	// OIP configures the oip evaluator.
	OIP OIPConfig `yaml:"oip"`
	// Job configures the job evaluator.
	Job JobConfig `yaml:"job"`
}

// removedKeys are keys of earlier versions, with what replaces them: strict decoding would
// only say "field not found", which does not tell an operator what to write instead.
var removedKeys = map[string]string{
	"fashion_mnist_dir":        "the gate no longer reads a fixed data set: create an evaluation set with `edgeloop evalset create` and list it in gate.eval_sets (or models[].eval_sets)",
	"reference_images":         "the gate no longer reads a fixed data set: create an evaluation set with `edgeloop evalset create` and list it in gate.eval_sets (or models[].eval_sets)",
	"first_model_min_accuracy": "renamed first_model_min (it applies to the primary metric)",
}

// UnmarshalYAML decodes the section strictly, refusing keys of earlier versions with what
// replaces them.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if why, ok := removedKeys[n.Content[i].Value]; ok {
				return fmt.Errorf("line %d: gate.%s was removed: %s", n.Content[i].Line, n.Content[i].Value, why)
			}
		}
	}
	type plain Config // without the method, so Decode does not recurse
	return n.Decode((*plain)(c))
}

// DefaultRules are the defaults of Rules: accuracy must not fall, no class may lose more than
// 2 points of recall, ECE may grow by at most 0.05, at least 200 evaluation samples, and 0.5
// for a first model.
func DefaultRules() Rules {
	return Rules{
		PrimaryMetric: MetricAccuracy, MinImprovement: 0, MaxClassRegression: 0.02, MinClassSamples: 50,
		MaxECEIncrease: 0.05, MinEvalSamples: 200, FirstModelMin: 0.5, TopK: 5,
	}
}

// DefaultConfig returns the gate's defaults: DefaultRules, the builtin evaluator, calibration
// on, no evaluation sets (held-out captured samples only).
func DefaultConfig() Config {
	return Config{
		Rules: DefaultRules(), Evaluator: EvaluatorBuiltin, Calibrate: true,
		OIP: OIPConfig{Mode: OIPModeTriton, CandidateName: "edgeloop-candidate", CurrentName: "edgeloop-current",
			BatchSize: 64, ReadyTimeout: 2 * time.Minute, RequestTimeout: 30 * time.Second},
		Job: DefaultJobConfig(),
	}
}

// Validate reports every invalid setting, naming it by its YAML key.
func (c Config) Validate() error {
	errs := []error{c.Rules.Validate()}
	switch c.Evaluator {
	case EvaluatorBuiltin, EvaluatorJob:
	case EvaluatorOIP:
		errs = append(errs, config.Nest("oip", c.OIP.Validate()))
	default:
		errs = append(errs, config.Errorf("evaluator", `must be "builtin", "oip" or "job", got %q`, c.Evaluator))
	}
	for i, s := range c.EvalSets {
		if err := validSetName(s); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("eval_sets[%d]", i), "%v", err))
		}
	}
	if c.Evaluator == EvaluatorJob {
		errs = append(errs, config.Nest("job", c.Job.Validate()))
	}
	return errors.Join(errs...)
}

// Validate reports every invalid rule setting, naming it by its YAML key.
func (r Rules) Validate() error {
	var errs []error
	switch r.PrimaryMetric {
	case MetricAccuracy, MetricMacroF1, MetricTopK:
	default:
		errs = append(errs, config.Errorf("primary_metric", `must be "accuracy", "macro_f1" or "top_k", got %q`, r.PrimaryMetric))
	}
	if !(r.MinImprovement >= -1 && r.MinImprovement <= 1) { // also refuses NaN
		errs = append(errs, config.Errorf("min_improvement", "must be between -1 and 1, got %v", r.MinImprovement))
	}
	if !(r.MaxClassRegression >= 0 && r.MaxClassRegression <= 1) {
		errs = append(errs, config.Errorf("max_class_regression", "must be between 0 and 1, got %v", r.MaxClassRegression))
	}
	if r.MinClassSamples < 1 {
		errs = append(errs, config.Errorf("min_class_samples", "must be at least 1, got %d", r.MinClassSamples))
	}
	if !(r.MaxECEIncrease <= 1) {
		errs = append(errs, config.Errorf("max_ece_increase", "must be at most 1 (negative: off), got %v", r.MaxECEIncrease))
	}
	if r.MinEvalSamples < 1 {
		errs = append(errs, config.Errorf("min_eval_samples", "must be at least 1, got %d", r.MinEvalSamples))
	}
	if !(r.FirstModelMin >= 0 && r.FirstModelMin <= 1) {
		errs = append(errs, config.Errorf("first_model_min", "must be between 0 and 1, got %v", r.FirstModelMin))
	}
	if r.TopK < 1 {
		errs = append(errs, config.Errorf("top_k", "must be at least 1, got %d", r.TopK))
	}
	return errors.Join(errs...)
}

// Validate checks the oip evaluator's settings.
func (c OIPConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, config.Errorf("url", "must be an http:// or https:// URL, got %q", c.URL))
	}
	switch c.Mode {
	case OIPModeTriton:
		if c.RepositoryDir == "" {
			errs = append(errs, config.Errorf("repository_dir", "must name the server's model repository directory in triton mode"))
		}
	case OIPModePoll:
		if err := objstore.CheckWritableURL(c.ScratchBucket); err != nil {
			errs = append(errs, config.Errorf("scratch_bucket", "%v", err))
		}
	default:
		errs = append(errs, config.Errorf("mode", `must be "triton" or "poll", got %q`, c.Mode))
	}
	if err := validName(c.CandidateName); err != nil {
		errs = append(errs, config.Errorf("candidate_name", "%v", err))
	}
	if err := validName(c.CurrentName); err != nil {
		errs = append(errs, config.Errorf("current_name", "%v", err))
	}
	if c.CandidateName == c.CurrentName {
		errs = append(errs, config.Errorf("current_name", "must differ from candidate_name"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, config.Errorf("batch_size", "must be at least 1, got %d", c.BatchSize))
	}
	if c.ReadyTimeout < time.Second {
		errs = append(errs, config.Errorf("ready_timeout", "must be at least 1s, got %s", c.ReadyTimeout))
	}
	if c.RequestTimeout < 100*time.Millisecond {
		errs = append(errs, config.Errorf("request_timeout", "must be at least 100ms, got %s", c.RequestTimeout))
	}
	return errors.Join(errs...)
}

// metricEpsilon absorbs float rounding in comparisons of metrics, which are ratios of counts:
// 0.88 + 0.01 must not fail against 0.89 by one ulp.
const metricEpsilon = 1e-9
