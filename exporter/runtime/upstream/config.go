package upstream

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Config is a model's `upstream:` section: where its Open Inference Protocol server is and how
// long to wait for it. Zero values take the defaults of DefaultConfig (see WithDefaults), so a
// model entry in a list needs to set only url.
type Config struct {
	// URL is the server's base URL, such as http://127.0.0.1:8001 (Triton's HTTP port moved off
	// 8000, which the exporter's front holds). Required.
	URL string `yaml:"url"`
	// ModelRepository is the upstream server's local model repository directory (Triton's
	// --model-repository). When set, model sync writes each verified version into
	// <dir>/<model>/<version>/ and asks the server to load it; when empty, the server loads
	// its models itself and the exporter only fronts them.
	ModelRepository string `yaml:"model_repository"`
	// Model is the model's name at the upstream server. Empty means the same name as the
	// exporter serves it under.
	Model string `yaml:"model"`
	// Timeout bounds one request to the upstream server, from sending the request to reading
	// the whole response; past it the client gets 504. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds establishing a connection; past it the client gets 502. Default 2s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxIdleConns is how many idle keep-alive connections to the server are pooled. Default 64.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// MaxResponseBytes caps a response body, which is held in memory to score it. Default 64 MiB.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

// Defaults of the upstream section.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultConnectTimeout   = 2 * time.Second
	DefaultMaxIdleConns     = 64
	DefaultMaxResponseBytes = 64 << 20
)

// DefaultConfig returns the upstream section's defaults (no URL).
func DefaultConfig() Config {
	return Config{
		Timeout:          DefaultTimeout,
		ConnectTimeout:   DefaultConnectTimeout,
		MaxIdleConns:     DefaultMaxIdleConns,
		MaxResponseBytes: DefaultMaxResponseBytes,
	}
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = d.MaxIdleConns
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = d.MaxResponseBytes
	}
	return c
}

// Validate reports every invalid field, named relative to the upstream section.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, config.Errorf("url", "must be set for runtime upstream"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, config.Errorf("url", "must be an http:// or https:// base URL without query, got %q", c.URL))
	}
	if c.ModelRepository != "" && !filepath.IsAbs(c.ModelRepository) {
		errs = append(errs, config.Errorf("model_repository", "must be an absolute directory path, got %q", c.ModelRepository))
	}
	if strings.ContainsAny(c.Model, "/?#") {
		errs = append(errs, config.Errorf("model", "must not contain '/', '?' or '#', got %q", c.Model))
	}
	// Zero means "the default" in every numeric field, so only negative values are wrong.
	if c.Timeout < 0 {
		errs = append(errs, config.Errorf("timeout", "must not be negative (0 means %s), got %s", DefaultTimeout, c.Timeout))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, config.Errorf("connect_timeout", "must not be negative (0 means %s), got %s", DefaultConnectTimeout, c.ConnectTimeout))
	}
	if c.MaxIdleConns < 0 {
		errs = append(errs, config.Errorf("max_idle_conns", "must not be negative (0 means %d), got %d", DefaultMaxIdleConns, c.MaxIdleConns))
	}
	if c.MaxResponseBytes < 0 {
		errs = append(errs, config.Errorf("max_response_bytes", "must not be negative (0 means %d), got %d", DefaultMaxResponseBytes, c.MaxResponseBytes))
	}
	return errors.Join(errs...)
}
