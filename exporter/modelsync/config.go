package modelsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/token"
	"github.com/edgeloop/edgeloop/internal/tokenurl"
)

// DefaultCacheDir is where verified versions are kept on the edge node.
const DefaultCacheDir = "/var/lib/edgeloop/models"

// Config is the exporter's `model_sync:` section: where model versions come from, which keys
// may sign them, and how often to look for new ones.
type Config struct {
	// Repository is the model repository's bucket URL: file:///DIR or
	// s3://BUCKET[/PREFIX]?endpoint=HOST:PORT (docs/objstore.md). Required when a model is
	// synced; credentials come from the environment, never the URL.
	Repository string `yaml:"repository"`
	// AllowInsecureToken lets the token that EDGELOOP_TOKEN_FILE names go to an http://
	// repository that is not a loopback address. Off by default (docs/security.md).
	AllowInsecureToken bool `yaml:"allow_insecure_token"`
	// TrustedKeys are paths of PEM ed25519 public keys (edgeloop model keygen's edgeloop.pub).
	// A version is loaded only when its manifest is signed by one of them. Required with
	// Repository.
	TrustedKeys []string `yaml:"trusted_keys"`
	// RequireSignedPointers refuses aliases and latest hints that are not signed by a trusted
	// key. Without it an unsigned pointer is followed as before, until the first signed one of
	// that name is accepted; from then on unsigned ones are refused. A signed pointer whose
	// sequence is below the last accepted is always refused (docs/security.md).
	RequireSignedPointers bool `yaml:"require_signed_pointers"`
	// CacheDir holds the verified versions, so an exporter restarts serving its last version
	// even while the repository is unreachable. Default /var/lib/edgeloop/models.
	CacheDir string `yaml:"cache_dir"`
	// PollInterval is how often the repository is asked for a new version. Default 30s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Jitter spreads polls by ±this share of PollInterval, so thousands of exporters started
	// together do not poll together. Default 0.2.
	Jitter float64 `yaml:"jitter"`
	// MaxBackoff caps the delay between retries after a failure; retries start at 1s and
	// double. Default 5m.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Timeout bounds one sync attempt: resolving, downloading, verifying and loading a
	// version. Default 10m.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the section's defaults: no repository (nothing synced).
func DefaultConfig() Config {
	return Config{
		CacheDir:     DefaultCacheDir,
		PollInterval: 30 * time.Second,
		Jitter:       0.2,
		MaxBackoff:   5 * time.Minute,
		Timeout:      10 * time.Minute,
	}
}

// initialBackoff is the first retry delay after a failure.
const initialBackoff = time.Second

// Validate checks the section on its own; whether it is needed depends on the models, which
// the exporter checks (NeedsRepository).
func (c Config) Validate() error {
	return c.validate(os.LookupEnv)
}

// validate checks the section with the environment lookupEnv: the repository's token file
// comes from EDGELOOP_TOKEN_FILE, and whether one is set decides whether an http:// URL is
// acceptable (tokenurl).
func (c Config) validate(lookupEnv func(string) (string, bool)) error {
	var errs []error
	if c.Repository != "" {
		// Only the URL's form is checked here; S3 credentials are looked up when it is opened.
		env := func(k string) (string, bool) {
			if k == objstore.EnvTokenFile {
				return lookupEnv(k)
			}
			return "set", true
		}
		if t, err := objstore.ParseURL(c.Repository, env); err != nil {
			errs = append(errs, config.Errorf("repository", "%v", err))
		} else if err := c.checkToken(t); err != nil {
			errs = append(errs, err)
		}
		if len(c.TrustedKeys) == 0 {
			errs = append(errs, config.Errorf("trusted_keys", "must list at least one public key file: versions are loaded only when signed by a trusted key"))
		}
	}
	for i, k := range c.TrustedKeys {
		if k == "" {
			errs = append(errs, config.Errorf("trusted_keys", "entry %d is empty", i))
		}
	}
	if c.CacheDir == "" || !filepath.IsAbs(c.CacheDir) {
		errs = append(errs, config.Errorf("cache_dir", "must be an absolute directory path, got %q", c.CacheDir))
	}
	if c.PollInterval < time.Second {
		errs = append(errs, config.Errorf("poll_interval", "must be at least 1s, got %s", c.PollInterval))
	}
	if c.Jitter < 0 || c.Jitter > 0.5 {
		errs = append(errs, config.Errorf("jitter", "must be between 0 and 0.5, got %g", c.Jitter))
	}
	if c.MaxBackoff < initialBackoff {
		errs = append(errs, config.Errorf("max_backoff", "must be at least %s, got %s", initialBackoff, c.MaxBackoff))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// checkToken applies the plain-http token rule to the parsed repository URL.
func (c Config) checkToken(t objstore.Target) error {
	if t.HTTP == nil {
		return nil
	}
	if err := tokenurl.Check(c.Repository, t.HTTP.TokenFile != "", c.AllowInsecureToken); err != nil {
		return config.Errorf("repository", "%v (the token is the one %s names)", err, objstore.EnvTokenFile)
	}
	if t.HTTP.TokenFile != "" {
		// A hash list or an empty file here would show only as the collector's 401. A file
		// not there (yet) is the first poll's error.
		if _, err := token.ReadSecret(t.HTTP.TokenFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return config.Errorf("repository", "%v (the file %s names)", err, objstore.EnvTokenFile)
		}
	}
	return nil
}
