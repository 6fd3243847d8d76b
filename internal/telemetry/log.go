// Package telemetry sets up what every edgeloop component shares for observing itself:
// structured logs (log/slog), OpenTelemetry tracing exported over OTLP/HTTP when configured,
// and W3C trace context helpers for carrying a trace across HTTP hops (edge to collector).
package telemetry

import (
	"errors"
	"io"
	"log/slog"

	"github.com/edgeloop/edgeloop/internal/config"
)

// LogConfig is the `log:` section of every component's configuration.
type LogConfig struct {
	// Level is the lowest level written: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is logfmt (key=value, for people) or json (for log shippers).
	Format string `yaml:"format"`
}

// DefaultLogConfig returns info-level logfmt logs.
func DefaultLogConfig() LogConfig { return LogConfig{Level: "info", Format: "logfmt"} }

// Validate checks the level and format names.
func (c LogConfig) Validate() error {
	var errs []error
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		errs = append(errs, config.Errorf("level", "must be debug, info, warn or error, got %q", c.Level))
	}
	if c.Format != "logfmt" && c.Format != "json" {
		errs = append(errs, config.Errorf("format", "must be logfmt or json, got %q", c.Format))
	}
	return errors.Join(errs...)
}

// NewLogger returns a logger writing to w as the configuration says. The configuration must
// have passed Validate.
func NewLogger(w io.Writer, c LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated before
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
