//go:build integration

package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/exporter/capture"
	"github.com/edgeloop/edgeloop/exporter/capture/capturetest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/serverconfig"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/internal/token"
)

// collectorEnv is a real MinIO and the configuration of a real `edgeloop collector` process
// on a fixed port and WAL directory, so that it can be killed and restarted in place.
type collectorEnv struct {
	minio  *testenv.MinIOServer
	bucket objstore.Bucket
	config string
	tokens string
	addr   string
	env    []string
}

// operatorToken is the collector's operator token in these tests.
const operatorToken = "token-ops"

// testShards cuts small shards quickly, so uploads happen all through a test.
const testShards = `wal:
  segment_bytes: 262144
shards:
  target_bytes: 131072
  max_age: 1s
  upload_timeout: 5s
  retry:
    initial_backoff: 100ms
    max_backoff: 500ms
`

func newCollectorEnv(t testing.TB, tuning string, nodes ...string) *collectorEnv {
	t.Helper()
	m := testenv.StartMinIO(t)
	s3 := objstore.DefaultS3Config()
	s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, true, "edgeloop"
	if err := objstore.CreateS3Bucket(context.Background(), s3); err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewS3(s3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tokens := collectortest.TokensFile(t, dir, nodes...)
	operators := filepath.Join(dir, "operators")
	if err := os.WriteFile(operators, []byte(token.HashLine("ops", operatorToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "collector.yaml")
	content, err := serverconfig.Collector{Instance: "it", Listen: addr, LogJSON: true, Tokens: tokens, Operators: operators,
		Bucket: "s3://edgeloop?endpoint=" + m.Endpoint + "&insecure=true", WALDir: filepath.Join(walRoot(dir), "wal"),
		Tuning: tuning}.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return &collectorEnv{minio: m, bucket: bucket, config: config, tokens: tokens, addr: addr,
		env: []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}}
}

// start runs the collector and waits until it serves.
func (e *collectorEnv) start(t *testing.T) *process {
	t.Helper()
	p := startEnv(t, e.env, "collector", "--config", e.config)
	p.waitFor(t, "collector started", 30*time.Second)
	return p
}

// postBatch sends samples as node and returns the status (0 when the connection failed).
func (e *collectorEnv) postBatch(t testing.TB, node string, samples []*sample.Sample) int {
	var b bytes.Buffer
	if err := sample.WriteTar(&b, samples); err != nil {
		t.Error(err)
		return 0
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.addr+"/v1/samples", bytes.NewReader(collectortest.Zstd(t, b.Bytes())))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+collectortest.Token(node))
	req.Header.Set("X-Edgeloop-Node", node)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var res struct{ Accepted, Duplicates int }
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || res.Accepted+res.Duplicates != len(samples) {
			t.Errorf("200 answer %+v for %d samples (%v)", res, len(samples), err)
		}
	}
	return resp.StatusCode
}

// metric returns a sample value from the collector's /metrics, -1 when unreachable.
func (e *collectorEnv) metric(name string) float64 {
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// waitDrained waits until the collector's log is empty: every sample is in an uploaded shard.
func (e *collectorEnv) waitDrained(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for e.metric("edgeloop_collector_wal_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("collector log not drained within %s (records %v)", timeout, e.metric("edgeloop_collector_wal_records"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shardContents reads every shard in the bucket: for each key, the shards holding it (from the
// indexes), and each sample's metadata from the tars.
func (e *collectorEnv) shardContents(t *testing.T) (map[string][]string, map[string]sample.Meta) {
	t.Helper()
	ctx := context.Background()
	where := map[string][]string{}
	metas := map[string]sample.Meta{}
	keys, err := objstore.List(ctx, e.bucket, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if base, ok := strings.CutSuffix(k, ".index.jsonl"); ok {
			data, _, err := objstore.ReadAll(ctx, e.bucket, k, 0)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				var ie sample.IndexEntry
				if err := json.Unmarshal(sc.Bytes(), &ie); err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				where[ie.Key] = append(where[ie.Key], base)
			}
			continue
		}
		if !strings.HasSuffix(k, ".tar") {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, e.bucket, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if strings.HasSuffix(h.Name, ".json") {
				var m sample.Meta
				if err := json.NewDecoder(tr).Decode(&m); err != nil {
					t.Fatalf("%s: %s: %v", k, h.Name, err)
				}
				metas[m.Key] = m
			}
		}
	}
	return where, metas
}

// checkExactlyOnce fails unless every key of want is in exactly one shard, and no key at all
// is in two.
func checkExactlyOnce(t *testing.T, where map[string][]string, want map[string]bool) {
	t.Helper()
	missing, dup := 0, 0
	for k, shards := range where {
		if len(shards) > 1 {
			dup++
			if dup < 5 {
				t.Errorf("key %s in %d shards: %v", k, len(shards), shards)
			}
		}
	}
	for k := range want {
		if len(where[k]) == 0 {
			missing++
		}
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("%d of %d acknowledged keys missing from the shards, %d keys in more than one shard", missing, len(want), dup)
	}
}

// The floors of TestCollector's kill test: a run below them fails rather than passing on
// next to nothing (docs/faults.md#process-kills).
const (
	minCollectorKillAcked = 2000
	minResent             = 10
)

// readUploadedKeys adds to keys the sample keys of every shard index in the bucket that read
// has not seen yet.
func readUploadedKeys(t *testing.T, e *collectorEnv, keys, read map[string]bool) {
	t.Helper()
	ctx := context.Background()
	names, err := objstore.List(ctx, e.bucket, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range names {
		if !strings.HasSuffix(k, ".index.jsonl") || read[k] {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, e.bucket, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var ie sample.IndexEntry
			if err := json.Unmarshal(sc.Bytes(), &ie); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			keys[ie.Key] = true
		}
		read[k] = true
	}
}

// TestCollector runs the real collector against a real MinIO: the exporter's capture pipeline
// sending to it, the collector killed with SIGKILL again and again while nodes post (and resend
// batches it acknowledged, which it must answer as duplicates), an object-store outage, and a
// token revoked with SIGHUP.
func TestCollector(t *testing.T) {
	e := newCollectorEnv(t, testShards, "edge-cap", "edge-kill", "edge-out", "edge-rev")

	t.Run("capture pipeline to shards", func(t *testing.T) {
		p := e.start(t)
		defer p.stop(t)
		dir := t.TempDir()
		token := filepath.Join(dir, "token")
		os.WriteFile(token, []byte(collectortest.Token("edge-cap")+"\n"), 0o600)
		cfg := capturetest.Config(t, dir, "http://"+e.addr, token)
		pipe, err := capture.New(cfg, capture.Options{Node: "edge-cap"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- pipe.Run(ctx) }()
		const n = 300
		for i := range n {
			if pipe.Capture(ctx, capturetest.Prediction(i)) != 1 {
				t.Fatalf("prediction %d not captured", i)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for pipe.Spool().Stats().Records > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
		pipe.Close()
		e.waitDrained(t, 30*time.Second)
		where, metas := e.shardContents(t)
		got := map[string]int{}
		for k, m := range metas {
			if m.Node == "edge-cap" {
				got[m.RequestID] += len(where[k])
			}
		}
		for i := range n {
			if got[strconv.Itoa(i)] != 1 {
				t.Fatalf("request %d is in %d shards, want 1", i, got[strconv.Itoa(i)])
			}
		}
	})

	t.Run("kill -9 during ingest and upload", func(t *testing.T) {
		// Acknowledged batches, and which collector process answered each (gen, counted
		// from 1; a batch whose post spanned a restart is not attributed).
		type ackedBatch struct {
			samples []*sample.Sample
			gen     int64
		}
		var mu sync.Mutex
		acked := map[string]bool{}
		var batches []ackedBatch
		var next, gen atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ok200 atomic.Int64
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					var batch []*sample.Sample
					for range 10 {
						batch = append(batch, collectortest.Sample(t, "edge-kill", int(next.Add(1)), 2048))
					}
					g := gen.Load()
					if e.postBatch(t, "edge-kill", batch) == 200 {
						ok200.Add(1)
						mu.Lock()
						for _, s := range batch {
							acked[s.Meta.Key] = true
						}
						if gen.Load() != g {
							g = 0
						}
						batches = append(batches, ackedBatch{samples: batch, gen: g})
						mu.Unlock()
					} else {
						time.Sleep(20 * time.Millisecond) // down: a sender backs off
					}
				}
			})
		}
		// resend posts an acknowledged batch again, as a node does whose answer was lost:
		// the collector must answer 200 with every sample a duplicate and store nothing.
		var resentLive, resentAfterKill atomic.Int64
		// The node's other batches in flight can fill its slots (ingest.max_concurrent_per_node):
		// like a sender, it retries after a 429 or 503.
		resend := func(b ackedBatch, counter *atomic.Int64, when string) {
			var tb bytes.Buffer
			if err := sample.WriteTar(&tb, b.samples); err != nil {
				t.Fatal(err)
			}
			body := collectortest.Zstd(t, tb.Bytes())
			client := &http.Client{Timeout: 10 * time.Second}
			deadline := time.Now().Add(10 * time.Second)
			for {
				req, _ := http.NewRequest(http.MethodPost, "http://"+e.addr+"/v1/samples", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-tar")
				req.Header.Set("Content-Encoding", "zstd")
				req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-kill"))
				req.Header.Set("X-Edgeloop-Node", "edge-kill")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("resend %s: %v", when, err)
					return
				}
				var res struct {
					Accepted, Duplicates int
					Rejected             []any
				}
				err = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err != nil || resp.StatusCode != 200 || res.Accepted != 0 || res.Duplicates != len(b.samples) || len(res.Rejected) != 0 {
					t.Errorf("resend %s of a batch of %d acknowledged samples (answered by collector %d): status %d, %+v (%v); want 200, all duplicates",
						when, len(b.samples), b.gen, resp.StatusCode, res, err)
					return
				}
				counter.Add(1)
				return
			}
		}
		// pick returns up to n acknowledged batches that ok accepts, at random.
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
		pick := func(n int, ok func(ackedBatch) bool) []ackedBatch {
			mu.Lock()
			var c []ackedBatch
			for _, b := range batches {
				if ok(b) {
					c = append(c, b)
				}
			}
			mu.Unlock()
			rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
			return c[:min(n, len(c))]
		}
		uploaded := map[string]bool{}    // keys in an uploaded shard's index
		indexesRead := map[string]bool{} // those indexes (a replay rewrites one with the same content)
		var afterKill []ackedBatch
		const iterations = 30
		began := time.Now()
		var checking time.Duration // spent reading the bucket between kills
		for i := range iterations {
			p := e.start(t)
			gen.Store(int64(i + 1))
			// The batches acknowledged before the last kill whose samples were in no uploaded
			// shard then: still in the write-ahead log, which seeds the duplicate set.
			for _, b := range afterKill {
				resend(b, &resentAfterKill, "after a restart")
			}
			time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
			// Batches this process acknowledged: in its duplicate set whether uploaded or not.
			for _, b := range pick(3, func(b ackedBatch) bool { return b.gen == int64(i+1) }) {
				resend(b, &resentLive, "to the live collector")
			}
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-p.done
			_ = p.cmd.Wait()
			if t.Failed() {
				break
			}
			checkStart := time.Now()
			readUploadedKeys(t, e, uploaded, indexesRead)
			checking += time.Since(checkStart)
			afterKill = pick(3, func(b ackedBatch) bool {
				for _, s := range b.samples {
					if uploaded[s.Meta.Key] {
						return false
					}
				}
				return true
			})
		}
		close(stop)
		wg.Wait()
		killed := time.Since(began)
		p := e.start(t)
		for _, b := range afterKill {
			resend(b, &resentAfterKill, "after a restart")
		}
		e.waitDrained(t, 60*time.Second)
		p.stop(t)
		where, _ := e.shardContents(t)
		checkExactlyOnce(t, where, acked)
		t.Logf("%s (kills done after %s, %s of it reading the bucket): %d kills, %d batches answered 200, %d acknowledged samples, %d distinct keys in shards; "+
			"acknowledged batches resent and answered as duplicates: %d to the live collector, %d after a restart",
			time.Since(began).Round(time.Millisecond), killed.Round(time.Millisecond), checking.Round(time.Millisecond),
			iterations, ok200.Load(), len(acked), len(where), resentLive.Load(), resentAfterKill.Load())
		if len(acked) < minCollectorKillAcked || resentLive.Load() < minResent || resentAfterKill.Load() < minResent {
			t.Fatalf("want at least %d acknowledged samples and %d resends of each kind", minCollectorKillAcked, minResent)
		}
	})

	t.Run("object store outage", func(t *testing.T) {
		p := e.start(t)
		defer p.stop(t)
		acked := map[string]bool{}
		send := func(from, to int) {
			for i := from; i < to; i += 10 {
				var batch []*sample.Sample
				for j := i; j < i+10; j++ {
					batch = append(batch, collectortest.Sample(t, "edge-out", j, 2048))
				}
				if code := e.postBatch(t, "edge-out", batch); code != 200 {
					t.Fatalf("batch %d: status %d", i, code)
				}
				for _, s := range batch {
					acked[s.Meta.Key] = true
				}
			}
		}
		send(0, 100)
		e.minio.Stop()
		// Ingest goes on while the log has room; uploads fail and /readyz says why.
		deadline := time.Now().Add(20 * time.Second)
		for i := 100; ; i += 100 {
			send(i, i+100)
			resp, err := http.Get("http://" + e.addr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && strings.Contains(string(body), "object store unreachable") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz during the outage: %d %s", resp.StatusCode, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if e.metric("edgeloop_collector_objstore_errors_total") <= 0 {
			t.Error("no object-store error counted during the outage")
		}
		e.minio.Start()
		e.waitDrained(t, 30*time.Second)
		where, _ := e.shardContents(t)
		checkExactlyOnce(t, where, acked)
	})

	t.Run("SIGHUP revokes a token", func(t *testing.T) {
		p := e.start(t)
		defer p.stop(t)
		s := func(n int) []*sample.Sample { return []*sample.Sample{collectortest.Sample(t, "edge-rev", n, 64)} }
		if code := e.postBatch(t, "edge-rev", s(1)); code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		collectortest.WriteTokens(t, e.tokens, "edge-cap", "edge-kill", "edge-out")
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.waitFor(t, "auth: credentials reloaded", 10*time.Second)
		if code := e.postBatch(t, "edge-rev", s(2)); code != 401 {
			t.Fatalf("after revocation: %d, want 401", code)
		}
		if code := e.postBatch(t, "edge-out", []*sample.Sample{collectortest.Sample(t, "edge-out", 100000, 64)}); code != 200 {
			t.Fatalf("another node after the reload: %d", code)
		}
	})
}

// walRoot is where a test collector's write-ahead log goes: dir, or COLLECTOR_BENCH_WAL_ROOT
// (an experiment: the log on another disk than MinIO's).
func walRoot(dir string) string {
	if r := os.Getenv("COLLECTOR_BENCH_WAL_ROOT"); r != "" {
		d, err := os.MkdirTemp(r, "wal-")
		if err == nil {
			return d
		}
	}
	return dir
}
