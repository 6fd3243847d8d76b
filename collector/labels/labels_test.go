package labels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/catalog/catalogtest"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

const shard = "samples/fashion/3/dt=2026-03-14/hour=15/c0-00000000000000000001.tar"

type fixture struct {
	srv     *httptest.Server
	bucket  objstore.Bucket
	samples []*sample.Sample
}

func operator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer op" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b, err := objstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ss := []*sample.Sample{
		catalogtest.Sample(t, "fashion", "3", "low_confidence", 4, 0),
		catalogtest.Sample(t, "fashion", "3", "random", 1, 60),
	}
	catalogtest.PutShard(t, b, shard, ss)
	cat, err := catalog.New(catalog.Options{Bucket: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc, err := labels.New(labels.Options{Bucket: b, Catalog: cat, Instance: "c0", BucketURL: "s3://edgeloop", RequireOperator: operator,
		Now: func() time.Time { return time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, bucket: b, samples: ss}
}

func (f *fixture) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func TestPostLabels(t *testing.T) {
	f := newFixture(t)
	key := f.samples[0].Meta.Key
	many := `{"model":"fashion","labels":[` + strings.Repeat(`{"key":"`+key+`","label":1,"source":"human"},`, labels.MaxLabels) + `{"key":"` + key + `","label":1,"source":"human"}]}`
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"index and name", `{"model":"fashion","labels":[{"key":"` + key + `","label":4,"source":"human","annotator":"ann"},{"key":"` + key + `","label":"Coat","source":"teacher"}]}`, 201, `"stored": 2`},
		{"bad key", `{"model":"fashion","labels":[{"key":"XYZ","label":1,"source":"human"}]}`, 400, `labels[0].key: want 32 lowercase hex digits (or give request_id instead), got \"XYZ\"`},
		{"negative", `{"model":"fashion","labels":[{"key":"` + key + `","label":-1,"source":"human"}]}`, 400, "labels[0].label: want a class index"},
		{"fraction", `{"model":"fashion","labels":[{"key":"` + key + `","label":1.5,"source":"human"}]}`, 400, "labels[0].label: want a class index"},
		{"null", `{"model":"fashion","labels":[{"key":"` + key + `","label":null,"source":"human"}]}`, 400, "labels[0].label: missing"},
		{"long name", `{"model":"fashion","labels":[{"key":"` + key + `","label":"` + strings.Repeat("x", 257) + `","source":"human"}]}`, 400, "longer than 256 bytes"},
		{"control", `{"model":"fashion","labels":[{"key":"` + key + `","label":"a\u0007","source":"human"}]}`, 400, "unprintable character U+0007"},
		{"no source", `{"model":"fashion","labels":[{"key":"` + key + `","label":1}]}`, 400, "labels[0].source: want"},
		{"bad model", `{"model":"../x","labels":[{"key":"` + key + `","label":1,"source":"human"}]}`, 400, "model: \\\"../x\\\" is not a model name"},
		{"empty", `{"model":"fashion","labels":[]}`, 400, "labels: empty"},
		{"unknown field", `{"model":"fashion","labels":[],"colour":1}`, 400, `unknown field \"colour\"`},
		{"not json", `labels please`, 400, "body: "},
		{"too many", many, 400, "more than the limit of 10000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := f.do(t, "POST", "/v1/labels", "op", c.body)
			if code != c.code || !strings.Contains(string(body), c.want) {
				t.Fatalf("= %d %s, want %d containing %s", code, body, c.code, c.want)
			}
		})
	}
	if code, _ := f.do(t, "POST", "/v1/labels", "", `{}`); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", code)
	}
	// The stored file: one line per label, readable as the trainer reads it.
	keys, err := objstore.List(context.Background(), f.bucket, "labels/fashion/", true)
	if err != nil || len(keys) != 1 || !strings.HasPrefix(keys[0], "labels/fashion/dt=2026-03-15/c0-") || !strings.HasSuffix(keys[0], ".jsonl") {
		t.Fatalf("label objects = %q, %v", keys, err)
	}
	data, _, _ := objstore.ReadAll(context.Background(), f.bucket, keys[0], 0)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []string{
		`{"key":"` + key + `","label":4,"source":"human","annotator":"ann","time":"2026-03-15T08:00:00Z"}`,
		`{"key":"` + key + `","label":"Coat","source":"teacher","time":"2026-03-15T08:00:00Z"}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored:\n%s\nwant:\n%s", data, strings.Join(want, "\n"))
	}
}

func TestDataset(t *testing.T) {
	f := newFixture(t)
	f.do(t, "POST", "/v1/labels", "op", `{"model":"fashion","labels":[{"key":"`+f.samples[0].Meta.Key+`","label":4,"source":"human"}]}`)
	code, body := f.do(t, "GET", "/v1/datasets/fashion?since=2026-03-14T00:00:00Z", "op", "")
	var m dataset.Manifest
	if code != 200 || json.Unmarshal(body, &m) != nil {
		t.Fatalf("= %d %s", code, body)
	}
	if m.Bucket != "s3://edgeloop" || len(m.Shards) != 1 || m.Shards[0] != shard || len(m.Labels) != 1 || !strings.HasPrefix(m.Labels[0], "labels/fashion/") {
		t.Fatalf("manifest = %+v", m)
	}
	// The trainer's manifest reads the same document's "shards" and "labels".
	var trainer struct{ Shards, Labels []string }
	if json.Unmarshal(body, &trainer) != nil || len(trainer.Shards) != 1 || len(trainer.Labels) != 1 {
		t.Fatalf("trainer view = %+v", trainer)
	}
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/datasets/fashion?since=2026-03-16T00:00:00Z", 200, `"shards": []`},
		{"/v1/datasets/fashion?version=9", 200, `"shards": []`},
		{"/v1/datasets/other", 404, "no shards and no labels"},
		{"/v1/datasets/fashion?since=today", 400, "since: want an RFC 3339 time"},
	} {
		code, body := f.do(t, "GET", c.path, "op", "")
		if code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s = %d %s, want %d containing %s", c.path, code, body, c.code, c.want)
		}
	}
}

func TestLabelStudio(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/v1/labelstudio/fashion/tasks", "op", "")
	var tasks []labels.Task
	if code != 200 || json.Unmarshal(body, &tasks) != nil || len(tasks) != 2 {
		t.Fatalf("tasks = %d %s", code, body)
	}
	task := tasks[0]
	if task.Data.Key != f.samples[0].Meta.Key || task.Data.PredictedClass != "Coat" || task.Predictions[0].Score != 0.42 ||
		task.Predictions[0].ModelVersion != "3" || task.Predictions[0].Result[0].Value.Choices[0] != "Coat" ||
		task.Predictions[0].Result[0].FromName != "label" || task.Predictions[0].Result[0].ToName != "image" {
		t.Fatalf("task = %+v", task)
	}
	if tasks[1].Data.PredictedClass != "1" {
		t.Fatalf("an unnamed class is its index: %+v", tasks[1].Data)
	}
	if code, body := f.do(t, "GET", "/v1/labelstudio/fashion/tasks?since=2026-03-14T15:00:30Z&limit=5", "op", ""); code != 200 || strings.Count(string(body), `"key"`) != 1 {
		t.Fatalf("tasks since = %d %s", code, body)
	}
	if code, _ := f.do(t, "GET", "/v1/labelstudio/fashion/tasks?limit=0", "op", ""); code != 400 {
		t.Fatalf("limit=0: %d", code)
	}

	// The browser loads the image with the signed URL alone.
	resp, err := http.Get(task.Data.Image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || img.Bounds().Dx() != 28 || img.Bounds().Dy() != 28 {
		t.Fatalf("image: %d, %v", resp.StatusCode, err)
	}
	path := "/v1/samples/" + task.Data.Key + ".png"
	for _, c := range []struct {
		path, token string
		code        int
	}{
		{path, "", http.StatusUnauthorized},
		{path, "op", http.StatusOK},
		{path + "?exp=9999999999&sig=00", "", http.StatusForbidden},
		{path + "?exp=1&sig=" + strings.Repeat("0", 64), "", http.StatusForbidden},
		{"/v1/samples/" + strings.Repeat("0", 32) + ".png", "op", http.StatusNotFound},
		{"/v1/samples/" + task.Data.Key + ".jpg", "op", http.StatusNotFound},
	} {
		if code, body := f.do(t, "GET", c.path, c.token, ""); code != c.code {
			t.Errorf("GET %s = %d %s, want %d", c.path, code, body, c.code)
		}
	}
	// The signature covers the key: another sample's URL cannot be made from it.
	other := strings.Replace(task.Data.Image, task.Data.Key, tasks[1].Data.Key, 1)
	if resp, err := http.Get(other); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reused signature: %v %v", resp.StatusCode, err)
	}

	export := `[
	 {"id": 1, "data": {"key": "` + tasks[0].Data.Key + `", "image": "x"}, "annotations": [
	   {"result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["Shirt"]}}], "completed_by": 3},
	   {"result": [{"type": "choices", "value": {"choices": ["Coat"]}}], "completed_by": {"id": 4, "email": "ann@example.com"}}]},
	 {"id": 2, "data": {"key": "` + tasks[1].Data.Key + `"}, "annotations": [{"result": [{"type": "choices", "value": {"choices": ["Bag"]}}], "was_cancelled": true}]},
	 {"id": 3, "data": {"key": "` + tasks[1].Data.Key + `"}, "annotations": []}
	]`
	code, body = f.do(t, "POST", "/v1/labelstudio/fashion/import", "op", export)
	if code != 201 || !strings.Contains(string(body), `"stored": 1`) || !strings.Contains(string(body), `"skipped": 2`) {
		t.Fatalf("import = %d %s", code, body)
	}
	keys, _ := objstore.List(context.Background(), f.bucket, "labels/fashion/", true)
	data, _, _ := objstore.ReadAll(context.Background(), f.bucket, keys[0], 0)
	if want := `{"key":"` + tasks[0].Data.Key + `","label":"Coat","source":"labelstudio","annotator":"ann@example.com","time":"2026-03-15T08:00:00Z"}`; strings.TrimSpace(string(data)) != want {
		t.Fatalf("stored %s, want %s", data, want)
	}
	code, body = f.do(t, "POST", "/v1/labelstudio/fashion/import", "op", `[{"id": 7, "data": {"key": "nope"}, "annotations": []}]`)
	if code != 400 || !bytes.Contains(body, []byte("task 7 (index 0): data.key")) {
		t.Fatalf("import of a foreign task = %d %s", code, body)
	}
}
