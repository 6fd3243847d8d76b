package chaos

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// TestSenderProxyRecord checks what the soak counts as acknowledged: only the keys of a 200
// answer that adds up, without the rejected ones. A lenient count here would hide a loss.
func TestSenderProxyRecord(t *testing.T) {
	var samples []*sample.Sample
	for i := range 3 {
		samples = append(samples, collectortest.Sample(t, "edge-1", i, 64))
	}
	k := func(i int) string { return samples[i].Meta.Key }
	body := collectortest.Zstd(t, collectortest.Tar(t, samples...))
	for _, tc := range []struct {
		name, answer string
		acked        []string
		anomaly      bool
	}{
		{"all accepted", `{"accepted":3,"duplicates":0,"rejected":[]}`, []string{k(0), k(1), k(2)}, false},
		{"resend", `{"accepted":1,"duplicates":2,"rejected":[]}`, []string{k(0), k(1), k(2)}, false},
		{"one rejected", fmt.Sprintf(`{"accepted":2,"duplicates":0,"rejected":[{"key":%q,"error":"bad"}]}`, k(1)), []string{k(0), k(2)}, false},
		{"empty object", `{}`, nil, true},
		{"counts do not add up", `{"accepted":2,"duplicates":0,"rejected":[]}`, nil, true},
		{"not JSON", `ok`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSenderProxy("unused", 1)
			p.record("zstd", body, []byte(tc.answer))
			if len(p.acked) != len(tc.acked) {
				t.Fatalf("acked %v, want %v", p.acked, tc.acked)
			}
			for _, key := range tc.acked {
				if p.acked[key] != 1 {
					t.Errorf("key %s acked %d times, want 1", key, p.acked[key])
				}
			}
			if got := len(p.anomalies) > 0; got != tc.anomaly {
				t.Errorf("anomalies %v, want some: %v", p.anomalies, tc.anomaly)
			}
		})
	}
}

// TestSenderProxyFaults runs each sender fault against a stand-in collector: what reaches it,
// what the client sees, and what is counted as acknowledged.
func TestSenderProxyFaults(t *testing.T) {
	s := collectortest.Sample(t, "edge-1", 7, 64)
	body := collectortest.Zstd(t, collectortest.Tar(t, s))
	for _, tc := range []struct {
		mode     string
		reached  bool // the collector got the batch
		clientOK bool // the client got the 200
		acked    bool
		minDelay time.Duration
	}{
		{"", true, true, true, 0},
		{faultResetBefore, false, false, false, 0},
		{faultResetAfter, true, false, false, 0},
		{faultLatency, true, true, true, 2 * time.Second},
		{faultBlackhole, false, false, false, 0},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			var hits atomic.Int32
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"accepted":1,"duplicates":0,"rejected":[]}`)
			}))
			defer upstream.Close()
			p := newSenderProxy(strings.TrimPrefix(upstream.URL, "http://"), 1)
			p.background = 0
			if tc.mode != "" {
				p.fault(tc.mode, time.Minute)
			}
			front := httptest.NewServer(p)
			defer front.Close()
			req, _ := http.NewRequest(http.MethodPost, front.URL+"/v1/samples", strings.NewReader(string(body)))
			req.Header.Set("Content-Encoding", "zstd")
			// The blackhole holds a request until the client gives up, as the sender's timeout does.
			client := &http.Client{Timeout: 500 * time.Millisecond}
			if tc.mode == faultLatency {
				client.Timeout = 10 * time.Second
			}
			began := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			if got := err == nil && resp.StatusCode == 200; got != tc.clientOK {
				t.Errorf("client got a 200: %v (%v), want %v", got, err, tc.clientOK)
			}
			if got := hits.Load() > 0; got != tc.reached {
				t.Errorf("collector reached: %v, want %v", got, tc.reached)
			}
			if d := time.Since(began); d < tc.minDelay {
				t.Errorf("answered after %s, want at least %s", d, tc.minDelay)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if got := p.acked[s.Meta.Key] > 0; got != tc.acked {
				t.Errorf("acknowledged: %v, want %v", got, tc.acked)
			}
			if tc.mode != "" && p.injected[tc.mode] != 1 {
				t.Errorf("injected %v, want one %s", p.injected, tc.mode)
			}
		})
	}
}
