package infer

import (
	"errors"
	"fmt"
	"net"
	"time"

	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/token"
)

// DefaultListen is the inference front's default address: the Open Inference Protocol's HTTP
// port, the one Triton uses.
const DefaultListen = ":8000"

// Config is the inference front's part of the exporter's `inference:` section.
type Config struct {
	// Listen is the host:port of the V2 REST API. Default ":8000".
	Listen string `yaml:"listen"`
	// MaxRequestBytes caps a request body; a larger one is answered 413. Default 16 MiB, room
	// for a batch of 256 Fashion-MNIST images as JSON.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxBatch caps the batch (first, dynamic) dimension of a built-in runtime's input; a
	// larger batch is answered 400. Upstream servers enforce their own. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// ReadTimeout bounds reading a whole request, body included. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end of the response.
	// Keep it above every upstream timeout, or a client gets a reset instead of the 504.
	// Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for longer. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WebConfigFile is an exporter-toolkit web configuration file, the same format as the
	// metrics port's: TLS (tls_server_config), client certificates, basic auth. Empty: plain
	// http, as before.
	WebConfigFile string `yaml:"web_config_file"`
	// TokensFile, when set, makes every request but /v2/health/live and /v2/health/ready carry
	// "Authorization: Bearer <token>" with a token the file lists: lines "<client-id>
	// sha256:<64 hex digits>" in the collector's tokens format (`edgeloop` hashes, never
	// tokens). Empty: no token needed, as before. Use it with TLS, or tokens cross the site's
	// network in clear text.
	TokensFile string `yaml:"tokens_file"`
}

// Limits of the front's settings.
const (
	minRequestBytes = 1 << 10
	maxMaxBatch     = 1 << 20
)

// DefaultConfig returns the front's defaults.
func DefaultConfig() Config {
	return Config{
		Listen:          DefaultListen,
		MaxRequestBytes: 16 << 20,
		MaxBatch:        256,
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    60 * time.Second,
		IdleTimeout:     2 * time.Minute,
	}
}

// Validate reports every invalid field, named relative to the section the fields sit in.
func (c Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, config.Errorf("listen", "must be host:port (like :8000 or 127.0.0.1:8000), got %q", c.Listen))
	}
	if c.MaxRequestBytes < minRequestBytes {
		errs = append(errs, config.Errorf("max_request_bytes", "must be at least %d, got %d", minRequestBytes, c.MaxRequestBytes))
	}
	if c.MaxBatch < 1 || c.MaxBatch > maxMaxBatch {
		errs = append(errs, config.Errorf("max_batch", "must be between 1 and %d, got %d", maxMaxBatch, c.MaxBatch))
	}
	if c.WebConfigFile != "" {
		if err := toolkit.Validate(c.WebConfigFile); err != nil {
			errs = append(errs, config.Errorf("web_config_file", "%v", err))
		}
	}
	if c.TokensFile != "" {
		if _, err := token.LoadList(c.TokensFile); err != nil {
			errs = append(errs, config.Errorf("tokens_file", "%v", err))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, config.Errorf(d.name, "must be positive, got %s", d.v))
		}
	}
	return errors.Join(errs...)
}

// Runtime names what serves a model: the "runtime" key of a model entry.
type Runtime string

const (
	// RuntimeBuiltin runs an ONNX model in the exporter (internal/runtime/builtin).
	RuntimeBuiltin Runtime = "builtin"
	// RuntimeUpstream forwards to an Open Inference Protocol server (exporter/runtime/upstream).
	RuntimeUpstream Runtime = "upstream"
)

// ModelConfig is one entry of the exporter's `models:` list: a model the front serves. Zero
// values take the defaults that WithDefaults fills in, so an entry may give only its name.
type ModelConfig struct {
	// Name is the model's name in V2 paths (/v2/models/{name}), in metrics and in the model
	// repository. Required.
	Name string `yaml:"name"`
	// Runtime is "builtin" (default) or "upstream".
	Runtime Runtime `yaml:"runtime"`
	// Output names the output tensor whose scores are observed. Empty means the manifest's
	// output for a synced model, "probabilities" for a static upstream one.
	Output string `yaml:"output"`
	// OutputKind says what that tensor holds: "logits" or "probabilities". Empty means what
	// the manifest says of that output, else "probabilities".
	OutputKind string `yaml:"output_kind"`
	// Classes names the output classes in order. Empty means "from the model version's
	// manifest".
	Classes []string `yaml:"classes"`
	// Upstream is where runtime upstream sends requests; required for it, refused otherwise.
	Upstream *upstream.Config `yaml:"upstream"`
	// Version selects the version model sync serves: "latest" (default, the highest published
	// version), a version number to pin, or an alias such as "stable" or "canary".
	Version string `yaml:"version"`
}

// Defaults of a model entry.
const (
	DefaultOutput     = "probabilities"
	DefaultOutputKind = "probabilities"
)

// WithDefaults returns m with every zero field set to its default (the upstream section too).
func (m ModelConfig) WithDefaults() ModelConfig {
	if m.Runtime == "" {
		m.Runtime = RuntimeBuiltin
	}
	if m.Output == "" {
		m.Output = DefaultOutput
	}
	if m.OutputKind == "" {
		m.OutputKind = DefaultOutputKind
	}
	if m.Version == "" {
		m.Version = modelrepo.SelectorLatest
	}
	if m.Upstream != nil {
		u := m.Upstream.WithDefaults()
		m.Upstream = &u
	}
	return m
}

// Kind returns the observe.OutputKind of OutputKind (after defaults), or 0 when invalid.
func (m ModelConfig) Kind() observe.OutputKind {
	switch m.WithDefaults().OutputKind {
	case "logits":
		return observe.Logits
	case "probabilities":
		return observe.Probabilities
	}
	return 0
}

// Validate reports every invalid field of the entry, named relative to it.
func (m ModelConfig) Validate() error {
	var errs []error
	// The sample format's name rule: the name is a URL path segment, a metric label and a
	// field of every sample captured from the model.
	if !sample.ValidName(m.Name) {
		errs = append(errs, config.Errorf("name", "%s, got %q", sample.NameRule, m.Name))
	}
	d := m.WithDefaults()
	switch d.Runtime {
	case RuntimeBuiltin:
		if m.Upstream != nil {
			errs = append(errs, config.Errorf("upstream", "is only for runtime upstream"))
		}
	case RuntimeUpstream:
		if m.Upstream == nil {
			errs = append(errs, config.Errorf("upstream", "must be set for runtime upstream (at least upstream.url)"))
		} else {
			errs = append(errs, config.Nest("upstream", m.Upstream.Validate()))
		}
	default:
		errs = append(errs, config.Errorf("runtime", "must be builtin or upstream, got %q", string(m.Runtime)))
	}
	if m.Kind() == 0 {
		errs = append(errs, config.Errorf("output_kind", "must be logits or probabilities, got %q", m.OutputKind))
	}
	if len(m.Classes) > 0 {
		if err := checkClasses(m.Classes); err != nil {
			errs = append(errs, config.Errorf("classes", "%v", err))
		}
	} else if m.Static() {
		errs = append(errs, config.Errorf("classes", "must be set for an upstream model without upstream.model_repository: there is no manifest to read them from"))
	}
	if !m.Static() && sample.ValidName(m.Name) {
		// Synced models are named in the model repository too, whose rules are stricter.
		if err := modelrepo.ValidateModelName(m.Name); err != nil {
			errs = append(errs, config.Errorf("name", "%v", err))
		}
	}
	if err := modelrepo.ValidateSelector(m.Version); err != nil {
		errs = append(errs, config.Errorf("version", "%v", err))
	}
	return errors.Join(errs...)
}

// Static reports whether the model is served without model sync: an upstream model whose
// server loads its models itself (no upstream.model_repository to write versions into).
func (m ModelConfig) Static() bool {
	return m.Runtime == RuntimeUpstream && m.Upstream != nil && m.Upstream.ModelRepository == ""
}

// checkClasses applies the telemetry core's rules early, so a bad list fails --config.check
// instead of the first model load.
func checkClasses(classes []string) error {
	if len(classes) < 2 {
		return fmt.Errorf("need at least 2 classes, got %d", len(classes))
	}
	seen := make(map[string]int, len(classes))
	for i, c := range classes {
		if c == "" {
			return fmt.Errorf("class %d is empty", i)
		}
		if j, dup := seen[c]; dup {
			return fmt.Errorf("classes %d and %d are both named %q", j, i, c)
		}
		seen[c] = i
	}
	return nil
}

// ValidateModels validates a `models:` list: each entry (named by its index, such as
// "[2].upstream.url", for config.Nest("models", ...)) and that no name is used twice.
func ValidateModels(models []ModelConfig) error {
	var errs []error
	seen := map[string]int{}
	for i, m := range models {
		idx := fmt.Sprintf("[%d]", i)
		errs = append(errs, config.Nest(idx, m.Validate()))
		if j, dup := seen[m.Name]; dup && m.Name != "" {
			errs = append(errs, config.Nest(idx, config.Errorf("name", "%q is already used by entry %d", m.Name, j)))
		}
		seen[m.Name] = i
	}
	return errors.Join(errs...)
}
