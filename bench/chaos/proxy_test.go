package chaos

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Network faults the soak injects. The sender's path goes through senderProxy (an HTTP proxy
// that also sees every acknowledgement); the collector's and the controller's path to MinIO
// through tcpProxy.
const (
	faultResetBefore = "sender_reset_before" // the batch never reaches the collector
	faultResetAfter  = "sender_reset_after"  // the collector stored it, the sender sees a reset
	faultLatency     = "sender_latency"      // each request waits 2s before it is forwarded
	faultBlackhole   = "sender_blackhole"    // requests hang until the sender's timeout
	faultStoreReset  = "storage_reset"       // every MinIO connection reset, new ones refused
	faultStoreSlow   = "storage_latency"     // connections reset, new ones delayed 500ms
)

// senderProxy stands between the exporters' senders and the collector. It forwards every
// request and records, for each batch whose 200 answer it passed on to the sender, the keys
// the answer acknowledged (every key of the batch but the rejected ones): the sender removes
// a batch from its spool only on such an answer, so these keys are a superset of what the
// spools acknowledged, which makes the conservation check stricter, not weaker.
type senderProxy struct {
	upstream string
	client   *http.Client

	mu         sync.Mutex
	rnd        *rand.Rand
	mode       string
	until      time.Time
	background float64 // probability of a reset after forwarding outside fault windows
	acked      map[string]int
	rejected   map[string]string
	batches    int // batches answered 200 to a sender
	duplicates int // samples those answers called duplicates
	injected   map[string]int
	anomalies  []string
}

func newSenderProxy(upstream string, seed uint64) *senderProxy {
	return &senderProxy{
		upstream: upstream,
		// No keep-alive surprises: a killed collector leaves no half-dead pooled connection.
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		rnd:    rand.New(rand.NewPCG(seed, 1)), background: 0.03,
		acked: map[string]int{}, rejected: map[string]string{}, injected: map[string]int{},
	}
}

// fault sets mode for d.
func (p *senderProxy) fault(mode string, d time.Duration) {
	p.mu.Lock()
	p.mode, p.until = mode, time.Now().Add(d)
	p.mu.Unlock()
}

// calm ends the current fault and the background resets.
func (p *senderProxy) calm() {
	p.mu.Lock()
	p.mode, p.background = "", 0
	p.mu.Unlock()
}

// decide returns the fault for one request.
func (p *senderProxy) decide() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode := ""
	if time.Now().Before(p.until) {
		mode = p.mode
	}
	if mode == "" && p.rnd.Float64() < p.background {
		mode = faultResetAfter
	}
	if mode != "" {
		p.injected[mode]++
	}
	return mode
}

func (p *senderProxy) anomaly(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.anomalies) < 100 {
		p.anomalies = append(p.anomalies, fmt.Sprintf(format, args...))
	}
}

// reset closes the client's connection with a TCP RST, as a crashed peer or a middlebox would.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (p *senderProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
	if err != nil {
		reset(w)
		return
	}
	mode := p.decide()
	switch mode {
	case faultResetBefore:
		reset(w)
		return
	case faultLatency:
		time.Sleep(2 * time.Second)
	case faultBlackhole:
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		reset(w)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		reset(w)
		return
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		reset(w) // the collector is down: the sender sees what it would see without the proxy
		return
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		reset(w)
		return
	}
	if mode == faultResetAfter {
		reset(w)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := w.Write(answer); err != nil {
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/v1/samples" && resp.StatusCode == http.StatusOK {
		p.record(r.Header.Get("Content-Encoding"), body, answer)
	}
}

// record notes the keys a 200 answer acknowledged.
func (p *senderProxy) record(encoding string, body, answer []byte) {
	keys, err := batchKeys(encoding, body)
	if err != nil {
		p.anomaly("a batch answered 200 does not decode: %v", err)
		return
	}
	var res struct {
		Accepted   *int `json:"accepted"`
		Duplicates *int `json:"duplicates"`
		Rejected   []struct {
			Key   string `json:"key"`
			Error string `json:"error"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal(answer, &res); err != nil || res.Accepted == nil || res.Duplicates == nil {
		p.anomaly("200 answer %q to a batch of %d is not a result (%v)", answer, len(keys), err)
		return
	}
	if *res.Accepted+*res.Duplicates+len(res.Rejected) != len(keys) {
		// The sender must not acknowledge this (issue 14, item 1): not counted as acknowledged.
		p.anomaly("200 answer %s to a batch of %d samples does not add up", answer, len(keys))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches++
	p.duplicates += *res.Duplicates
	refused := map[string]bool{}
	for _, rj := range res.Rejected {
		refused[rj.Key] = true
		p.rejected[rj.Key] = rj.Error
	}
	for _, k := range keys {
		if !refused[k] {
			p.acked[k]++
		}
	}
}

// batchKeys lists the sample keys of a batch body: a tar, zstd-compressed when encoding says
// so, of <key>.json and <key>.input.* files.
func batchKeys(encoding string, body []byte) ([]string, error) {
	var r io.Reader = bytes.NewReader(body)
	switch encoding {
	case "zstd":
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		r = d
	case "", "identity":
	default:
		return nil, fmt.Errorf("content encoding %q", encoding)
	}
	return tarKeys(r)
}

// tarKeys lists the distinct sample keys of a tar of samples, in order.
func tarKeys(r io.Reader) ([]string, error) {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var keys []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return keys, nil
		}
		if err != nil {
			return keys, err
		}
		key, _, _ := strings.Cut(h.Name, ".")
		if !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
}

// tcpProxy forwards TCP connections to upstream (MinIO), and can reset every connection and
// refuse or delay new ones for a while.
type tcpProxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	refuse time.Time
	delay  time.Time
}

func newTCPProxy(upstream string) (*tcpProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) close() {
	p.ln.Close()
	p.resetAll()
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *tcpProxy) handle(c net.Conn) {
	p.mu.Lock()
	refuse, delay := time.Now().Before(p.refuse), time.Now().Before(p.delay)
	p.mu.Unlock()
	if refuse {
		rst(c)
		return
	}
	if delay {
		time.Sleep(500 * time.Millisecond)
	}
	u, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil {
		rst(c)
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Either side's end ends both: a half-closed pair would hang the other copy.
		_ = dst.Close()
		_ = src.Close()
	}
	wg.Add(2)
	go pipe(u, c)
	go pipe(c, u)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// resetAll resets every open connection.
func (p *tcpProxy) resetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		rst(c)
	}
}

// fault injects mode for d: storage_reset resets every connection and refuses new ones,
// storage_latency resets every connection and delays new ones.
func (p *tcpProxy) fault(mode string, d time.Duration) {
	p.mu.Lock()
	switch mode {
	case faultStoreReset:
		p.refuse = time.Now().Add(d)
	case faultStoreSlow:
		p.delay = time.Now().Add(d)
	}
	p.mu.Unlock()
	p.resetAll()
}
