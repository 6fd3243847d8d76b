//go:build integration

package integration

import (
	"bytes"
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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
	"github.com/edgeloop/edgeloop/exporter/infer"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// The floors of TestExporterKillNine: a run below any of them fails, so a run that killed
// nothing, or killed an exporter that acknowledged nothing, cannot pass. Measured on two
// shared cores a run acknowledges several hundred samples and rolls a few hundred segments
// (993 and 502 in the run docs/faults.md#process-kills quotes).
const (
	exporterKills       = 20
	minExporterAcked    = 200
	minExporterSegments = 100
)

// killNode is the edge node of TestExporterKillNine.
const killNode = "edge-exkill"

// TestExporterKillNine is the exporter's kill -9 test on real parts: the `edgeloop exporter`
// binary serving a CNN with the built-in runtime, capturing every prediction into a spool of
// 8 KiB segments (two samples each, so appends roll segments and acks delete them all the
// time) and shipping in batches of five to a real collector writing shards to a real MinIO.
// Clients send V2 inference requests while the exporter is killed with SIGKILL at random
// moments and restarted on the same spool, again and again. At the end every sample the
// exporter acknowledged is in exactly one shard, and no key is in two.
//
// Acknowledged: the front captures a prediction before it writes the answer, inside the same
// handler, and the capture pipeline returns once the sample is in its segment file
// (docs/spool.md, what Append returning guarantees: the write is in the kernel's page cache,
// which a SIGKILL of the process does not lose). Only a stored sample's key goes into the
// answer's Edgeloop-Capture-Key header (docs/inference.md), so a request counts as
// acknowledged exactly when its 200 answer carried the header, and the key it names must be
// the key of the request's sample in the shards. An answer without the header (a capture the
// pipeline skipped: a full or broken spool) acknowledges nothing; since this configuration
// captures every prediction, such an answer fails the test as a skipped capture.
func TestExporterKillNine(t *testing.T) {
	e := newCollectorEnv(t, testShards, killNode)
	collector := e.start(t)
	defer collector.stop(t)

	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	run(t, nil, "model", "keygen", "--out", keys)
	version := filepath.Join(work, "v1")
	copyFile(t, filepath.Join("..", "internal", "runtime", "builtin", "testdata", "small_cnn.onnx"), filepath.Join(version, "model.onnx"))
	repo := "file://" + filepath.Join(work, "models")
	classes := "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9"
	run(t, nil, "model", "publish", "--repo", repo, "--key", filepath.Join(keys, modelrepo.PrivateKeyFile),
		"--model", "fashion", "--classes", classes, version)
	token := filepath.Join(work, "token")
	if err := os.WriteFile(token, []byte(collectortest.Token(killNode)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(work, "spool")
	front, metricsAddr := freeAddr(t), freeAddr(t)
	config := filepath.Join(work, "exporter.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`node: %s
log:
  format: json
metrics:
  listen: %s
gpu:
  enabled: false
inference:
  listen: %s
models:
  - name: fashion
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
capture:
  enabled: true
  strategies:
    - name: everything
      type: random
      probability: 1
  limits: []
  max_bytes_per_day: 1099511627776
  dedup:
    enabled: false
  spool:
    dir: %s
    segment_bytes: 8192
    sync_interval: 20ms
  sender:
    url: http://%s
    token_file: %s
    batch_delay: 0s
    max_batch_samples: 5
    initial_backoff: 10ms
    max_backoff: 100ms
    max_rate: 100000
    max_bytes_per_second: 1073741824
    dead_letter_dir: %s
`, killNode, metricsAddr, front, repo, filepath.Join(keys, modelrepo.PublicKeyFile), filepath.Join(work, "cache"),
		spoolDir, e.addr, token, filepath.Join(work, "deadletter"))), 0o600); err != nil {
		t.Fatal(err)
	}
	startExp := func() *process {
		p := startEnv(t, nil, "exporter", "--config", config)
		p.waitFor(t, "inference front started", 20*time.Second)
		return p
	}

	var (
		mu    sync.Mutex
		acked = map[string]string{} // request id → the key its answer named
		gen   atomic.Int64          // exporter processes started
		// perGen counts the acknowledgements each exporter process gave.
		perGen = map[int64]int{}
		next   atomic.Int64
		sent   atomic.Int64
		// uncaptured counts 200 answers without a capture key: captures the pipeline skipped.
		uncaptured atomic.Int64
	)
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for range 3 {
		clients.Go(func() {
			c := newKillClient("http://" + front)
			defer c.close()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := "r" + strconv.FormatInt(next.Add(1), 10)
				g := gen.Load()
				status, key := c.infer(id)
				sent.Add(1)
				switch {
				case status == 0:
					time.Sleep(5 * time.Millisecond) // the exporter is down
					continue
				case status == http.StatusOK && key != "":
					mu.Lock()
					acked[id] = key
					// A process started while the request was out is not credited with it.
					if gen.Load() == g {
						perGen[g]++
					}
					mu.Unlock()
				case status == http.StatusOK:
					uncaptured.Add(1)
				}
				// Paced below what the sender ships (batches of five, each fsynced by the
				// collector), so the spool stays short and the final drain quick.
				time.Sleep(time.Duration(10+rng.IntN(20)) * time.Millisecond)
			}
		})
	}
	ackedIn := func(g int64) int {
		mu.Lock()
		defer mu.Unlock()
		return perGen[g]
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	var st spoolScan
	// The segment files that came and went while the test ran, listed every 2 ms: how often
	// the spool rolled and deleted segments, the operations the kills are to interrupt.
	var segMu sync.Mutex
	segSeen := map[string]bool{}
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			names, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
			segMu.Lock()
			for _, n := range names {
				segSeen[filepath.Base(n)] = true
			}
			segMu.Unlock()
		}
	})
	began := time.Now()
	for i := range exporterKills {
		g := gen.Add(1)
		p := startExp()
		if i == 0 {
			p.waitForVersion(t, "1", 30*time.Second)
		}
		// Every process acknowledges something before it is killed; then it runs a random
		// while longer, so the kill lands anywhere in appends, rolls, sends and deletions.
		deadline := time.Now().Add(20 * time.Second)
		for ackedIn(g) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: the exporter acknowledged no capture within 20s", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		_ = p.cmd.Wait()
		st.scan(t, spoolDir)
	}
	gen.Add(1)
	close(stop)
	clients.Wait()
	watch.Wait()
	killed := time.Since(began)
	segMu.Lock()
	rolled := len(segSeen)
	deleted := 0
	for name := range segSeen {
		if _, err := os.Stat(filepath.Join(spoolDir, name)); os.IsNotExist(err) {
			deleted++
		}
	}
	segMu.Unlock()

	// A last exporter, not killed, ships what the spool holds.
	p := startExp()
	deadline := time.Now().Add(60 * time.Second)
	for exporterMetric("http://"+metricsAddr, "edgeloop_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("exporter spool not drained within 60s (records %v)", exporterMetric("http://"+metricsAddr, "edgeloop_spool_records"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exporter exit code %d after SIGTERM", code)
	}
	e.waitDrained(t, 60*time.Second)

	where, metas := e.shardContents(t)
	ackedKeys := map[string]bool{}
	keysOf := map[string][]string{} // request id → keys
	for k, m := range metas {
		if m.Node == killNode {
			keysOf[m.RequestID] = append(keysOf[m.RequestID], k)
		}
	}
	missing := 0
	for id, key := range acked {
		ks := keysOf[id]
		switch len(ks) {
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged request %s (answered %s: %s) is in no shard", id, infer.CaptureKeyHeader, key)
			}
		case 1:
			if ks[0] != key {
				t.Errorf("request %s was answered %s: %s, but its sample in the shards has key %s", id, infer.CaptureKeyHeader, key, ks[0])
			}
			ackedKeys[ks[0]] = true
		default:
			t.Errorf("request %s captured as %d different samples: %v", id, len(ks), ks)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged samples lost", missing, len(acked))
	}
	checkExactlyOnce(t, where, ackedKeys)
	if n := uncaptured.Load(); n > 0 {
		t.Errorf("%d answers carried no %s although every prediction is to be captured: the pipeline skipped them", n, infer.CaptureKeyHeader)
	}
	t.Logf("%s (kills done after %s): %d kills, %d requests sent, %d captures acknowledged, %d samples of the node in shards (%d unacknowledged extras), %d answers without a capture key, "+
		"%d spool segments seen and %d of them deleted during the kills; spool at the kills: %d with wholly acked segments not yet deleted, %d with a position write in flight, %d with an empty segment",
		time.Since(began).Round(time.Millisecond), killed.Round(time.Millisecond), exporterKills, sent.Load(), len(acked), len(keysOf), len(keysOf)-len(acked), uncaptured.Load(),
		rolled, deleted, st.leftover, st.positionTmp, st.empty)
	if len(acked) < minExporterAcked {
		t.Fatalf("only %d captures acknowledged over %d kills; the test needs at least %d to mean anything", len(acked), exporterKills, minExporterAcked)
	}
	if rolled < minExporterSegments || deleted < minExporterSegments {
		t.Fatalf("%d spool segments seen, %d deleted; want at least %d of each: segments did not roll and go often enough", rolled, deleted, minExporterSegments)
	}
}

// killClient sends V2 inference requests to the exporter under test.
type killClient struct {
	base   string
	tr     *http.Transport
	client *http.Client
	input  []float32
}

func newKillClient(base string) *killClient {
	tr := &http.Transport{DisableCompression: true}
	return &killClient{base: base, tr: tr, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}, input: make([]float32, 28*28)}
}

func (c *killClient) close() { c.tr.CloseIdleConnections() }

// infer sends request id (its input derived from the id, so every captured sample differs)
// and returns the status and the answer's capture key; status 0 when no whole answer came.
func (c *killClient) infer(id string) (int, string) {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "r"))
	for i := range c.input {
		c.input[i] = float32((i*31+n*7)%997) / 997
	}
	c.input[0] = float32(n)
	body, _ := json.Marshal(map[string]any{"id": id, "inputs": []map[string]any{{
		"name": "input", "datatype": "FP32", "shape": []int{1, 1, 28, 28}, "data": c.input,
	}}})
	req, err := http.NewRequest(http.MethodPost, c.base+"/v2/models/fashion/infer", bytes.NewReader(body))
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, ""
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, ""
	}
	return resp.StatusCode, resp.Header.Get(infer.CaptureKeyHeader)
}

// spoolScan counts what the spool directory held at the kills, as evidence of where they
// landed: a segment wholly below the persisted head (acked, its deletion not done yet or not
// due: the active segment is kept), a position file being replaced, an empty segment (just
// rolled or opened).
type spoolScan struct {
	leftover, positionTmp, empty int
}

func (s *spoolScan) scan(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var head uint64
	if pos, err := os.ReadFile(filepath.Join(dir, "position")); err == nil && len(pos) == 20 {
		head = bin.LittleEndian.Uint64(pos[8:16])
	}
	var firsts []uint64
	var empty, tmp bool
	for _, en := range entries {
		name := en.Name()
		if strings.HasPrefix(name, ".tmp-position-") {
			tmp = true
		}
		base, ok := strings.CutSuffix(name, ".seg")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		firsts = append(firsts, first)
		if info, err := en.Info(); err == nil && info.Size() == 0 {
			empty = true
		}
	}
	// Names sort as numbers (zero-padded); a segment is wholly acked when the next one
	// starts at or below the head.
	for i := 0; i+1 < len(firsts); i++ {
		if firsts[i+1] <= head {
			s.leftover++
			break
		}
	}
	if tmp {
		s.positionTmp++
	}
	if empty {
		s.empty++
	}
}

// exporterMetric returns an unlabelled sample's value from an exporter's /metrics, -1 when
// unreachable or absent.
func exporterMetric(base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// copyFile copies src to dst, creating dst's directory.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
