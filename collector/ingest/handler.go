package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
	"github.com/edgeloop/edgeloop/internal/web"
)

// The reasons of edgeloop_collector_samples_rejected_total.
const (
	// ReasonInvalid counts samples that break a rule of the format.
	ReasonInvalid = "invalid"
	// ReasonNodeMismatch counts samples whose node is not the credential's.
	ReasonNodeMismatch = "node_mismatch"
)

// WAL is what ingest needs of the write-ahead log (a *spool.Spool).
type WAL interface {
	// AppendBatch writes records in order (not yet durable) and returns the sequence numbers
	// of those written: all, or the first ones and the error that stopped the rest.
	AppendBatch(ctx context.Context, records [][]byte) ([]uint64, error)
	// Sync makes every record appended so far durable; concurrent callers share fsyncs.
	Sync() error
	// Stats tells how much the log holds.
	Stats() spool.Stats
}

// Options are what a Handler works with besides its configuration.
type Options struct {
	// WAL receives accepted samples, one record (sample.MarshalStored) each.
	WAL WAL
	// Dedup remembers stored keys; nil makes one of Config.DedupKeys.
	Dedup *Dedup
	// Appended is called after records were appended and synced, to wake the shard builder.
	Appended func()
	// Registerer takes the ingest metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock of node_last_seen; nil means time.Now.
	Now func() time.Time
	// Tracer starts the spans of a batch (docs/tracing.md); nil means none.
	Tracer trace.Tracer
}

// Handler serves POST /v1/samples and GET /v1/limits behind auth.RequireNode.
type Handler struct {
	cfg     Config
	opts    Options
	logger  *slog.Logger
	decoder *Decoder
	dedup   *Dedup
	commit  *groupCommit
	sem     chan struct{}
	m       *metrics
	limits  []byte // the JSON of GET /v1/limits

	mu       sync.Mutex
	perNode  map[string]int // batches of each node in the handler, waiting for a slot included
	reserved int64          // WAL bytes reserved by batches decoded but not yet appended
}

// New returns the ingest handler.
func New(cfg Config, opts Options) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest: config: %w", err)
	}
	if opts.WAL == nil {
		return nil, errors.New("ingest: no write-ahead log")
	}
	h := &Handler{cfg: cfg, opts: opts, logger: opts.Logger, decoder: NewDecoder(cfg.Limits()), dedup: opts.Dedup,
		sem: make(chan struct{}, cfg.MaxConcurrent), perNode: map[string]int{}}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.opts.Now == nil {
		h.opts.Now = time.Now
	}
	if h.dedup == nil {
		h.dedup = NewDedup(cfg.DedupKeys)
	}
	if h.opts.Appended == nil {
		h.opts.Appended = func() {}
	}
	if h.opts.Tracer == nil {
		h.opts.Tracer = noop.NewTracerProvider().Tracer("")
	}
	h.commit = &groupCommit{delay: cfg.GroupCommitDelay, sync: opts.WAL.Sync}
	h.limits, _ = json.Marshal(h.limitsBody())
	h.m = newMetrics()
	if opts.Registerer != nil {
		if err := h.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("ingest: register metrics: %w", err)
		}
	}
	return h, nil
}

// Dedup is the handler's set of stored keys.
func (h *Handler) Dedup() *Dedup { return h.dedup }

// Inflight is the number of batches being handled now.
func (h *Handler) Inflight() int { return len(h.sem) }

func (h *Handler) limitsBody() map[string]int64 {
	return map[string]int64{
		"max_body_bytes":         h.cfg.MaxBodyBytes,
		"max_uncompressed_bytes": h.cfg.MaxUncompressedBytes,
		"max_samples":            int64(h.cfg.MaxSamples),
		"max_member_bytes":       sample.MaxInputBytes,
	}
}

// Register mounts the endpoints on mux behind a's node authentication, counting every answer
// (401s included) in edgeloop_collector_requests_total.
func (h *Handler) Register(mux *http.ServeMux, a *auth.Auth) {
	mux.Handle("POST /v1/samples", h.count(a.RequireNode(http.HandlerFunc(h.serveSamples))))
	mux.Handle("GET /v1/limits", h.count(a.RequireNode(http.HandlerFunc(h.serveLimits))))
}

// Result is the body of a 200 (docs/wire-format.md).
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Rejection is one rejected sample of a Result.
type Rejection struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

func (h *Handler) serveLimits(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(h.limits)
}

func (h *Handler) unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(h.cfg.RetryAfterSeconds))
	httpjson.Error(w, http.StatusServiceUnavailable, msg)
}

func (h *Handler) tooLarge(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	b, _ := json.Marshal(map[string]any{"error": msg, "limits": h.limitsBody()})
	w.Write(append(b, '\n'))
}

// enter counts a batch of node in, false when the node already has MaxConcurrentPerNode.
func (h *Handler) enter(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perNode[node] >= h.cfg.MaxConcurrentPerNode {
		return false
	}
	h.perNode[node]++
	return true
}

func (h *Handler) leave(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perNode[node]--; h.perNode[node] <= 0 {
		delete(h.perNode, node)
	}
}

// reserve books need bytes of the write-ahead log for a batch about to be appended, false when
// the log, with what the batches ahead of it reserved, has no room under MaxWALBytes. Checking
// before decoding alone would let every batch in flight pass the limit together.
func (h *Handler) reserve(need int64) (held int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The log's bytes include records appended by batches that have not released their
	// reservation yet: counted twice for a moment, which errs on the safe side.
	held = h.opts.WAL.Stats().Bytes + h.reserved
	if held+need > h.cfg.MaxWALBytes {
		return held, false
	}
	h.reserved += need
	h.m.reserved.Set(float64(h.reserved))
	return held, true
}

func (h *Handler) release(need int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reserved -= need
	h.m.reserved.Set(float64(h.reserved))
}

// heldBytes is the log's bytes and the reservations on it.
func (h *Handler) heldBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opts.WAL.Stats().Bytes + h.reserved
}

// unread marks an answer given without reading the body: the connection closes after it.
// Otherwise the server drains up to 256 KiB of the body before answering, and a body that
// never ends (the slow node the answer refuses) would hold the answer back.
func unread(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
}

// acquire takes one of the MaxConcurrent decoding slots, waiting up to QueueTimeout (and
// while the client waits) for one: false means none came.
func (h *Handler) acquire(ctx context.Context) bool {
	select {
	case h.sem <- struct{}{}:
		return true
	default:
	}
	if h.cfg.QueueTimeout <= 0 {
		return false
	}
	h.m.queued.Inc()
	defer h.m.queued.Dec()
	timer := time.NewTimer(h.cfg.QueueTimeout)
	defer timer.Stop()
	select {
	case h.sem <- struct{}{}:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (h *Handler) serveSamples(w http.ResponseWriter, r *http.Request) {
	node, _ := auth.NodeFrom(r.Context())
	// The span continues the sender's trace (its traceparent); its attributes are set as the
	// batch goes, so that a refused batch says how far it got.
	ctx, span := h.opts.Tracer.Start(r.Context(), "collector.ingest", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("edgeloop.node", node)))
	defer span.End()
	orig := w // http.MaxBytesReader tells the server's own writer to close the connection
	sw := &statusRecorder{ResponseWriter: w}
	w = sw
	defer func() {
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status()))
		if sw.status() >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status()))
		}
	}()
	r = r.WithContext(ctx)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-tar" {
		httpjson.Error(w, http.StatusUnsupportedMediaType, "Content-Type must be application/x-tar")
		return
	}
	enc := r.Header.Get("Content-Encoding")
	if enc != "" && enc != "zstd" && enc != "identity" {
		httpjson.Error(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %.64q: send zstd or none", enc))
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.tooLarge(w, fmt.Sprintf("body of %d bytes is above the limit of %d", r.ContentLength, h.cfg.MaxBodyBytes))
		return
	}
	if !h.enter(node) {
		// Before the shared slots: one node's slow or stuck batches must not hold them all.
		unread(w)
		w.Header().Set("Retry-After", strconv.Itoa(h.cfg.RetryAfterSeconds))
		httpjson.Error(w, http.StatusTooManyRequests, fmt.Sprintf("too many batches of node %s in flight (max_concurrent_per_node %d)", node, h.cfg.MaxConcurrentPerNode))
		return
	}
	defer h.leave(node)
	if !h.acquire(r.Context()) {
		unread(w)
		h.unavailable(w, fmt.Sprintf("overloaded: %d batches in flight and none finished within %s", h.cfg.MaxConcurrent, h.cfg.QueueTimeout))
		return
	}
	// The slot is given back once the batch is appended (store): waiting for the shared
	// fsync holds no decoded batch, and must not keep other batches from decoding.
	slot := true
	release := func() {
		if slot {
			slot = false
			<-h.sem
		}
	}
	defer release()
	if held := h.heldBytes(); held >= h.cfg.MaxWALBytes {
		unread(w)
		// The object store is behind (down, or slower than ingest): refuse rather than fill
		// the disk; the nodes keep their samples in their own spools meanwhile.
		h.unavailable(w, fmt.Sprintf("write-ahead log full: %d bytes waiting for the object store, limit %d", held, h.cfg.MaxWALBytes))
		return
	}
	body := &countingReader{r: http.MaxBytesReader(orig, r.Body, h.cfg.MaxBodyBytes)}
	nm := h.m.node(node)
	// The samples are stored as they are read (batchWriter): what a batch holds in memory is
	// one chunk of them, not the whole batch.
	bw := h.newBatchWriter(r.Context(), node, nm)
	rejected, err := h.decoder.Decode(body, enc, bw.add)
	h.m.receivedBytes.Add(float64(body.n))
	if err == nil && body.err != nil {
		err = body.err // the decoder took a cut-off body for the end of the batch
	}
	if errors.As(err, new(*storeError)) {
		err = nil // answered below, as the failure to store that finish returns
	}
	// Whatever ended the batch, the samples appended so far are made durable: a resend finds
	// them stored.
	serr := bw.finish(release)
	received := bw.received + len(rejected)
	nm.received.Add(float64(received))
	span.SetAttributes(attribute.Int64("edgeloop.batch.bytes", body.n), attribute.Int("edgeloop.batch.samples", received))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(body.err, web.ErrBodyTooSlow):
			// Not the batch's fault: the node retries it (a 400 would split and dead-letter).
			h.logger.Warn("batch body too slow; answered 408", "node", node, "err", body.err)
			unread(w)
			httpjson.Error(w, http.StatusRequestTimeout, body.err.Error())
		case body.err != nil && !errors.As(body.err, &mbe):
			// The connection ended or failed before the body was whole: a network cut, whose
			// answer can still reach the node through a proxy that half-closes. Retried, like a
			// slow body; a 400 would dead-letter valid samples (docs/faults.md).
			h.logger.Warn("batch body cut off; answered 408", "node", node, "bytes", body.n, "err", body.err)
			unread(w)
			httpjson.Error(w, http.StatusRequestTimeout, "batch body cut off: "+body.err.Error())
		case errors.As(err, &mbe):
			h.tooLarge(w, fmt.Sprintf("body is above the limit of %d bytes", h.cfg.MaxBodyBytes))
		case errors.Is(err, ErrTooLarge):
			h.tooLarge(w, err.Error())
		case errors.Is(err, ErrUnsupported):
			httpjson.Error(w, http.StatusUnsupportedMediaType, err.Error())
		default:
			httpjson.Error(w, http.StatusBadRequest, "unreadable batch: "+err.Error())
		}
		return
	}
	res := bw.res
	for _, rj := range rejected {
		res.Rejected = append(res.Rejected, Rejection{Key: rj.Key, Error: rj.Err.Error()})
		nm.invalid.Inc()
	}
	if res.Rejected == nil {
		res.Rejected = []Rejection{}
	}
	span.SetAttributes(attribute.Int("edgeloop.batch.accepted", res.Accepted), attribute.Int("edgeloop.batch.duplicates", res.Duplicates),
		attribute.Int("edgeloop.batch.rejected", len(res.Rejected)))
	if serr != nil {
		h.unavailable(w, serr.msg)
		return
	}
	nm.accepted.Add(float64(res.Accepted))
	nm.duplicate.Add(float64(res.Duplicates))
	nm.lastSeen.Set(float64(h.opts.Now().UnixNano()) / 1e9)
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(res)
	w.Write(append(b, '\n'))
}

// countingReader counts a body's bytes and keeps its first error other than EOF, which the
// decoders may not pass on as they got it.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// statusRecorder remembers the status a handler wrote: for the answers' counter and for the
// batch's span.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the body's read deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// status is the status written, 200 when the handler wrote none.
func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// count counts each answer by status and the requests in flight.
func (h *Handler) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.m.inflight.Inc()
		defer h.m.inflight.Dec()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		h.m.code(rec.status()).Inc()
	})
}

// metrics are the ingest series, documented in docs/metrics.md.
type metrics struct {
	received, accepted, duplicate *prometheus.CounterVec
	lastSeen                      *prometheus.GaugeVec
	rejected                      *prometheus.CounterVec
	requests                      *prometheus.CounterVec
	receivedBytes                 prometheus.Counter
	inflight, queued              prometheus.Gauge
	reserved                      prometheus.Gauge

	mu    sync.Mutex
	nodes map[string]*nodeMetrics // cached children: the hot path skips WithLabelValues
	codes map[int]prometheus.Counter
}

type nodeMetrics struct {
	received, accepted, duplicate prometheus.Counter
	invalid, nodeMismatch         prometheus.Counter // rejected, by reason
	lastSeen                      prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_samples_received_total",
			Help: "Samples received (distinct keys read from batches, valid or rejected, whatever the answer), by node."}, []string{"node"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_samples_accepted_total",
			Help: "Samples stored durably in the write-ahead log, by node."}, []string{"node"}),
		duplicate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_samples_duplicate_total",
			Help: "Samples received again while still remembered (resends), not stored twice, by node."}, []string{"node"}),
		lastSeen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "edgeloop_collector_node_last_seen_timestamp_seconds",
			Help: "Unix time of the node's last batch answered 200: what a 'node silent' alert compares with time()."}, []string{"node"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_samples_rejected_total",
			Help: "Samples rejected in a 200 answer, by node and reason: invalid (breaks the format), node_mismatch (claims another node than its credential's)."}, []string{"node", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgeloop_collector_requests_total",
			Help: "Ingest API answers (/v1/samples, /v1/limits), by HTTP status code."}, []string{"code"}),
		receivedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeloop_collector_received_bytes_total",
			Help: "Request body bytes read by ingest, as sent (compressed)."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeloop_collector_inflight_requests",
			Help: "Ingest API requests being handled now."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeloop_collector_queued_requests",
			Help: "Ingest requests waiting for one of ingest.max_concurrent decoding slots (at most ingest.queue_timeout)."}),
		reserved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgeloop_collector_wal_reserved_bytes",
			Help: "Write-ahead log bytes reserved by batches decoded and being stored; with the log's bytes, what ingest.max_wal_bytes bounds."}),
		nodes: map[string]*nodeMetrics{},
		codes: map[int]prometheus.Counter{},
	}
	for _, c := range []int{200, 400, 401, 403, 408, 413, 415, 429, 503} {
		m.codes[c] = m.requests.WithLabelValues(strconv.Itoa(c))
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.received, m.accepted, m.duplicate, m.lastSeen, m.rejected, m.requests, m.receivedBytes, m.inflight, m.queued, m.reserved} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) node(id string) *nodeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	if n == nil {
		n = &nodeMetrics{received: m.received.WithLabelValues(id), accepted: m.accepted.WithLabelValues(id),
			duplicate: m.duplicate.WithLabelValues(id), lastSeen: m.lastSeen.WithLabelValues(id),
			invalid: m.rejected.WithLabelValues(id, ReasonInvalid), nodeMismatch: m.rejected.WithLabelValues(id, ReasonNodeMismatch)}
		m.nodes[id] = n
	}
	return n
}

func (m *metrics) code(c int) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	cnt := m.codes[c]
	if cnt == nil {
		cnt = m.requests.WithLabelValues(strconv.Itoa(c))
		m.codes[c] = cnt
	}
	return cnt
}
