package ingest_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/web"
)

// slowBatch is a batch request whose body stays open until finish sends the rest of it.
type slowBatch struct {
	pw   *io.PipeWriter
	rest []byte
	done chan *http.Response
}

// startSlow sends the headers and the first 512 bytes of body as node, and leaves the rest
// for finish.
func startSlow(t *testing.T, e *env, node string, body []byte) *slowBatch {
	t.Helper()
	pr, pw := io.Pipe()
	sb := &slowBatch{pw: pw, rest: body[512:], done: make(chan *http.Response, 1)}
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) }) // before the server closes
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/samples", pr)
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Authorization", "Bearer "+collectortest.Token(node))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			sb.done <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		sb.done <- resp
	}()
	go pw.Write(body[:512])
	return sb
}

// finish sends the rest of the body and returns the answer's status (0 without one).
func (sb *slowBatch) finish() *http.Response {
	go func() {
		sb.pw.Write(sb.rest)
		sb.pw.Close()
	}()
	return <-sb.done
}

// TestMaxWALBytesIsACeiling: batches in flight together cannot push the write-ahead log past
// ingest.max_wal_bytes, however many passed the check before any of them was stored: each
// reserves its room once decoded, and one that does not fit is answered 503.
func TestMaxWALBytesIsACeiling(t *testing.T) {
	const limit = 256 << 10
	e := newEnv(t, func(c *ingest.Config) { c.MaxWALBytes = limit; c.MaxConcurrent = 16; c.MaxConcurrentPerNode = 16 })
	const n = 12 // each about 64 KiB: together three times the limit
	var batches []*slowBatch
	for i := range n {
		s := collectortest.Sample(t, "edge-a", 100+i, 64<<10)
		batches = append(batches, startSlow(t, e, "edge-a", collectortest.Tar(t, s)))
	}
	waitFor(t, "every batch in the handler", func() bool { return e.h.Inflight() == n })
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sb := range batches {
		wg.Go(func() {
			resp := sb.finish()
			mu.Lock()
			defer mu.Unlock()
			if resp == nil {
				codes[0]++
				return
			}
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	wg.Wait()
	st := e.wal.Stats()
	if st.Bytes > limit {
		t.Errorf("the log holds %d bytes, above max_wal_bytes %d", st.Bytes, limit)
	}
	if codes[200] == 0 || codes[503] == 0 || codes[200]+codes[503] != n {
		t.Errorf("answers %v, want some 200 and the rest 503", codes)
	}
	if st.Records != codes[200] {
		t.Errorf("%d records for %d batches answered 200", st.Records, codes[200])
	}
	if r := metricValue(t, e.reg, "edgeloop_collector_wal_reserved_bytes"); r != 0 {
		t.Errorf("%v bytes still reserved after every batch was answered", r)
	}
}

// TestOneNodeCannotStarveOthers: many slow batches from one node take at most
// ingest.max_concurrent_per_node slots; the node's others are answered 429 with Retry-After at
// once, and another node's batch is stored meanwhile.
func TestOneNodeCannotStarveOthers(t *testing.T) {
	e := newEnv(t, func(c *ingest.Config) {
		c.MaxConcurrent = 64
		c.MaxConcurrentPerNode = 4
		c.QueueTimeout = 200 * time.Millisecond
	})
	body := collectortest.Tar(t, collectortest.Sample(t, "edge-a", 1, 4<<10))
	var slow []*slowBatch
	for range 64 {
		slow = append(slow, startSlow(t, e, "edge-a", body))
	}
	// The four that hold slots stay; the other sixty are answered without their bodies.
	refused := 0
	deadline := time.After(5 * time.Second)
wait:
	for refused < 60 {
		for i, sb := range slow {
			if sb == nil {
				continue
			}
			select {
			case resp := <-sb.done:
				if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("slow batch %d answered %v, want 429", i, resp)
				}
				if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
					t.Errorf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
				}
				refused++
				slow[i] = nil
			case <-deadline:
				break wait
			default:
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if refused != 60 {
		t.Fatalf("%d of edge-a's 64 slow batches refused, want 60", refused)
	}
	if got := e.h.Inflight(); got != 4 {
		t.Errorf("%d batches hold slots, want edge-a's 4", got)
	}
	a := e.post(t, collectortest.Token("edge-b"), "", batch(t, "edge-b", 0, 3), nil)
	if a.code != http.StatusOK || a.result.Accepted != 3 {
		t.Fatalf("edge-b's batch while edge-a's hang: %d %v", a.code, a.body)
	}
	if v := metricValue(t, e.reg, "edgeloop_collector_requests_total", "code", "429"); v != 60 {
		t.Errorf("requests_total{code=429} = %v, want 60", v)
	}
	for _, sb := range slow {
		if sb == nil {
			continue
		}
		if resp := sb.finish(); resp == nil || resp.StatusCode != http.StatusOK {
			t.Errorf("a slow batch that held a slot: %v, want 200", resp)
		}
	}
}

// TestSlowBodiesCutOff: behind the server's body deadline (internal/web), batches whose bodies
// stall are answered 408 once below the minimum rate, freeing their slots, while another
// node's batch is stored.
func TestSlowBodiesCutOff(t *testing.T) {
	e := newEnv(t, func(c *ingest.Config) { c.MaxConcurrent = 4; c.MaxConcurrentPerNode = 4; c.QueueTimeout = 0 })
	mux := http.NewServeMux()
	e.h.Register(mux, e.auth)
	ws, err := web.Listen(web.Config{Listen: "127.0.0.1:0", BodyMinBytesPerSecond: 4096, BodyGracePeriod: 200 * time.Millisecond}, mux, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ws.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	e.srv = &httptest.Server{URL: "http://" + ws.Addr()}

	body := collectortest.Tar(t, collectortest.Sample(t, "edge-a", 1, 4<<10))
	var slow []*slowBatch
	for range 4 {
		slow = append(slow, startSlow(t, e, "edge-a", body))
	}
	waitFor(t, "edge-a's batches in every slot", func() bool { return e.h.Inflight() == 4 })
	for i, sb := range slow {
		select {
		case resp := <-sb.done:
			if resp == nil || resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("stalled batch %d answered %v, want 408", i, resp)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stalled batch %d still held after 10s", i)
		}
	}
	a := e.post(t, collectortest.Token("edge-b"), "", batch(t, "edge-b", 0, 3), nil)
	if a.code != http.StatusOK || a.result.Accepted != 3 {
		t.Fatalf("edge-b's batch after edge-a's were cut off: %d %v", a.code, a.body)
	}
	if v := metricValue(t, e.reg, "edgeloop_collector_requests_total", "code", "408"); v != 4 {
		t.Errorf("requests_total{code=408} = %v, want 4", v)
	}
}
