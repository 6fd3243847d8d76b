package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/catalog/catalogtest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// countingBucket counts the reads of shard indexes, what FindRequest pays per lookup (Rebuild
// reads them concurrently).
type countingBucket struct {
	objstore.Bucket
	indexReads atomic.Int64
}

func (b *countingBucket) Get(ctx context.Context, key string) (io.ReadCloser, objstore.Attributes, error) {
	if strings.HasSuffix(key, catalog.IndexSuffix) {
		b.indexReads.Add(1)
	}
	return b.Bucket.Get(ctx, key)
}

// TestFindRequest fills a bucket with samples from requests with and without ids, one of them
// re-uploaded in a second shard and one id shared by two nodes, and checks what FindRequest
// finds for each id, what it reads, and how a shard added by the builder's hook is found.
func TestFindRequest(t *testing.T) {
	ctx := context.Background()
	fs, _ := newFS(t)
	b := &countingBucket{Bucket: fs}
	s := func(seed int, node, id string) *sample.Sample {
		return catalogtest.SampleOf(t, "fashion", "3", "random", 1, seed, node, id)
	}
	one, two, none := s(0, "edge-0001", "r-1"), s(1, "edge-0001", "shared"), s(2, "edge-0001", "")
	twoElsewhere, rowOf := s(3, "edge-0002", "shared"), s(4, "edge-0002", "batch-7#1")
	catalogtest.PutShard(t, b, shardA, []*sample.Sample{one, two, none})
	// B holds "one" again (a shard re-uploaded after a crash): it is found once, in A.
	catalogtest.PutShard(t, b, shardB, []*sample.Sample{one, twoElsewhere})
	catalogtest.PutShard(t, b, shardC, []*sample.Sample{catalogtest.SampleOf(t, "fashion", "4", "drift", 2, 5, "edge-0003", "")})
	c, err := catalog.New(catalog.Options{Bucket: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	ref := func(s *sample.Sample, shard string) catalog.SampleRef {
		m := s.Meta
		return catalog.SampleRef{Key: m.Key, RequestID: m.RequestID, Model: m.Model, Version: m.Version, Node: m.Node, Time: m.Time, Shard: shard}
	}
	tests := []struct {
		id        string
		want      []catalog.SampleRef
		wantReads int64
	}{
		{id: "r-1", want: []catalog.SampleRef{ref(one, shardA)}, wantReads: 1},
		{id: "shared", want: []catalog.SampleRef{ref(two, shardA), ref(twoElsewhere, shardB)}, wantReads: 2},
		{id: "unknown", wantReads: 0},
		{id: "", wantReads: 0},
		{id: "r-", wantReads: 0},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			b.indexReads.Store(0)
			got, partial, err := c.FindRequest(ctx, tt.id)
			if err != nil || partial {
				t.Fatalf("FindRequest(%q) = %v, partial %v", tt.id, err, partial)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("FindRequest(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
			if n := b.indexReads.Load(); n != tt.wantReads {
				t.Errorf("FindRequest(%q) read %d shard indexes, want %d", tt.id, n, tt.wantReads)
			}
		})
	}

	// The builder's hook: a shard just uploaded is found without a Rebuild.
	shardD := "samples/fashion/3/dt=2026-03-14/hour=15/c0-00000000000000000010.tar"
	entries := catalogtest.PutShard(t, b, shardD, []*sample.Sample{rowOf})
	c.AddShard(ctx, shardD, entries)
	if got, _, err := c.FindRequest(ctx, "batch-7#1"); err != nil || len(got) != 1 || got[0] != ref(rowOf, shardD) {
		t.Errorf("FindRequest after AddShard = %+v, %v", got, err)
	}
	if got, _, _ := c.FindRequest(ctx, "batch-7"); len(got) != 0 {
		t.Errorf("a batch's id found %+v: rows are found by <id>#<row> only", got)
	}
}

// TestFindRequestPartial: an id in more shards than MaxRequestShards is answered from the
// first of them, and the answer says it is partial.
func TestFindRequestPartial(t *testing.T) {
	ctx := context.Background()
	b, _ := newFS(t)
	n := catalog.MaxRequestShards + 3
	for i := range n {
		key := fmt.Sprintf("samples/fashion/3/dt=2026-03-14/hour=15/c0-%020d.tar", i+1)
		catalogtest.PutShard(t, b, key, []*sample.Sample{catalogtest.SampleOf(t, "fashion", "3", "random", 1, i, fmt.Sprintf("edge-%04d", i), "1")})
	}
	c, _ := catalog.New(catalog.Options{Bucket: b})
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	got, partial, err := c.FindRequest(ctx, "1")
	if err != nil || !partial || len(got) != catalog.MaxRequestShards {
		t.Fatalf("FindRequest = %d samples, partial %v, %v; want %d, partial", len(got), partial, err, catalog.MaxRequestShards)
	}
}

func TestSamplesHandler(t *testing.T) {
	ctx := context.Background()
	b, _ := newFS(t)
	found := catalogtest.SampleOf(t, "fashion", "3", "random", 1, 0, "edge-0001", "req-9")
	catalogtest.PutShard(t, b, shardA, []*sample.Sample{found, catalogtest.Sample(t, "fashion", "3", "random", 1, 1)})
	c, _ := catalog.New(catalog.Options{Bucket: b})
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
	get := func(query, token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/samples"+query, nil)
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
	if code, body := get("?request_id=req-9", "op"); code != http.StatusServiceUnavailable {
		t.Fatalf("before Rebuild: %d %s, want 503", code, body)
	}
	if err := c.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query, token string
		code         int
		contains     string
	}{
		{"?request_id=req-9", "", http.StatusUnauthorized, ""},
		{"?request_id=req-9", "op", http.StatusOK, `"key": "` + found.Meta.Key + `"`},
		{"", "op", http.StatusBadRequest, "request_id: missing"},
		{"?request_id=", "op", http.StatusBadRequest, "request_id: missing"},
		{"?request_id=" + strings.Repeat("x", catalog.MaxRequestID+1), "op", http.StatusBadRequest, "longer than the 256"},
		{"?request_id=a%0Ab", "op", http.StatusBadRequest, "control characters"},
		{"?request_id=req-8", "op", http.StatusNotFound, `no sample with request_id \"req-8\"`},
	} {
		code, body := get(tc.query, tc.token)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("GET /v1/samples%.60s = %d %s, want %d with %s", tc.query, code, body, tc.code, tc.contains)
		}
	}
	_, body := get("?request_id=req-9", "op")
	var ans catalog.RequestAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	want := catalog.SampleRef{Key: found.Meta.Key, RequestID: "req-9", Model: "fashion", Version: "3", Node: "edge-0001", Time: found.Meta.Time, Shard: shardA}
	if ans.RequestID != "req-9" || ans.Partial || len(ans.Samples) != 1 || !ans.Samples[0].Time.Equal(want.Time) {
		t.Fatalf("answer %+v, want %+v", ans, want)
	}
	ans.Samples[0].Time = want.Time
	if ans.Samples[0] != want {
		t.Errorf("sample %+v, want %+v", ans.Samples[0], want)
	}
}
