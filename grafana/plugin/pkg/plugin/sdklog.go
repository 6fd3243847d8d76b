package plugin

import (
	"context"
	"log/slog"

	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
)

// SDKHandler is a slog.Handler writing to the SDK's logger, whose JSON lines on stderr
// Grafana reads into its own log (with the plugin's id): the plugin's code logs with slog as
// every edgeloop component does, and its lines land where Grafana's operators look.
type SDKHandler struct {
	logger log.Logger
	attrs  []any
	group  string
}

// NewSDKHandler returns a handler writing to logger (log.DefaultLogger in the binary).
func NewSDKHandler(logger log.Logger) *SDKHandler { return &SDKHandler{logger: logger} }

// Enabled leaves filtering to the SDK logger, which Grafana's log level configures.
func (h *SDKHandler) Enabled(context.Context, slog.Level) bool { return true }

// Handle writes one record.
func (h *SDKHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = append(args, h.key(a.Key), a.Value.Resolve().Any())
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.logger.Error(r.Message, args...)
	case r.Level >= slog.LevelWarn:
		h.logger.Warn(r.Message, args...)
	case r.Level >= slog.LevelInfo:
		h.logger.Info(r.Message, args...)
	default:
		h.logger.Debug(r.Message, args...)
	}
	return nil
}

// WithAttrs returns a handler adding attrs to every record.
func (h *SDKHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any{}, h.attrs...)
	for _, a := range attrs {
		n.attrs = append(n.attrs, h.key(a.Key), a.Value.Resolve().Any())
	}
	return &n
}

// WithGroup returns a handler prefixing later keys with name.
func (h *SDKHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = h.key(name)
	return &n
}

func (h *SDKHandler) key(k string) string {
	if h.group == "" {
		return k
	}
	return h.group + "." + k
}
