//go:build integration

package chaos

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/internal/token"
)

// binary is the edgeloop binary built once by TestMain, as integration/ builds it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeloop-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "edgeloop")
	// CHAOS_BINARY runs a binary built elsewhere (another commit, a release build) instead.
	if b := os.Getenv("CHAOS_BINARY"); b != "" {
		binary = b
		code := m.Run()
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}
	build := exec.Command("go", "build", "-o", binary, "github.com/edgeloop/edgeloop/cmd/edgeloop")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: build edgeloop:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Tokens of the soak's operators.
const (
	operatorToken = "token-ops"     // the collector's operator (the controller's dataset reads)
	retrainToken  = "token-retrain" // the controller's operator (the soak's triggers and checks)
	modelName     = "fashion"
)

// settings are the soak's knobs, from the environment (docs/benchmarks.md, "Chaos soak").
type settings struct {
	duration time.Duration // CHAOS_DURATION, default 2m
	seed     uint64        // CHAOS_SEED, default the clock
	nodes    int           // CHAOS_NODES, default 3
	rate     float64       // CHAOS_RATE: inference requests per second per node, default 10
	summary  string        // CHAOS_SUMMARY: a file for the JSON summary
	// scale shrinks the kill and fault intervals (10–30 s at ten minutes) for a shorter soak,
	// so that a two-minute run still kills every kind of component.
	scale float64
}

func loadSettings(t *testing.T) settings {
	s := settings{duration: 2 * time.Minute, seed: uint64(time.Now().UnixNano()), nodes: 3, rate: 10, summary: os.Getenv("CHAOS_SUMMARY")}
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 30*time.Second {
			t.Fatalf("CHAOS_DURATION=%q: want a duration of at least 30s (%v)", v, err)
		}
		s.duration = d
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", v, err)
		}
		s.seed = n
	}
	if v := os.Getenv("CHAOS_NODES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 {
			t.Fatalf("CHAOS_NODES=%q: want 3 or more", v)
		}
		s.nodes = n
	}
	if v := os.Getenv("CHAOS_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("CHAOS_RATE=%q: want a positive number", v)
		}
		s.rate = f
	}
	s.scale = min(1, max(0.5, s.duration.Seconds()/600))
	return s
}

// summary is what the soak prints and writes to CHAOS_SUMMARY.
type summary struct {
	Seed     uint64 `json:"seed"`
	Duration string `json:"duration"`
	Nodes    int    `json:"nodes"`
	// Kills counts SIGKILLs by kind of component (exporter, collector, minio, controller).
	Kills      map[string]int `json:"kills"`
	KillsTotal int            `json:"kills_total"`
	// Faults counts the fault windows opened; FaultedRequests the sender requests they hit
	// (sender_reset_after also hits about 3% of requests outside the windows).
	Faults          map[string]int `json:"faults"`
	FaultedRequests map[string]int `json:"faulted_requests"`
	// Requests are inference requests sent, Answered those answered 200, RequestErrors the
	// others (the node down).
	Requests      int64 `json:"requests"`
	Answered      int64 `json:"answered"`
	RequestErrors int64 `json:"request_errors"`
	// Acknowledged are the distinct sample keys a 200 answer acknowledged to a sender, in
	// AckBatches batches; DuplicatesAnswered the samples those answers called duplicates
	// (resends of batches whose answer a fault or a kill cut off); Rejected the keys refused.
	Acknowledged       int `json:"acknowledged"`
	AckBatches         int `json:"ack_batches"`
	DuplicatesAnswered int `json:"duplicates_answered"`
	Rejected           int `json:"rejected"`
	// Stored are the distinct keys in the bucket's shards, in Shards shards; StoredUnacked
	// those no sender saw acknowledged (not a violation: an answer lost to a fault).
	Stored        int `json:"stored"`
	Shards        int `json:"shards"`
	StoredUnacked int `json:"stored_unacknowledged"`
	// Lost are acknowledged keys in no shard; Twice keys stored more than once.
	Lost  int `json:"lost"`
	Twice int `json:"twice"`
	// JobsStarted are the jobs the soak's triggers started; JobsSeen the controller's jobs at
	// the end, by phase; JobsActive those not ended.
	JobsStarted int            `json:"jobs_started"`
	JobsSeen    int            `json:"jobs_seen"`
	JobsActive  int            `json:"jobs_active"`
	JobPhases   map[string]int `json:"job_phases"`
	// JobsResumed counts the jobs a restarted controller found active and resumed: the
	// controller kills that hit a running job.
	JobsResumed int `json:"jobs_resumed"`
	// Versions are the model versions in the repository (version 1 included);
	// DuplicateVersions those whose model.onnx another version already has.
	Versions          int      `json:"versions"`
	DuplicateVersions int      `json:"duplicate_versions"`
	DrainSeconds      float64  `json:"drain_seconds"`
	Violations        []string `json:"violations"`
	Anomalies         []string `json:"anomalies,omitempty"`
	Result            string   `json:"result"`
}

// TestChaosSoak runs the loop under traffic while killing a random component with SIGKILL
// every 10–30 s (shorter in a short soak) and injecting network faults, then checks
// conservation (docs/benchmarks.md, "Chaos soak").
func TestChaosSoak(t *testing.T) {
	cfg := loadSettings(t)
	t.Logf("chaos soak: %s, seed %d (CHAOS_SEED=%d reruns this schedule), %d nodes", cfg.duration, cfg.seed, cfg.seed, cfg.nodes)
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	testSet, err := fmnist.Load(dataDir, fmnist.Test)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	began := time.Now()

	// MinIO, and the faulty path to it that the collector and the controller take.
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
	store, err := newTCPProxy(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.close)
	env := []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}
	directRepo := "s3://edgeloop?endpoint=" + m.Endpoint + "&insecure=true"
	faultyRepo := "s3://edgeloop?endpoint=" + store.addr() + "&insecure=true"

	// Version 1, deliberately weak (about 0.68), so that many predictions are unsure and get
	// captured; and the gate's evaluation set, from test images the traffic does not send.
	keys := filepath.Join(work, "keys")
	runTool(t, nil, "model", "keygen", "--out", keys)
	priv, pub := filepath.Join(keys, modelrepo.PrivateKeyFile), filepath.Join(keys, modelrepo.PublicKeyFile)
	base := filepath.Join(work, "base")
	runTool(t, nil, "train", "--out", base, "--data", dataDir, "--train-limit", "2000", "--epochs", "1", "--log.format", "json")
	runTool(t, env, "model", "publish", "--repo", directRepo, "--key", priv, base)
	const evalImages = 1000
	var evalSamples [][]float32
	var evalLabels []int
	for i := range evalImages {
		evalSamples = append(evalSamples, testSet.Image(i))
		evalLabels = append(evalLabels, int(testSet.Labels[i]))
	}
	evalDir, evalCSV := testenv.EvalFiles(t, []int{fmnist.Pixels}, evalSamples, evalLabels)
	runTool(t, env, "evalset", "create", "--bucket", directRepo, "--model", modelName, "--name", "chaos-eval",
		"--from-dir", evalDir, "--labels", evalCSV, "--shape", strconv.Itoa(fmnist.Pixels), "--classes", strings.Join(fmnist.ClassNames(), ","))

	// The collector, on a fixed port and WAL directory so that a restart takes over both.
	nodes := make([]string, cfg.nodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("edge-%d", i+1)
	}
	collectorAddr := freeAddr(t)
	cdir := filepath.Join(work, "collector")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	nodeTokens := collectortest.TokensFile(t, cdir, nodes...)
	writeFile(t, filepath.Join(cdir, "operators"), token.HashLine("ops", operatorToken)+"\n")
	writeFile(t, filepath.Join(cdir, "collector.yaml"), fmt.Sprintf(`instance: chaos
listen: %q
log:
  format: json
auth:
  tokens_file: %s
  operator_tokens_file: %s
bucket: %s
wal:
  dir: %s
  segment_bytes: 262144
shards:
  target_bytes: 262144
  max_age: 2s
  upload_timeout: 5s
  retry:
    initial_backoff: 100ms
    max_backoff: 1s
`, collectorAddr, nodeTokens, filepath.Join(cdir, "operators"), faultyRepo, filepath.Join(cdir, "wal")))
	collector := newComponent("collector", "collector", "collector started", env, "collector", "--config", filepath.Join(cdir, "collector.yaml"))
	mustStart(t, collector)

	// The sender proxy: every exporter sends through it.
	senders := newSenderProxy(collectorAddr, cfg.seed)
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxySrv := &http.Server{Handler: senders, ReadHeaderTimeout: 10 * time.Second}
	go proxySrv.Serve(proxyLn)
	t.Cleanup(func() { proxySrv.Close() })

	// The exporters: built-in runtime following the repository, capture on.
	type edge struct {
		c            *component
		front, mets  string
		requests     atomic.Int64
		answered     atomic.Int64
		requestError atomic.Int64
	}
	var edges []*edge
	for _, name := range nodes {
		dir := filepath.Join(work, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		token := writeFile(t, filepath.Join(dir, "token"), collectortest.Token(name)+"\n")
		e := &edge{front: freeAddr(t), mets: freeAddr(t)}
		cfgFile := writeFile(t, filepath.Join(dir, "exporter.yaml"), fmt.Sprintf(`node: %s
log:
  format: json
metrics:
  listen: %s
gpu:
  enabled: false
inference:
  listen: %s
models:
  - name: %s
model_sync:
  repository: %s
  trusted_keys: [%s]
  cache_dir: %s
  poll_interval: 1s
capture:
  enabled: true
  strategies:
    - {name: random, type: random, probability: 0.1}
    - {name: low_confidence, type: threshold, scorer: max_softmax, threshold: 0.8}
  limits:
    - {type: minutely, value: 100000}
  spool:
    dir: %s
  sender:
    url: http://%s
    token_file: %s
    timeout: 10s
    batch_delay: 500ms
    initial_backoff: 200ms
    max_backoff: 2s
    max_rate: 5000
    max_bytes_per_second: 67108864
    dead_letter_dir: %s
`, name, e.mets, e.front, modelName, directRepo, pub, filepath.Join(dir, "models"), filepath.Join(dir, "spool"),
			proxyLn.Addr(), token, filepath.Join(dir, "deadletter")))
		e.c = newComponent(name, "exporter", "inference front started", env, "exporter", "--config", cfgFile)
		mustStart(t, e.c)
		edges = append(edges, e)
	}

	// The retrain controller: local backend, `edgeloop train` on a small budget with the job's
	// number as its seed, so that every candidate is a different model and two versions with
	// the same digest can only be one candidate published twice. The gate lets every candidate
	// through (min_improvement -1), so that versions are published all through the soak.
	retrainAddr := freeAddr(t)
	rdir := filepath.Join(work, "retrain")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rdir, "webhook.tokens"), token.HashLine("alertmanager", "unused-webhook-token")+"\n")
	writeFile(t, filepath.Join(rdir, "operator.tokens"), token.HashLine("chaos", retrainToken)+"\n")
	writeFile(t, filepath.Join(rdir, "collector.token"), operatorToken+"\n")
	retrainCfg := writeFile(t, filepath.Join(rdir, "retrain.yaml"), fmt.Sprintf(`
listen: %s
log:
  format: json
state_dir: %s
auth:
  webhook_tokens_file: %s
  operator_tokens_file: %s
repository:
  bucket: %s
  signing_key_file: %s
dataset:
  collector_url: http://%s
  token_file: %s
models:
  - name: %s
policy:
  min_new_labels: 0
  cooldown: 1s
  daily_budget: 100000
  job_timeout: 3m
  keep_jobs: 100000
backend:
  type: local
  local:
    kill_grace: 2s
    command: ["/bin/sh", "-c", "exec \"$0\" train --out \"$1\" --dataset-manifest \"$2\" --model \"$3\" --base-version \"$4\" --data \"$5\" --train-limit 2000 --epochs 1 --workers 1 --seed \"$${6##*-}\" --log.format json",
              "{{.Edgeloop}}", "{{.Output}}", "{{.DatasetManifest}}", "{{.Model}}", "{{.BaseVersion}}", %q, "{{.ID}}"]
gate:
  eval_sets: [chaos-eval]
  min_improvement: -1
  max_class_regression: 1
  max_ece_increase: -1
  min_eval_samples: 100
publish:
  stable: true
`, retrainAddr, filepath.Join(rdir, "state"), filepath.Join(rdir, "webhook.tokens"), filepath.Join(rdir, "operator.tokens"),
		faultyRepo, priv, collectorAddr, filepath.Join(rdir, "collector.token"), modelName, dataDir))
	controller := newComponent("controller", "controller", "retrain controller started", env, "retrain", "--config", retrainCfg)
	mustStart(t, controller)
	retrainURL := "http://" + retrainAddr

	all := []*component{collector, controller}
	for _, e := range edges {
		all = append(all, e.c)
	}
	t.Cleanup(func() {
		for _, c := range all {
			c.stop()
		}
		if t.Failed() {
			// The whole logs go to a directory that outlives the test; the tails to the output.
			dir := filepath.Join(os.TempDir(), fmt.Sprintf("edgeloop-chaos-%d", cfg.seed))
			if err := os.MkdirAll(dir, 0o755); err == nil {
				for _, c := range all {
					_ = os.WriteFile(filepath.Join(dir, c.name+".log"), []byte(c.tail(1<<30)), 0o644)
				}
				t.Logf("component logs in %s", dir)
			}
			for _, c := range all {
				t.Logf("%s log (tail):\n%s", c.name, c.tail(6000))
			}
		}
	})
	t.Logf("%s: MinIO, collector, controller and %d exporters up", since(began), len(edges))

	// Traffic: single-image V2 requests with a request id, brightness and noise drawn per
	// request so that confidences vary and both capture strategies fire.
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	var trafficWG sync.WaitGroup
	t.Cleanup(func() { stopTraffic(); trafficWG.Wait() })
	for i, e := range edges {
		trafficWG.Go(func() {
			r := rand.New(rand.NewPCG(cfg.seed, uint64(100+i)))
			client := &http.Client{Timeout: 5 * time.Second}
			every := time.Duration(float64(time.Second) / cfg.rate)
			img := make([]float32, fmnist.Pixels)
			for seq := 0; trafficCtx.Err() == nil; seq++ {
				src := testSet.Image(evalImages + r.IntN(testSet.Len()-evalImages))
				gain, noise := 0.4+0.8*r.Float32(), 0.3*r.Float32()
				for j, v := range src {
					img[j] = min(1, max(0, v*gain+noise*(r.Float32()-0.5)))
				}
				body, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s-%d", e.c.name, seq),
					"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{1, fmnist.Pixels}, "data": img}}})
				e.requests.Add(1)
				req, _ := http.NewRequestWithContext(trafficCtx, http.MethodPost, "http://"+e.front+"/v2/models/"+modelName+"/infer", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == http.StatusOK {
					e.answered.Add(1)
				} else {
					e.requestError.Add(1)
					if err != nil && trafficCtx.Err() == nil {
						time.Sleep(200 * time.Millisecond) // the node is down: knock again soon
					}
				}
				select {
				case <-trafficCtx.Done():
				case <-time.After(every):
				}
			}
		})
	}

	// The chaos: kills, network faults and retrain triggers until the soak's end.
	sum := &summary{Seed: cfg.seed, Duration: cfg.duration.String(), Nodes: cfg.nodes, Kills: map[string]int{}, Faults: map[string]int{}, JobPhases: map[string]int{}}
	var sumMu sync.Mutex
	var violations []string
	violate := func(format string, args ...any) {
		sumMu.Lock()
		violations = append(violations, fmt.Sprintf(format, args...))
		sumMu.Unlock()
	}
	chaosCtx, stopChaos := context.WithTimeout(context.Background(), cfg.duration)
	defer stopChaos()
	sleep := func(r *rand.Rand, lo, hi float64) bool {
		d := time.Duration((lo + (hi-lo)*r.Float64()) * float64(time.Second))
		select {
		case <-chaosCtx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	var chaosWG sync.WaitGroup
	minioDown := atomic.Bool{}
	chaosWG.Go(func() {
		r := rand.New(rand.NewPCG(cfg.seed, 3))
		kinds := []string{"exporter", "collector", "minio", "controller"}
		var bag []string
		for sleep(r, 10*cfg.scale, 30*cfg.scale) {
			// Every kind in turn, in a random order: a short soak still kills each kind.
			if len(bag) == 0 {
				bag = append([]string(nil), kinds...)
				r.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
			}
			kind := bag[0]
			bag = bag[1:]
			name := kind
			down := time.Duration((0.5 + 2.5*r.Float64()) * float64(time.Second))
			switch kind {
			case "minio":
				minioDown.Store(true)
				if pid := m.Pid(); pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				m.Stop() // reaps the killed process
				time.Sleep(down)
				m.Start()
				minioDown.Store(false)
			default:
				c := collector
				switch kind {
				case "controller":
					c = controller
				case "exporter":
					c = edges[r.IntN(len(edges))].c
				}
				name = c.name
				c.kill()
				time.Sleep(down)
				if err := restart(c); err != nil {
					violate("restart after a kill: %v", err)
				}
			}
			sumMu.Lock()
			sum.Kills[kind]++
			sum.KillsTotal++
			sumMu.Unlock()
			t.Logf("%s: kill -9 %s, down %s", since(began), name, down.Round(10*time.Millisecond))
		}
	})
	chaosWG.Go(func() {
		r := rand.New(rand.NewPCG(cfg.seed, 4))
		modes := []string{faultResetBefore, faultResetAfter, faultLatency, faultBlackhole, faultStoreReset, faultStoreSlow}
		for sleep(r, 5*cfg.scale, 15*cfg.scale) {
			mode := modes[r.IntN(len(modes))]
			d := time.Duration((2 + 4*r.Float64()) * float64(time.Second))
			if strings.HasPrefix(mode, "storage_") {
				store.fault(mode, d)
			} else {
				senders.fault(mode, d)
			}
			sumMu.Lock()
			sum.Faults[mode]++
			sumMu.Unlock()
			t.Logf("%s: fault %s for %s", since(began), mode, d.Round(10*time.Millisecond))
		}
	})
	var startedMu sync.Mutex
	started := map[string]bool{}
	chaosWG.Go(func() {
		r := rand.New(rand.NewPCG(cfg.seed, 5))
		for sleep(r, 4, 8) {
			code, body, err := operator(http.MethodPost, retrainURL+"/v1/models/"+modelName+"/retrain", `{"reason":"chaos soak","force":true}`)
			if err != nil || code != http.StatusAccepted {
				continue // down, or a job is active: try again later
			}
			var d struct {
				Started string `json:"started"`
			}
			if json.Unmarshal(body, &d) == nil && d.Started != "" {
				startedMu.Lock()
				started[d.Started] = true
				startedMu.Unlock()
				t.Logf("%s: job %s started", since(began), d.Started)
			}
		}
	})
	chaosWG.Wait()
	stopTraffic()
	trafficWG.Wait()
	senders.calm()
	t.Logf("%s: chaos over; traffic stopped; draining", since(began))

	// Everything up again, then drained: every spool empty, the collector's log empty, no shard
	// pending, every job ended.
	if m.Pid() == 0 {
		m.Start()
	}
	for _, c := range all {
		if !c.alive() {
			if err := restart(c); err != nil {
				t.Fatalf("after the soak: %v", err)
			}
		}
	}
	drainStart := time.Now()
	drained := waitUntil(5*time.Minute, func() (bool, string) {
		var pending []string
		for _, e := range edges {
			if n, err := metricSum("http://"+e.mets+"/metrics", "edgeloop_spool_records"); err != nil || n != 0 {
				pending = append(pending, fmt.Sprintf("%s spool %v (%v)", e.c.name, n, err))
			}
		}
		for _, name := range []string{"edgeloop_collector_wal_records", "edgeloop_collector_shards_pending"} {
			if n, err := metricSum("http://"+collectorAddr+"/metrics", name); err != nil || n != 0 {
				pending = append(pending, fmt.Sprintf("%s %v (%v)", name, n, err))
			}
		}
		return len(pending) == 0, strings.Join(pending, "; ")
	})
	if drained != "" {
		violate("not drained after 5m: %s", drained)
	}
	sum.DrainSeconds = time.Since(drainStart).Round(100 * time.Millisecond).Seconds()
	var jobs []jobView
	if why := waitUntil(5*time.Minute, func() (bool, string) {
		var err error
		jobs, err = listJobs(retrainURL)
		if err != nil {
			return false, err.Error()
		}
		var active []string
		for _, j := range jobs {
			if !j.done() {
				active = append(active, j.ID+" "+j.Phase)
			}
		}
		return len(active) == 0, "active: " + strings.Join(active, ", ")
	}); why != "" {
		violate("a started job did not end within 5m of the soak: %s", why)
	}
	t.Logf("%s: drained in %.1fs", since(began), sum.DrainSeconds)

	// Conservation.
	ctx := context.Background()
	where, shards, err := shardKeys(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	sum.Stored, sum.Shards = len(where), shards
	senders.mu.Lock()
	sum.Acknowledged, sum.AckBatches, sum.Rejected = len(senders.acked), senders.batches, len(senders.rejected)
	sum.FaultedRequests = maps.Clone(senders.injected)
	sum.Anomalies = append(sum.Anomalies, senders.anomalies...)
	sum.DuplicatesAnswered = senders.duplicates
	for k := range senders.acked {
		if len(where[k]) == 0 {
			sum.Lost++
			if sum.Lost <= 10 {
				violate("acknowledged sample %s is in no shard", k)
			}
		}
	}
	for k, ws := range senders.rejected {
		sum.Anomalies = append(sum.Anomalies, fmt.Sprintf("sample %s rejected: %s", k, ws))
	}
	for k, ws := range where {
		if senders.acked[k] == 0 {
			sum.StoredUnacked++
		}
		if len(ws) > 1 {
			sum.Twice++
			if sum.Twice <= 10 {
				violate("sample %s is stored %d times: %s", k, len(ws), strings.Join(ws, ", "))
			}
		}
	}
	senders.mu.Unlock()
	if sum.Lost > 10 {
		violate("%d acknowledged samples in no shard in all", sum.Lost)
	}
	if sum.Twice > 10 {
		violate("%d samples stored more than once in all", sum.Twice)
	}

	// Jobs: every job a trigger started is known and ended.
	known := map[string]bool{}
	for _, j := range jobs {
		known[j.ID] = true
		sum.JobPhases[j.Phase]++
		if !j.done() {
			sum.JobsActive++
		}
	}
	startedMu.Lock()
	sum.JobsStarted = len(started)
	for id := range started {
		if !known[id] {
			violate("job %s was started (202) but the controller does not know it", id)
		}
	}
	startedMu.Unlock()
	sum.JobsSeen = len(jobs)
	sum.JobsResumed = controller.readySum("resumed_jobs")

	// Versions: no two with the same model digest; each promoted job owns its version alone.
	versions, err := versionDigests(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	sum.Versions = len(versions)
	bySHA := map[string][]int64{}
	for v, sha := range versions {
		bySHA[sha] = append(bySHA[sha], v)
	}
	for sha, vs := range bySHA {
		if len(vs) > 1 {
			sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
			sum.DuplicateVersions += len(vs) - 1
			violate("versions %v are one model published more than once (model.onnx sha256 %s)", vs, sha)
		}
	}
	owner := map[int64]string{}
	for _, j := range jobs {
		if j.Phase != "promoted" {
			continue
		}
		if _, ok := versions[j.Version]; !ok {
			violate("job %s promoted version %d, which the repository does not have", j.ID, j.Version)
		}
		if o, ok := owner[j.Version]; ok {
			violate("jobs %s and %s both claim version %d", o, j.ID, j.Version)
		}
		owner[j.Version] = j.ID
	}

	// Enough happened for the result to mean something.
	minAcked := int(300 * cfg.duration.Minutes() / 2)
	if sum.Acknowledged < minAcked {
		violate("too little traffic: %d samples acknowledged, want at least %d", sum.Acknowledged, minAcked)
	}
	if sum.KillsTotal < 4 {
		violate("too few kills: %d, want at least 4", sum.KillsTotal)
	}
	for _, kind := range []string{"exporter", "collector", "minio", "controller"} {
		if sum.Kills[kind] == 0 {
			violate("no %s was killed", kind)
		}
	}
	if sum.JobsStarted == 0 {
		violate("no retrain job started")
	}
	for _, e := range edges {
		sum.Requests += e.requests.Load()
		sum.Answered += e.answered.Load()
		sum.RequestErrors += e.requestError.Load()
	}
	sum.Violations = violations
	sum.Result = "pass"
	if len(violations) > 0 {
		sum.Result = "fail"
	}
	out, _ := json.MarshalIndent(sum, "", "  ")
	t.Logf("chaos soak summary:\n%s", out)
	if cfg.summary != "" {
		if err := os.WriteFile(cfg.summary, append(out, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, v := range violations {
		t.Error(v)
	}
}

func mustStart(t *testing.T, c *component) {
	t.Helper()
	if err := c.start(t, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.tail(8000))
	}
}

// restart starts c again, three tries (a port in TIME_WAIT, MinIO down for a collector that
// checks its bucket at start).
func restart(c *component) error {
	var err error
	for range 3 {
		if err = c.start(nopTB{}, 60*time.Second); err == nil {
			return nil
		}
		c.kill()
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%s: %w\n%s", c.name, err, c.tail(4000))
}

// nopTB lets component.start run off the test's goroutine, where t.Fatal is not allowed.
type nopTB struct{ testing.TB }

func (nopTB) Helper() {}

// operator sends an operator request to the controller.
func operator(method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+retrainToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// jobView is what the soak reads of a job (retrain.Job's JSON).
type jobView struct {
	ID      string `json:"id"`
	Phase   string `json:"phase"`
	Version int64  `json:"version"`
	Error   string `json:"error"`
}

func (j jobView) done() bool {
	switch j.Phase {
	case "promoted", "rejected", "failed", "timed_out", "cancelled", "error":
		return true
	}
	return false
}

func listJobs(retrainURL string) ([]jobView, error) {
	code, body, err := operator(http.MethodGet, retrainURL+"/v1/jobs", "")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/jobs: %d %s", code, body)
	}
	var res struct {
		Jobs []jobView `json:"jobs"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, err
	}
	return res.Jobs, nil
}

// shardKeys reads every shard tar under samples/ and returns, for each sample key, the
// shards that hold it (a key twice in one shard is listed twice).
func shardKeys(ctx context.Context, b objstore.Bucket) (map[string][]string, int, error) {
	objects, err := objstore.List(ctx, b, "samples/", true)
	if err != nil {
		return nil, 0, err
	}
	where := map[string][]string{}
	shards := 0
	for _, k := range objects {
		if !strings.HasSuffix(k, ".tar") {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, b, k, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", k, err)
		}
		shards++
		names, err := tarNames(data)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", k, err)
		}
		for _, n := range names {
			if key, ok := strings.CutSuffix(n, ".json"); ok {
				where[key] = append(where[key], k)
			}
		}
	}
	return where, shards, nil
}

func tarNames(data []byte) ([]string, error) {
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return names, err
		}
		names = append(names, h.Name)
	}
}

// versionDigests returns each published version's model.onnx digest from its manifest (a
// version exists once its manifest does, docs/model-repository.md).
func versionDigests(ctx context.Context, b objstore.Bucket) (map[int64]string, error) {
	objects, err := objstore.List(ctx, b, "models/"+modelName+"/", true)
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	for _, k := range objects {
		rest, ok := strings.CutPrefix(k, "models/"+modelName+"/")
		if !ok {
			continue
		}
		vs, file, ok := strings.Cut(rest, "/")
		if !ok || file != modelrepo.ManifestFile {
			continue
		}
		v, err := strconv.ParseInt(vs, 10, 64)
		if err != nil {
			continue
		}
		data, _, err := objstore.ReadAll(ctx, b, k, 0)
		if err != nil {
			return nil, err
		}
		mf, err := modelrepo.ParseManifest(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[v] = mf.Files["model.onnx"].SHA256
	}
	return out, nil
}

// metricSum sums every series of the metric name in a /metrics page.
func metricSum(url, name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return -1, fmt.Errorf("%s: %q", name, line)
		}
		sum += v
		found = true
	}
	if !found {
		return -1, fmt.Errorf("no %s at %s", name, url)
	}
	return sum, sc.Err()
}

// waitUntil polls cond every 250ms until it holds ("" returned) or timeout passes (its last
// explanation returned).
func waitUntil(timeout time.Duration, cond func() (bool, string)) string {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return ""
		}
		if time.Now().After(deadline) {
			if why == "" {
				why = "timed out"
			}
			return why
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr returns a loopback address whose port is free now, for a process that must keep
// its address across restarts.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }
