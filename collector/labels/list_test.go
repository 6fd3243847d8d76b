package labels_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// stepClock is a clock a test moves.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// listed is what a test expects of one listed label.
type listed struct{ object, key, label, annotator string }

// TestListLabels posts labels through two collector instances over three days, on a directory
// bucket and on a real MinIO bucket, and reads them back with GET /v1/labels: every label once,
// in the order a training job reads the label files, across pages of every size; since skips
// earlier days and files; the cursor resumes exactly; bad parameters are refused by name.
func TestListLabels(t *testing.T) {
	for _, store := range []string{"file", "minio"} {
		t.Run(store, func(t *testing.T) {
			var b objstore.Bucket
			var err error
			if store == "minio" {
				endpoint, ak, sk := testenv.MinIO(t)
				cfg := objstore.DefaultS3Config()
				cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Insecure, cfg.Bucket = endpoint, ak, sk, true, "edgeloop"
				if err := objstore.CreateS3Bucket(context.Background(), cfg); err != nil {
					t.Fatal(err)
				}
				b, err = objstore.NewS3(cfg)
			} else {
				b, err = objstore.NewFS(t.TempDir())
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			testListLabels(t, b)
		})
	}
}

func testListLabels(t *testing.T, b objstore.Bucket) {
	cat, err := catalog.New(catalog.Options{Bucket: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk := &stepClock{}
	var srvs []*httptest.Server
	for _, inst := range []string{"c0", "c1"} {
		svc, err := labels.New(labels.Options{Bucket: b, Catalog: cat, Instance: inst, RequireOperator: operator, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(srv.Close)
		srvs = append(srvs, srv)
	}
	do := func(srv *httptest.Server, method, path, token, body string) (int, []byte) {
		t.Helper()
		f := &fixture{srv: srv}
		return f.do(t, method, path, token, body)
	}

	// Labels: 3 days, both instances, some keys labelled twice (the later label wins for a
	// trainer), one request with many lines to make pages end inside a file.
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	type post struct {
		inst int
		at   time.Time
		n    int
	}
	posts := []post{{0, day(14, 9), 2}, {1, day(14, 10), 3}, {0, day(15, 8), 25}, {1, day(15, 7), 1}, {0, day(16, 12), 4}, {1, day(16, 13), 2}}
	var want []listed
	for i, p := range posts {
		clk.set(p.at)
		var ls []map[string]any
		var lines []listed
		for j := range p.n {
			key := fmt.Sprintf("%032x", (i*100+j)%7) // few keys: relabelled across posts
			lab := fmt.Sprintf("class-%d-%d", i, j)
			ls = append(ls, map[string]any{"key": key, "label": lab, "source": "human", "annotator": fmt.Sprintf("ann-%d", i)})
			lines = append(lines, listed{key: key, label: lab, annotator: fmt.Sprintf("ann-%d", i)})
		}
		body, _ := json.Marshal(map[string]any{"model": "fashion", "labels": ls})
		code, ans := do(srvs[p.inst], http.MethodPost, "/v1/labels", "op", string(body))
		var stored struct{ Object string }
		if err := json.Unmarshal(ans, &stored); code != http.StatusCreated || err != nil {
			t.Fatalf("post %d: %d %s", i, code, ans)
		}
		for j := range lines {
			lines[j].object = stored.Object
		}
		want = append(want, lines...)
	}
	// The trainer's order: label files by key (day, then instance, then time), lines in order.
	sortByObject(want)

	// page reads every page of a listing and returns the labels and the number of pages.
	page := func(query string, limit int) ([]listed, int) {
		t.Helper()
		var got []listed
		after, pages := "", 0
		for {
			v, _ := url.ParseQuery(query)
			v.Set("limit", fmt.Sprint(limit))
			if after != "" {
				v.Set("after", after)
			}
			code, body := do(srvs[1], http.MethodGet, "/v1/labels?"+v.Encode(), "op", "")
			var p labels.ListPage
			if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil {
				t.Fatalf("%s after %q: %d %s", query, after, code, body)
			}
			pages++
			if len(p.Labels) > limit {
				t.Fatalf("a page of limit %d holds %d labels", limit, len(p.Labels))
			}
			for _, l := range p.Labels {
				if l.Source != "human" || l.Time.IsZero() {
					t.Fatalf("label %+v lacks its source or time", l)
				}
				got = append(got, listed{object: l.Object, key: l.Key, label: strings.Trim(string(l.Label), `"`), annotator: l.Annotator})
			}
			if p.Next == "" {
				return got, pages
			}
			if pages > 100 {
				t.Fatal("more than 100 pages")
			}
			after = p.Next
		}
	}
	for _, limit := range []int{1, 3, 4, 25, 37, 10_000} {
		got, pages := page("model=fashion", limit)
		if !equalListed(got, want) {
			t.Fatalf("limit %d: %d labels in %d pages, want %d:\n got %v\nwant %v", limit, len(got), pages, len(want), got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages for %d labels, want %d", limit, pages, len(want), wantPages)
		}
	}
	// since: the 15th from 07:30 on leaves c1's 07:00 file out, and everything of the 14th.
	got, _ := page("model=fashion&since=2026-03-15T07:30:00Z", 5)
	var later []listed
	for _, l := range want {
		if !strings.Contains(l.object, "dt=2026-03-14") && !strings.Contains(l.object, "/c1-"+fmt.Sprint(day(15, 7).UnixNano())) {
			later = append(later, l)
		}
	}
	if !equalListed(got, later) || len(later) != len(want)-6 {
		t.Fatalf("since: %d labels, want %d:\n got %v\nwant %v", len(got), len(later), got, later)
	}
	if got, _ := page("model=digits", 10); len(got) != 0 {
		t.Fatalf("a model without labels listed %v", got)
	}

	for _, c := range []struct {
		query, token string
		code         int
		msg          string
	}{
		{"model=fashion", "", 401, ""},
		{"model=a%20b", "op", 400, "model:"},
		{"", "op", 400, "model:"},
		{"model=fashion&since=yesterday", "op", 400, "since: want an RFC 3339 time"},
		{"model=fashion&limit=0", "op", 400, "limit: want 1 to 10000"},
		{"model=fashion&limit=10001", "op", 400, "limit: want 1 to 10000"},
		{"model=fashion&after=labels/digits/dt=2026-03-14/c0-1-00.jsonl%231", "op", 400, "after: want the next value"},
		{"model=fashion&after=labels/fashion/x.jsonl", "op", 400, "after: want the next value"},
		{"model=fashion&after=labels/fashion/x.jsonl%23-1", "op", 400, "after: want the next value"},
	} {
		code, body := do(srvs[0], http.MethodGet, "/v1/labels?"+c.query, c.token, "")
		if code != c.code || !strings.Contains(string(body), c.msg) {
			t.Errorf("%q: %d %s, want %d with %q", c.query, code, body, c.code, c.msg)
		}
	}
	t.Logf("%d labels in %d files listed back at six page sizes", len(want), len(posts))
}

func sortByObject(ls []listed) {
	// Stable: lines of one object keep their order.
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].object < ls[j-1].object; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

func equalListed(a, b []listed) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
