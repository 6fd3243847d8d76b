// Package sender ships the samples the exporter captured, from the edge node's spool to the
// collector, by the contract of docs/wire-format.md: batches of samples as a zstd-compressed
// tar, POSTed with the node's credential; a record leaves the spool only once the collector
// has answered for it, stored or rejected.
//
// Edge uplinks fail for hours and thousands of nodes share one collector, so the sender
// retries with capped, fully jittered backoff, honours Retry-After, and drains a backlog
// through a rate limit. Nothing blocks the queue for good: a sample the collector refuses as
// invalid (or that is too large even alone, or a record that does not decode) is moved to a
// capped dead-letter directory and acknowledged. A 200 is taken only when its body accounts
// for every sample of the batch, and a sample is acknowledged only once its dead-letter entry
// is written; otherwise the records stay in the spool and are sent again, which the collector
// deduplicates. docs/sender.md describes the behaviour.
package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/httpjson"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
	"github.com/edgeloop/edgeloop/internal/version"
)

// SamplesPath is the collector's ingest endpoint below its base URL.
const SamplesPath = "/v1/samples"

// NodeHeader names the sending node (informational: the collector trusts the credential).
const NodeHeader = "X-Edgeloop-Node"

// maxResponseBytes bounds the collector's response body read: 2,000 rejections with their
// messages fit well within it.
const maxResponseBytes = 4 << 20

// emptyPeekWait is how long to wait when Wait promised a record that Peek did not return, so
// that a misbehaving queue cannot make the sender spin.
const emptyPeekWait = time.Second

// Options are what a Sender works with besides its configuration. Now, Sleep and Rand exist
// for tests, which run the sender on a fake clock.
type Options struct {
	// Node is the node's name, sent in the X-Edgeloop-Node header. Required.
	Node string
	// Registerer takes the sender's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives the sender's logs; nil discards them.
	Logger *slog.Logger
	// Tracing, when not nil, traces each request and sends its W3C trace context.
	Tracing *telemetry.Tracing
	// Now is the clock for lingering, rate limiting, Retry-After dates and credential
	// refreshes; default time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx's error then; default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a uniform value in [0, 1) for backoff jitter; default math/rand/v2.
	Rand func() float64
}

// Sender ships samples from a Queue to the collector. Build it with New, then Run it once.
type Sender struct {
	cfg       Config
	q         Queue
	node      string
	endpoint  string
	userAgent string
	logger    *slog.Logger
	metrics   *metrics
	tracing   *telemetry.Tracing
	tracer    trace.Tracer
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	rand      func() float64
	transport *http.Transport
	client    *http.Client
	creds     *credentials
	enc       *zstd.Encoder
	limiter   *limiter
	dead      *deadLetter

	// The state of Run's goroutine.
	failures   int    // consecutive failed attempts: the backoff exponent
	streak     string // the failure reason last logged, "" after a success
	tarBuf     bytes.Buffer
	acked      uint64 // the last sequence number acknowledged
	holdFrom   uint64 // the oldest record of this batch that must stay in the queue; 0: none
	holdStreak int    // consecutive batches with a record held: the exponent of their backoff
}

// item is a decoded record on its way.
type item struct {
	seq uint64
	s   *sample.Sample
}

// New prepares a sender of q's records to the collector cfg names. It reads the credentials,
// the CA bundle and the dead-letter directory, so configuration mistakes surface before
// anything runs.
func New(cfg Config, q Queue, opts Options) (*Sender, error) {
	if cfg.URL == "" {
		return nil, errors.New("sender: no collector url configured")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	if q == nil {
		return nil, errors.New("sender: no queue")
	}
	if opts.Node == "" {
		return nil, errors.New("sender: no node name")
	}
	s := &Sender{
		cfg: cfg, q: q, node: opts.Node, logger: opts.Logger, tracing: opts.Tracing,
		now: opts.Now, sleep: opts.Sleep, rand: opts.Rand,
		endpoint:  strings.TrimRight(cfg.URL, "/") + SamplesPath,
		userAgent: "edgeloop-sender/" + version.Get().Version,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = sleepTimer
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.tracing != nil {
		s.tracer = s.tracing.Provider.Tracer("github.com/edgeloop/edgeloop/exporter/sender")
	}
	var err error
	if s.creds, err = newCredentials(cfg, s.now); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	tc, err := tlsConfig(cfg.TLS, s.creds)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	connect := min(cfg.Timeout, 30*time.Second)
	s.transport = &http.Transport{
		// The uplink may need a proxy, unlike the local upstream servers.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   connect,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	s.client = &http.Client{
		Transport: s.transport,
		// A redirect would resend the batch and the token elsewhere; it means a wrong url.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// One encoder for every batch; EncodeAll on it needs no goroutines of its own.
	if s.enc, err = sample.NewBatchEncoder(1); err != nil {
		return nil, fmt.Errorf("sender: zstd: %w", err)
	}
	if s.dead, err = openDeadLetter(cfg.DeadLetterDir, cfg.DeadLetterMaxBytes); err != nil {
		s.enc.Close()
		return nil, fmt.Errorf("sender: %w", err)
	}
	s.limiter = newLimiter(cfg, s.now())
	s.metrics = newMetrics(opts.Registerer)
	s.metrics.deadLetterBytes.Set(float64(s.dead.size))
	return s, nil
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Close releases the encoder and idle connections. Call it after Run has returned.
func (s *Sender) Close() {
	s.enc.Close()
	s.transport.CloseIdleConnections()
}

// Run sends batches until ctx is done, then returns nil. A request in flight when ctx ends
// is finished (within the timeout) and its records acknowledged; waits (linger, rate limit,
// backoff) end at once. It returns an error only when the queue's Wait fails.
func (s *Sender) Run(ctx context.Context) error {
	for {
		if err := s.q.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sender: wait for samples: %w", err)
		}
		recs, err := s.batch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.metrics.errors[reasonQueue].Inc()
			s.logger.Error("cannot read the spool", "err", err)
			if s.pause(ctx, s.backoff()) != nil {
				return nil
			}
			continue
		}
		if len(recs) > 0 && s.ship(ctx, recs) != nil {
			return nil
		}
	}
}

// batch peeks the next batch, lingering up to batch_delay after its oldest record was spooled
// when it is not full yet.
func (s *Sender) batch(ctx context.Context) ([]Record, error) {
	recs, err := s.q.Peek(s.cfg.MaxBatchSamples, s.cfg.MaxBatchBytes)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, s.sleep(ctx, emptyPeekWait)
	}
	if s.cfg.BatchDelay <= 0 || s.full(recs) {
		return recs, nil
	}
	// Records spooled during an outage are older than the delay: a backlog goes at once.
	age := max(s.now().Sub(recs[0].Time), 0)
	wait := s.cfg.BatchDelay - age
	if wait <= 0 {
		return recs, nil
	}
	if err := s.sleep(ctx, wait); err != nil {
		return nil, err
	}
	return s.q.Peek(s.cfg.MaxBatchSamples, s.cfg.MaxBatchBytes)
}

// full reports whether recs is a full batch: the sample limit reached, or no room left for
// another record of their average size.
func (s *Sender) full(recs []Record) bool {
	if len(recs) >= s.cfg.MaxBatchSamples {
		return true
	}
	var size int64
	for _, r := range recs {
		size += int64(len(r.Data))
	}
	return size+size/int64(len(recs)) > s.cfg.MaxBatchBytes
}

// ship delivers one peeked batch and acknowledges it. It returns only ctx's error, when
// shutting down before the batch was answered for: the records stay in the queue.
func (s *Sender) ship(ctx context.Context, recs []Record) error {
	items := make([]item, 0, len(recs))
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		smp, err := sample.UnmarshalRecord(r.Data)
		if err != nil {
			if !s.deadLetterRecord(r, err) {
				s.hold(r.Seq)
			}
			continue
		}
		if seen[smp.Meta.Key] {
			continue // the same sample spooled twice: it goes once, and is acknowledged with the batch
		}
		seen[smp.Meta.Key] = true
		items = append(items, item{seq: r.Seq, s: smp})
	}
	if len(items) > 0 {
		err := s.deliver(ctx, items, 0)
		if errors.Is(err, errRepeek) {
			err = nil
		} else if err == nil {
			s.ack(ctx, recs[len(recs)-1].Seq)
		}
		if err != nil {
			return err
		}
	} else {
		s.ack(ctx, recs[len(recs)-1].Seq)
	}
	if s.holdFrom == 0 {
		s.holdStreak = 0
		return nil
	}
	// A dead-letter entry could not be written: the records from it on come back from Peek
	// after a backoff of their own (the collector answered, so s.failures was reset).
	s.holdFrom = 0
	failures := s.failures
	s.failures = s.holdStreak
	wait := s.backoff()
	s.holdStreak, s.failures = s.failures, failures
	return s.pause(ctx, wait)
}

// hold keeps the record seq, and every one after it, in the queue for now: its dead-letter
// entry could not be written.
func (s *Sender) hold(seq uint64) {
	if s.holdFrom == 0 || seq < s.holdFrom {
		s.holdFrom = seq
	}
}

// ack acknowledges the records through seq, but none from a held one on. A failure is logged
// and waited on with backoff: the records come back from Peek and are sent again, which the
// collector deduplicates.
func (s *Sender) ack(ctx context.Context, seq uint64) {
	if s.holdFrom != 0 {
		seq = min(seq, s.holdFrom-1)
	}
	if seq <= s.acked {
		return
	}
	if err := s.q.Ack(seq); err != nil {
		s.metrics.errors[reasonQueue].Inc()
		s.logger.Error("cannot acknowledge sent samples in the spool; they will be sent again", "through_seq", seq, "err", err)
		_ = s.pause(ctx, s.backoff())
		return
	}
	s.acked = seq
}

// deliver sends items until the collector has answered for each of them: stored, rejected,
// or refused alone (then dead-lettered). It retries failures, and halves a batch the
// collector finds too large or unreadable. It returns only ctx's error.
func (s *Sender) deliver(ctx context.Context, items []item, depth int) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		body, err := s.encode(items)
		if err != nil {
			// Every item passed UnmarshalRecord's validation, so this is a bug, not bad data;
			// dead-lettering keeps the samples and the queue moving.
			for _, it := range items {
				if !s.deadLetterSample(it, deadUndecodable, "cannot encode the batch: "+err.Error()) {
					s.hold(it.seq)
				}
			}
			return nil
		}
		if wait := s.limiter.take(len(items), len(body), s.now()); wait > 0 {
			s.metrics.throttled.Add(wait.Seconds())
			if err := s.sleep(ctx, wait); err != nil {
				return err
			}
		}
		res := s.post(ctx, body, len(items))
		if res.action == actDone {
			res = checkAnswer(res, items)
		}
		switch res.action {
		case actDone:
			s.succeeded(items, res.body)
			return nil
		case actSplit:
			s.failed(res, len(items), depth > 0)
			s.failures = 0 // the collector is up and answering; only this batch is refused
			if len(items) == 1 {
				if !s.deadLetterSample(items[0], res.deadReason, res.deadMessage()) {
					s.hold(items[0].seq)
				}
				return nil
			}
			half := len(items) / 2
			if err := s.deliver(ctx, items[:half], depth+1); err != nil {
				return err
			}
			s.ack(ctx, items[half-1].seq)
			return s.deliver(ctx, items[half:], depth+1)
		default:
			s.failed(res, len(items), false)
			if err := ctx.Err(); err != nil {
				return err
			}
			wait := res.retryAfter
			if wait > 0 {
				wait = min(wait, s.cfg.MaxBackoff)
				s.failures++
			} else {
				wait = s.backoff()
			}
			if err := s.pause(ctx, wait); err != nil {
				return err
			}
			if depth == 0 {
				// Peek again: during an outage the spool may have dropped what this batch
				// holds (drop_oldest) and gained newer records; a half being retried after
				// a split is kept as it is, since its first half is already acknowledged.
				return errRepeek
			}
		}
	}
}

// errRepeek sends a whole batch that failed back to Run to be peeked afresh.
var errRepeek = errors.New("sender: peek the batch again")

// backoff returns the next retry wait, full jitter: uniform in [0, min(max_backoff,
// initial_backoff·2^n)) after n consecutive failures.
func (s *Sender) backoff() time.Duration {
	ceiling := s.cfg.InitialBackoff
	for i := 0; i < s.failures && ceiling < s.cfg.MaxBackoff; i++ {
		ceiling *= 2 // no overflow: Validate bounds max_backoff far below
	}
	ceiling = min(ceiling, s.cfg.MaxBackoff)
	s.failures++
	return time.Duration(s.rand() * float64(ceiling))
}

// pause waits d after a failure, showing it in edgeloop_sender_backoff_seconds.
func (s *Sender) pause(ctx context.Context, d time.Duration) error {
	s.metrics.backoff.Set(d.Seconds())
	defer s.metrics.backoff.Set(0)
	return s.sleep(ctx, d)
}

// encode returns the batch as a zstd-compressed tar.
func (s *Sender) encode(items []item) ([]byte, error) {
	samples := make([]*sample.Sample, len(items))
	for i, it := range items {
		samples[i] = it.s
	}
	s.tarBuf.Reset()
	if err := sample.WriteTar(&s.tarBuf, samples); err != nil {
		return nil, err
	}
	// A new slice each time: the transport may still hold the previous body after Do returns.
	return s.enc.EncodeAll(s.tarBuf.Bytes(), make([]byte, 0, s.tarBuf.Len()/2)), nil
}

// checkAnswer turns a 200 whose body does not account for exactly the batch's samples into a
// retry (reason bad_response): every field present, no negative count, the counts adding up
// to the batch, each rejected key one of the batch's, listed once. Anything less may be a
// proxy's or another service's answer, and acknowledging on it would lose the samples;
// sending again is safe, since the collector deduplicates by key.
func checkAnswer(res result, items []item) result {
	bad := func(reason, msg string) result {
		res.action, res.reason, res.bad, res.msg, res.body = actRetry, reasonBadResponse, reason, "200 response: "+msg, nil
		return res
	}
	b := res.body
	if b == nil {
		return bad(badMissingField, "no body")
	}
	if b.Accepted < 0 || b.Duplicates < 0 {
		return bad(badCountMismatch, fmt.Sprintf("negative counts: accepted %d, duplicates %d", b.Accepted, b.Duplicates))
	}
	if got := b.Accepted + b.Duplicates + len(b.Rejected); got != len(items) {
		return bad(badCountMismatch, fmt.Sprintf("accepted %d + duplicates %d + rejected %d is not the batch's %d samples",
			b.Accepted, b.Duplicates, len(b.Rejected), len(items)))
	}
	keys := make(map[string]bool, len(items))
	for _, it := range items {
		keys[it.s.Meta.Key] = true
	}
	for _, r := range b.Rejected {
		if !keys[r.Key] {
			return bad(badUnknownKey, fmt.Sprintf("rejected key %.80q is not in the batch, or is listed twice", r.Key))
		}
		delete(keys, r.Key)
	}
	return res
}

// succeeded books a 200 that checkAnswer passed: rejected samples are dead-lettered, the
// rest are durable.
func (s *Sender) succeeded(items []item, body *ingestResponse) {
	rejected := make(map[string]string, len(body.Rejected))
	for _, r := range body.Rejected {
		rejected[r.Key] = r.Error
	}
	n := 0
	for _, it := range items {
		if msg, ok := rejected[it.s.Meta.Key]; ok {
			n++
			if !s.deadLetterSample(it, deadRejected, "rejected by the collector: "+msg) {
				s.hold(it.seq)
			}
		}
	}
	s.metrics.batches[outcomeSent].Inc()
	s.metrics.samplesSent.Add(float64(len(items) - n))
	s.metrics.samplesRejected.Add(float64(n))
	s.metrics.lastSuccess.Set(float64(s.now().UnixNano()) / 1e9)
	if s.streak != "" {
		s.logger.Info("the collector takes batches again", "failed_attempts", s.failures)
	}
	s.failures, s.streak = 0, ""
	s.logger.Debug("batch sent", "samples", len(items), "duplicates", body.Duplicates, "rejected", n)
}

// failed books a failed attempt. The first failure of a streak is logged at WARN (ERROR for
// a refused credential or a status that means misconfiguration), repeats at DEBUG, so that an
// outage of hours logs once. quiet logs at DEBUG: the halves of a batch already reported.
func (s *Sender) failed(res result, n int, quiet bool) {
	s.metrics.batches[outcomeFailed].Inc()
	s.metrics.errors[res.reason].Inc()
	if res.bad != "" {
		s.metrics.badResponses[res.bad].Inc()
	}
	level := slog.LevelWarn
	if res.reason == reasonAuth || res.reason == reasonOther {
		level = slog.LevelError
	}
	if quiet || (res.action == actRetry && s.streak == res.reason) {
		level = slog.LevelDebug
	}
	if res.action == actRetry {
		s.streak = res.reason
	}
	msg := "batch not delivered; retrying"
	switch {
	case res.action == actSplit:
		msg = "collector refused the batch; splitting it"
	case res.reason == reasonAuth:
		msg = "collector refused the node's credential; retrying with backoff and re-reading the credential"
	}
	args := []any{"reason", res.reason, "status", res.status, "err", res.msg, "samples", n, "url", s.endpoint}
	if res.bad != "" {
		args = append(args, "bad_response", res.bad)
	}
	s.logger.Log(context.Background(), level, msg, args...)
}

// deadLetterSample keeps a sample the collector will not take in the dead-letter directory.
// false means the entry could not be written: the sample must stay in the queue.
func (s *Sender) deadLetterSample(it item, reason, msg string) bool {
	key := it.s.Meta.Key
	s.metrics.deadLetter[reason].Inc()
	s.logger.Warn("sample dead-lettered", "key", key, "seq", it.seq, "reason", reason, "err", msg, "dir", s.cfg.DeadLetterDir)
	meta, err := it.s.MetaJSON()
	if err != nil {
		meta = nil // cannot happen for a validated sample; keep the input and the message
	}
	return s.keep(key, []dlFile{
		{it.s.MetaName(), meta},
		{it.s.InputName(), it.s.Input},
		{key + errorSuffix, []byte(msg + "\n")},
	})
}

// deadLetterRecord keeps a spool record that does not decode, raw, under its sequence number;
// false as deadLetterSample.
func (s *Sender) deadLetterRecord(r Record, err error) bool {
	id := strconv.FormatUint(r.Seq, 10)
	s.metrics.errors[reasonUndecodable].Inc()
	s.metrics.deadLetter[deadUndecodable].Inc()
	s.logger.Warn("spool record does not decode; dead-lettered", "seq", r.Seq, "bytes", len(r.Data), "err", err, "dir", s.cfg.DeadLetterDir)
	return s.keep(id, []dlFile{{id + ".record", r.Data}, {id + errorSuffix, []byte(err.Error() + "\n")}})
}

// keep writes a dead-letter entry. It reports false when the write failed (a full or broken
// disk): the caller keeps the sample in the queue, to be sent and refused again later, rather
// than acknowledge what nothing holds. An entry larger than the cap alone, or a directory
// turned off (dead_letter_max_bytes 0), is the operator's choice: logged, and true.
func (s *Sender) keep(id string, files []dlFile) bool {
	if s.cfg.DeadLetterMaxBytes == 0 {
		return true // dead letter off: the log line is all that remains
	}
	err := s.dead.add(id, files, s.now())
	s.metrics.deadLetterBytes.Set(float64(s.dead.size))
	switch {
	case err == nil:
		return true
	case errors.Is(err, errEntryTooLarge):
		s.metrics.errors[reasonDeadLetter].Inc()
		s.metrics.deadLetterFailures[dlDropped].Inc()
		s.logger.Error("cannot write the dead-letter entry; it is larger than the cap and is lost", "id", id, "err", err)
		return true
	default:
		s.metrics.errors[reasonDeadLetter].Inc()
		s.metrics.deadLetterFailures[dlRetained].Inc()
		s.logger.Error("cannot write the dead-letter entry; the sample stays in the spool and is sent again later", "id", id, "err", err)
		return false
	}
}

// action is what to do after an attempt.
type action int

const (
	actRetry action = iota // nothing stored: try the same batch again after a wait
	actDone                // 200: every sample answered for
	actSplit               // 413 or 400: halve the batch, or dead-letter a single sample
)

// result is the outcome of one request.
type result struct {
	action     action
	reason     string // errors_total reason of a failure
	status     int    // HTTP status; 0 without a response
	msg        string // the collector's error message, or the network error
	body       *ingestResponse
	bad        string // for reason bad_response: the bad_responses_total reason
	retryAfter time.Duration
	deadReason string // for actSplit: the dead-letter reason of a sample refused alone
}

func (r result) deadMessage() string {
	what := "too large"
	if r.status == http.StatusBadRequest {
		what = "unreadable"
	}
	return fmt.Sprintf("the collector refused a batch of this sample alone as %s (%d): %s", what, r.status, r.msg)
}

// ingestResponse is the collector's 200 body, every field present (parseAnswer).
type ingestResponse struct {
	Accepted   int
	Duplicates int
	Rejected   []rejection
}

type rejection struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// parseAnswer decodes a 200 body, telling an absent (or null) field from a zero one: "{}"
// from a proxy must not read as "nothing to store". Unknown fields are allowed, so that a
// newer collector may add some. It returns the bad_responses_total reason of a body that is
// not the contract's.
func parseAnswer(data []byte) (*ingestResponse, string, error) {
	var w struct {
		Accepted   *int         `json:"accepted"`
		Duplicates *int         `json:"duplicates"`
		Rejected   *[]rejection `json:"rejected"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, badNotJSON, err
	}
	if w.Accepted == nil || w.Duplicates == nil || w.Rejected == nil {
		return nil, badMissingField, errors.New(`want "accepted", "duplicates" and "rejected", got ` + httpjson.Message(data))
	}
	return &ingestResponse{Accepted: *w.Accepted, Duplicates: *w.Duplicates, Rejected: *w.Rejected}, "", nil
}

// post makes one request with body, a batch of n samples, and classifies the answer. The
// request is not cancelled with ctx: one in flight at shutdown finishes within the timeout,
// so that its answer is not lost.
func (s *Sender) post(ctx context.Context, body []byte, n int) result {
	if err := s.creds.refresh(); err != nil {
		s.logger.Warn("cannot re-read the credential; using the last one read", "err", err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	var span trace.Span
	if s.tracer != nil {
		rctx, span = s.tracer.Start(rctx, "POST "+SamplesPath, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("http.request.method", http.MethodPost),
				attribute.String("url.full", s.endpoint),
				attribute.Int("http.request.body.size", len(body)),
				attribute.Int("edgeloop.samples", n),
			))
		defer span.End()
	}
	res := s.do(rctx, body)
	if span != nil {
		if res.status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", res.status))
		}
		if res.action != actDone {
			span.SetStatus(codes.Error, res.reason)
		}
	}
	return res
}

func (s *Sender) do(ctx context.Context, body []byte) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return result{action: actRetry, reason: reasonNetwork, msg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("User-Agent", s.userAgent)
	req.Header.Set(NodeHeader, s.node)
	if tok := s.creds.bearer(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if s.tracing != nil {
		s.tracing.Inject(ctx, req.Header)
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		s.metrics.duration.Observe(time.Since(start).Seconds())
		return result{action: actRetry, reason: reasonNetwork, msg: err.Error()}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	resp.Body.Close()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	s.metrics.bytesSent.Add(float64(len(body)))
	res := result{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), s.now())}
	if err != nil && resp.StatusCode == http.StatusOK {
		res.action, res.reason, res.msg = actRetry, reasonNetwork, "reading the response: "+err.Error()
		return res
	}
	res.msg = httpjson.Message(data)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		b, bad, err := parseAnswer(data)
		if err != nil {
			// Nothing says which samples were stored; sending again is safe (keys dedupe).
			res.action, res.reason, res.bad, res.msg = actRetry, reasonBadResponse, bad, "200 response: "+err.Error()
			return res
		}
		res.action, res.body = actDone, b
	case code == http.StatusBadRequest:
		res.action, res.reason, res.deadReason = actSplit, reasonBadRequest, deadBadRequest
	case code == http.StatusRequestEntityTooLarge:
		res.action, res.reason, res.deadReason = actSplit, reasonTooLarge, deadTooLarge
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		res.action, res.reason = actRetry, reasonAuth
		// A rotated credential may be on disk; and new connections present a new certificate.
		s.creds.invalidate()
		s.transport.CloseIdleConnections()
	case code == http.StatusRequestTimeout:
		// The collector cut a body that arrived too slowly: the uplink, not the batch.
		res.action, res.reason = actRetry, reasonNetwork
	case code == http.StatusTooManyRequests:
		res.action, res.reason = actRetry, reasonTooMany
	case code == http.StatusServiceUnavailable:
		res.action, res.reason = actRetry, reasonUnavailable
	case code >= 500:
		res.action, res.reason = actRetry, reasonServer
	default:
		res.action, res.reason = actRetry, reasonOther
	}
	return res
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date. 0 means none.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		const maxSecs = int64(365 * 24 * 3600) // far beyond any cap; avoids overflow
		return time.Duration(min(max(secs, 0), maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
