package sender

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/telemetry"
)

// assertStored checks that the collector holds each sample exactly as it was spooled.
func assertStored(t *testing.T, stored map[string]*sample.Sample, samples []*sample.Sample) {
	t.Helper()
	for _, s := range samples {
		got := stored[s.Meta.Key]
		if got == nil {
			t.Errorf("sample %s never arrived", s.Meta.Key)
			continue
		}
		g, _ := got.MetaJSON()
		w, _ := s.MetaJSON()
		if !bytes.Equal(g, w) || !bytes.Equal(got.Input, s.Input) {
			t.Errorf("sample %s arrived changed", s.Meta.Key)
		}
	}
}

func TestDeliversEverySampleOnce(t *testing.T) {
	h := newHarness(t, setup{configure: func(c *Config) { c.BatchDelay = 2 * time.Second }})
	samples, _ := fill(t, h.q, 0, 1200, t0)
	last := h.q.Add(record(t, samples[1150]), t0) // spooled twice in one batch: sent once
	h.start()
	h.q.waitAcked(t, last)
	h.stop()

	stored := h.col.Stored()
	if len(stored) != 1200 {
		t.Fatalf("collector holds %d samples, want 1200", len(stored))
	}
	assertStored(t, stored, samples)
	reqs := h.col.Requests()
	var sizes []int
	bytesSent := 0
	for _, r := range reqs {
		sizes = append(sizes, len(r.keys))
		bytesSent += r.body
		for k, want := range map[string]string{
			"Authorization": "Bearer token-1", NodeHeader: "edge-1", "Content-Type": "application/x-tar", "Content-Encoding": "zstd",
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		if !strings.HasPrefix(r.header.Get("User-Agent"), "edgeloop-sender/") {
			t.Errorf("User-Agent %q", r.header.Get("User-Agent"))
		}
		if r.header.Get("Traceparent") != "" {
			t.Error("traceparent sent without tracing")
		}
	}
	if !slices.Equal(sizes, []int{500, 500, 200}) {
		t.Errorf("batch sizes %v, want [500 500 200]", sizes)
	}
	// Only the last, partial batch lingered; a full one goes at once.
	if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
		t.Errorf("sleeps %v, want the one linger of batch_delay", got)
	}
	m := h.s.metrics
	for name, c := range map[string]struct{ got, want float64 }{
		"samples sent":    {testutil.ToFloat64(m.samplesSent), 1200},
		"batches sent":    {testutil.ToFloat64(m.batches[outcomeSent]), 3},
		"batches failed":  {testutil.ToFloat64(m.batches[outcomeFailed]), 0},
		"bytes sent":      {testutil.ToFloat64(m.bytesSent), float64(bytesSent)},
		"last success":    {testutil.ToFloat64(m.lastSuccess), float64(t0.Add(2 * time.Second).Unix())},
		"rejected":        {testutil.ToFloat64(m.samplesRejected), 0},
		"backoff":         {testutil.ToFloat64(m.backoff), 0},
		"request samples": {float64(testutil.CollectAndCount(m.duration)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}

// TestLingerWaitsFromSpoolTime: a fresh sample waits batch_delay counted from when it was
// spooled; one spooled longer ago than that (a backlog) goes at once.
func TestLingerWaitsFromSpoolTime(t *testing.T) {
	h := newHarness(t, setup{configure: func(c *Config) { c.BatchDelay = 2 * time.Second }})
	fill(t, h.q, 0, 1, t0.Add(-1500*time.Millisecond))
	_, last := fill(t, h.q, 1, 1, t0.Add(-time.Hour))
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{500 * time.Millisecond}) {
		t.Errorf("sleeps %v, want [500ms]: the remainder of the first sample's delay", got)
	}
	if n := len(h.col.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestPartialRejectionDeadLetters(t *testing.T) {
	var bad []string
	h := newHarness(t, setup{decide: func(r *request) verdict {
		return verdict{status: http.StatusOK, rejected: map[string]string{bad[0]: "label 12 names no class", bad[1]: "node mismatch"}}
	}})
	samples, last := fill(t, h.q, 0, 10, t0)
	bad = []string{samples[1].Meta.Key, samples[3].Meta.Key}
	h.start()
	h.q.waitAcked(t, last)
	h.stop()

	stored := h.col.Stored()
	if len(stored) != 8 || stored[bad[0]] != nil || stored[bad[1]] != nil {
		t.Fatalf("stored %d samples, the rejected included: %v", len(stored), stored[bad[0]] != nil)
	}
	files := h.deadLetterFiles()
	var want []string
	for _, k := range bad {
		want = append(want, k+".error.txt", k+".input.npy", k+".json")
	}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Fatalf("dead letter holds %v, want %v", files, want)
	}
	if got := h.readDeadLetter(bad[0] + ".error.txt"); got != "rejected by the collector: label 12 names no class\n" {
		t.Errorf("error.txt = %q", got)
	}
	meta, _ := samples[1].MetaJSON()
	if h.readDeadLetter(bad[0]+".json") != string(meta) || h.readDeadLetter(bad[0]+".input.npy") != string(samples[1].Input) {
		t.Error("dead-lettered files differ from the sample")
	}
	m := h.s.metrics
	if testutil.ToFloat64(m.samplesRejected) != 2 || testutil.ToFloat64(m.deadLetter[deadRejected]) != 2 || testutil.ToFloat64(m.samplesSent) != 8 {
		t.Errorf("rejected %v, dead-lettered %v, sent %v", testutil.ToFloat64(m.samplesRejected), testutil.ToFloat64(m.deadLetter[deadRejected]), testutil.ToFloat64(m.samplesSent))
	}
	if got := testutil.ToFloat64(m.deadLetterBytes); got <= float64(2*len(samples[1].Input)) {
		t.Errorf("dead letter bytes %v", got)
	}
	if h.countLogs("WARN", "label 12 names no class") != 1 {
		t.Errorf("the rejection is not logged at WARN with its message:\n%s", h.logs)
	}
}

func TestTooLargeSplitsThenDeadLetters(t *testing.T) {
	var huge string
	h := newHarness(t, setup{decide: func(r *request) verdict {
		switch {
		case len(r.keys) > 100:
			return verdict{status: http.StatusRequestEntityTooLarge, msg: "more than 100 samples"}
		case slices.Contains(r.keys, huge):
			return verdict{status: http.StatusRequestEntityTooLarge, msg: "member above 1 MiB"}
		}
		return verdict{}
	}})
	samples, last := fill(t, h.q, 0, 300, t0)
	huge = samples[150].Meta.Key
	h.start()
	h.q.waitAcked(t, last)
	h.stop()

	stored := h.col.Stored()
	if len(stored) != 299 || stored[huge] != nil {
		t.Fatalf("stored %d, want every sample but the huge one", len(stored))
	}
	assertStored(t, stored, slices.Delete(slices.Clone(samples), 150, 151))
	if got := h.readDeadLetter(huge + ".error.txt"); got != "the collector refused a batch of this sample alone as too large (413): member above 1 MiB\n" {
		t.Errorf("error.txt = %q", got)
	}
	for _, r := range h.col.Requests() {
		if r.status == http.StatusOK && len(r.keys) > 100 {
			t.Errorf("a batch of %d was accepted", len(r.keys))
		}
	}
	m := h.s.metrics
	if testutil.ToFloat64(m.deadLetter[deadTooLarge]) != 1 || testutil.ToFloat64(m.errors[reasonQueue]) != 0 || testutil.ToFloat64(m.errors[reasonTooLarge]) == 0 {
		t.Errorf("too_large %v, queue errors %v, http_413 %v", testutil.ToFloat64(m.deadLetter[deadTooLarge]), testutil.ToFloat64(m.errors[reasonQueue]), testutil.ToFloat64(m.errors[reasonTooLarge]))
	}
	if len(h.clock.Sleeps()) != 0 {
		t.Errorf("a split waited: %v", h.clock.Sleeps())
	}
}

func TestBadRequestIsolatesTheSample(t *testing.T) {
	var poison string
	h := newHarness(t, setup{decide: func(r *request) verdict {
		if slices.Contains(r.keys, poison) {
			return verdict{status: http.StatusBadRequest, msg: "zstd: corrupt input"}
		}
		return verdict{}
	}})
	samples, last := fill(t, h.q, 0, 40, t0)
	poison = samples[27].Meta.Key
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	if stored := h.col.Stored(); len(stored) != 39 || stored[poison] != nil {
		t.Fatalf("stored %d, want all but the poison sample", len(stored))
	}
	if got := h.readDeadLetter(poison + ".error.txt"); got != "the collector refused a batch of this sample alone as unreadable (400): zstd: corrupt input\n" {
		t.Errorf("error.txt = %q", got)
	}
	// Halving isolates sample 27 of 40 in refused batches of 40, 20 (20-39), 10 (20-29),
	// 5 (25-29), 3 (27-29) and 1.
	var refused []int
	for _, r := range h.col.Requests() {
		if r.status == http.StatusBadRequest {
			refused = append(refused, len(r.keys))
		}
	}
	if !slices.Equal(refused, []int{40, 20, 10, 5, 3, 1}) {
		t.Errorf("refused batches of %v, want [40 20 10 5 3 1]", refused)
	}
	if testutil.ToFloat64(h.s.metrics.deadLetter[deadBadRequest]) != 1 {
		t.Error("dead letter not counted")
	}
}

func TestTokenRotationAfter401(t *testing.T) {
	var h *harness
	var mu sync.Mutex
	refusals := 0
	h = newHarness(t, setup{decide: func(r *request) verdict {
		if r.header.Get("Authorization") == "Bearer token-2" {
			return verdict{}
		}
		mu.Lock()
		defer mu.Unlock()
		if refusals++; refusals == 3 {
			// The token is rotated while the sender backs off.
			if err := os.WriteFile(h.cfg.TokenFile, []byte("token-2\n"), 0o600); err != nil {
				t.Error(err)
			}
		}
		return verdict{status: http.StatusUnauthorized, msg: "unknown token"}
	}})
	_, last := fill(t, h.q, 0, 5, t0)
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	var auth []string
	for _, r := range h.col.Requests() {
		auth = append(auth, r.header.Get("Authorization"))
	}
	if want := []string{"Bearer token-1", "Bearer token-1", "Bearer token-1", "Bearer token-2"}; !slices.Equal(auth, want) {
		t.Errorf("tokens sent %q, want %q", auth, want)
	}
	// Backoff with full jitter, drawn at 0.5 of 1s, 2s, 4s.
	if got, want := h.clock.Sleeps(), []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("sleeps %v, want %v", got, want)
	}
	if n := h.countLogs("ERROR", "refused the node's credential"); n != 1 {
		t.Errorf("%d ERROR lines for one streak of refusals, want 1:\n%s", n, h.logs)
	}
	if h.countLogs("INFO", "the collector takes batches again") != 1 {
		t.Error("the end of the streak is not logged")
	}
	if got := testutil.ToFloat64(h.s.metrics.errors[reasonAuth]); got != 3 {
		t.Errorf("auth errors %v, want 3", got)
	}
	if len(h.col.Stored()) != 5 {
		t.Error("samples not stored after the rotation")
	}
}

// TestRetryableStatuses: each status that stores nothing is retried after Retry-After (capped
// at max_backoff) or, without one, the backoff.
func TestRetryableStatuses(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string // "date+10s" for an HTTP date ten seconds ahead
		wantSleep  time.Duration
		reason     string
	}{
		{"429 seconds", http.StatusTooManyRequests, "7", 7 * time.Second, reasonTooMany},
		{"429 capped", http.StatusTooManyRequests, "3600", time.Minute, reasonTooMany},
		{"429 date", http.StatusTooManyRequests, "date+10s", 10 * time.Second, reasonTooMany},
		{"429 garbage", http.StatusTooManyRequests, "soon", 500 * time.Millisecond, reasonTooMany},
		{"503 seconds", http.StatusServiceUnavailable, "3", 3 * time.Second, reasonUnavailable},
		{"503 without", http.StatusServiceUnavailable, "", 500 * time.Millisecond, reasonUnavailable},
		{"500", http.StatusInternalServerError, "", 500 * time.Millisecond, reasonServer},
		{"502", http.StatusBadGateway, "", 500 * time.Millisecond, reasonServer},
		{"408 body too slow", http.StatusRequestTimeout, "", 500 * time.Millisecond, reasonNetwork},
		{"404", http.StatusNotFound, "", 500 * time.Millisecond, reasonOther},
		{"307", http.StatusTemporaryRedirect, "", 500 * time.Millisecond, reasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			first := true
			h := newHarness(t, setup{
				configure: func(c *Config) { c.MaxBackoff = time.Minute },
				decide: func(r *request) verdict {
					mu.Lock()
					defer mu.Unlock()
					if !first {
						return verdict{}
					}
					first = false
					v := verdict{status: tt.status, msg: "busy", header: map[string]string{}}
					switch tt.retryAfter {
					case "":
					case "date+10s":
						v.header["Retry-After"] = r.at.Add(10 * time.Second).UTC().Format(http.TimeFormat)
					default:
						v.header["Retry-After"] = tt.retryAfter
					}
					if tt.status == http.StatusTemporaryRedirect {
						v.header["Location"] = "http://elsewhere.invalid/"
					}
					return v
				},
			})
			samples, last := fill(t, h.q, 0, 3, t0)
			h.start()
			h.q.waitAcked(t, last)
			h.stop()
			if got := h.clock.Sleeps(); !slices.Equal(got, []time.Duration{tt.wantSleep}) {
				t.Errorf("sleeps %v, want [%s]", got, tt.wantSleep)
			}
			assertStored(t, h.col.Stored(), samples)
			if got := testutil.ToFloat64(h.s.metrics.errors[tt.reason]); got != 1 {
				t.Errorf("errors{%s} = %v, want 1", tt.reason, got)
			}
			if got := testutil.ToFloat64(h.s.metrics.batches[outcomeFailed]); got != 1 {
				t.Errorf("failed batches %v, want 1", got)
			}
		})
	}
}

// TestNetworkDownBacksOff sends to a collector that is gone: the waits grow as full-jitter
// exponential backoff, capped, and the backoff gauge shows each wait while it lasts.
func TestNetworkDownBacksOff(t *testing.T) {
	ceilings := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30} // seconds
	for i := range ceilings {
		ceilings[i] *= time.Second
	}
	tests := []struct {
		name  string
		rand  func() float64
		check func(t *testing.T, i int, d time.Duration)
	}{
		{"half", func() float64 { return 0.5 }, func(t *testing.T, i int, d time.Duration) {
			if d != ceilings[i]/2 {
				t.Errorf("wait %d = %s, want %s", i, d, ceilings[i]/2)
			}
		}},
		{"random", rand.New(rand.NewPCG(1, 2)).Float64, func(t *testing.T, i int, d time.Duration) {
			if d < 0 || d >= ceilings[i] {
				t.Errorf("wait %d = %s, outside [0, %s)", i, d, ceilings[i])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *harness
			var gauges []float64
			h = newHarness(t, setup{
				configure: func(c *Config) { c.MaxBackoff = 30 * time.Second },
				options:   func(o *Options) { o.Rand = tt.rand },
			})
			h.clock.onSleep = func(time.Duration) {
				gauges = append(gauges, testutil.ToFloat64(h.s.metrics.backoff))
				if len(gauges) == len(ceilings) {
					h.cancel()
				}
			}
			h.col.srv.Close()
			fill(t, h.q, 0, 3, t0)
			h.start()
			h.waitDone()
			sleeps := h.clock.Sleeps()
			if len(sleeps) != len(ceilings) {
				t.Fatalf("%d waits, want %d", len(sleeps), len(ceilings))
			}
			for i, d := range sleeps {
				tt.check(t, i, d)
				if gauges[i] != d.Seconds() {
					t.Errorf("backoff gauge %v during a wait of %s", gauges[i], d)
				}
			}
			if h.q.Acked() != 0 {
				t.Error("records acknowledged without a response")
			}
			if got := testutil.ToFloat64(h.s.metrics.errors[reasonNetwork]); got != float64(len(ceilings)) {
				t.Errorf("network errors %v", got)
			}
			if testutil.ToFloat64(h.s.metrics.backoff) != 0 {
				t.Error("backoff gauge not reset")
			}
			if n := h.countLogs("WARN", "batch not delivered"); n != 1 {
				t.Errorf("%d WARN lines for one outage, want 1", n)
			}
		})
	}
}

// TestDrainRate: a backlog drains no faster than the limits allow. At the time of every
// request (the fake clock), what was sent so far is at most one second's burst plus the rate
// times the time elapsed.
func TestDrainRate(t *testing.T) {
	tests := []struct {
		name    string
		samples int
		batch   int
		rate    float64
		bps     int64
	}{
		{"samples", 2000, 500, 100, 1 << 40},
		{"bytes", 300, 50, 1e6, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, setup{configure: func(c *Config) {
				c.MaxRate, c.MaxBytesPerSecond, c.MaxBatchSamples = tt.rate, tt.bps, tt.batch
			}})
			_, last := fill(t, h.q, 0, tt.samples, t0.Add(-time.Hour))
			h.start()
			h.q.waitAcked(t, last)
			h.stop()
			var n, size float64
			var end time.Time
			for _, r := range h.col.Requests() {
				n += float64(len(r.keys))
				size += float64(r.body)
				elapsed := r.at.Sub(t0).Seconds()
				if n > tt.rate+tt.rate*elapsed+1e-6 {
					t.Errorf("%v samples sent by %.3fs: above %v/s", n, elapsed, tt.rate)
				}
				if size > float64(tt.bps)*(1+elapsed)+1e-6 {
					t.Errorf("%v bytes sent by %.3fs: above %d/s", size, elapsed, tt.bps)
				}
				end = r.at
			}
			// And not much slower: the whole backlog took about what the tighter limit allows.
			want := max((n-tt.rate)/tt.rate, (size-float64(tt.bps))/float64(tt.bps))
			if got := end.Sub(t0).Seconds(); got < want || got > want+1 {
				t.Errorf("drained in %.2fs of fake time, want about %.2fs", got, want)
			}
			if testutil.ToFloat64(h.s.metrics.throttled) <= 0 {
				t.Error("throttled time not counted")
			}
		})
	}
}

func TestUndecodableRecordDeadLetteredRaw(t *testing.T) {
	h := newHarness(t, setup{})
	good1 := testSample(t, 1)
	h.q.Add(record(t, good1), t0)
	garbage := []byte("\x01\x00\x00\x00\x05{}{}{this is not a sample")
	seq := h.q.Add(garbage, t0)
	good2 := testSample(t, 2)
	last := h.q.Add(record(t, good2), t0)
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	assertStored(t, h.col.Stored(), []*sample.Sample{good1, good2})
	if got := h.deadLetterFiles(); !slices.Equal(got, []string{"2.error.txt", "2.record"}) || seq != 2 {
		t.Fatalf("dead letter holds %v", got)
	}
	if h.readDeadLetter("2.record") != string(garbage) {
		t.Error("the raw record is not kept as it was")
	}
	if msg := h.readDeadLetter("2.error.txt"); !strings.HasPrefix(msg, "sample: unmarshal record: invalid sample: metadata:") {
		t.Errorf("error.txt = %q", msg)
	}
	if testutil.ToFloat64(h.s.metrics.deadLetter[deadUndecodable]) != 1 || testutil.ToFloat64(h.s.metrics.errors[reasonUndecodable]) != 1 {
		t.Error("undecodable record not counted")
	}
}

func TestRunStops(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		h := newHarness(t, setup{})
		h.start()
		h.stop() // fails the test if Run does not return
	})
	t.Run("during backoff", func(t *testing.T) {
		h := newHarness(t, setup{decide: func(*request) verdict { return verdict{status: http.StatusServiceUnavailable} }})
		h.clock.onSleep = func(time.Duration) { h.cancel() }
		fill(t, h.q, 0, 2, t0)
		h.start()
		h.waitDone()
		if h.q.Acked() != 0 {
			t.Error("acknowledged what the collector did not take")
		}
	})
	t.Run("in-flight request finishes", func(t *testing.T) {
		var h *harness
		h = newHarness(t, setup{decide: func(*request) verdict {
			h.cancel() // shutdown begins while the collector is answering
			return verdict{}
		}})
		samples, last := fill(t, h.q, 0, 4, t0)
		h.start()
		h.waitDone()
		if h.q.Acked() != last {
			t.Errorf("acked through %d, want %d: the answered batch was dropped", h.q.Acked(), last)
		}
		assertStored(t, h.col.Stored(), samples)
	})
}

func TestTraceContextSent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracing := &telemetry.Tracing{Provider: tp, Propagator: propagation.TraceContext{}}
	h := newHarness(t, setup{options: func(o *Options) { o.Tracing = tracing }})
	_, last := fill(t, h.q, 0, 2, t0)
	h.start()
	h.q.waitAcked(t, last)
	h.stop()
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "POST /v1/samples" {
		t.Fatalf("spans %v", spans)
	}
	sc := spans[0].SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got := h.col.Requests()[0].header.Get("Traceparent"); got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{" 120 ", 2 * time.Minute},
		{"99999999999999", 365 * 24 * time.Hour},
		{"Fri, 01 May 2026 12:00:30 GMT", 30 * time.Second},
		{"Fri, 01 May 2026 11:00:00 GMT", 0},
		{"later", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.h, got, tt.want)
		}
	}
}
