package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the sender's clock in tests: Sleep returns at once and moves Now forward, so
// backoff, linger and rate limits run in no time and every wait is recorded exactly.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(d time.Duration) // called after each sleep, outside the lock
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	if d > 0 {
		c.now = c.now.Add(d)
	}
	hook := c.onSleep
	c.mu.Unlock()
	if hook != nil {
		hook(d)
	}
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

// memQueue is an in-memory Queue with the spool's semantics.
type memQueue struct {
	mu      sync.Mutex
	recs    []Record
	next    uint64
	acked   uint64
	changed chan struct{} // closed and replaced on every change
}

func newQueue() *memQueue { return &memQueue{next: 1, changed: make(chan struct{})} }

func (q *memQueue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Add spools data at time at and returns its sequence number.
func (q *memQueue) Add(data []byte, at time.Time) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	seq := q.next
	q.next++
	q.recs = append(q.recs, Record{Seq: seq, Time: at, Data: data})
	q.signal()
	return seq
}

func (q *memQueue) Peek(max int, maxBytes int64) ([]Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Record
	var size int64
	for _, r := range q.recs {
		if len(out) == max || (len(out) > 0 && size+int64(len(r.Data)) > maxBytes) {
			break
		}
		out = append(out, r)
		size += int64(len(r.Data))
	}
	return out, nil
}

func (q *memQueue) Ack(through uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if through < q.acked {
		return fmt.Errorf("ack %d after %d", through, q.acked)
	}
	q.acked = through
	q.recs = slices.DeleteFunc(q.recs, func(r Record) bool { return r.Seq <= through })
	q.signal()
	return nil
}

func (q *memQueue) Wait(ctx context.Context) error {
	for {
		q.mu.Lock()
		n, ch := len(q.recs), q.changed
		q.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// waitAcked waits until every record through seq is acknowledged. The deadline only stops a
// hung test; nothing is asserted about time.
func (q *memQueue) waitAcked(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		q.mu.Lock()
		acked, ch := q.acked, q.changed
		q.mu.Unlock()
		if acked >= seq {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("acked through %d, want %d", acked, seq)
		}
	}
}

func (q *memQueue) Acked() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}

// testSample returns a valid sample; seeds give distinct keys.
func testSample(t testing.TB, seed int) *sample.Sample {
	t.Helper()
	// Random pixels, so that samples compress about as badly as real ones.
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	data := make([]float32, 784)
	for i := range data {
		data[i] = rng.Float32()
	}
	var b bytes.Buffer
	if err := npy.WriteFloat32(&b, []int{1, 28, 28}, data); err != nil {
		t.Fatal(err)
	}
	s, err := sample.New(sample.Meta{
		Model: "fashion", Version: "3", Node: "edge-1",
		Time:       t0.Add(time.Duration(seed) * time.Millisecond),
		RequestID:  fmt.Sprintf("req-%d", seed),
		Prediction: seed % 10, Scores: []float32{0.1, 0.2, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1},
		ScoresKind: sample.ScoresProbabilities,
		Confidence: map[string]float64{"max_softmax": 0.2},
		Reason:     "low_confidence",
		Input:      sample.InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: sample.NPYFile},
	}, b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func record(t testing.TB, s *sample.Sample) []byte {
	t.Helper()
	b, err := s.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fill spools n samples with seeds from first, all at time at; it returns them and the last
// sequence number.
func fill(t testing.TB, q *memQueue, first, n int, at time.Time) ([]*sample.Sample, uint64) {
	t.Helper()
	var out []*sample.Sample
	var seq uint64
	for i := range n {
		s := testSample(t, first+i)
		out = append(out, s)
		seq = q.Add(record(t, s), at)
	}
	return out, seq
}

// request is what the fake collector saw of one batch request.
type request struct {
	header  http.Header
	keys    []string
	samples []*sample.Sample
	body    int // compressed bytes
	at      time.Time
	status  int
	tls     *tls.ConnectionState
}

// verdict is a test's answer to one request. A zero verdict follows the contract: 200,
// everything stored.
type verdict struct {
	status   int
	header   map[string]string
	rejected map[string]string // key → message, with status 200
	msg      string            // the error message of a non-200
	raw      string            // with status 200: this body instead of the contract's answer, nothing stored
}

// collector is a fake collector implementing docs/wire-format.md's POST /v1/samples.
type collector struct {
	t      *testing.T
	clock  *fakeClock
	srv    *httptest.Server
	decide func(r *request) verdict // nil: always the contract's 200

	mu       sync.Mutex
	stored   map[string]*sample.Sample
	requests []*request
}

// newCollector starts the fake collector; with tc it serves HTTPS with that configuration.
func newCollector(t *testing.T, clock *fakeClock, decide func(r *request) verdict, tc *tls.Config) *collector {
	c := &collector{t: t, clock: clock, decide: decide, stored: map[string]*sample.Sample{}}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	if tc != nil {
		c.srv.TLS = tc
		c.srv.StartTLS()
	} else {
		c.srv.Start()
	}
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != SamplesPath {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := &request{header: r.Header.Clone(), body: len(body), at: c.clock.Now(), tls: r.TLS}
	reply := func(status int, v any) {
		req.status = status
		c.mu.Lock()
		c.requests = append(c.requests, req)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Content-Type") != "application/x-tar" || r.Header.Get("Content-Encoding") != "zstd" {
		reply(http.StatusBadRequest, map[string]string{"error": "want a zstd tar"})
		return
	}
	dec, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1))
	if err != nil {
		reply(http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	defer dec.Close()
	samples, rejected, err := sample.ReadTar(dec, sample.DefaultLimits())
	if err != nil {
		reply(http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if len(rejected) > 0 {
		c.t.Errorf("the sender sent samples the collector rejects: %v", rejected)
	}
	req.samples = samples
	for _, s := range samples {
		req.keys = append(req.keys, s.Meta.Key)
	}
	v := verdict{status: http.StatusOK}
	if c.decide != nil {
		if d := c.decide(req); d.status != 0 {
			v = d
		}
	}
	for k, val := range v.header {
		w.Header().Set(k, val)
	}
	if v.status != http.StatusOK {
		reply(v.status, map[string]string{"error": v.msg})
		return
	}
	if v.raw != "" {
		reply(http.StatusOK, json.RawMessage(v.raw))
		return
	}
	type rejection struct {
		Key   string `json:"key"`
		Error string `json:"error"`
	}
	resp := struct {
		Accepted   int         `json:"accepted"`
		Duplicates int         `json:"duplicates"`
		Rejected   []rejection `json:"rejected"`
	}{Rejected: []rejection{}}
	c.mu.Lock()
	for _, s := range samples {
		if msg, ok := v.rejected[s.Meta.Key]; ok {
			resp.Rejected = append(resp.Rejected, rejection{s.Meta.Key, msg})
			continue
		}
		if c.stored[s.Meta.Key] != nil {
			resp.Duplicates++
			continue
		}
		c.stored[s.Meta.Key] = s
		resp.Accepted++
	}
	c.mu.Unlock()
	reply(http.StatusOK, resp)
}

func (c *collector) Requests() []*request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.requests)
}

func (c *collector) Stored() map[string]*sample.Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*sample.Sample, len(c.stored))
	for k, v := range c.stored {
		out[k] = v
	}
	return out
}

// harness is a sender wired to a fake queue, clock and collector.
type harness struct {
	t      *testing.T
	cfg    Config
	q      *memQueue
	clock  *fakeClock
	col    *collector
	s      *Sender
	reg    *prometheus.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// syncBuffer is a log sink safe for the sender's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testConfig is a valid configuration for url with a token file in dir.
func testConfig(t *testing.T, url string) Config {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.TokenFile = tokenFile
	cfg.DeadLetterDir = filepath.Join(dir, "deadletter")
	// Fast enough that tests are not throttled unless they mean to be.
	cfg.MaxRate = 1e6
	cfg.MaxBytesPerSecond = 1 << 40
	return cfg
}

// setup adjusts a harness before its sender is built.
type setup struct {
	decide    func(r *request) verdict
	configure func(cfg *Config)
	options   func(o *Options)
	tls       *tls.Config // the collector's, for HTTPS
}

// newHarness builds the sender. Unless told otherwise, backoff draws are always 0.5 (half the
// ceiling) and batch_delay is 0.
func newHarness(t *testing.T, su setup) *harness {
	t.Helper()
	h := &harness{t: t, q: newQueue(), clock: newClock(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	h.col = newCollector(t, h.clock, su.decide, su.tls)
	h.cfg = testConfig(t, h.col.srv.URL)
	h.cfg.BatchDelay = 0
	if su.configure != nil {
		su.configure(&h.cfg)
	}
	opts := Options{
		Node:       "edge-1",
		Registerer: h.reg,
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        h.clock.Now,
		Sleep:      h.clock.Sleep,
		Rand:       func() float64 { return 0.5 },
	}
	if su.options != nil {
		su.options(&opts)
	}
	s, err := New(h.cfg, h.q, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	h.s = s
	return h
}

// start runs the sender until the test ends or stop is called.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.s.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.waitDone()
}

// waitDone waits for Run to return, which a test's hook makes it do.
func (h *harness) waitDone() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return after cancel")
	}
	h.cancel = nil
}

// deadLetterFiles lists the dead-letter directory.
func (h *harness) deadLetterFiles() []string {
	h.t.Helper()
	entries, err := os.ReadDir(h.cfg.DeadLetterDir)
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (h *harness) readDeadLetter(name string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.cfg.DeadLetterDir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// countLogs counts log lines at level containing msg.
func (h *harness) countLogs(level, msg string) int {
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}
