package sender

import (
	"errors"
	"io/fs"
	"net/url"
	"path/filepath"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/internal/tokenurl"
)

// DefaultDeadLetterDir is where samples the collector refused are kept on the edge node.
const DefaultDeadLetterDir = "/var/lib/edgeloop/deadletter"

// maxBatchSamplesLimit is the collector's default limit on samples per batch
// (docs/wire-format.md); a larger batch would only be split again after a 413.
const maxBatchSamplesLimit = 2000

// maxBackoffLimit bounds max_backoff: a node that waits longer between attempts is as good as
// disconnected.
const maxBackoffLimit = 24 * time.Hour

// Limits on max_batch_bytes: below the minimum a batch would hold few samples; above the
// maximum the collector's default limit on an uncompressed batch refuses it.
const (
	minBatchBytes = 64 << 10
	maxBatchBytes = 64 << 20
)

// Config is the sender's section of the exporter configuration: where the collector is, how
// the node proves who it is, and how hard it may push.
type Config struct {
	// URL is the collector's base URL (http:// or https://); batches go to URL/v1/samples.
	// Required when capture is on; empty means there is nowhere to send.
	URL string `yaml:"url"`
	// TokenFile holds the node's bearer token. It is read at start, then again every minute
	// and after every 401 or 403, so a rotated token takes effect without a restart.
	TokenFile string `yaml:"token_file"`
	// AllowInsecureToken lets token_file's token go to an http:// URL that is not a loopback
	// address. Off by default: a token in clear text lets anyone on the site's network act as
	// the node (docs/security.md).
	AllowInsecureToken bool `yaml:"allow_insecure_token"`
	// TLS configures the connection: a client certificate instead of (or besides) a token,
	// and the CA that signed the collector's certificate.
	TLS TLSConfig `yaml:"tls"`
	// Timeout bounds one request, from connecting to reading the response. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBatchSamples bounds the samples of one batch. Default 500.
	MaxBatchSamples int `yaml:"max_batch_samples"`
	// MaxBatchBytes bounds the spool records (about the uncompressed tar) of one batch.
	// Default 4 MiB.
	MaxBatchBytes int64 `yaml:"max_batch_bytes"`
	// BatchDelay is how long a sample may wait for a batch to fill when the backlog is small:
	// fewer, larger requests at the cost of that much delay. Default 2s; 0 sends at once.
	BatchDelay time.Duration `yaml:"batch_delay"`
	// InitialBackoff is the first retry delay's ceiling; it doubles with each failed attempt
	// up to MaxBackoff, and each wait is drawn uniformly below it (full jitter). Default 1s.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps retry delays, and the collector's Retry-After. Default 5m, at most 24h.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxRate bounds the samples sent per second, with a burst of one second's worth, so a
	// fleet reconnecting after an outage drains its backlogs without flattening the
	// collector. Default 50.
	MaxRate float64 `yaml:"max_rate"`
	// MaxBytesPerSecond bounds the compressed bytes sent per second, with a burst of one
	// second's worth. Default 1 MiB.
	MaxBytesPerSecond int64 `yaml:"max_bytes_per_second"`
	// DeadLetterDir keeps the samples the collector refused (and records that do not decode),
	// for inspection and replay. Default /var/lib/edgeloop/deadletter.
	DeadLetterDir string `yaml:"dead_letter_dir"`
	// DeadLetterMaxBytes caps DeadLetterDir; the oldest entries are removed first. 0 keeps
	// nothing (refused samples are only logged). Default 64 MiB.
	DeadLetterMaxBytes int64 `yaml:"dead_letter_max_bytes"`
}

// TLSConfig is the sender's TLS client configuration.
type TLSConfig struct {
	// CertFile and KeyFile are the node's PEM client certificate and key. They are re-read
	// every minute and after every 401 or 403, so rotation needs no restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is a PEM bundle of the CAs trusted to sign the collector's certificate; empty
	// trusts the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name the collector's certificate is checked against (default:
	// the URL's host).
	ServerName string `yaml:"server_name"`
}

func (t TLSConfig) set() bool { return t != TLSConfig{} }

// DefaultConfig returns the section's defaults: no URL (nothing sent).
func DefaultConfig() Config {
	return Config{
		Timeout:            30 * time.Second,
		MaxBatchSamples:    500,
		MaxBatchBytes:      4 << 20,
		BatchDelay:         2 * time.Second,
		InitialBackoff:     time.Second,
		MaxBackoff:         5 * time.Minute,
		MaxRate:            50,
		MaxBytesPerSecond:  1 << 20,
		DeadLetterDir:      DefaultDeadLetterDir,
		DeadLetterMaxBytes: 64 << 20,
	}
}

// Enabled reports whether a collector is configured. Whether one must be is the exporter's
// call (capture on).
func (c Config) Enabled() bool { return c.URL != "" }

// Validate checks the section on its own, naming fields relative to it.
func (c Config) Validate() error {
	var errs []error
	var scheme string
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			errs = append(errs, config.Errorf("url", "must be an http:// or https:// base URL without credentials, query or fragment, got %q", c.URL))
		} else {
			scheme = u.Scheme
			// With tls set over http the tls error below already says to use https.
			if err := tokenurl.Check(c.URL, c.TokenFile != "", c.AllowInsecureToken || c.TLS.set()); err != nil {
				errs = append(errs, config.Errorf("url", "%v", err))
			}
		}
		if c.TokenFile == "" && c.TLS.CertFile == "" {
			errs = append(errs, config.Errorf("token_file", "must be set, or tls.cert_file: the collector accepts samples only from a node with a credential"))
		}
		if c.TokenFile != "" {
			// Read here so that --config.check catches a hash list or an empty file, which
			// would otherwise show only as the collector's 401. A file not there (yet) is
			// New's error: configurations are checked on machines without the node's secret.
			if _, err := token.ReadSecret(c.TokenFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, config.Errorf("token_file", "%v", err))
			}
		}
	}
	if c.TLS.set() && scheme == "http" {
		errs = append(errs, config.Errorf("tls", "is set but url is http://; use https://"))
	}
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		errs = append(errs, config.Errorf("tls.key_file", "must be set with tls.cert_file"))
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		errs = append(errs, config.Errorf("tls.cert_file", "must be set with tls.key_file"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", c.Timeout))
	}
	if c.MaxBatchSamples < 1 || c.MaxBatchSamples > maxBatchSamplesLimit {
		errs = append(errs, config.Errorf("max_batch_samples", "must be between 1 and %d (the collector's default limit), got %d", maxBatchSamplesLimit, c.MaxBatchSamples))
	}
	if c.MaxBatchBytes < minBatchBytes || c.MaxBatchBytes > maxBatchBytes {
		errs = append(errs, config.Errorf("max_batch_bytes", "must be between %d and %d (the collector's default limit), got %d", minBatchBytes, maxBatchBytes, c.MaxBatchBytes))
	}
	if c.BatchDelay < 0 || c.BatchDelay > time.Minute {
		errs = append(errs, config.Errorf("batch_delay", "must be between 0s and 1m, got %s", c.BatchDelay))
	}
	if c.InitialBackoff < 10*time.Millisecond {
		errs = append(errs, config.Errorf("initial_backoff", "must be at least 10ms, got %s", c.InitialBackoff))
	} else if c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, config.Errorf("max_backoff", "must be at least initial_backoff (%s), got %s", c.InitialBackoff, c.MaxBackoff))
	}
	if c.MaxBackoff > maxBackoffLimit {
		errs = append(errs, config.Errorf("max_backoff", "must be at most %s, got %s", maxBackoffLimit, c.MaxBackoff))
	}
	if !(c.MaxRate > 0) { // also catches NaN
		errs = append(errs, config.Errorf("max_rate", "must be positive (samples per second), got %g", c.MaxRate))
	}
	if c.MaxBytesPerSecond < 1024 {
		errs = append(errs, config.Errorf("max_bytes_per_second", "must be at least 1024, got %d", c.MaxBytesPerSecond))
	}
	if c.DeadLetterMaxBytes < 0 {
		errs = append(errs, config.Errorf("dead_letter_max_bytes", "must not be negative (0 keeps nothing), got %d", c.DeadLetterMaxBytes))
	}
	if c.DeadLetterMaxBytes > 0 && !filepath.IsAbs(c.DeadLetterDir) {
		errs = append(errs, config.Errorf("dead_letter_dir", "must be an absolute directory path, got %q", c.DeadLetterDir))
	}
	return errors.Join(errs...)
}
