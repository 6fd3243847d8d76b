package demo

import (
	"fmt"
	"path/filepath"
	"time"
)

// NodeConfig describes a simulated edge node's exporter: the demo's settings (the built-in
// runtime following the repository, capture of low-confidence and random predictions sent to
// the collector, and every drift signal on: confidence PSI, class mix and input statistics,
// docs/drift.md). The demo runs it in-process; the loop's integration test runs the same
// configuration as a separate `edgeloop exporter`.
type NodeConfig struct {
	// Node is the node's name; Model the model it serves.
	Node, Model string
	// Repository is the model repository's bucket URL; TrustedKey the public key file.
	Repository, TrustedKey string
	// PollInterval is how often model sync polls the repository.
	PollInterval time.Duration
	// DriftWindow is the number of predictions the drift signals cover.
	DriftWindow int
	// Collector is the collector's base URL; TokenFile holds the node's token.
	Collector, TokenFile string
	// Dir holds the node's model cache (models/), spool (spool/) and dead letters.
	Dir string
}

// YAML is the exporter configuration file.
func (c NodeConfig) YAML() string {
	return fmt.Sprintf(`node: %s
log:
  format: json
metrics:
  listen: 127.0.0.1:0
gpu:
  enabled: false
inference:
  listen: 127.0.0.1:0
  drift:
    window: %d
    signals:
      class_mix: true
      input: true
      embedding: true
models:
  - name: %s
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: %s
capture:
  enabled: true
  strategies:
    - {name: random, type: random, probability: 0.02}
    - {name: low_confidence, type: threshold, scorer: max_softmax, threshold: 0.6}
  limits:
    - {type: minutely, value: 3000}
  spool:
    dir: %s
  sender:
    url: %s
    token_file: %s
    batch_delay: 1s
    max_rate: 2000
    dead_letter_dir: %s
`, c.Node, c.DriftWindow, c.Model, c.Repository, c.TrustedKey, filepath.Join(c.Dir, "models"), c.PollInterval,
		filepath.Join(c.Dir, "spool"), c.Collector, c.TokenFile, filepath.Join(c.Dir, "deadletter"))
}
