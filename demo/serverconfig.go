package demo

import (
	"fmt"
	"strings"
	"time"
)

// CollectorConfig describes the demo's collector: tokens files, the bucket and a WAL, with
// shards cut small and often so that samples reach the bucket within seconds.
type CollectorConfig struct {
	// Instance names the collector in shard names.
	Instance string
	// Tokens and Operators are the hash lists of node and operator tokens.
	Tokens, Operators string
	// Bucket is the bucket's URL; WALDir the write-ahead log's directory.
	Bucket, WALDir string
	// ShardMaxAge is how long a shard stays open at most.
	ShardMaxAge time.Duration
}

// YAML is the collector's configuration file.
func (c CollectorConfig) YAML() string {
	return fmt.Sprintf(`instance: %s
listen: 127.0.0.1:0
auth:
  tokens_file: %s
  operator_tokens_file: %s
bucket: %s
wal:
  dir: %s
shards:
  target_bytes: 1048576
  max_age: %s
`, c.Instance, c.Tokens, c.Operators, c.Bucket, c.WALDir, c.ShardMaxAge)
}

// ControllerConfig describes the demo's retrain controller: a retrain once enough labels came
// in after a drift signal, trained by a local command, gated on an evaluation set, published
// stable.
type ControllerConfig struct {
	// StateDir holds the controller's state and local jobs.
	StateDir string
	// WebhookTokens and OperatorTokens are the hash lists of the two kinds of caller.
	WebhookTokens, OperatorTokens string
	// Bucket is the model repository's bucket URL; SigningKey the private key file.
	Bucket, SigningKey string
	// Collector is the collector's base URL; CollectorToken the file of its operator token.
	Collector, CollectorToken string
	// Model is the model retrained.
	Model string
	// MinNewLabels and Cooldown are the policy's.
	MinNewLabels int
	Cooldown     time.Duration
	// Command is the local backend's command (a YAML flow list).
	Command string
	// EvalSet names the gate's evaluation set.
	EvalSet string
	// DriftTargets are the exporters' /metrics URLs the drift trigger scrapes.
	DriftTargets []string
	// DriftFor is how long the drift must last before a retrain.
	DriftFor time.Duration
}

// YAML is the retrain controller's configuration file.
func (c ControllerConfig) YAML() string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
state_dir: %s
auth:
  webhook_tokens_file: %s
  operator_tokens_file: %s
repository:
  bucket: %s
  signing_key_file: %s
dataset:
  collector_url: %s
  token_file: %s
models:
  - name: %s
policy:
  min_new_labels: %d
  cooldown: %s
  daily_budget: 20
  job_timeout: 10m
  check_interval: 1s
backend:
  type: local
  local:
    command: %s
gate:
  eval_sets: [%s]
  max_class_regression: 0.05
publish:
  stable: true
drift:
  targets: [%s]
  psi_threshold: 0.25
  for: %s
  interval: 1s
`, c.StateDir, c.WebhookTokens, c.OperatorTokens, c.Bucket, c.SigningKey, c.Collector, c.CollectorToken, c.Model,
		c.MinNewLabels, c.Cooldown, c.Command, c.EvalSet, strings.Join(c.DriftTargets, ", "), c.DriftFor)
}
