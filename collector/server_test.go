package collector

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/auth"
	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/npy"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// minioBucket starts MinIO and returns a fresh bucket on it.
func minioBucket(t *testing.T) objstore.Bucket {
	t.Helper()
	endpoint, ak, sk := testenv.MinIO(t)
	cfg := objstore.DefaultS3Config()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Insecure, cfg.Bucket = endpoint, ak, sk, true, "edgeloop"
	if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testConfig(t *testing.T, nodes ...string) Config {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Instance = "test"
	cfg.Web.Listen = "127.0.0.1:0"
	cfg.Bucket = "file://" + dir + "/unused"
	cfg.Auth.TokensFile = collectortest.TokensFile(t, dir, nodes...)
	cfg.WAL.Dir = filepath.Join(dir, "wal")
	cfg.Shards.MaxAge = 300 * time.Millisecond
	cfg.Shards.TargetBytes = 64 << 10
	cfg.Shards.Retry.InitialBackoff = 50 * time.Millisecond
	cfg.Shards.Retry.MaxBackoff = 200 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func post(t *testing.T, addr, node string, samples []*sample.Sample) ingestResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/samples", bytes.NewReader(collectortest.Zstd(t, collectortest.Tar(t, samples...))))
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+collectortest.Token(node))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r ingestResult
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
		t.Fatalf("post: status %d", resp.StatusCode)
	}
	return r
}

type ingestResult struct {
	Accepted, Duplicates int
	Rejected             []map[string]string
}

// TestShardsOnMinIO sends samples of two models and two hours through a collector into MinIO
// and reads the shards back as a trainer would: every shard is a plain tar whose inputs are
// valid .npy arrays, its index lists exactly its members, and every sample is in one shard.
func TestShardsOnMinIO(t *testing.T) {
	bucket := minioBucket(t)
	cfg := testConfig(t, "edge-a", "edge-b")
	var mu sync.Mutex
	hooked := map[string][]sample.IndexEntry{}
	routed := false
	srv, err := New(cfg, Options{Bucket: bucket,
		OnShard: func(_ context.Context, key string, entries []sample.IndexEntry) {
			mu.Lock()
			hooked[key] = entries
			mu.Unlock()
		},
		Routes: func(mux *http.ServeMux, a *auth.Auth) {
			routed = true
			mux.Handle("GET /v1/whoami", a.RequireNode(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, _ := auth.NodeFrom(r.Context())
				w.Write([]byte(n))
			})))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if !routed {
		t.Fatal("Routes not called")
	}

	want := map[string]*sample.Sample{}
	for _, node := range []string{"edge-a", "edge-b"} {
		var batch []*sample.Sample
		for i := range 60 {
			s := collectortest.Sample(t, node, i, 1000+i*40)
			if i%3 == 0 { // another model
				m := s.Meta
				m.Model, m.Key = "digits", ""
				s, _ = sample.New(m, s.Input)
			}
			if i%4 == 0 { // another hour
				m := s.Meta
				m.Time, m.Key = m.Time.Add(time.Hour), ""
				s, _ = sample.New(m, s.Input)
			}
			want[s.Meta.Key] = s
			batch = append(batch, s)
		}
		if r := post(t, srv.Addr(), node, batch); r.Accepted != len(batch) {
			t.Fatalf("accepted %d of %d: %+v", r.Accepted, len(batch), r.Rejected)
		}
	}
	waitDrained(t, srv)

	seen := map[string]string{}
	keys, err := objstore.List(ctx, bucket, "samples/", true)
	if err != nil {
		t.Fatal(err)
	}
	shards := 0
	for _, key := range keys {
		base, ok := strings.CutSuffix(key, ".tar")
		if !ok {
			continue
		}
		shards++
		if !slices.Contains(keys, base+".index.jsonl") {
			t.Fatalf("%s has no index", key)
		}
		checkShard(t, bucket, base, want, seen)
		mu.Lock()
		if len(hooked[key]) == 0 {
			t.Errorf("OnShard not called for %s", key)
		}
		mu.Unlock()
	}
	if len(seen) != len(want) {
		t.Fatalf("%d samples in shards, sent %d", len(seen), len(want))
	}
	if shards < 4 {
		t.Fatalf("%d shards for 2 models × 2 hours", shards)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "samples/fashion/3/dt=2026-03-14/hour=1") && !strings.HasPrefix(k, "samples/digits/3/dt=2026-03-14/hour=1") {
			t.Errorf("unexpected key %s", k)
		}
	}

	// The mounted route is behind node auth.
	req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+collectortest.Token("edge-b"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "edge-b" {
		t.Fatalf("whoami: %d %q", resp.StatusCode, body)
	}
}

// waitDrained waits until the log is empty: every sample is in an uploaded shard.
func waitDrained(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for srv.WALStats().Records > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("log not drained: %+v", srv.WALStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkShard reads base.tar with archive/tar and base.index.jsonl, checking each against the
// other and against the samples sent.
func checkShard(t *testing.T, b objstore.Bucket, base string, want map[string]*sample.Sample, seen map[string]string) {
	t.Helper()
	ctx := context.Background()
	tarData, _, err := objstore.ReadAll(ctx, b, base+".tar", 0)
	if err != nil {
		t.Fatal(err)
	}
	indexData, _, err := objstore.ReadAll(ctx, b, base+".index.jsonl", 0)
	if err != nil {
		t.Fatal(err)
	}
	members := map[string][]byte{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(tarData))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s.tar: %v", base, err)
		}
		data, _ := io.ReadAll(tr)
		members[h.Name] = data
		order = append(order, h.Name)
		if strings.HasSuffix(h.Name, ".npy") {
			if _, err := npy.Read(bytes.NewReader(data)); err != nil {
				t.Fatalf("%s: %s: %v", base, h.Name, err)
			}
		}
	}
	var entries []sample.IndexEntry
	sc := bufio.NewScanner(bytes.NewReader(indexData))
	for sc.Scan() {
		var e sample.IndexEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s index: %v", base, err)
		}
		entries = append(entries, e)
	}
	if 2*len(entries) != len(order) {
		t.Fatalf("%s: %d index lines for %d members", base, len(entries), len(order))
	}
	for i, e := range entries {
		if order[2*i] != e.Key+".json" || order[2*i+1] != e.Input {
			t.Fatalf("%s: index line %d (%s, %s) does not match members %s, %s", base, i, e.Key, e.Input, order[2*i], order[2*i+1])
		}
		if int64(len(members[order[2*i]])+len(members[order[2*i+1]])) != e.Bytes {
			t.Fatalf("%s: index line %d: %d bytes, members hold %d", base, i, e.Bytes, len(members[order[2*i]])+len(members[order[2*i+1]]))
		}
		s := want[e.Key]
		if s == nil || !bytes.Equal(members[e.Input], s.Input) || s.Index() != e {
			t.Fatalf("%s: %s is not a sample sent, or differs", base, e.Key)
		}
		if prev, dup := seen[e.Key]; dup {
			t.Fatalf("%s in two shards: %s and %s", e.Key, prev, base)
		}
		seen[e.Key] = base
		if !strings.Contains(base, "/"+s.Meta.Model+"/") || !strings.Contains(base, s.Meta.Time.UTC().Format("/dt=2006-01-02/hour=15/")) {
			t.Fatalf("%s holds %s of %s at %s", base, e.Key, s.Meta.Model, s.Meta.Time)
		}
	}
}
