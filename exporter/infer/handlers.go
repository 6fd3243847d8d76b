package infer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/exporter/runtime/oip"
	"github.com/edgeloop/edgeloop/exporter/runtime/upstream"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
	"github.com/edgeloop/edgeloop/internal/version"
)

// statusClientClosed answers a request whose client went away or whose deadline passed
// first (nginx's convention); nobody is usually left to read it.
const statusClientClosed = 499

// Extensions lists the protocol extensions the front implements, for the server metadata.
func Extensions() []string { return []string{"binary_tensor_data"} }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	get := []string{http.MethodGet, http.MethodHead}
	post := []string{http.MethodPost}
	handle := func(pattern string, methods []string, h http.HandlerFunc) {
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			for _, m := range methods {
				if r.Method == m {
					h(w, r)
					return
				}
			}
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		})
	}
	handle("/v2/health/live", get, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	handle("/v2/health/ready", get, s.healthReady)
	handle("/v2", get, s.serverMetadata)
	handle("/v2/models/{model}", get, s.modelMetadata)
	handle("/v2/models/{model}/versions/{version}", get, s.modelMetadata)
	handle("/v2/models/{model}/ready", get, s.modelReady)
	handle("/v2/models/{model}/versions/{version}/ready", get, s.modelReady)
	handle("/v2/models/{model}/infer", post, s.infer)
	handle("/v2/models/{model}/versions/{version}/infer", post, s.infer)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	})
	return mux
}

func writeError(w http.ResponseWriter, status int, msg string) {
	body := oip.AppendError(make([]byte, 0, len(msg)+16), msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only plain structs of strings and numbers get here
		writeError(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (s *Server) healthReady(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		writeError(w, http.StatusServiceUnavailable, "no model version loaded yet")
		return
	}
	w.WriteHeader(http.StatusOK)
}

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

func (s *Server) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, serverMetadata{Name: "edgeloop", Version: version.Get().Version, Extensions: Extensions()})
}

// requestError is a request the front answers itself with an error status.
type requestError struct {
	status int
	msg    string
}

// acquire finds the Backend serving model name (at version, if given) and takes a reference
// on it, which the caller must release.
func (s *Server) acquire(name, version string) (*Backend, *requestError) {
	sl := s.slot(name)
	if sl == nil {
		return nil, &requestError{http.StatusNotFound, fmt.Sprintf("unknown model %q", name)}
	}
	var b *Backend
	for {
		b = sl.backend.Load()
		if b == nil {
			return nil, &requestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q has no version loaded yet", name)}
		}
		if b.acquire() {
			break
		}
		// Retired under us by a Swap, which has already installed its successor: take that.
		// The same retired Backend still installed means it was swapped in again.
		if sl.backend.Load() == b {
			return nil, &requestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q version %q is retired", name, b.Version())}
		}
	}
	if version != "" && version != b.Version() {
		b.release()
		return nil, &requestError{http.StatusNotFound, fmt.Sprintf("model %q has no version %q: serving version %q", name, version, b.Version())}
	}
	return b, nil
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

func tensorsMetadata(infos []builtin.TensorInfo) []tensorMetadata {
	out := make([]tensorMetadata, len(infos))
	for i, t := range infos {
		out[i] = tensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
	}
	return out
}

func (s *Server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("model"), r.PathValue("version")
	b, rerr := s.acquire(name, version)
	if rerr != nil {
		writeError(w, rerr.status, rerr.msg)
		return
	}
	defer b.release()
	if b.cfg.Upstream != nil {
		resp, err := b.cfg.Upstream.Metadata(r.Context(), version, r.Header)
		s.passThrough(w, resp, err)
		return
	}
	m := b.cfg.Builtin
	writeJSON(w, modelMetadata{
		Name:     name,
		Versions: []string{b.Version()},
		Platform: "onnx",
		Inputs:   tensorsMetadata(m.Inputs()),
		Outputs:  tensorsMetadata(m.Outputs()),
	})
}

func (s *Server) modelReady(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("model"), r.PathValue("version")
	b, rerr := s.acquire(name, version)
	if rerr != nil {
		writeError(w, rerr.status, rerr.msg)
		return
	}
	defer b.release()
	if b.cfg.Upstream != nil {
		resp, err := b.cfg.Upstream.Ready(r.Context(), version, r.Header)
		s.passThrough(w, resp, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// passThrough writes an upstream response unchanged, or the front's error for a failure.
func (s *Server) passThrough(w http.ResponseWriter, resp *upstream.Response, err error) {
	if err != nil {
		var ue *upstream.Error
		switch {
		case errors.As(err, &ue):
			writeError(w, ue.Status, ue.Error())
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			writeError(w, statusClientClosed, "request canceled")
		default:
			writeError(w, http.StatusBadGateway, err.Error())
		}
		return
	}
	upstream.CopyResponseHeader(w.Header(), resp.Header)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(resp.Body)
}

// scratch is one inference request's reusable memory.
type scratch struct {
	body    []byte
	resp    []byte
	floats  [][]float32
	tensors []builtin.Tensor
	outs    []oip.Output
	scores  []float32
	embed   []float32 // an upstream answer's embedding output
}

// maxPooled bounds the buffers the pool keeps: one huge request must not pin its memory.
const maxPooled = 4 << 20

func (s *Server) getScratch() *scratch {
	if sc, ok := s.scratch.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

func (s *Server) putScratch(sc *scratch) {
	if cap(sc.body) > maxPooled {
		sc.body = nil
	}
	if cap(sc.resp) > maxPooled {
		sc.resp = nil
	}
	if cap(sc.scores) > maxPooled/4 {
		sc.scores = nil
	}
	if cap(sc.embed) > maxPooled/4 {
		sc.embed = nil
	}
	for i := range sc.floats {
		if cap(sc.floats[i]) > maxPooled/4 {
			sc.floats[i] = nil
		}
	}
	clear(sc.tensors)
	clear(sc.outs)
	s.scratch.Put(sc)
}

// call is one inference request in progress: what its observation and span are made of.
type call struct {
	start  time.Time
	ctx    context.Context
	span   trace.Span
	b      *Backend
	obs    observe.Observation
	status int
	mark   time.Time // end of the last stage
}

// stage closes the stage st, which ran since the previous mark.
func (c *call) stage(st observe.Stage) {
	now := time.Now()
	c.obs.Stages[st] = now.Sub(c.mark)
	c.mark = now
}

// finish observes the request and ends its span.
func (s *Server) finish(c *call, outcome observe.Outcome, scores []float32) {
	c.obs.Latency = time.Since(c.start)
	c.obs.Outcome = outcome
	c.obs.Scores = scores
	if c.b != nil && c.b.cfg.Observe != nil {
		c.b.cfg.Observe.Observe(c.ctx, c.obs)
	}
	if c.span != nil {
		c.span.SetAttributes(
			attribute.String("edgeloop.outcome", outcome.String()),
			attribute.Int("http.response.status_code", c.status),
		)
		if c.status >= 500 {
			c.span.SetStatus(codes.Error, outcome.String())
		}
		c.span.End()
	}
}

// fail answers the request with an error and observes it.
func (s *Server) fail(w http.ResponseWriter, c *call, outcome observe.Outcome, status int, msg string) {
	c.status = status
	s.finish(c, outcome, nil)
	writeError(w, status, msg)
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	c := &call{start: time.Now(), ctx: r.Context()}
	c.mark = c.start
	name, version := r.PathValue("model"), r.PathValue("version")
	if s.tracer != nil {
		ctx := s.tracing.Extract(c.ctx, r.Header)
		c.ctx, c.span = s.tracer.Start(ctx, "infer "+name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("edgeloop.model", name)))
	}
	b, rerr := s.acquire(name, version)
	if rerr != nil {
		// No version to attribute the request to, so nothing is observed; the span says why.
		c.status = rerr.status
		s.finish(c, observe.OutcomeInvalidRequest, nil)
		writeError(w, rerr.status, rerr.msg)
		return
	}
	defer b.release()
	c.b = b
	if c.span != nil {
		c.span.SetAttributes(attribute.String("edgeloop.version", b.Version()))
	}
	if r.ContentLength > s.cfg.MaxRequestBytes {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusRequestEntityTooLarge, s.tooLarge())
		return
	}
	if b.cfg.Upstream != nil {
		s.forward(w, r, c, version)
		return
	}
	s.runBuiltin(w, r, c)
}

func (s *Server) tooLarge() string {
	return fmt.Sprintf("request body is larger than max_request_bytes (%d bytes)", s.cfg.MaxRequestBytes)
}

// headerLength reads the binary extension's header: -1 when absent.
func headerLength(h http.Header) (int, error) {
	v := h.Get(oip.HeaderContentLength)
	if v == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s must be a non-negative integer, got %q", oip.HeaderContentLength, v)
	}
	return n, nil
}

// readBody reads the whole body into buf, growing it as needed; hint is the Content-Length.
func readBody(r io.Reader, buf []byte, hint int64) ([]byte, error) {
	buf = buf[:0]
	if hint > 0 && int64(cap(buf)) < hint+1 {
		buf = make([]byte, 0, hint+1) // +1: the read that sees EOF needs room
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyError answers a failure to read the request body.
func (s *Server) bodyError(w http.ResponseWriter, c *call, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusRequestEntityTooLarge, s.tooLarge())
	case c.ctx.Err() != nil:
		s.fail(w, c, observe.OutcomeCanceled, statusClientClosed, "request canceled")
	default:
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, "read request body: "+err.Error())
	}
}

func (s *Server) runBuiltin(w http.ResponseWriter, r *http.Request, c *call) {
	b := c.b
	m := b.cfg.Builtin
	headerLen, err := headerLength(r.Header)
	if err != nil {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		return
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	sc.body, err = readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes), sc.body, r.ContentLength)
	if err != nil {
		s.bodyError(w, c, err)
		return
	}
	req, err := oip.ParseRequest(sc.body, headerLen)
	if err != nil {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.inputs(req, m, sc); err != nil {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		return
	}
	if err := m.CheckInputs(sc.tensors); err != nil {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		return
	}
	outs, err := selectOutputs(req, m, b.embIndex)
	if err != nil {
		s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		return
	}
	c.stage(observe.StagePreprocess)

	res, err := m.Run(c.ctx, sc.tensors)
	if err != nil {
		var ie *builtin.InputError
		switch {
		case errors.As(err, &ie):
			s.fail(w, c, observe.OutcomeInvalidRequest, http.StatusBadRequest, err.Error())
		case c.ctx.Err() != nil:
			s.fail(w, c, observe.OutcomeCanceled, statusClientClosed, "request canceled")
		default:
			s.logger.Warn("model run failed", "model", r.PathValue("model"), "version", b.Version(), "err", err)
			s.fail(w, c, observe.OutcomeRuntimeError, http.StatusInternalServerError, err.Error())
		}
		return
	}
	defer res.Release()
	c.stage(observe.StageInfer)

	sc.outs = sc.outs[:0]
	for _, o := range outs {
		t := res.Outputs[o.index]
		sc.outs = append(sc.outs, oip.Output{Name: m.Outputs()[o.index].Name, Shape: t.Shape, Data: t.Data, Binary: o.binary})
	}
	var jsonLen int
	sc.resp, jsonLen = oip.AppendResponse(sc.resp[:0], r.PathValue("model"), b.Version(), req.ID, sc.outs)
	c.stage(observe.StagePostprocess)

	c.status = http.StatusOK
	c.obs.Input = sc.tensors[0].Data // the first input, for the input drift signals
	if b.embIndex >= 0 {
		c.obs.Embedding = res.Outputs[b.embIndex].Data
	}
	s.finish(c, observe.OutcomeSuccess, res.Outputs[b.outIndex].Data)
	h := w.Header()
	if name := r.PathValue("model"); s.wantsCapture(name) {
		// Captured before the answer is written, so that the answer can name the samples.
		// The model's first input is the one captured (sc.tensors is in the model's order).
		info := m.Inputs()[0]
		setCaptureKeys(h, s.capturePrediction(c, name, req.ID, res.Outputs[b.outIndex].Data,
			Tensor{Name: info.Name, Datatype: info.Datatype, Shape: sc.tensors[0].Shape, Data: sc.tensors[0].Data}))
	}
	if jsonLen >= 0 {
		h.Set("Content-Type", "application/octet-stream")
		h.Set(oip.HeaderContentLength, strconv.Itoa(jsonLen))
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(sc.resp)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(sc.resp)
}

// inputs matches the request's inputs to the model's, checks their datatype and batch size,
// and decodes them into sc.tensors in the model's order. Shapes are checked by Run.
func (s *Server) inputs(req *oip.Request, m *builtin.Model, sc *scratch) error {
	infos := m.Inputs()
	for i := range req.Inputs {
		if !hasInput(infos, req.Inputs[i].Name) {
			return fmt.Errorf("unknown input %q: the model's inputs are %s", req.Inputs[i].Name, inputNames(infos))
		}
	}
	for len(sc.floats) < len(infos) {
		sc.floats = append(sc.floats, nil)
	}
	sc.tensors = sc.tensors[:0]
	for i, info := range infos {
		in := findInput(req, info.Name)
		if in == nil {
			return fmt.Errorf("missing input %q: the model's inputs are %s", info.Name, inputNames(infos))
		}
		if in.Datatype != info.Datatype {
			return fmt.Errorf("input %q: datatype %s, the model expects %s", in.Name, in.Datatype, info.Datatype)
		}
		if len(in.Shape) > 0 && len(info.Shape) > 0 && info.Shape[0] < 0 && in.Shape[0] > int64(s.cfg.MaxBatch) {
			return fmt.Errorf("input %q: batch size %d is larger than max_batch (%d)", in.Name, in.Shape[0], s.cfg.MaxBatch)
		}
		data, err := in.Float32s(sc.floats[i])
		if err != nil {
			return err
		}
		sc.floats[i] = data
		sc.tensors = append(sc.tensors, builtin.Tensor{Shape: in.Shape, Data: data})
	}
	return nil
}

func hasInput(infos []builtin.TensorInfo, name string) bool {
	for _, info := range infos {
		if info.Name == name {
			return true
		}
	}
	return false
}

func findInput(req *oip.Request, name string) *oip.Input {
	for i := range req.Inputs {
		if req.Inputs[i].Name == name {
			return &req.Inputs[i]
		}
	}
	return nil
}

func inputNames(infos []builtin.TensorInfo) string {
	names := make([]string, len(infos))
	for i, info := range infos {
		names[i] = strconv.Quote(info.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

type outputChoice struct {
	index  int
	binary bool
}

// selectOutputs resolves the request's outputs list to model outputs. An empty list means
// every output but the embedding (index embedding, -1 for none), which is answered only when
// asked for by name.
func selectOutputs(req *oip.Request, m *builtin.Model, embedding int) ([]outputChoice, error) {
	infos := m.Outputs()
	if len(req.Outputs) == 0 {
		all := make([]outputChoice, 0, len(infos))
		for i := range infos {
			if i != embedding {
				all = append(all, outputChoice{index: i, binary: req.BinaryOutput})
			}
		}
		return all, nil
	}
	chosen := make([]outputChoice, 0, len(req.Outputs))
	for _, o := range req.Outputs {
		idx := -1
		for i, info := range infos {
			if info.Name == o.Name {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("unknown output %q: the model's outputs are %s", o.Name, inputNames(infos))
		}
		chosen = append(chosen, outputChoice{index: idx, binary: o.Binary || req.BinaryOutput})
	}
	return chosen, nil
}

// forward sends the request to the upstream server and passes its answer back unchanged,
// scoring the configured output tensor of a successful response on the way (and reading its
// embedding output, when the answer has one and the embedding signal is on).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, c *call, version string) {
	b := c.b
	// No ResponseWriter for MaxBytesReader: the transport reads the body on its own goroutine,
	// which must not touch the response.
	var body io.Reader = http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestBytes)
	// With capture on, the body is kept as it streams: the input is decoded only if the
	// answer succeeds, and only then is a row considered for capture, before the answer is
	// passed on (it names the samples captured).
	var kept *bytes.Buffer
	if s.wantsCapture(r.PathValue("model")) {
		kept = bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)))
		body = io.TeeReader(body, kept)
	}
	resp, err := b.cfg.Upstream.Infer(c.ctx, version, r.URL.RawQuery, body, r.ContentLength, r.Header)
	c.stage(observe.StageInfer)
	if err != nil {
		var ue *upstream.Error
		switch {
		case errors.Is(err, upstream.ErrRequestBody):
			s.bodyError(w, c, err)
		case errors.As(err, &ue):
			s.logger.Debug("upstream failed", "model", r.PathValue("model"), "version", b.Version(), "err", err)
			s.fail(w, c, observe.OutcomeUpstreamError, ue.Status, ue.Error())
		case c.ctx.Err() != nil:
			s.fail(w, c, observe.OutcomeCanceled, statusClientClosed, "request canceled")
		default:
			s.fail(w, c, observe.OutcomeUpstreamError, http.StatusBadGateway, err.Error())
		}
		return
	}
	outcome := observe.OutcomeSuccess
	var scores []float32
	sc := s.getScratch()
	defer s.putScratch(sc)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		headerLen, err := headerLength(resp.Header)
		if err == nil {
			_, sc.scores, err = oip.ParseOutput(resp.Body, headerLen, b.cfg.Output, sc.scores[:0])
		}
		if err != nil {
			// The client still gets the upstream's answer; observe counts an empty output as
			// a confidence error, which is what an unreadable one is.
			s.logger.Debug("cannot score upstream response", "model", r.PathValue("model"), "output", b.cfg.Output, "err", err)
			sc.scores = sc.scores[:0]
		}
		scores = sc.scores
		if err == nil && b.cfg.Embedding != "" && b.cfg.Observe.WantsEmbedding() {
			// Present when the client asked for every output (or for it); otherwise this
			// request simply adds nothing to the embedding window.
			if _, sc.embed, err = oip.ParseOutput(resp.Body, headerLen, b.cfg.Embedding, sc.embed[:0]); err == nil {
				c.obs.Embedding = sc.embed
			}
		}
	case code >= 400 && code < 500:
		outcome = observe.OutcomeInvalidRequest
	default:
		outcome = observe.OutcomeUpstreamError
	}
	c.stage(observe.StagePostprocess)
	c.status = resp.StatusCode
	s.finish(c, outcome, scores)
	if kept != nil && outcome == observe.OutcomeSuccess && len(scores) > 0 {
		// Ours replaces a key an upstream edgeloop front named; without ours, its passes.
		setCaptureKeys(resp.Header, s.captureUpstream(c, r, kept, scores))
	}
	s.passThrough(w, resp, nil)
}
