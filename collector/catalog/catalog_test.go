package catalog_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/catalog/catalogtest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

const (
	shardA = "samples/fashion/3/dt=2026-03-14/hour=15/c0-00000000000000000001.tar"
	shardB = "samples/fashion/3/dt=2026-03-14/hour=15/c0-00000000000000000009.tar"
	shardC = "samples/fashion/4/dt=2026-03-14/hour=16/c1-00000000000000000001.tar"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newFS(t *testing.T) (objstore.Bucket, string) {
	dir := t.TempDir()
	b, err := objstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dir
}

func TestCatalogFS(t *testing.T) {
	b, _ := newFS(t)
	testCatalog(t, b)
}

func TestCatalogMinIO(t *testing.T) {
	endpoint, access, secret := testenv.MinIO(t)
	cfg := objstore.S3Config{Endpoint: endpoint, Bucket: "catalog", AccessKey: access, SecretKey: secret, Insecure: true, PartSize: objstore.DefaultPartSize}
	if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testCatalog(t, b)
}

// testCatalog fills a bucket as two collector instances would, one of them crashing and
// uploading a sample twice, and checks every view a fresh catalog gives of it.
func testCatalog(t *testing.T, b objstore.Bucket) {
	ctx := context.Background()
	s := func(reason string, pred, seed int) *sample.Sample {
		return catalogtest.Sample(t, "fashion", "3", reason, pred, seed)
	}
	a := []*sample.Sample{s("low_confidence", 4, 0), s("low_confidence", 4, 1), s("random", 1, 2)}
	entriesA := catalogtest.PutShard(t, b, shardA, a)
	// B holds one sample of A again (re-uploaded after a crash) and a new one.
	catalogtest.PutShard(t, b, shardB, []*sample.Sample{a[2], s("random", 4, 3)})
	// Neither a shard index nor a shard: ignored.
	for _, k := range []string{"samples/fashion/3/notes.txt", "samples/fashion/odd.index.jsonl"} {
		if err := b.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}

	clk := &clock{time.Now().Add(10 * time.Minute)}
	c, err := catalog.New(catalog.Options{Bucket: b, Settle: time.Minute, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	// The live hook first (what this instance uploaded), then the bucket (the other's).
	c.AddShard(ctx, shardA, entriesA)
	if c.Synced() {
		t.Fatal("Synced before any Rebuild")
	}
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	c.AddShard(ctx, shardA, entriesA) // again: ignored
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}

	st, err := c.Stats("fashion", "3", "")
	if err != nil {
		t.Fatal(err)
	}
	bytesOf := func(ss ...*sample.Sample) int64 {
		var n int64
		for _, s := range ss {
			n += s.Index().Bytes
		}
		return n
	}
	b3 := s("random", 4, 3)
	if st.Total.Samples != 4 || st.Total.Shards != 2 || st.Total.Bytes != bytesOf(append(a, b3)...) {
		t.Errorf("total = %+v, want 4 distinct samples in 2 shards", st.Total.Counts)
	}
	if got := st.Total.ByReason; got["low_confidence"].Samples != 2 || got["random"].Samples != 2 || len(got) != 2 {
		t.Errorf("by reason = %+v", got)
	}
	if got := st.Total.ByClass; got["Coat"].Samples != 3 || got["1"].Samples != 1 || len(got) != 2 {
		t.Errorf("by class = %+v", got)
	}
	if st.New.Samples != 4 || st.Watermark == "" {
		t.Errorf("new since the beginning = %+v, watermark %q; want everything", st.New.Counts, st.Watermark)
	}
	// Nothing uploaded since: nothing new, and the watermark does not go back.
	st2, err := c.Stats("fashion", "3", st.Watermark)
	if err != nil || st2.New.Samples != 0 || st2.Watermark < st.Watermark {
		t.Errorf("Stats(since %s) = new %+v, watermark %q, %v", st.Watermark, st2.New.Counts, st2.Watermark, err)
	}

	if got := c.Models(); len(got) != 1 || got[0].Model != "fashion" || got[0].Samples != 4 || got[0].Versions != 1 {
		t.Errorf("Models = %+v", got)
	}
	if sh, ok := c.Locate(a[2].Meta.Key); !ok || sh.Key != shardA {
		t.Errorf("Locate(duplicated sample) = %+v, %v; want shard A, where it was first seen", sh, ok)
	}
	if sh, ok := c.Locate(b3.Meta.Key); !ok || sh.Key != shardB || sh.Samples != 2 || sh.Unique != 1 {
		t.Errorf("Locate = %+v, %v; want shard B with 2 samples, 1 unique", sh, ok)
	}
	if _, ok := c.Locate(strings.Repeat("0", 32)); ok {
		t.Error("Locate found an unknown key")
	}
	// Time ranges: A spans seconds 0-2, B 2-3.
	base := catalogtest.Base
	for _, r := range []struct {
		from, to time.Time
		want     []string
	}{
		{time.Time{}, time.Time{}, []string{shardA, shardB}},
		{base.Add(3 * time.Second), time.Time{}, []string{shardB}},
		{time.Time{}, base.Add(time.Second), []string{shardA}},
		{base.Add(time.Hour), time.Time{}, nil},
	} {
		var got []string
		for _, sh := range c.Shards("fashion", "3", r.from, r.to) {
			got = append(got, sh.Key)
		}
		if strings.Join(got, ",") != strings.Join(r.want, ",") {
			t.Errorf("Shards(%v, %v) = %q, want %q", r.from, r.to, got, r.want)
		}
	}
	entries, err := c.Entries(ctx, shardB)
	if err != nil || len(entries) != 2 || entries[1].Key != b3.Meta.Key {
		t.Errorf("Entries(B) = %+v, %v", entries, err)
	}
}

// TestWatermark checks that a shard is new exactly once: not while it settles, then in the
// next answer, and not after.
func TestWatermark(t *testing.T) {
	ctx := context.Background()
	b, dir := newFS(t)
	start := time.Now().Truncate(time.Second)
	entries := catalogtest.PutShard(t, b, shardA, []*sample.Sample{catalogtest.Sample(t, "fashion", "3", "random", 1, 0)})
	clk := &clock{start.Add(5 * time.Minute)}
	c, _ := catalog.New(catalog.Options{Bucket: b, Settle: time.Minute, Now: clk.now})
	c.AddShard(ctx, shardA, entries)
	st, _ := c.Stats("fashion", "3", "")
	if st.New.Samples != 1 {
		t.Fatalf("first answer: new %+v", st.New.Counts)
	}
	w := st.Watermark

	// The next shard's upload is dated 10 minutes on (the store's clock).
	late := catalogtest.Sample(t, "fashion", "3", "random", 1, 1)
	entries = catalogtest.PutShard(t, b, shardB, []*sample.Sample{late})
	up := start.Add(10 * time.Minute)
	if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(shardB, ".tar")+".index.jsonl")), up, up); err != nil {
		t.Fatal(err)
	}
	c.AddShard(ctx, shardB, entries)
	for _, step := range []struct {
		now  time.Duration // after start
		want int64
	}{
		{10*time.Minute + 30*time.Second, 0}, // still settling
		{11 * time.Minute, 1},                // settled: new once
		{20 * time.Minute, 0},                // and never again
	} {
		clk.t = start.Add(step.now)
		st, err := c.Stats("fashion", "3", w)
		if err != nil {
			t.Fatal(err)
		}
		if st.New.Samples != step.want {
			t.Errorf("at start+%v since %s: new %d, want %d", step.now, w, st.New.Samples, step.want)
		}
		w = st.Watermark
	}
	if _, err := c.Stats("fashion", "3", "yesterday"); err == nil {
		t.Error("Stats accepted a watermark it never handed out")
	}
}

func TestUnreadableIndex(t *testing.T) {
	ctx := context.Background()
	b, _ := newFS(t)
	catalogtest.PutShard(t, b, shardA, []*sample.Sample{catalogtest.Sample(t, "fashion", "3", "random", 1, 0)})
	bad := "samples/fashion/3/dt=2026-03-14/hour=15/c0-00000000000000000002.index.jsonl"
	if err := b.Put(ctx, bad, strings.NewReader("{not json\n"), 10); err != nil {
		t.Fatal(err)
	}
	c, _ := catalog.New(catalog.Options{Bucket: b})
	if err := c.Rebuild(ctx); err != nil {
		t.Fatalf("Rebuild with one bad index = %v, want it skipped", err)
	}
	if vers, err := c.Versions("fashion"); err != nil || len(vers) != 1 || vers[0].Samples != 1 {
		t.Fatalf("Versions = %+v, %v", vers, err)
	}
	c.AddShard(ctx, "not/a/shard.tar", nil) // logged, not recorded
	if len(c.Models()) != 1 {
		t.Fatal("a malformed shard key was recorded")
	}
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	b, _ := newFS(t)
	catalogtest.PutShard(t, b, shardA, []*sample.Sample{
		catalogtest.Sample(t, "fashion", "3", "low_confidence", 4, 0),
		catalogtest.Sample(t, "fashion", "3", "random", 1, 1),
	})
	catalogtest.PutShard(t, b, shardC, []*sample.Sample{catalogtest.Sample(t, "fashion", "4", "drift", 2, 7200)})
	c, _ := catalog.New(catalog.Options{Bucket: b, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	operator := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer op" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(c.Handler(operator))
	defer srv.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/v1/catalog", "op"); code != http.StatusServiceUnavailable {
		t.Fatalf("before Rebuild: %d %s, want 503", code, body)
	}
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, token string
		code        int
		contains    []string
	}{
		{"/v1/catalog", "", http.StatusUnauthorized, nil},
		{"/v1/catalog", "op", http.StatusOK, []string{`"model": "fashion"`, `"versions": 2`, `"samples": 3`}},
		{"/v1/catalog/", "op", http.StatusOK, []string{`"model": "fashion"`}},
		{"/v1/catalog/fashion", "op", http.StatusOK, []string{`"version": "3"`, `"version": "4"`}},
		{"/v1/catalog/nothing", "op", http.StatusNotFound, []string{"not in the catalog"}},
		{"/v1/catalog/fashion/3", "op", http.StatusOK, []string{`"low_confidence": {`, `"Coat": {`, `"watermark": "`}},
		{"/v1/catalog/fashion/9", "op", http.StatusNotFound, nil},
		{"/v1/catalog/fashion/3?since=abc", "op", http.StatusBadRequest, []string{"since: invalid watermark"}},
		{"/v1/catalog/fashion/4/shards", "op", http.StatusOK, []string{shardC}},
		{"/v1/catalog/fashion/3/shards?from=2026-03-14T16:00:00Z", "op", http.StatusOK, []string{`"shards": []`}},
		{"/v1/catalog/fashion/3/shards?from=2026-03-14T15:00:00Z&to=2026-03-14T15:00:00Z", "op", http.StatusOK, []string{shardA}},
		{"/v1/catalog/fashion/3/shards?from=yesterday", "op", http.StatusBadRequest, []string{"from: want an RFC 3339 time"}},
		{"/v1/catalog/fashion/3/shards?from=2026-03-15T00:00:00Z&to=2026-03-14T00:00:00Z", "op", http.StatusBadRequest, []string{"to is before from"}},
	} {
		code, body := get(tc.path, tc.token)
		if code != tc.code {
			t.Errorf("GET %s = %d %s, want %d", tc.path, code, body, tc.code)
			continue
		}
		for _, want := range tc.contains {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s = %s, want it to contain %s", tc.path, body, want)
			}
		}
		if code == http.StatusOK && !json.Valid([]byte(body)) {
			t.Errorf("GET %s: invalid JSON %s", tc.path, body)
		}
	}

	bytes3 := catalogtest.Sample(t, "fashion", "3", "low_confidence", 4, 0).Index().Bytes + catalogtest.Sample(t, "fashion", "3", "random", 1, 1).Index().Bytes
	bytes4 := catalogtest.Sample(t, "fashion", "4", "drift", 2, 7200).Index().Bytes
	want := `
# HELP edgeloop_collector_catalog_bytes Bytes of distinct samples (metadata and input) in the object store by model and version.
# TYPE edgeloop_collector_catalog_bytes gauge
edgeloop_collector_catalog_bytes{model="fashion",version="3"} ` + itoa(bytes3) + `
edgeloop_collector_catalog_bytes{model="fashion",version="4"} ` + itoa(bytes4) + `
# HELP edgeloop_collector_catalog_samples Distinct samples in the object store by model, version and capture reason, as the catalog knows them.
# TYPE edgeloop_collector_catalog_samples gauge
edgeloop_collector_catalog_samples{model="fashion",reason="drift",version="4"} 1
edgeloop_collector_catalog_samples{model="fashion",reason="low_confidence",version="3"} 1
edgeloop_collector_catalog_samples{model="fashion",reason="random",version="3"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
