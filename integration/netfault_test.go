//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/exporter/capture"
	"github.com/edgeloop/edgeloop/exporter/capture/capturetest"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// netShards cuts small shards often, so that uploads go on all through a fault of a second or
// two, and gives up on one upload attempt after 2s, so that a black-holed object store is seen
// quickly. A request body must arrive at 8 KiB/s (the default) after 1s, not 10s, so that a
// link below that rate shows within the test.
const netShards = `body_grace_period: 1s
wal:
  segment_bytes: 262144
shards:
  target_bytes: 65536
  max_age: 300ms
  upload_timeout: 2s
  retry:
    initial_backoff: 100ms
    max_backoff: 400ms
`

// netNode is the edge node whose samples the network-fault test sends.
const netNode = "edge-net"

// minCaptured is the fewest samples a fault case must capture while its fault is applied.
const minCaptured = 50

// evidence is what a fault must show while it is applied, read from the sender's and the
// collector's metrics and logs.
type evidence int

const (
	slowSends      evidence = iota // sender requests slower than 250ms (edgeloop_sender_request_duration_seconds)
	sendErrors                     // edgeloop_sender_errors_total{reason="network"} and the sender's WARN line
	collectorDups                  // sendErrors, and the resent batches counted as duplicates by the collector
	slowUploads                    // shard uploads slower than 320ms (edgeloop_collector_shard_upload_duration_seconds)
	uploadFailures                 // edgeloop_collector_objstore_errors_total, the uploader's WARN line, /readyz 503
	cutBodies                      // sendErrors, and edgeloop_collector_requests_total{code="408"} with the collector's WARN line
	slowBodies                     // as cutBodies, with the collector's "too slow" WARN line
)

// netFault is one toxic on one hop.
type netFault struct {
	name   string
	hop    string   // "ingest" (sender → collector) or "s3" (collector → MinIO)
	toxics []string // toxiproxy toxic definitions (JSON), applied in order
	shows  evidence
	// halfClose, when positive, has the half-closing relay behind the ingest proxy forward
	// that many bytes of each connection and then close only its write side.
	halfClose int64
}

// netFaults are the faults TestNetworkFaults applies, one at a time. Streams: upstream is what
// the client sends (the sender's request, the collector's PUT), downstream what it receives.
var netFaults = []netFault{
	{name: "ingest latency", hop: "ingest", shows: slowSends,
		toxics: []string{`{"type":"latency","stream":"upstream","attributes":{"latency":400,"jitter":50}}`}},
	{name: "ingest bandwidth", hop: "ingest", shows: slowSends,
		toxics: []string{`{"type":"bandwidth","stream":"upstream","attributes":{"rate":12}}`}},
	// Below the collector's body_min_bytes_per_second, a batch larger than about
	// body_grace_period / (1/rate - 1/minimum) is cut off with 408, and sent again whole: no
	// batch that large gets through until the link is faster.
	{name: "ingest bandwidth under the collector's minimum body rate", hop: "ingest", shows: slowBodies,
		toxics: []string{`{"type":"bandwidth","stream":"upstream","attributes":{"rate":2}}`}},
	// Slices of about 64 bytes every 5ms: 12.8 KB/s, above the collector's minimum.
	{name: "ingest slicer", hop: "ingest", shows: slowSends,
		toxics: []string{`{"type":"slicer","stream":"upstream","attributes":{"average_size":64,"size_variation":32,"delay":5000}}`}},
	{name: "ingest reset_peer", hop: "ingest", shows: sendErrors,
		toxics: []string{`{"type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`}},
	{name: "ingest black hole, request", hop: "ingest", shows: sendErrors,
		toxics: []string{`{"type":"timeout","stream":"upstream","attributes":{"timeout":0}}`}},
	// The collector stores the batch; its answer is lost, and the resend is a duplicate.
	{name: "ingest black hole, response", hop: "ingest", shows: collectorDups,
		toxics: []string{`{"type":"timeout","stream":"downstream","attributes":{"timeout":0}}`}},
	// Toxiproxy closes both directions when it cuts a stream: the collector's 408 goes nowhere.
	{name: "ingest request cut", hop: "ingest", shows: cutBodies,
		toxics: []string{`{"type":"limit_data","stream":"upstream","attributes":{"bytes":600}}`}},
	// A proxy that half-closes, so that the collector's answer to the cut request reaches the
	// sender (a 400 there would dead-letter valid samples), is played by halfCloser.
	{name: "ingest request cut, half-closed", hop: "ingest", shows: cutBodies, halfClose: 600},
	// The answer cut after 40 bytes, the connection then held open for a second.
	{name: "ingest response cut, half-open", hop: "ingest", shows: collectorDups, toxics: []string{
		`{"name":"cut","type":"limit_data","stream":"downstream","attributes":{"bytes":40}}`,
		`{"name":"held","type":"slow_close","stream":"downstream","attributes":{"delay":1000}}`,
	}},
	{name: "s3 latency", hop: "s3", shows: slowUploads,
		toxics: []string{`{"type":"latency","stream":"downstream","attributes":{"latency":300}}`}},
	{name: "s3 bandwidth", hop: "s3", shows: slowUploads,
		toxics: []string{`{"type":"bandwidth","stream":"upstream","attributes":{"rate":128}}`}},
	// Below target_bytes per upload_timeout no upload completes: the uploader retries until
	// the link is back.
	{name: "s3 bandwidth under the shard size per upload_timeout", hop: "s3", shows: uploadFailures,
		toxics: []string{`{"type":"bandwidth","stream":"upstream","attributes":{"rate":16}}`}},
	{name: "s3 reset_peer", hop: "s3", shows: uploadFailures,
		toxics: []string{`{"type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`}},
	{name: "s3 black hole", hop: "s3", shows: uploadFailures,
		toxics: []string{`{"type":"timeout","stream":"upstream","attributes":{"timeout":0}}`}},
	{name: "s3 request cut", hop: "s3", shows: uploadFailures,
		toxics: []string{`{"type":"limit_data","stream":"upstream","attributes":{"bytes":2048}}`}},
	// MinIO stores the object; its answer is cut and the connection held: the upload is
	// retried and overwrites the same keys.
	{name: "s3 response cut, half-open", hop: "s3", shows: uploadFailures, toxics: []string{
		`{"name":"cut","type":"limit_data","stream":"downstream","attributes":{"bytes":60}}`,
		`{"name":"held","type":"slow_close","stream":"downstream","attributes":{"delay":1000}}`,
	}},
}

// TestNetworkFaults puts Toxiproxy (in process, on loopback) between the exporter's capture
// pipeline (spool and sender, the real packages) and a real `edgeloop collector`, and between
// that collector and a real MinIO, and applies each fault of netFaults while samples are
// captured: the fault must show in the metrics and logs named in docs/faults.md, everything
// must drain once it is removed, and at the end every captured sample (all acknowledged by the
// spool, none dead-lettered) is in exactly one shard.
func TestNetworkFaults(t *testing.T) {
	start := time.Now()
	e := newCollectorEnv(t, netShards, netNode)
	tp := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	relay := startHalfCloser(t, e.addr)
	proxies := map[string]*toxiproxy.Proxy{
		"s3":     startProxy(t, tp, "s3", e.minio.Endpoint),
		"ingest": startProxy(t, tp, "ingest", relay.addr),
	}
	// The collector reaches MinIO only through the proxy; the test reads the bucket directly.
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	direct := "endpoint=" + e.minio.Endpoint + "&"
	if !strings.Contains(string(cfg), direct) {
		t.Fatalf("collector config has no %q", direct)
	}
	cfg = []byte(strings.Replace(string(cfg), direct, "endpoint="+proxies["s3"].Listen+"&", 1))
	if err := os.WriteFile(e.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	col := e.start(t)

	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(collectortest.Token(netNode)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pcfg := capturetest.Config(t, dir, "http://"+proxies["ingest"].Listen, token)
	pcfg.Sender.Timeout = 2 * time.Second // a black hole is a network error after 2s, not 30s
	pcfg.Sender.MaxBackoff = 200 * time.Millisecond
	reg := prometheus.NewRegistry()
	senderLog := &testenv.Buffer{}
	pipe, err := capture.New(pcfg, capture.Options{Node: netNode, Registerer: reg,
		Logger: slog.New(slog.NewJSONHandler(senderLog, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- pipe.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
		pipe.Close()
		if t.Failed() {
			t.Logf("sender log:\n%s", senderLog.String())
		}
	}()

	n := &netCounter{t: t, e: e, reg: reg, senderLog: senderLog, col: col, pipe: pipe}
	captured := map[string]string{} // request id → the fault it was captured under
	next, applied := 0, 0
	for _, f := range netFaults {
		ok := t.Run(f.name, func(t *testing.T) {
			before := n.snapshot()
			stopTraffic, capturedSoFar := n.traffic(&next)
			defer stopTraffic() // a failed case stops its traffic too
			p := proxies[f.hop]
			for _, tx := range f.toxics {
				if _, err := p.Toxics.AddToxicJson(strings.NewReader(tx)); err != nil {
					t.Fatalf("toxic %s: %v", tx, err)
				}
			}
			relay.cut.Store(f.halfClose)
			on := time.Now()
			shown := n.waitShown(t, f.shows, before, 15*time.Second)
			// At least 1s of fault and minCaptured samples captured under it (a loaded machine
			// captures more slowly), up to 15s.
			for time.Since(on) < time.Second || capturedSoFar() < minCaptured && time.Since(on) < 15*time.Second {
				time.Sleep(20 * time.Millisecond)
			}
			during := n.snapshot()
			p.Toxics.ResetToxics(context.Background())
			relay.cut.Store(0)
			held := time.Since(on)
			got := stopTraffic()
			for _, id := range got {
				captured[id] = f.name
			}
			n.waitRecovered(t, f.shows, 30*time.Second)
			after := n.snapshot()
			ackedDuring := during.sent - before.sent
			acked := after.sent - before.sent
			t.Logf("fault held %.1fs (%s); %d samples captured, %d acknowledged during the fault, %d in all; sender network errors %.0f, collector 408s %.0f, duplicates %.0f, object-store errors %.0f",
				held.Seconds(), shown, len(got), int(ackedDuring), int(acked),
				after.netErrors-before.netErrors, after.cut408-before.cut408, after.duplicates-before.duplicates, after.objstoreErrors-before.objstoreErrors)
			applied++
			if len(got) < minCaptured {
				t.Errorf("only %d samples captured during the fault; the case exercised too little", len(got))
			}
			if int(acked) < len(got) {
				t.Errorf("%d samples acknowledged after the fault, fewer than the %d captured", int(acked), len(got))
			}
			if f.shows == collectorDups && after.duplicates <= before.duplicates {
				t.Error("no resent batch counted as duplicates by the collector: the cut answers were not for stored batches")
			}
		})
		if !ok {
			t.Fatalf("stopped after %q: the faults after it were not applied, and the conservation check needs a recovered system", f.name)
		}
	}

	// Conservation: the spool acknowledged every captured sample (it is empty and nothing was
	// dead-lettered or dropped), so each one must be in exactly one shard.
	st := pipe.Spool().Stats()
	dropped := uint64(0)
	for _, d := range st.Dropped {
		dropped += d
	}
	if st.Records != 0 || dropped != 0 {
		t.Fatalf("spool after the faults: %d records left, dropped %v", st.Records, st.Dropped)
	}
	if dl := sumFamily(t, reg, "edgeloop_sender_dead_letter_samples_total"); dl != 0 {
		t.Fatalf("%v samples dead-lettered", dl)
	}
	where, metas := e.shardContents(t)
	inShards := map[string]int{}
	for k, m := range metas {
		if m.Node == netNode {
			inShards[m.RequestID] += len(where[k])
		}
	}
	bad := map[string]int{}
	for id, fault := range captured {
		if inShards[id] != 1 {
			bad[fault]++
			if len(bad) < 5 {
				t.Errorf("request %s (captured under %q) is in %d shards, want 1", id, fault, inShards[id])
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("samples not in exactly one shard, by fault: %v", bad)
	}
	if len(captured) < minCaptured*applied {
		t.Fatalf("only %d samples captured over %d faults", len(captured), len(netFaults))
	}
	t.Logf("%d faults applied, %d samples captured and acknowledged, each in exactly one shard; %d shards hold %d keys; %.1fs",
		applied, len(captured), len(shardNames(where)), len(where), time.Since(start).Seconds())
}

// halfCloser relays connections to upstream; while cut is positive, it forwards only that many
// more bytes of what a client sends, then closes the write side towards upstream and drops
// the rest, while upstream's answer still flows back: a proxy that half-closes after a cut.
type halfCloser struct {
	addr string
	cut  atomic.Int64
}

func startHalfCloser(t *testing.T, upstream string) *halfCloser {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &halfCloser{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { h.relay(c.(*net.TCPConn), upstream) })
		}
	})
	return h
}

func (h *halfCloser) relay(client *net.TCPConn, upstream string) {
	defer client.Close()
	c, err := net.DialTimeout("tcp", upstream, 2*time.Second)
	if err != nil {
		return
	}
	up := c.(*net.TCPConn)
	defer up.Close()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		io.Copy(client, up)
		client.Close() // upstream closed: so does the client's side, and the loop below ends
	}()
	buf := make([]byte, 32<<10)
	sent := int64(-1) // bytes forwarded since the cut was set; -1 while it is not
	for {
		n, err := client.Read(buf)
		if limit := h.cut.Load(); limit > 0 && n > 0 {
			sent = max(sent, 0)
			if sent+int64(n) > limit {
				up.Write(buf[:limit-sent])
				up.CloseWrite()
				io.Copy(io.Discard, client)
				<-answered
				return
			}
			sent += int64(n)
		}
		if n > 0 {
			if _, err := up.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			up.CloseWrite()
			<-answered
			return
		}
	}
}

// startProxy starts a Toxiproxy proxy on a free loopback port in front of upstream.
func startProxy(t *testing.T, srv *toxiproxy.ApiServer, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return p
}

func shardNames(where map[string][]string) map[string]bool {
	names := map[string]bool{}
	for _, shards := range where {
		for _, s := range shards {
			names[s] = true
		}
	}
	return names
}

// netCounter reads what the faults show: the sender's registry and log, the collector's
// /metrics, /readyz and log.
type netCounter struct {
	t         *testing.T
	e         *collectorEnv
	reg       *prometheus.Registry
	senderLog *testenv.Buffer
	col       *process
	pipe      *capture.Pipeline
}

// counts is one reading of the counters a fault moves.
type counts struct {
	sent, netErrors, slowSends          float64 // sender
	duplicates, objstoreErrors, slowUps float64 // collector
	cut408                              float64 // collector: requests answered 408
	senderWarns, uploadWarns, cutWarns  int     // log lines
	slowWarns                           int
}

func (n *netCounter) sender(name string, labels map[string]string) float64 {
	v, _ := testenv.MetricValue(n.t, n.reg, name, labels)
	return v
}

func (n *netCounter) snapshot() counts {
	c := counts{
		sent:      n.sender("edgeloop_sender_samples_sent_total", nil),
		netErrors: n.sender("edgeloop_sender_errors_total", map[string]string{"reason": "network"}),
	}
	// Requests slower than 250ms: the histogram's count less its 0.25 bucket.
	c.slowSends = histogramAbove(n.t, n.reg, "edgeloop_sender_request_duration_seconds", 0.25)
	m := scrape("http://" + n.e.addr + "/metrics")
	c.duplicates = sumSeries(m, "edgeloop_collector_samples_duplicate_total")
	c.objstoreErrors = m["edgeloop_collector_objstore_errors_total"]
	c.cut408 = m[`edgeloop_collector_requests_total{code="408"}`]
	c.slowUps = m["edgeloop_collector_shard_upload_duration_seconds_count"] - m[`edgeloop_collector_shard_upload_duration_seconds_bucket{le="0.32"}`]
	c.senderWarns = countLines(n.senderLog.String(), func(l map[string]any) bool {
		return l["msg"] == "batch not delivered; retrying" && l["reason"] == "network"
	})
	n.col.mu.Lock()
	for _, l := range n.col.lines {
		switch l["msg"] {
		case "shard: upload failed; retrying":
			c.uploadWarns++
		case "batch body cut off; answered 408":
			c.cutWarns++
		case "batch body too slow; answered 408":
			c.slowWarns++
		}
	}
	n.col.mu.Unlock()
	return c
}

// traffic captures a prediction every 5ms until stop is called, which returns the request ids
// captured; count says how many so far.
func (n *netCounter) traffic(next *int) (stop func() []string, count func() int) {
	var mu sync.Mutex
	var ids []string
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			mu.Lock()
			*next++
			id := *next
			mu.Unlock()
			if n.pipe.Capture(context.Background(), capturetest.Prediction(id)) != 1 {
				n.t.Errorf("prediction %d not captured", id)
				return
			}
			mu.Lock()
			ids = append(ids, strconv.Itoa(id))
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() []string {
		once.Do(func() { close(quit) })
		<-done
		mu.Lock()
		defer mu.Unlock()
		return ids
	}
	count = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ids)
	}
	return stop, count
}

// waitShown waits until the fault shows as ev says, and returns what it saw.
func (n *netCounter) waitShown(t *testing.T, ev evidence, before counts, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	notReady := false
	for {
		c := n.snapshot()
		var seen string
		switch ev {
		case slowSends:
			if d := c.slowSends - before.slowSends; d > 0 {
				seen = fmt.Sprintf("%.0f sender requests over 250ms", d)
			}
		case sendErrors, collectorDups:
			// Duplicates are checked once the fault is gone: the resend needs the way back.
			if d := c.netErrors - before.netErrors; d > 0 && c.senderWarns > before.senderWarns {
				seen = fmt.Sprintf("%.0f sender network errors, WARN logged", d)
			}
		case cutBodies:
			if d := c.cut408 - before.cut408; d > 0 && c.cutWarns > before.cutWarns && c.netErrors > before.netErrors {
				seen = fmt.Sprintf("%.0f batches cut off and answered 408, WARN logged, %.0f sender network errors", d, c.netErrors-before.netErrors)
			}
		case slowBodies:
			if d := c.cut408 - before.cut408; d > 0 && c.slowWarns > before.slowWarns && c.netErrors > before.netErrors {
				seen = fmt.Sprintf("%.0f batches too slow and answered 408, WARN logged, %.0f sender network errors", d, c.netErrors-before.netErrors)
			}
		case slowUploads:
			if d := c.slowUps - before.slowUps; d > 0 {
				seen = fmt.Sprintf("%.0f shard uploads over 320ms", d)
			}
		case uploadFailures:
			if !notReady {
				code, body := readyz(n.e.addr)
				notReady = code == 503 && strings.Contains(body, "object store unreachable")
			}
			if d := c.objstoreErrors - before.objstoreErrors; d > 0 && c.uploadWarns > before.uploadWarns && notReady {
				seen = fmt.Sprintf("%.0f object-store errors, WARN logged, /readyz 503", d)
			}
		}
		if seen != "" {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fault did not show within %s: before %+v, now %+v (not ready seen: %v)", timeout, before, c, notReady)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRecovered waits until the spool is empty, the collector's log is drained, every shard
// is uploaded and /readyz answers 200; after a network failure streak the sender must have
// logged that the collector takes batches again.
func (n *netCounter) waitRecovered(t *testing.T, ev evidence, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := n.pipe.Spool().Stats()
		m := scrape("http://" + n.e.addr + "/metrics")
		code, body := readyz(n.e.addr)
		if st.Records == 0 && m["edgeloop_collector_wal_records"] == 0 && m["edgeloop_collector_shards_pending"] == 0 && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within %s of removing the fault: spool %d records, collector log %v records, %v shards pending, /readyz %d %s",
				timeout, st.Records, m["edgeloop_collector_wal_records"], m["edgeloop_collector_shards_pending"], code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev == sendErrors || ev == collectorDups || ev == cutBodies || ev == slowBodies {
		if countLines(n.senderLog.String(), func(l map[string]any) bool { return l["msg"] == "the collector takes batches again" }) == 0 {
			t.Error("the sender never logged that the collector takes batches again")
		}
	}
}

// histogramAbove returns how many observations of the histogram name in g exceed the bucket
// bound le (which must be one of its bounds).
func histogramAbove(t testing.TB, g prometheus.Gatherer, name string, le float64) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == le {
					return float64(h.GetSampleCount() - b.GetCumulativeCount())
				}
			}
		}
	}
	t.Fatalf("no histogram %s with bucket %v", name, le)
	return 0
}

// sumFamily adds up every series of the counter family name in g.
func sumFamily(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// scrape reads a Prometheus text exposition into series (name{labels} as written) → value;
// nil when unreachable.
func scrape(url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sumSeries adds up the series of family name in a scrape, whatever their labels.
func sumSeries(m map[string]float64, name string) float64 {
	sum := 0.0
	for series, v := range m {
		if series == name || strings.HasPrefix(series, name+"{") {
			sum += v
		}
	}
	return sum
}

func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// countLines counts the JSON log lines of log that match.
func countLines(log string, match func(map[string]any) bool) int {
	n := 0
	for _, s := range strings.Split(log, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(s), &l) == nil && match(l) {
			n++
		}
	}
	return n
}
