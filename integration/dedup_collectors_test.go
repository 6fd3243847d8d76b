//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/internal/token"
)

// The floors of TestDedupAcrossCollectors: a run below them fails rather than passing on next
// to nothing.
const (
	minDedupAcked        = 1500
	minDedupResentAcross = 20
	minDedupKills        = 4
)

// dedupInstance is one collector process of TestDedupAcrossCollectors, restarted in place.
type dedupInstance struct {
	name, addr, config string
	proc               *process
}

// TestDedupAcrossCollectors runs two collector processes on one MinIO bucket (docs/collector.md,
// "Dedup across collectors"). Senders route each batch to a random instance; after a failure
// (no answer, or an answer the test throws away as lost) they send the same batch again to a
// random instance, often the other one. Meanwhile one instance or the other is killed with
// SIGKILL and restarted. In the end every acknowledged sample must be in exactly one shard:
// in one index line, and in one tar.
func TestDedupAcrossCollectors(t *testing.T) {
	m := testenv.StartMinIO(t)
	s3 := objstore.DefaultS3Config()
	s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Insecure, s3.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, true, "edgeloop"
	ctx := context.Background()
	if err := objstore.CreateS3Bucket(ctx, s3); err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewS3(s3)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}
	dir := t.TempDir()
	nodes := []string{"edge-d0", "edge-d1", "edge-d2", "edge-d3"}
	tokens := collectortest.TokensFile(t, dir, nodes...)
	operators := filepath.Join(dir, "operators")
	if err := os.WriteFile(operators, []byte(token.HashLine("ops", operatorToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var insts []*dedupInstance
	for _, name := range []string{"ca", "cb"} {
		in := &dedupInstance{name: name, addr: freeAddr(t), config: filepath.Join(dir, name+".yaml")}
		content := fmt.Sprintf(`instance: %s
listen: %q
log:
  format: json
  level: info
auth:
  tokens_file: %s
  operator_tokens_file: %s
bucket: s3://edgeloop?endpoint=%s&insecure=true
wal:
  dir: %s
  segment_bytes: 262144
shards:
  target_bytes: 262144
  max_age: 1s
  upload_timeout: 5s
  retry:
    initial_backoff: 100ms
    max_backoff: 500ms
catalog:
  rebuild_interval: 2s
`, name, in.addr, tokens, operators, m.Endpoint, filepath.Join(dir, name, "wal"))
		if err := os.WriteFile(in.config, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		in.proc = startEnv(t, env, "collector", "--config", in.config)
		in.proc.waitFor(t, "collector started", 30*time.Second)
		insts = append(insts, in)
	}

	// post sends body to instance i: the status, 0 when no answer came.
	post := func(i int, node string, body []byte) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+insts[i].addr+"/v1/samples", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-tar")
		req.Header.Set("Content-Encoding", "zstd")
		req.Header.Set("Authorization", "Bearer "+collectortest.Token(node))
		req.Header.Set("X-Edgeloop-Node", node)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}

	var mu sync.Mutex
	acked := map[string]bool{}
	var sent, resentAcross, lost, kills atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ni, node := range nodes {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(ni)))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var batch []*sample.Sample
				for j := range 8 {
					batch = append(batch, collectortest.Sample(t, node, n*8+j, 1024))
				}
				var tb bytes.Buffer
				if err := sample.WriteTar(&tb, batch); err != nil {
					t.Error(err)
					return
				}
				body := collectortest.Zstd(t, tb.Bytes())
				sent.Add(1)
				last := -1
				for attempt := 0; ; attempt++ {
					i := rng.IntN(len(insts))
					if last >= 0 && i != last {
						resentAcross.Add(1)
					}
					last = i
					code := post(i, node, body)
					if code == 200 && attempt == 0 && rng.IntN(4) == 0 {
						// The answer is lost on the way back: the node sends the batch again,
						// to whichever instance the load balancer picks.
						lost.Add(1)
						continue
					}
					if code == 200 {
						break
					}
					select {
					case <-stop:
						return // never acknowledged: not counted
					case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
					}
				}
				mu.Lock()
				for _, s := range batch {
					acked[s.Meta.Key] = true
				}
				mu.Unlock()
			}
		})
	}
	// Kill one instance or the other with SIGKILL during ingest and upload, and restart it.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 99))
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(1500+rng.IntN(1500)) * time.Millisecond)
		in := insts[rng.IntN(len(insts))]
		_ = syscall.Kill(in.proc.cmd.Process.Pid, syscall.SIGKILL)
		<-in.proc.done
		_ = in.proc.cmd.Wait()
		kills.Add(1)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		in.proc = startEnv(t, env, "collector", "--config", in.config)
		in.proc.waitFor(t, "collector started", 30*time.Second)
	}
	close(stop)
	wg.Wait()
	drainStart := time.Now()
	// Both instances drain their logs: every acknowledged sample is then in an uploaded shard.
	for _, in := range insts {
		e := &collectorEnv{addr: in.addr}
		e.waitDrained(t, 90*time.Second)
	}
	t.Logf("drained in %s", time.Since(drainStart).Round(time.Millisecond))
	dropped := 0.0
	for _, in := range insts {
		e := &collectorEnv{addr: in.addr}
		dropped += max(0, e.metric("edgeloop_collector_shard_duplicates_dropped_total"))
	}

	// Every key: the shards whose index lists it, and the tars that hold it.
	inIndex := map[string][]string{}
	inTar := map[string][]string{}
	keys, err := objstore.List(ctx, bucket, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	shards := 0
	for _, k := range keys {
		data, _, err := objstore.ReadAll(ctx, bucket, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		if base, ok := strings.CutSuffix(k, ".index.jsonl"); ok {
			shards++
			for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				var ie sample.IndexEntry
				if err := json.Unmarshal(line, &ie); err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				inIndex[ie.Key] = append(inIndex[ie.Key], base)
			}
			continue
		}
		base, ok := strings.CutSuffix(k, ".tar")
		if !ok {
			continue
		}
		if exists, _ := bucket.Exists(ctx, base+".index.jsonl"); !exists {
			continue // a tar whose index was never written does not exist for readers
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
			if key, ok := strings.CutSuffix(h.Name, ".json"); ok {
				inTar[key] = append(inTar[key], base)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("read the bucket in %s", time.Since(drainStart).Round(time.Millisecond))
	t.Logf("%d batches sent, %d acknowledged samples, %d answers thrown away as lost, %d resends to the other instance, %d kills; %d shards; samples left out at publish %v (the instances' last lives only)",
		sent.Load(), len(acked), lost.Load(), resentAcross.Load(), kills.Load(), shards, dropped)
	missing, twice := 0, 0
	for k := range acked {
		if len(inIndex[k]) != 1 || len(inTar[k]) != 1 {
			if len(inIndex[k]) == 0 || len(inTar[k]) == 0 {
				missing++
			} else {
				twice++
			}
			if missing+twice <= 5 {
				t.Errorf("acknowledged key %s: in the indexes of %v, in the tars of %v; want one shard", k, inIndex[k], inTar[k])
			}
		}
	}
	for k, where := range inIndex {
		if len(where) > 1 && !acked[k] {
			twice++
			t.Errorf("key %s (not acknowledged) in %d shards: %v", k, len(where), where)
		}
	}
	if missing > 0 || twice > 0 {
		t.Fatalf("%d of %d acknowledged keys missing, %d keys in more than one shard", missing, len(acked), twice)
	}
	if len(acked) < minDedupAcked || resentAcross.Load() < minDedupResentAcross || kills.Load() < minDedupKills {
		t.Fatalf("exercised too little: %d acknowledged samples (want ≥ %d), %d resends across instances (want ≥ %d), %d kills (want ≥ %d)",
			len(acked), minDedupAcked, resentAcross.Load(), minDedupResentAcross, kills.Load(), minDedupKills)
	}
}
