package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/edgeloop/edgeloop/internal/config"
)

// TracingConfig is the `tracing:` section of every component's configuration. Tracing is off
// unless an endpoint is set.
type TracingConfig struct {
	// Endpoint is the OTLP/HTTP traces URL, such as http://otel-collector:4318/v1/traces.
	// Empty turns tracing off. An http:// URL sends without TLS.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export, typically an Authorization header (use ${ENV}).
	Headers map[string]string `yaml:"headers"`
	// SampleRatio is the share of new traces recorded, 0 to 1; a sampled parent is always followed.
	SampleRatio float64 `yaml:"sample_ratio"`
	// Timeout bounds one export.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultTracingConfig returns tracing off, sampling 10% of new traces once it is turned on.
func DefaultTracingConfig() TracingConfig {
	return TracingConfig{SampleRatio: 0.1, Timeout: 10 * time.Second}
}

// Validate checks the endpoint URL, ratio and timeout.
func (c TracingConfig) Validate() error {
	var errs []error
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, config.Errorf("endpoint", "must be an http:// or https:// URL, got %q", c.Endpoint))
		}
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, config.Errorf("sample_ratio", "must be between 0 and 1, got %g", c.SampleRatio))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Tracing is a component's tracer provider and the W3C propagator it uses on the wire.
type Tracing struct {
	// Provider creates tracers; a no-op provider when tracing is off.
	Provider trace.TracerProvider
	// Propagator reads and writes W3C traceparent/tracestate and baggage headers.
	Propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// NewTracing builds the tracer provider for service (e.g. "edgeloop-exporter"). With no endpoint
// it returns a no-op provider, so callers never check whether tracing is on. Nothing global is
// set: components pass the provider down explicitly.
func NewTracing(ctx context.Context, c TracingConfig, service, version string) (*Tracing, error) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	if c.Endpoint == "" {
		return &Tracing{Provider: noop.NewTracerProvider(), Propagator: prop, shutdown: func(context.Context) error { return nil }}, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint), otlptracehttp.WithTimeout(c.Timeout)}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: create otlp exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
	)
	return &Tracing{Provider: tp, Propagator: prop, shutdown: tp.Shutdown}, nil
}

// Shutdown flushes spans not yet exported, waiting at most until ctx is done.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// TracingWith wraps a tracer provider the caller built (a test's span recorder, or an
// application's own SDK set-up) with the W3C propagator the components use. Its Shutdown
// does nothing: the caller owns the provider.
func TracingWith(tp trace.TracerProvider) *Tracing {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return &Tracing{Provider: tp, Propagator: prop, shutdown: func(context.Context) error { return nil }}
}
