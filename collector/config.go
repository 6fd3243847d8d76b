// Package collector is the data-center side of edgeloop's capture loop: it receives samples
// from thousands of edge nodes (POST /v1/samples, docs/wire-format.md), makes them durable in
// a write-ahead log before answering, and builds them into dataset shards in object storage
// (docs/collector.md). Several instances may share a bucket behind a load balancer.
package collector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/collector/shard"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/web"
)

// Defaults of docs/architecture.md's port plan and the file system layout.
const (
	DefaultListen = ":9751"
	DefaultWALDir = "/var/lib/edgeloop/collector/wal"
)

// Config is the collector's whole configuration file (collector.yaml), documented key by key
// in docs/collector.md.
type Config struct {
	// Instance names this collector in shard names, so that instances sharing a bucket never
	// write the same object. Default: the host name.
	Instance string `yaml:"instance"`
	// Log configures the structured log on stderr.
	Log telemetry.LogConfig `yaml:"log"`
	// Tracing configures OpenTelemetry trace export (off by default).
	Tracing telemetry.TracingConfig `yaml:"tracing"`
	// Web is the listener: listen (default :9751), web_config_file (TLS, client certificates),
	// pprof. The ingest API, the operator endpoints, /metrics, /healthz and /readyz share it.
	Web web.Config `yaml:",inline"`
	// Auth names the credentials of nodes and operators.
	Auth auth.Config `yaml:"auth"`
	// Bucket is the object store the shards go to: s3://bucket[/prefix]?endpoint=... or
	// file:///dir (objstore.ParseURL). Required.
	Bucket string `yaml:"bucket"`
	// WAL is the write-ahead log on local disk.
	WAL WALConfig `yaml:"wal"`
	// Ingest holds the limits of the ingest API.
	Ingest ingest.Config `yaml:"ingest"`
	// Shards says how samples are cut into shards and uploaded.
	Shards shard.Config `yaml:"shards"`
	// Catalog is the index of what the bucket holds (docs/catalog.md).
	Catalog CatalogConfig `yaml:"catalog"`
	// Labels configures the labelling API, dataset manifests and Label Studio (docs/labels.md).
	Labels LabelsConfig `yaml:"labels"`
}

// CatalogConfig is the `catalog:` section.
type CatalogConfig struct {
	// RebuildInterval is how often the catalog reads the index files other instances uploaded.
	// Keep it below the catalog's settle time (2m). Default 1m.
	RebuildInterval time.Duration `yaml:"rebuild_interval"`
}

// LabelsConfig is the `labels:` section.
type LabelsConfig struct {
	// BucketURL is the bucket's URL as training jobs reach it, reported in dataset manifests.
	// Default: the collector's own bucket URL.
	BucketURL string `yaml:"bucket_url"`
	// PublicURL is the collector's address as annotators' browsers reach it (the base of the
	// image URLs in Label Studio tasks). Default: taken from each export request.
	PublicURL string `yaml:"public_url"`
	// SigningKeyFile holds the key that signs image URLs; instances behind one address must
	// share it. Empty: a random key per process (URLs die with it).
	SigningKeyFile string `yaml:"signing_key_file"`
}

// WALConfig is the `wal:` section. The log's size is bounded by ingest.max_wal_bytes
// (backpressure), never by dropping records.
type WALConfig struct {
	// Dir holds the log's segments, its position and the shard journal. Each instance needs its
	// own. Default /var/lib/edgeloop/collector/wal.
	Dir string `yaml:"dir"`
	// SegmentBytes is the size past which the log rolls to a new segment file; acked segments
	// are deleted whole. Default 64 MiB.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// SyncInterval bounds how long a background fsync waits; ingest itself fsyncs before every
	// 200, so this only matters for records whose batch failed. Default 200ms.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// DefaultConfig returns the configuration `edgeloop collector` runs with when given no file;
// only bucket and auth.tokens_file have no default.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || !validInstance(host) {
		host = "collector"
	}
	return Config{
		Instance: host,
		Log:      telemetry.DefaultLogConfig(),
		Tracing:  telemetry.DefaultTracingConfig(),
		Web:      web.Config{Listen: DefaultListen},
		WAL:      WALConfig{Dir: DefaultWALDir, SegmentBytes: 64 << 20, SyncInterval: 200 * time.Millisecond},
		Ingest:   ingest.DefaultConfig(),
		Shards:   shard.DefaultConfig(),
		Catalog:  CatalogConfig{RebuildInterval: time.Minute},
	}
}

// maxInstance bounds an instance name: shard and label file names add "-<WAL id>" (9
// characters) to it and must still be valid names.
const maxInstance = 63

// validInstance reports whether s may name the instance: the sample format's name rule, which
// keeps it safe in an object key and a metric label, within maxInstance.
func validInstance(s string) bool { return len(s) <= maxInstance && sample.ValidName(s) }

// Validate checks every section, naming fields by their path in the file.
func (c *Config) Validate() error {
	var errs []error
	if !validInstance(c.Instance) {
		errs = append(errs, config.Errorf("instance", "must be 1-%d letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got %q", maxInstance, c.Instance))
	}
	errs = append(errs,
		config.Nest("log", c.Log.Validate()),
		config.Nest("tracing", c.Tracing.Validate()),
		c.Web.Validate(),
		config.Nest("auth", c.Auth.Validate()),
		config.Nest("wal", c.WAL.Validate()),
		config.Nest("ingest", c.Ingest.Validate()),
		config.Nest("shards", c.Shards.Validate()),
	)
	if c.Catalog.RebuildInterval < time.Second || c.Catalog.RebuildInterval >= 2*time.Minute {
		errs = append(errs, config.Errorf("catalog.rebuild_interval", "must be at least 1s and below the catalog's 2m settle time, got %s", c.Catalog.RebuildInterval))
	}
	if u := c.Labels.PublicURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		errs = append(errs, config.Errorf("labels.public_url", "must be an http:// or https:// URL, got %q", u))
	}
	if c.Auth.ClientCAFile != "" && c.Web.WebConfigFile == "" {
		errs = append(errs, config.Errorf("auth.client_ca_file", "needs web_config_file with TLS that requests client certificates"))
	}
	if err := objstore.CheckWritableURL(c.Bucket); err != nil {
		errs = append(errs, config.Errorf("bucket", "%v", err))
	}
	return errors.Join(errs...)
}

// Validate checks the section, naming fields relative to it.
func (c WALConfig) Validate() error {
	var errs []error
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		errs = append(errs, config.Errorf("dir", "must be an absolute directory path, got %q", c.Dir))
	}
	if c.SegmentBytes < 4<<10 || c.SegmentBytes > 1<<30 {
		errs = append(errs, config.Errorf("segment_bytes", "must be between 4096 and 1073741824, got %d", c.SegmentBytes))
	}
	if c.SyncInterval <= 0 {
		errs = append(errs, config.Errorf("sync_interval", "must be positive, got %s", c.SyncInterval))
	}
	return errors.Join(errs...)
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
