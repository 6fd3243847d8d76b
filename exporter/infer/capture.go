package infer

import (
	"bytes"
	"context"
	"net/http"
	"strings"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/oip"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// Capturer is the capture pipeline as the front sees it (exporter/capture): it decides, per
// prediction, whether to keep the request's input as a training sample.
type Capturer interface {
	// Wants reports whether capture is on for model. Only then does the front keep what a
	// capture needs, such as an upstream request's body.
	Wants(model string) bool
	// Consider is called once per successful request, with the scored output and the input,
	// before the response is written: it returns the content keys (internal/sample) of the
	// samples it stored, in row order, or nil, and the response names them in
	// CaptureKeyHeader. A captured request therefore waits for its append to the spool;
	// others only for the sampler's decision. Everything it is given is valid only during the
	// call: it copies what it keeps.
	Consider(ctx context.Context, p *Prediction) []string
}

// CaptureKeyHeader is the response header that names the samples a successful request was
// captured as: their content keys, comma-separated in row order (one per captured row of a
// batch). It is absent when nothing was captured. With the key a labeller finds the sample
// in the collector, or labels it; docs/inference.md.
const CaptureKeyHeader = "Edgeloop-Capture-Key"

// setCaptureKeys names captured samples in h, replacing what an upstream said; nothing when
// keys is empty.
func setCaptureKeys(h http.Header, keys []string) {
	if len(keys) > 0 {
		h.Set(CaptureKeyHeader, strings.Join(keys, ", "))
	}
}

// Prediction is one successful request: its rows' scores and inputs.
type Prediction struct {
	Model, Version string
	// RequestID is the client's request id, if it sent one.
	RequestID string
	// TraceID is the request's trace id when its span is sampled, else "".
	TraceID string
	// Classes names the classes of Scores' rows, in order (may be nil).
	Classes []string
	// Kind says whether Scores holds logits or probabilities.
	Kind observe.OutputKind
	// Scores is the scored output: rows × classes values, row-major, one prediction per row.
	Scores []float32
	// Input is the request's first input tensor, whose first dimension is the batch.
	Input Tensor
}

// Tensor is an input tensor decoded to float32.
type Tensor struct {
	Name, Datatype string
	// Shape includes the batch dimension.
	Shape []int64
	Data  []float32
}

// wantsCapture reports whether requests for name feed the capture pipeline.
func (s *Server) wantsCapture(name string) bool {
	return s.capture != nil && s.capture.Wants(name)
}

// capturePrediction hands a successful request to the capture pipeline and returns the keys
// of the samples it stored.
func (s *Server) capturePrediction(c *call, name, requestID string, scores []float32, in Tensor) []string {
	traceID, sampled := telemetry.TraceID(c.ctx)
	if !sampled {
		traceID = ""
	}
	return s.capture.Consider(c.ctx, &Prediction{
		Model: name, Version: c.b.Version(), RequestID: requestID, TraceID: traceID,
		Classes: c.b.cfg.Classes, Kind: c.b.cfg.OutputKind, Scores: scores, Input: in,
	})
}

// captureUpstream decodes the first input of an upstream request's body, kept while it was
// streamed, and hands the prediction to the capture pipeline; it returns the keys of the
// samples stored. A body it cannot decode (the upstream accepted what the front cannot read,
// such as a BYTES input) is not captured.
func (s *Server) captureUpstream(c *call, r *http.Request, body *bytes.Buffer, scores []float32) []string {
	headerLen, err := headerLength(r.Header)
	if err != nil {
		return nil
	}
	req, err := oip.ParseRequest(body.Bytes(), headerLen)
	if err != nil || len(req.Inputs) == 0 {
		return nil
	}
	in := &req.Inputs[0]
	data, err := in.Float32s(nil)
	if err != nil {
		s.logger.Debug("cannot capture an upstream request's input", "model", r.PathValue("model"), "err", err)
		return nil
	}
	return s.capturePrediction(c, r.PathValue("model"), req.ID, scores, Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape, Data: data})
}
