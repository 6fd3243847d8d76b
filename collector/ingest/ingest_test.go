package ingest_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/collector/ingest"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

type env struct {
	srv    *httptest.Server
	wal    *spool.Spool
	auth   *auth.Auth
	tokens string
	reg    *prometheus.Registry
	h      *ingest.Handler
}

func newEnv(t *testing.T, mutate func(*ingest.Config)) *env {
	t.Helper()
	return newEnvWAL(t, mutate, nil)
}

// newEnvWAL is newEnv with the handler's log wrapped by wrap (nil: the real log as it is), for
// tests that count or fail what the handler asks of it.
func newEnvWAL(t *testing.T, mutate func(*ingest.Config), wrap func(*spool.Spool) ingest.WAL) *env {
	t.Helper()
	dir := t.TempDir()
	tokens := collectortest.TokensFile(t, dir, "edge-a", "edge-b")
	a, err := auth.New(auth.Config{TokensFile: tokens}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wal, err := spool.Open(filepath.Join(dir, "wal"), spool.DefaultConfig(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wal.Close() })
	cfg := ingest.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	var handlerWAL ingest.WAL = wal
	if wrap != nil {
		handlerWAL = wrap(wal)
	}
	h, err := ingest.New(cfg, ingest.Options{WAL: handlerWAL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux, a)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{srv: srv, wal: wal, auth: a, tokens: tokens, reg: reg, h: h}
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	result ingest.Result
}

// post sends body as node with token; header overrides the X-Edgeloop-Node header.
func (e *env) post(t *testing.T, token, nodeHeader string, body []byte, mut func(*http.Request)) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/samples", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if nodeHeader != "" {
		req.Header.Set(auth.NodeHeader, nodeHeader)
	}
	if mut != nil {
		mut(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json (body %s)", ct, raw)
	}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	if a.code == 200 {
		_ = json.Unmarshal(raw, &a.result)
	}
	return a
}

func batch(t *testing.T, node string, from, n int) []byte {
	var ss []*sample.Sample
	for i := from; i < from+n; i++ {
		ss = append(ss, collectortest.Sample(t, node, i, 256))
	}
	return collectortest.Zstd(t, collectortest.Tar(t, ss...))
}

func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, nil)
	tokA, tokB := collectortest.Token("edge-a"), collectortest.Token("edge-b")
	for _, tc := range []struct {
		name        string
		token, hdr  string
		body        []byte
		code        int
		accepted    int
		rejected    int
		errContains string
	}{
		{"no token", "", "", batch(t, "edge-a", 0, 2), 401, 0, 0, "no credential"},
		{"wrong token", "token-nobody", "edge-a", batch(t, "edge-a", 0, 2), 401, 0, 0, "unknown or revoked"},
		{"A's token claims B in the header", tokA, "edge-b", batch(t, "edge-a", 0, 2), 403, 0, 0, "node mismatch"},
		{"A's token, samples of A", tokA, "edge-a", batch(t, "edge-a", 0, 2), 200, 2, 0, ""},
		{"A's token, no header", tokA, "", batch(t, "edge-a", 10, 2), 200, 2, 0, ""},
		{"A's token, samples of B", tokA, "edge-a", batch(t, "edge-b", 0, 3), 200, 0, 3, "node mismatch: the credential is bound to edge-a"},
		{"B's token, samples of B", tokB, "edge-b", batch(t, "edge-b", 0, 3), 200, 3, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.post(t, tc.token, tc.hdr, tc.body, nil)
			if a.code != tc.code {
				t.Fatalf("status %d, want %d: %v", a.code, tc.code, a.body)
			}
			if tc.code == 200 {
				if a.result.Accepted != tc.accepted || len(a.result.Rejected) != tc.rejected {
					t.Fatalf("result %+v, want %d accepted, %d rejected", a.result, tc.accepted, tc.rejected)
				}
				if tc.rejected > 0 && !strings.Contains(a.result.Rejected[0].Error, tc.errContains) {
					t.Fatalf("rejection %q, want it to contain %q", a.result.Rejected[0].Error, tc.errContains)
				}
				return
			}
			if msg, _ := a.body["error"].(string); !strings.Contains(msg, tc.errContains) {
				t.Fatalf("error %q, want it to contain %q", msg, tc.errContains)
			}
		})
	}
	for _, c := range []struct {
		node, reason string
		want         float64
	}{{"edge-a", "node_mismatch", 3}, {"edge-a", "invalid", 0}, {"edge-b", "node_mismatch", 0}} {
		if got := metricValue(t, e.reg, "edgeloop_collector_samples_rejected_total", "node", c.node, "reason", c.reason); got != c.want {
			t.Errorf("rejected{node=%s,reason=%s} = %v, want %v", c.node, c.reason, got, c.want)
		}
	}
	t.Run("revoked by reload", func(t *testing.T) {
		collectortest.WriteTokens(t, e.tokens, "edge-b") // edge-a's token removed
		if err := e.auth.Reload(); err != nil {
			t.Fatal(err)
		}
		if a := e.post(t, tokA, "edge-a", batch(t, "edge-a", 100, 1), nil); a.code != 401 {
			t.Fatalf("revoked token: status %d, want 401", a.code)
		}
		if a := e.post(t, tokB, "edge-b", batch(t, "edge-b", 100, 1), nil); a.code != 200 {
			t.Fatalf("kept token: status %d, want 200", a.code)
		}
	})
	t.Run("malformed reload keeps the old set", func(t *testing.T) {
		writeFile(t, e.tokens, "edge-a sha256:nothex\n")
		if err := e.auth.Reload(); err == nil {
			t.Fatal("malformed tokens file reloaded")
		}
		if a := e.post(t, tokB, "edge-b", batch(t, "edge-b", 200, 1), nil); a.code != 200 {
			t.Fatalf("after a failed reload: status %d, want 200", a.code)
		}
	})
}

func TestDuplicatesAndDurability(t *testing.T) {
	e := newEnv(t, nil)
	tok := collectortest.Token("edge-a")
	body := batch(t, "edge-a", 0, 5)
	a := e.post(t, tok, "edge-a", body, nil)
	if a.code != 200 || a.result.Accepted != 5 || a.result.Duplicates != 0 {
		t.Fatalf("first: %d %+v", a.code, a.result)
	}
	if st := e.wal.Stats(); st.Records != 5 || st.Unsynced != 0 {
		t.Fatalf("WAL after a 200: %d records, %d unsynced; want 5, 0", st.Records, st.Unsynced)
	}
	a = e.post(t, tok, "edge-a", body, nil)
	if a.code != 200 || a.result.Accepted != 0 || a.result.Duplicates != 5 {
		t.Fatalf("resend: %d %+v", a.code, a.result)
	}
	if st := e.wal.Stats(); st.Records != 5 {
		t.Fatalf("a resend was appended: %d records", st.Records)
	}
	recs, _ := e.wal.Peek(10, 0)
	for i, r := range recs {
		st, err := sample.ParseStored(r.Data)
		if want := collectortest.Sample(t, "edge-a", i, 256).Index(); err != nil || st.Entry != want {
			t.Fatalf("record %d: %v, want the stored form of sample %d", i, err, i)
		}
	}
	// An empty batch is valid.
	a = e.post(t, tok, "", collectortest.Tar(t), func(r *http.Request) { r.Header.Del("Content-Encoding") })
	if a.code != 200 || a.result.Rejected == nil {
		t.Fatalf("empty batch: %d %v", a.code, a.body)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := writeFileErr(path, content); err != nil {
		t.Fatal(err)
	}
}

// rawSample writes a sample's two members with meta as given (its key recomputed), bypassing
// sample.New's validation, for hostile metadata.
func rawSample(t *testing.T, meta sample.Meta, input []byte, fixKey bool) []byte {
	t.Helper()
	meta.SchemaVersion = 1
	if fixKey {
		meta.Key = sample.Key(meta, input)
	}
	mj, _ := json.Marshal(meta)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range []struct {
		name string
		data []byte
	}{{meta.Key + ".json", mj}, {meta.Key + "." + meta.Input.File, input}} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
		tw.Write(m.data)
	}
	tw.Close()
	return b.Bytes()
}

func TestHostileInput(t *testing.T) {
	e := newEnv(t, func(c *ingest.Config) { c.MaxBodyBytes = 1 << 20 })
	tok := collectortest.Token("edge-a")
	good := collectortest.Sample(t, "edge-a", 1, 256)
	traversal := func(field string) []byte {
		m := good.Meta
		switch field {
		case "model":
			m.Model = "../x"
		case "version":
			m.Version = "../../etc"
		case "node":
			m.Node = "edge-a/../b"
		}
		return rawSample(t, m, good.Input, true)
	}
	badNPY := append([]byte(nil), good.Input...)
	copy(badNPY[:6], "\x93NUMPX")
	full := collectortest.Tar(t, good)
	for _, tc := range []struct {
		name     string
		body     []byte
		zstd     bool
		code     int
		rejected int
	}{
		{"path traversal in model", traversal("model"), true, 200, 1},
		{"path traversal in version", traversal("version"), true, 200, 1},
		{"path traversal in node", traversal("node"), true, 200, 1},
		{"wrong NumPy header", rawSample(t, good.Meta, badNPY, true), true, 200, 1},
		{"key not the content's", rawSample(t, good.Meta, badNPY, false), true, 200, 1},
		{"truncated tar", full[:len(full)-1500], true, 400, 0},
		{"not zstd", []byte("definitely not zstd"), false, 400, 0},
		{"body over the limit", bytes.Repeat([]byte{0}, 2<<20), false, 413, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if tc.zstd {
				body = collectortest.Zstd(t, body)
			}
			a := e.post(t, tok, "edge-a", body, nil)
			if a.code != tc.code {
				t.Fatalf("status %d, want %d: %v", a.code, tc.code, a.body)
			}
			if tc.code == 200 && (len(a.result.Rejected) != tc.rejected || a.result.Accepted != 0) {
				t.Fatalf("result %+v, want %d rejected", a.result, tc.rejected)
			}
			if tc.code == 413 && a.body["limits"] == nil {
				t.Fatalf("413 without limits: %v", a.body)
			}
		})
	}
	if got := metricValue(t, e.reg, "edgeloop_collector_samples_rejected_total", "node", "edge-a", "reason", "invalid"); got != 5 {
		t.Errorf("rejected{node=edge-a,reason=invalid} = %v, want the 5 samples rejected above", got)
	}
	t.Run("huge header value", func(t *testing.T) {
		a := e.post(t, tok, strings.Repeat("x", 64<<10), batch(t, "edge-a", 0, 1), nil)
		if a.code != 403 {
			t.Fatalf("status %d, want 403", a.code)
		}
		if msg, _ := a.body["error"].(string); len(msg) > 512 {
			t.Fatalf("the answer echoes the header: %d bytes", len(msg))
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		a := e.post(t, tok, "edge-a", batch(t, "edge-a", 0, 1), func(r *http.Request) { r.Header.Set("Content-Type", "application/json") })
		if a.code != 415 {
			t.Fatalf("status %d, want 415", a.code)
		}
	})
	t.Run("unsupported encoding", func(t *testing.T) {
		a := e.post(t, tok, "edge-a", batch(t, "edge-a", 0, 1), func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") })
		if a.code != 415 {
			t.Fatalf("status %d, want 415", a.code)
		}
	})
	t.Run("too many samples", func(t *testing.T) {
		e := newEnv(t, func(c *ingest.Config) { c.MaxSamples = 2 })
		a := e.post(t, tok, "edge-a", batch(t, "edge-a", 0, 3), nil)
		if a.code != 413 {
			t.Fatalf("status %d, want 413", a.code)
		}
		// The message says what broke the limit, and says "batch too large" once.
		msg, _ := a.body["error"].(string)
		if n := strings.Count(msg, "batch too large"); n != 1 || !strings.Contains(msg, "more than 2 samples") {
			t.Fatalf("413 message %q: want \"batch too large\" once and the limit", msg)
		}
	})
	if st := e.wal.Stats(); st.Records != 0 {
		t.Fatalf("hostile input stored %d records", st.Records)
	}
}

func TestOverload(t *testing.T) {
	// slow starts a batch that stays in the handler, holding the one decoding slot, until the
	// returned function sends the rest of it; that function returns the batch's status.
	slow := func(t *testing.T, e *env) func() int {
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/samples", pr)
			req.Header.Set("Content-Type", "application/x-tar")
			req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-a"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		tarBytes := collectortest.Tar(t, collectortest.Sample(t, "edge-a", 1, 256))
		pw.Write(tarBytes[:512])
		waitFor(t, "the slow batch takes the slot", func() bool { return e.h.Inflight() == 1 })
		return func() int {
			pw.Write(tarBytes[512:])
			pw.Close()
			return <-done
		}
	}
	overloaded := func(t *testing.T, a answer, within string) {
		t.Helper()
		if a.code != 503 || a.header.Get("Retry-After") == "" || a.body["error"] != "overloaded: 1 batches in flight and none finished within "+within {
			t.Fatalf("got %d %v (Retry-After %q), want 503 overloaded with Retry-After", a.code, a.body, a.header.Get("Retry-After"))
		}
	}
	t.Run("past max_concurrent a batch waits for a slot", func(t *testing.T) {
		e := newEnv(t, func(c *ingest.Config) { c.MaxConcurrent, c.QueueTimeout = 1, time.Minute })
		finish := slow(t, e)
		queued := make(chan answer, 1)
		go func() { queued <- e.post(t, collectortest.Token("edge-a"), "", batch(t, "edge-a", 5, 1), nil) }()
		waitFor(t, "a queued request", func() bool { return metricValue(t, e.reg, "edgeloop_collector_queued_requests") == 1 })
		select {
		case a := <-queued:
			t.Fatalf("answered %d while the slot was taken", a.code)
		case <-time.After(50 * time.Millisecond):
		}
		if code := finish(); code != 200 {
			t.Fatalf("the slow batch: %d", code)
		}
		if a := <-queued; a.code != 200 || a.result.Accepted != 1 {
			t.Fatalf("the queued batch: %d %v", a.code, a.body)
		}
		if q := metricValue(t, e.reg, "edgeloop_collector_queued_requests"); q != 0 {
			t.Fatalf("%v requests still queued", q)
		}
	})
	t.Run("refused after queue_timeout", func(t *testing.T) {
		e := newEnv(t, func(c *ingest.Config) { c.MaxConcurrent, c.QueueTimeout = 1, 50*time.Millisecond })
		finish := slow(t, e)
		overloaded(t, e.post(t, collectortest.Token("edge-a"), "", batch(t, "edge-a", 5, 1), nil), "50ms")
		if code := finish(); code != 200 {
			t.Fatalf("the slow batch: %d", code)
		}
	})
	t.Run("refused at once without a queue", func(t *testing.T) {
		e := newEnv(t, func(c *ingest.Config) { c.MaxConcurrent, c.QueueTimeout = 1, 0 })
		finish := slow(t, e)
		overloaded(t, e.post(t, collectortest.Token("edge-a"), "", batch(t, "edge-a", 5, 1), nil), "0s")
		if code := finish(); code != 200 {
			t.Fatalf("the slow batch: %d", code)
		}
	})
	t.Run("write-ahead log over its limit", func(t *testing.T) {
		e := newEnv(t, func(c *ingest.Config) { c.MaxWALBytes = 64 << 10 })
		for i := 0; ; i++ {
			s := collectortest.Sample(t, "edge-a", 1000+i, 16<<10)
			a := e.post(t, collectortest.Token("edge-a"), "", collectortest.Zstd(t, collectortest.Tar(t, s)), nil)
			if a.code == 503 {
				if a.header.Get("Retry-After") == "" {
					t.Fatal("503 without Retry-After")
				}
				break
			}
			if a.code != 200 || i > 40 {
				t.Fatalf("batch %d: %d %v", i, a.code, a.body)
			}
		}
	})
}

func TestLimits(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/limits", nil)
	req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-a"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	want := map[string]int64{"max_body_bytes": 16 << 20, "max_uncompressed_bytes": 64 << 20, "max_samples": 2000, "max_member_bytes": 8 << 20}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
