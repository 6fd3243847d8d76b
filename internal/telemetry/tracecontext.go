package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Extract returns ctx carrying the remote span context found in the request headers
// (W3C traceparent/tracestate, and baggage), so spans started from it join the caller's trace.
func (t *Tracing) Extract(ctx context.Context, h http.Header) context.Context {
	return t.Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes the span context in ctx into outgoing request headers.
func (t *Tracing) Inject(ctx context.Context, h http.Header) {
	t.Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// TraceID returns the hex trace id of the span in ctx and whether the span is sampled, or ""
// when ctx has no valid span. Sampled traces are the ones worth linking from an exemplar or a
// captured sample, since only those reach the trace backend.
func TraceID(ctx context.Context) (id string, sampled bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", false
	}
	return sc.TraceID().String(), sc.IsSampled()
}
