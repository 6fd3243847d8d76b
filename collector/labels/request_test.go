package labels_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/catalog/catalogtest"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// newRequestFixture serves samples captured from requests with ids: "req-1" once, "shared" on
// two nodes, "req-s" of another model, and one sample without an id.
func newRequestFixture(t *testing.T) (*fixture, map[string]*sample.Sample) {
	t.Helper()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ss := map[string]*sample.Sample{
		"req-1":    catalogtest.SampleOf(t, "fashion", "3", "random", 4, 0, "edge-0001", "req-1"),
		"shared-1": catalogtest.SampleOf(t, "fashion", "3", "random", 1, 1, "edge-0001", "shared"),
		"shared-2": catalogtest.SampleOf(t, "fashion", "3", "random", 1, 2, "edge-0002", "shared"),
		"none":     catalogtest.SampleOf(t, "fashion", "3", "random", 1, 3, "edge-0001", ""),
		"req-s":    catalogtest.SampleOf(t, "shoes", "1", "random", 1, 4, "edge-0001", "req-s"),
	}
	catalogtest.PutShard(t, b, shard, []*sample.Sample{ss["req-1"], ss["shared-1"], ss["shared-2"], ss["none"]})
	catalogtest.PutShard(t, b, "samples/shoes/1/dt=2026-03-14/hour=15/c0-00000000000000000001.tar", []*sample.Sample{ss["req-s"]})
	cat, err := catalog.New(catalog.Options{Bucket: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc, err := labels.New(labels.Options{Bucket: b, Catalog: cat, Instance: "c0", RequireOperator: operator,
		Now: func() time.Time { return time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, bucket: b}, ss
}

// storedLines reads and removes every label object of model.
func storedLines(t *testing.T, b objstore.Bucket, model string) []labels.Line {
	t.Helper()
	ctx := context.Background()
	keys, err := objstore.List(ctx, b, "labels/"+model+"/", true)
	if err != nil {
		t.Fatal(err)
	}
	var lines []labels.Line
	for _, k := range keys {
		data, _, err := objstore.ReadAll(ctx, b, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var l labels.Line
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}

// TestLabelsByRequestID posts labels naming samples by request id: resolved ones are stored
// under the sample's key with the id beside it; a batch with an id that names no single
// sample of the model is refused whole, with every such id named, and nothing is stored.
func TestLabelsByRequestID(t *testing.T) {
	f, ss := newRequestFixture(t)
	key := func(name string) string { return ss[name].Meta.Key }
	label := func(ref string) string { return `{` + ref + `,"label":"Coat","source":"teacher"}` }
	body := func(model string, ls ...string) string {
		return `{"model":"` + model + `","labels":[` + strings.Join(ls, ",") + `]}`
	}
	tests := []struct {
		name     string
		body     string
		code     int
		contains []string
		stored   []labels.Line // key and request id only
	}{
		{name: "by request id", body: body("fashion", label(`"request_id":"req-1"`)), code: 201,
			stored: []labels.Line{{Key: key("req-1"), RequestID: "req-1"}}},
		{name: "by key and by request id", body: body("fashion", label(`"key":"`+key("none")+`"`), label(`"request_id":"req-1"`)), code: 201,
			stored: []labels.Line{{Key: key("none")}, {Key: key("req-1"), RequestID: "req-1"}}},
		{name: "unknown", body: body("fashion", label(`"key":"`+key("none")+`"`), label(`"request_id":"req-404"`)), code: 422,
			contains: []string{`nothing stored`, `labels[1].request_id \"req-404\": no sample has it`, `"reason":"unknown"`, `"index":1`}},
		{name: "ambiguous", body: body("fashion", label(`"request_id":"shared"`)), code: 422,
			contains: []string{`labels[0].request_id \"shared\": names several samples`, key("shared-1"), key("shared-2"), `"reason":"ambiguous"`}},
		{name: "other model", body: body("fashion", label(`"request_id":"req-s"`)), code: 422,
			contains: []string{`is not of model \"fashion\"`, key("req-s"), `"reason":"other_model"`}},
		{name: "every bad id named", body: body("fashion", label(`"request_id":"req-404"`), label(`"request_id":"req-1"`), label(`"request_id":"shared"`)), code: 422,
			contains: []string{`labels[0].request_id`, `labels[2].request_id`}},
		{name: "both", body: body("fashion", label(`"key":"`+key("none")+`","request_id":"req-1"`)), code: 400,
			contains: []string{"labels[0]: give key or request_id, not both"}},
		{name: "neither", body: body("fashion", label(`"annotator":"x"`)), code: 400,
			contains: []string{"labels[0].key: want 32 lowercase hex digits (or give request_id instead)"}},
		{name: "long id", body: body("fashion", label(`"request_id":"`+strings.Repeat("r", 257)+`"`)), code: 400,
			contains: []string{"labels[0].request_id: 257 bytes, longer than the 256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, answer := f.do(t, "POST", "/v1/labels", "op", tt.body)
			if code != tt.code {
				t.Fatalf("= %d %s, want %d", code, answer, tt.code)
			}
			for _, want := range tt.contains {
				if !strings.Contains(string(answer), want) {
					t.Errorf("answer %s lacks %s", answer, want)
				}
			}
			got := storedLines(t, f.bucket, "fashion")
			if len(got) != len(tt.stored) {
				t.Fatalf("stored %d lines %+v, want %d", len(got), got, len(tt.stored))
			}
			for i, l := range got {
				if l.Key != tt.stored[i].Key || l.RequestID != tt.stored[i].RequestID || string(l.Label) != `"Coat"` {
					t.Errorf("line %d = %+v, want key %s, request id %q", i, l, tt.stored[i].Key, tt.stored[i].RequestID)
				}
			}
		})
	}
}

// TestLabelStudioRequestID: tasks carry the request id in data, and an export whose tasks
// name samples by request id alone (made outside edgeloop) is resolved, or refused whole.
func TestLabelStudioRequestID(t *testing.T) {
	f, ss := newRequestFixture(t)
	code, body := f.do(t, "GET", "/v1/labelstudio/fashion/tasks", "op", "")
	var tasks []labels.Task
	if code != 200 || json.Unmarshal(body, &tasks) != nil || len(tasks) != 4 {
		t.Fatalf("tasks = %d %s", code, body)
	}
	ids := map[string]string{}
	for _, task := range tasks {
		ids[task.Data.Key] = task.Data.RequestID
	}
	for name, s := range ss {
		if s.Meta.Model == "fashion" && ids[s.Meta.Key] != s.Meta.RequestID {
			t.Errorf("task of %s: data.request_id %q, want %q", name, ids[s.Meta.Key], s.Meta.RequestID)
		}
	}
	if !strings.Contains(string(body), `"request_id": ""`) {
		t.Errorf("a task without a request id omits the field: %s", body)
	}

	choice := `"annotations": [{"result": [{"type": "choices", "value": {"choices": ["Bag"]}}], "completed_by": 3}]`
	code, body = f.do(t, "POST", "/v1/labelstudio/fashion/import", "op",
		`[{"id": 1, "data": {"request_id": "req-1"}, `+choice+`}, {"id": 2, "data": {"key": "`+ss["none"].Meta.Key+`", "request_id": "ignored"}, `+choice+`}]`)
	if code != 201 || !strings.Contains(string(body), `"stored": 2`) {
		t.Fatalf("import = %d %s", code, body)
	}
	got := storedLines(t, f.bucket, "fashion")
	if len(got) != 2 || got[0].Key != ss["req-1"].Meta.Key || got[0].RequestID != "req-1" || got[1].Key != ss["none"].Meta.Key || got[1].RequestID != "" {
		t.Fatalf("stored %+v", got)
	}
	code, body = f.do(t, "POST", "/v1/labelstudio/fashion/import", "op",
		`[{"id": 1, "data": {"request_id": "req-1"}, `+choice+`}, {"id": 9, "data": {"request_id": "shared"}, `+choice+`}]`)
	if code != 422 || !strings.Contains(string(body), `task 9 (index 1): data.request_id \"shared\": names several samples`) {
		t.Fatalf("import of an ambiguous id = %d %s", code, body)
	}
	if got := storedLines(t, f.bucket, "fashion"); len(got) != 0 {
		t.Fatalf("a refused import stored %+v", got)
	}
}
