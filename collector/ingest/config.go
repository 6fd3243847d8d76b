package ingest

import (
	"errors"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Config is the collector's `ingest:` section: the limits of docs/wire-format.md and the
// collector's protection against overload.
type Config struct {
	// MaxBodyBytes bounds a request body as sent (compressed). Default 16 MiB; past it, 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxUncompressedBytes bounds the tar stream, headers included. Default 64 MiB; past it, 413.
	MaxUncompressedBytes int64 `yaml:"max_uncompressed_bytes"`
	// MaxSamples bounds the distinct keys of a batch. Default 2,000; past it, 413.
	MaxSamples int `yaml:"max_samples"`
	// MaxConcurrent bounds the batches decoded at once, which bounds memory: each holds about
	// one chunk of decoded samples (appendChunkBytes) and its zstd window. Default 64; past it,
	// a batch waits up to QueueTimeout.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxConcurrentPerNode bounds the batches of one node in the handler at once, waiting for
	// a slot included, so that one node (a slow uplink, a misbehaving sender, a stolen token)
	// cannot take the slots every node shares. Past it the node's batch is answered 429 with
	// Retry-After at once, its body unread; other nodes are not affected. Default 4 (a
	// sender has one batch in flight).
	MaxConcurrentPerNode int `yaml:"max_concurrent_per_node"`
	// QueueTimeout is how long a batch past MaxConcurrent waits for a slot, its body unread,
	// before the answer is 503 with Retry-After. A burst of nodes is then served in turn rather
	// than sent away to send again. Default 1s; 0 answers 503 at once.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// MaxWALBytes is how much the write-ahead log may hold before ingest answers 503 with
	// Retry-After: the backpressure that keeps an object-store outage from filling the disk.
	// It is a hard ceiling: each batch reserves its records' bytes once decoded, and one
	// that does not fit beside the log and the batches ahead of it is refused. Default 8 GiB.
	MaxWALBytes int64 `yaml:"max_wal_bytes"`
	// GroupCommitDelay is how long the first batch to reach the write-ahead log's fsync waits
	// for others to share it: each batch's 200 waits for an fsync, and at a fleet's small
	// batches one fsync per batch cost as much CPU as decoding it. Default 5ms (latency added
	// to each batch, against the 1 s a batch waits for the sender's batch_delay); 0 syncs each
	// batch at once, sharing an fsync only with the batches that arrive while one runs.
	GroupCommitDelay time.Duration `yaml:"group_commit_delay"`
	// DedupKeys is how many recent keys are remembered to answer resends as duplicates (about
	// 50 bytes each). Default 1,000,000.
	DedupKeys int `yaml:"dedup_keys"`
	// RetryAfterSeconds is the Retry-After of a 503. Default 5.
	RetryAfterSeconds int `yaml:"retry_after_seconds"`
}

// DefaultConfig returns the section's defaults: the limits of docs/wire-format.md.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:         16 << 20,
		MaxUncompressedBytes: 64 << 20,
		MaxSamples:           2000,
		MaxConcurrent:        64,
		MaxConcurrentPerNode: 4,
		QueueTimeout:         time.Second,
		MaxWALBytes:          8 << 30,
		GroupCommitDelay:     5 * time.Millisecond,
		DedupKeys:            1_000_000,
		RetryAfterSeconds:    5,
	}
}

// Validate checks the section, naming fields relative to it.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, config.Errorf("max_body_bytes", "must be positive, got %d", c.MaxBodyBytes))
	}
	if c.MaxUncompressedBytes < sample.MaxRecordBytes {
		// Smaller, and a sample at the format's limits could never be sent.
		errs = append(errs, config.Errorf("max_uncompressed_bytes", "must be at least %d (one sample at the format's limits), got %d", sample.MaxRecordBytes, c.MaxUncompressedBytes))
	}
	if c.MaxSamples <= 0 {
		errs = append(errs, config.Errorf("max_samples", "must be positive, got %d", c.MaxSamples))
	}
	if c.MaxConcurrent <= 0 {
		errs = append(errs, config.Errorf("max_concurrent", "must be positive, got %d", c.MaxConcurrent))
	}
	if c.MaxConcurrentPerNode <= 0 {
		errs = append(errs, config.Errorf("max_concurrent_per_node", "must be positive, got %d", c.MaxConcurrentPerNode))
	}
	if c.QueueTimeout < 0 || c.QueueTimeout > time.Minute {
		errs = append(errs, config.Errorf("queue_timeout", "must be from 0 to 1m, got %s", c.QueueTimeout))
	}
	if c.MaxWALBytes <= 0 {
		errs = append(errs, config.Errorf("max_wal_bytes", "must be positive, got %d", c.MaxWALBytes))
	}
	if c.GroupCommitDelay < 0 || c.GroupCommitDelay > time.Second {
		errs = append(errs, config.Errorf("group_commit_delay", "must be from 0 to 1s, got %s", c.GroupCommitDelay))
	}
	if c.DedupKeys <= 0 {
		errs = append(errs, config.Errorf("dedup_keys", "must be positive, got %d", c.DedupKeys))
	}
	if c.RetryAfterSeconds <= 0 {
		errs = append(errs, config.Errorf("retry_after_seconds", "must be positive, got %d", c.RetryAfterSeconds))
	}
	return errors.Join(errs...)
}

// Limits returns the limits ReadTar enforces.
func (c Config) Limits() sample.Limits {
	return sample.Limits{MaxSamples: c.MaxSamples, MaxMemberBytes: sample.MaxInputBytes, MaxTotalBytes: c.MaxUncompressedBytes}
}
