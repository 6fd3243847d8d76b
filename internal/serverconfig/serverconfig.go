// Package serverconfig writes the collector's and the retrain controller's configuration files
// from typed values. `edgeloop demo` writes its servers' files with it, and so do the
// integration tests, which start the servers as processes: one home for the keys that every
// such file sets (listener, credentials, bucket, write-ahead log, job command), so that a key
// renamed in collector.Config or retrain.Config is renamed here once, and the demo's and the
// tests' files cannot drift apart.
//
// What varies from test to test (shard tuning, gate evaluators, per-model settings) is given as
// Tuning: a YAML mapping merged over the typed part, mappings key by key and anything else
// replaced. The files are YAML written by go.yaml.in/yaml/v3, so a value is always quoted as it
// must be.
package serverconfig

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultListen is the listener when none is given: loopback, a port the kernel picks.
const DefaultListen = "127.0.0.1:0"

// Collector describes a collector's configuration file (docs/collector.md, "Configuration").
type Collector struct {
	// Instance names the collector in shard names.
	Instance string
	// Listen is the listener; DefaultListen when empty.
	Listen string
	// LogJSON sets log.format: json, for tests that read the log.
	LogJSON bool
	// Tokens and Operators are the hash lists of node and operator tokens (Operators optional).
	Tokens, Operators string
	// Bucket is the bucket's URL; WALDir the write-ahead log's directory.
	Bucket, WALDir string
	// ShardTargetBytes and ShardMaxAge cut shards (zero: the collector's defaults).
	ShardTargetBytes int64
	ShardMaxAge      time.Duration
	// Tuning is YAML merged over the rest (see the package comment).
	Tuning string
}

// YAML is the collector's configuration file.
func (c Collector) YAML() (string, error) {
	auth := mapping{"tokens_file": c.Tokens}
	if c.Operators != "" {
		auth["operator_tokens_file"] = c.Operators
	}
	doc := mapping{
		"instance": c.Instance,
		"listen":   orDefault(c.Listen, DefaultListen),
		"auth":     auth,
		"bucket":   c.Bucket,
		"wal":      mapping{"dir": c.WALDir},
	}
	if c.LogJSON {
		doc["log"] = mapping{"format": "json"}
	}
	shards := mapping{}
	if c.ShardTargetBytes > 0 {
		shards["target_bytes"] = c.ShardTargetBytes
	}
	if c.ShardMaxAge > 0 {
		shards["max_age"] = c.ShardMaxAge.String()
	}
	if len(shards) > 0 {
		doc["shards"] = shards
	}
	return render("collector", doc, c.Tuning)
}

// Controller describes a retrain controller's configuration file (docs/retrain.md), with the
// local job backend.
type Controller struct {
	// Listen is the listener; DefaultListen when empty.
	Listen string
	// LogJSON sets log.format: json, for tests that read the log.
	LogJSON bool
	// StateDir holds the controller's state and local jobs.
	StateDir string
	// WebhookTokens and OperatorTokens are the hash lists of the two kinds of caller.
	WebhookTokens, OperatorTokens string
	// Bucket is the model repository's bucket URL; SigningKey the private key file.
	Bucket, SigningKey string
	// CollectorURL is the collector's base URL; CollectorToken the file of its operator token.
	CollectorURL, CollectorToken string
	// Models are the models retrained, by name (per-model settings go in Tuning).
	Models []string
	// Policy is the policy section; zero fields keep the controller's defaults.
	Policy Policy
	// Command is the local backend's command, one argument per element ({{.Output}} and the
	// other job placeholders are expanded by the controller).
	Command []string
	// EvalSets name the gate's evaluation sets; MaxClassRegression is its per-class bound
	// (zero: the default).
	EvalSets           []string
	MaxClassRegression float64
	// PublishStable moves the stable alias to a version that passed the gate.
	PublishStable bool
	// Drift makes the controller scrape exporters for the drift trigger; nil leaves it off.
	Drift *Drift
	// Tuning is YAML merged over the rest (see the package comment).
	Tuning string
}

// Policy is the controller's retrain policy; zero fields are left to the defaults.
type Policy struct {
	MinNewLabels   int
	EveryNewLabels int
	Cooldown       time.Duration
	DailyBudget    int
	JobTimeout     time.Duration
	CheckInterval  time.Duration
}

// Drift is the drift trigger: the exporters' /metrics URLs scraped, the PSI threshold, how
// long the drift must last and how often to scrape.
type Drift struct {
	Targets      []string
	PSIThreshold float64
	For          time.Duration
	Interval     time.Duration
}

// YAML is the retrain controller's configuration file.
func (c Controller) YAML() (string, error) {
	models := make([]mapping, 0, len(c.Models))
	for _, m := range c.Models {
		models = append(models, mapping{"name": m})
	}
	doc := mapping{
		"listen":    orDefault(c.Listen, DefaultListen),
		"state_dir": c.StateDir,
		"auth":      mapping{"webhook_tokens_file": c.WebhookTokens, "operator_tokens_file": c.OperatorTokens},
		"repository": mapping{
			"bucket":           c.Bucket,
			"signing_key_file": c.SigningKey,
		},
		"dataset": mapping{"collector_url": c.CollectorURL, "token_file": c.CollectorToken},
		"models":  models,
		"backend": mapping{"type": "local", "local": mapping{"command": c.Command}},
	}
	if c.LogJSON {
		doc["log"] = mapping{"format": "json"}
	}
	policy := mapping{}
	setInt(policy, "min_new_labels", c.Policy.MinNewLabels)
	setInt(policy, "every_new_labels", c.Policy.EveryNewLabels)
	setDuration(policy, "cooldown", c.Policy.Cooldown)
	setInt(policy, "daily_budget", c.Policy.DailyBudget)
	setDuration(policy, "job_timeout", c.Policy.JobTimeout)
	setDuration(policy, "check_interval", c.Policy.CheckInterval)
	if len(policy) > 0 {
		doc["policy"] = policy
	}
	gate := mapping{}
	if len(c.EvalSets) > 0 {
		gate["eval_sets"] = c.EvalSets
	}
	if c.MaxClassRegression > 0 {
		gate["max_class_regression"] = c.MaxClassRegression
	}
	if len(gate) > 0 {
		doc["gate"] = gate
	}
	if c.PublishStable {
		doc["publish"] = mapping{"stable": true}
	}
	if d := c.Drift; d != nil {
		drift := mapping{"targets": d.Targets}
		if d.PSIThreshold > 0 {
			drift["psi_threshold"] = d.PSIThreshold
		}
		setDuration(drift, "for", d.For)
		setDuration(drift, "interval", d.Interval)
		doc["drift"] = drift
	}
	return render("retrain controller", doc, c.Tuning)
}

// mapping is one YAML mapping of a configuration file.
type mapping = map[string]any

// render merges tuning over doc and writes the YAML; what names the file in errors.
func render(what string, doc mapping, tuning string) (string, error) {
	if tuning != "" {
		var over mapping
		if err := yaml.Unmarshal([]byte(tuning), &over); err != nil {
			return "", fmt.Errorf("%s configuration: tuning: %w", what, err)
		}
		merge(doc, over)
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("%s configuration: %w", what, err)
	}
	return string(b), nil
}

// merge puts over into doc: a mapping in both is merged key by key, anything else is replaced.
func merge(doc, over mapping) {
	for k, v := range over {
		sub, isMap := v.(mapping)
		if base, ok := doc[k].(mapping); ok && isMap {
			merge(base, sub)
			continue
		}
		doc[k] = v
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func setInt(m mapping, k string, v int) {
	if v != 0 {
		m[k] = v
	}
}

func setDuration(m mapping, k string, d time.Duration) {
	if d != 0 {
		m[k] = d.String()
	}
}
