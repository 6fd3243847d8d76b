package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

var (
	editor = &backend.User{Login: "ana", Name: "Ana", Email: "ana@example.com", Role: "Editor"}
	viewer = &backend.User{Login: "vic", Role: "Viewer"}
	admin  = &backend.User{Login: "root", Role: "Admin"}
)

// fileEnv starts the servers over a bucket in a temporary directory.
func fileEnv(t *testing.T) *env {
	return startEnv(t, "file://"+t.TempDir())
}

// newDS makes a data source over e that logs into the returned buffer.
func newDS(t *testing.T, s backend.DataSourceInstanceSettings) (*Datasource, *testenv.Buffer) {
	t.Helper()
	var log testenv.Buffer
	d := NewDatasource(context.Background(), s, slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(d.Dispose)
	return d, &log
}

// query runs one query and returns its frames, or fails the test with the error.
func query(t *testing.T, d *Datasource, queryType string, q map[string]any, tr backend.TimeRange) data.Frames {
	t.Helper()
	res := queryRes(t, d, queryType, q, tr)
	if res.Error != nil {
		t.Fatalf("%s %v: %v", queryType, q, res.Error)
	}
	return res.Frames
}

func queryRes(t *testing.T, d *Datasource, queryType string, q map[string]any, tr backend.TimeRange) backend.DataResponse {
	t.Helper()
	raw, _ := json.Marshal(q)
	resp, err := d.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{User: viewer},
		Queries:       []backend.DataQuery{{RefID: "A", QueryType: queryType, JSON: raw, TimeRange: tr}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Responses["A"]
}

// lastHour is a time range around the test's samples and versions.
func lastHour() backend.TimeRange {
	return backend.TimeRange{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)}
}

// call sends a resource request as Grafana does for user, and returns the status, headers
// and body.
func call(t *testing.T, d *Datasource, u *backend.User, method, url string, body any) (int, http.Header, []byte) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	path, _, _ := strings.Cut(url, "?")
	var status int
	hdr := http.Header{}
	var out bytes.Buffer
	err := d.CallResource(context.Background(), &backend.CallResourceRequest{
		PluginContext: backend.PluginContext{User: u}, Path: path, Method: method, URL: url, Body: raw,
	}, backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
		if r.Status != 0 {
			status = r.Status
		}
		for k, v := range r.Headers {
			hdr[k] = v
		}
		out.Write(r.Body)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return status, hdr, out.Bytes()
}

// noSecrets fails the test if any credential appears in what a user or a log can see.
func noSecrets(t *testing.T, where string, text []byte) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s contains a credential (%s...)", where, s[:6])
		}
	}
}

func column[T any](t *testing.T, f *data.Frame, name string) []T {
	t.Helper()
	field, _ := f.FieldByName(name)
	if field == nil {
		t.Fatalf("frame %s has no field %s", f.Name, name)
	}
	out := make([]T, field.Len())
	for i := range out {
		v, ok := field.At(i).(T)
		if !ok {
			t.Fatalf("field %s row %d is %T", name, i, field.At(i))
		}
		out[i] = v
	}
	return out
}

// TestQueries runs every query type against a real collector and controller and the
// repository they share, and checks the rows against what the test stored.
func TestQueries(t *testing.T) {
	e := fileEnv(t)
	d, log := newDS(t, e.settings(t, e.bucketURL, nil, nil))
	var checked int

	t.Run("samples", func(t *testing.T) {
		for _, c := range []struct {
			name string
			q    map[string]any
			want int
		}{
			{"all", map[string]any{"model": "fashion"}, 6},
			{"reason", map[string]any{"model": "fashion", "reason": "low_confidence"}, 3},
			{"max confidence", map[string]any{"model": "fashion", "maxConfidence": 0.35}, 1},
			{"min confidence", map[string]any{"model": "fashion", "minConfidence": 0.85}, 3},
			{"node", map[string]any{"model": "fashion", "node": "edge-2"}, 0},
			{"limit", map[string]any{"model": "fashion", "limit": 2}, 2},
			{"version", map[string]any{"model": "camera", "version": "2"}, 3},
			{"other version", map[string]any{"model": "camera", "version": "9"}, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				fs := query(t, d, QuerySamples, c.q, lastHour())
				if len(fs) != 1 || fs[0].Rows() != c.want {
					t.Fatalf("%d frames, %d rows; want %d rows", len(fs), fs[0].Rows(), c.want)
				}
				times := column[time.Time](t, fs[0], "time")
				for i := 1; i < len(times); i++ {
					if times[i].After(times[i-1]) {
						t.Errorf("row %d is newer than row %d: want newest first", i, i-1)
					}
				}
				for i, u := range column[string](t, fs[0], "thumbnail_url") {
					key := column[string](t, fs[0], "key")[i]
					if u != "/api/datasources/uid/edgeloop-ds/resources/thumbnail?key="+key {
						t.Errorf("thumbnail_url %q", u)
					}
				}
				checked++
			})
		}
		// A range before the samples holds none: the collector's since and the plugin's to.
		fs := query(t, d, QuerySamples, map[string]any{"model": "fashion"}, backend.TimeRange{From: time.Now().Add(-3 * time.Hour), To: time.Now().Add(-2 * time.Hour)})
		if fs[0].Rows() != 0 {
			t.Errorf("a range before the samples: %d rows", fs[0].Rows())
		}
		fs = query(t, d, QuerySamples, map[string]any{"model": "fashion", "reason": "random"}, lastHour())
		for i, c := range column[float64](t, fs[0], "confidence") {
			if c != 0.9 {
				t.Errorf("row %d: confidence %v, want the sample's max_softmax 0.9", i, c)
			}
		}
		for _, col := range []string{"model", "version", "node", "reason", "predicted_class", "request_id"} {
			for i, v := range column[string](t, fs[0], col) {
				if v == "" {
					t.Errorf("row %d: %s is empty", i, col)
				}
			}
		}
	})

	t.Run("sample labels", func(t *testing.T) {
		// Labels posted to the collector come back in the samples' label columns: the last
		// given for a key (as training reads them), with its source, annotator and time.
		post := func(labels ...map[string]any) {
			t.Helper()
			body, _ := json.Marshal(map[string]any{"model": "fashion", "labels": labels})
			req, _ := http.NewRequest(http.MethodPost, e.collURL+"/v1/labels", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+collectorOpToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("post labels: %d", resp.StatusCode)
			}
		}
		before := time.Now().UTC()
		post(map[string]any{"key": e.samples[0].key, "label": "Coat", "source": "human", "annotator": "ana"},
			map[string]any{"key": e.samples[2].key, "label": "Trouser", "source": "teacher"})
		post(map[string]any{"key": e.samples[0].key, "label": 4, "source": "human", "annotator": "bob"})
		fs := query(t, d, QuerySamples, map[string]any{"model": "fashion"}, lastHour())
		f := fs[0]
		keys := column[string](t, f, "key")
		labels, sources := column[*string](t, f, "label"), column[*string](t, f, "label_source")
		annotators, at := column[*string](t, f, "annotator"), column[*time.Time](t, f, "labelled")
		str := func(p *string) string {
			if p == nil {
				return "<nil>"
			}
			return *p
		}
		n := 0
		for i, k := range keys {
			got := str(labels[i]) + "|" + str(sources[i]) + "|" + str(annotators[i])
			want := "<nil>|<nil>|<nil>"
			switch k {
			case e.samples[0].key:
				want = "4|human|bob"
			case e.samples[2].key:
				want = "Trouser|teacher|<nil>"
			}
			if got != want {
				t.Errorf("sample %s: label|source|annotator %s, want %s", k, got, want)
			}
			if (labels[i] != nil) != (at[i] != nil) || (at[i] != nil && at[i].Before(before.Truncate(time.Second))) {
				t.Errorf("sample %s: labelled %v (labels posted from %v)", k, at[i], before)
			}
			if labels[i] != nil {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d rows labelled, want 2", n)
		}
		if f.Meta != nil && len(f.Meta.Notices) > 0 {
			t.Errorf("notices on a complete samples frame: %+v", f.Meta.Notices)
		}
		checked++
	})

	t.Run("catalog", func(t *testing.T) {
		fs := query(t, d, QueryCatalog, nil, lastHour())
		models, samples := column[string](t, fs[0], "model"), column[int64](t, fs[0], "samples")
		if strings.Join(models, ",") != "camera,fashion" || samples[0] != 3 || samples[1] != 6 {
			t.Errorf("per model: %v %v", models, samples)
		}
		fs = query(t, d, QueryCatalog, map[string]any{"model": "fashion"}, lastHour())
		if v := column[string](t, fs[0], "version"); len(v) != 1 || v[0] != "2" {
			t.Errorf("per version: %v", v)
		}
		fs = query(t, d, QueryCatalog, map[string]any{"model": "fashion", "groupBy": "reason"}, lastHour())
		reasons, n := column[string](t, fs[0], "reason"), column[int64](t, fs[0], "samples")
		if strings.Join(reasons, ",") != "low_confidence,random" || n[0] != 3 || n[1] != 3 {
			t.Errorf("by reason: %v %v", reasons, n)
		}
		fs = query(t, d, QueryCatalog, map[string]any{"model": "fashion", "groupBy": "class"}, lastHour())
		var sum int64
		for _, x := range column[int64](t, fs[0], "samples") {
			sum += x
		}
		if sum != 6 {
			t.Errorf("by class: %d samples, want 6", sum)
		}
		checked += 4
	})

	t.Run("versions", func(t *testing.T) {
		fs := query(t, d, QueryVersions, map[string]any{"model": "fashion"}, lastHour())
		f := fs[0]
		if f.Rows() != 2 {
			t.Fatalf("%d versions, want 2", f.Rows())
		}
		vers, aliases, latest := column[int64](t, f, "version"), column[string](t, f, "aliases"), column[bool](t, f, "latest")
		parents := column[*int64](t, f, "parent_version")
		if vers[1] != 2 || aliases[1] != "canary,stable" || !latest[1] || latest[0] || aliases[0] != "" {
			t.Errorf("versions %v aliases %q latest %v", vers, aliases, latest)
		}
		if parents[0] != nil || parents[1] == nil || *parents[1] != 1 {
			t.Errorf("lineage: parents %v", parents)
		}
		if acc := column[*float64](t, f, "accuracy"); acc[1] == nil || *acc[1] != 0.89 {
			t.Errorf("accuracy %v", acc)
		}
		if s := column[bool](t, f, "signed"); !s[0] || !s[1] {
			t.Errorf("signed %v", s)
		}
		// Every model of the repository when none is named.
		if fs := query(t, d, QueryVersions, nil, lastHour()); fs[0].Rows() != 2 {
			t.Errorf("all models: %d rows", fs[0].Rows())
		}
		ann := query(t, d, QueryVersionAnnotations, map[string]any{"model": "fashion"}, lastHour())[0]
		texts := column[string](t, ann, "text")
		if len(texts) != 2 || !strings.Contains(texts[1], "retrained from 1") || !strings.Contains(texts[1], "canary, stable") {
			t.Errorf("version annotations: %q", texts)
		}
		if ann := query(t, d, QueryVersionAnnotations, nil, backend.TimeRange{From: e.publishedAt.Add(-90 * time.Second), To: time.Now()})[0]; ann.Rows() != 1 {
			t.Errorf("annotations within a range holding version 2 only: %d", ann.Rows())
		}
		checked += 3
	})

	t.Run("jobs and decisions", func(t *testing.T) {
		code, _, body := call(t, d, editor, http.MethodPost, "retrain", map[string]any{"model": "fashion", "reason": "drift on site 12"})
		if code != http.StatusAccepted {
			t.Fatalf("retrain: %d %s", code, body)
		}
		var dec struct {
			Started string `json:"started"`
		}
		if err := json.Unmarshal(body, &dec); err != nil || dec.Started == "" {
			t.Fatalf("retrain answer %s: %v", body, err)
		}
		e.waitJob(t, dec.Started, "running")
		f := query(t, d, QueryJobs, map[string]any{"model": "fashion"}, lastHour())[0]
		ids, phases, triggers := column[string](t, f, "id"), column[string](t, f, "phase"), column[string](t, f, "trigger")
		if len(ids) != 1 || ids[0] != dec.Started || phases[0] != "running" || !strings.Contains(triggers[0], "grafana user ana: drift on site 12") {
			t.Errorf("jobs: %v %v %q", ids, phases, triggers)
		}
		if f := query(t, d, QueryJobs, map[string]any{"phase": "promoted"}, lastHour())[0]; f.Rows() != 0 {
			t.Errorf("phase filter: %d rows", f.Rows())
		}
		f = query(t, d, QueryDecisions, map[string]any{"model": "fashion"}, lastHour())[0]
		if s := column[string](t, f, "started"); len(s) != 1 || s[0] != dec.Started {
			t.Errorf("decisions: started %v", s)
		}
		// A second request while the job runs is the controller's 409, passed on.
		code, _, body = call(t, d, admin, http.MethodPost, "retrain", map[string]any{"model": "fashion"})
		if code != http.StatusConflict {
			t.Errorf("second retrain: %d %s", code, body)
		}
		code, _, body = call(t, d, editor, http.MethodPost, "jobs/"+dec.Started+"/cancel", nil)
		if code != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", code, body)
		}
		e.waitJob(t, dec.Started, "cancelled")
		ann := query(t, d, QueryJobAnnotations, map[string]any{"model": "fashion"}, lastHour())[0]
		if titles := column[string](t, ann, "title"); len(titles) != 1 || titles[0] != "retrain fashion cancelled" {
			t.Errorf("job annotations: %q", titles)
		}
		if skipped := column[string](t, query(t, d, QueryDecisions, nil, lastHour())[0], "skipped"); len(skipped) != 2 || skipped[1] == "" {
			t.Errorf("decisions after the refused retrain: skipped %q", skipped)
		}
		for _, l := range []string{`"action":"retrain","user":"ana"`, `"action":"cancel","user":"ana"`, `"action":"retrain","user":"root"`} {
			if !strings.Contains(log.String(), l) {
				t.Errorf("log has no %s:\n%s", l, log.String())
			}
		}
		checked += 5
	})

	t.Run("bad queries", func(t *testing.T) {
		for _, c := range []struct {
			name, qt string
			q        map[string]any
			status   backend.Status
			want     string
		}{
			{"no type", "", nil, backend.StatusBadRequest, "queryType: missing"},
			{"unknown type", "shards", nil, backend.StatusBadRequest, `"shards" is not a query type`},
			{"samples without model", QuerySamples, nil, backend.StatusBadRequest, "needs a model"},
			{"bad model", QuerySamples, map[string]any{"model": "../x"}, backend.StatusBadRequest, "is not a model name"},
			{"limit", QuerySamples, map[string]any{"model": "fashion", "limit": 20000}, backend.StatusBadRequest, "limit:"},
			{"group", QueryCatalog, map[string]any{"groupBy": "node"}, backend.StatusBadRequest, "groupBy"},
			{"group without model", QueryCatalog, map[string]any{"groupBy": "reason"}, backend.StatusBadRequest, "needs a model"},
			{"unknown model", QueryCatalog, map[string]any{"model": "digits"}, backend.StatusNotFound, `collector answered 404: catalog: model "digits": not in the catalog`},
			{"not JSON", QueryJobs, map[string]any{"limit": "ten"}, backend.StatusBadRequest, "query:"},
		} {
			t.Run(c.name, func(t *testing.T) {
				res := queryRes(t, d, c.qt, c.q, lastHour())
				if res.Error == nil || res.Status != c.status || !strings.Contains(res.Error.Error(), c.want) {
					t.Fatalf("got status %d error %v; want %d containing %q", res.Status, res.Error, c.status, c.want)
				}
				noSecrets(t, "error", []byte(res.Error.Error()))
				checked++
			})
		}
	})
	noSecrets(t, "log", []byte(log.String()))
	t.Logf("%d query cases checked", checked)
}

// TestResources fetches thumbnails of each image layout, takes each action as allowed and
// refused users, and sends bad input to each.
func TestResources(t *testing.T) {
	e := fileEnv(t)
	d, log := newDS(t, e.settings(t, e.bucketURL, map[string]any{"thumbnailCacheEntries": 4}, nil))
	var answers bytes.Buffer

	t.Run("thumbnails", func(t *testing.T) {
		for _, c := range e.samples {
			code, hdr, body := call(t, d, viewer, http.MethodGet, "thumbnail?key="+c.key, nil)
			answers.Write(body)
			if c.w == 0 {
				if code != http.StatusNotFound || !strings.Contains(string(body), "not image-shaped") {
					t.Errorf("%v: %d %s; want 404 saying why", c.shape, code, body)
				}
				continue
			}
			if code != http.StatusOK || hdr.Get("Content-Type") != "image/png" {
				t.Fatalf("%v: %d %s", c.shape, code, body)
			}
			img, err := png.Decode(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%v: %v", c.shape, err)
			}
			if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
				t.Errorf("%v: %v, want %dx%d", c.shape, b, c.w, c.h)
			}
			if (img.ColorModel() == color.GrayModel) == c.rgb {
				t.Errorf("%v: colour model %T, rgb %v", c.shape, img.ColorModel(), c.rgb)
			}
		}
		// NCHW and NHWC of the same values make the same picture.
		a, b := thumb(t, d, e.samples[6].key), thumb(t, d, e.samples[7].key)
		if a.Bounds() != b.Bounds() {
			t.Fatalf("NCHW %v vs NHWC %v", a.Bounds(), b.Bounds())
		}
		entries, _, hits, misses := d.thumbs.stats()
		if entries != 4 || hits < 2 || misses < 8 {
			t.Errorf("cache: %d entries (bound 4), %d hits, %d misses", entries, hits, misses)
		}
		for _, c := range []struct{ url, want string }{
			{"thumbnail", "key: want a sample key"},
			{"thumbnail?key=ABC", "key: want a sample key"},
			{"thumbnail?key=" + strings.Repeat("0", 32), "no thumbnail"},
		} {
			code, _, body := call(t, d, viewer, http.MethodGet, c.url, nil)
			if code/100 != 4 || !strings.Contains(string(body), c.want) {
				t.Errorf("%s: %d %s", c.url, code, body)
			}
		}
	})

	t.Run("roles", func(t *testing.T) {
		for _, c := range []struct {
			name string
			u    *backend.User
			path string
			body any
		}{
			{"viewer labels", viewer, "labels", map[string]any{"model": "fashion", "labels": []map[string]any{{"key": e.samples[0].key, "label": 1}}}},
			{"viewer retrain", viewer, "retrain", map[string]any{"model": "fashion"}},
			{"viewer cancel", viewer, "jobs/job-fashion-1/cancel", nil},
			{"viewer alias", viewer, "aliases", map[string]any{"model": "fashion", "alias": "stable", "version": 1}},
			{"no user", nil, "retrain", map[string]any{"model": "fashion"}},
			{"no role", &backend.User{Login: "x"}, "labels", map[string]any{"model": "fashion"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				code, _, body := call(t, d, c.u, http.MethodPost, c.path, c.body)
				answers.Write(body)
				if code != http.StatusForbidden || !strings.Contains(string(body), "may not act; the data source allows Editor, Admin") {
					t.Fatalf("%d %s", code, body)
				}
			})
		}
		if n := strings.Count(log.String(), "action refused"); n != 6 {
			t.Errorf("%d refusals logged, want 6", n)
		}
		if e.backend.count() != 0 {
			t.Error("a refused retrain started a job")
		}
		// allowedRoles narrows it: an Editor may not act where only Admin may.
		only, _ := newDS(t, e.settings(t, "", map[string]any{"allowedRoles": []string{"Admin"}}, nil))
		if code, _, body := call(t, only, editor, http.MethodPost, "retrain", map[string]any{"model": "fashion"}); code != http.StatusForbidden {
			t.Errorf("editor where only Admin may: %d %s", code, body)
		}
	})

	t.Run("labels", func(t *testing.T) {
		code, _, body := call(t, d, editor, http.MethodPost, "labels", map[string]any{"model": "fashion", "labels": []map[string]any{
			{"key": e.samples[0].key, "label": 1}, {"key": e.samples[2].key, "label": "Pullover"}}})
		answers.Write(body)
		if code != http.StatusCreated {
			t.Fatalf("%d %s", code, body)
		}
		var ans struct {
			Stored int    `json:"stored"`
			Object string `json:"object"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.Stored != 2 {
			t.Fatalf("%s: %v", body, err)
		}
		rc, _, err := e.bucket.Get(context.Background(), ans.Object)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(rc)
		rc.Close()
		if n := strings.Count(string(stored), `"source":"grafana","annotator":"ana"`); n != 2 {
			t.Errorf("label file: %d lines by ana from grafana:\n%s", n, stored)
		}
		if !strings.Contains(log.String(), `"action":"label","user":"ana","role":"Editor","model":"fashion","labels":2`) {
			t.Errorf("label action not logged:\n%s", log.String())
		}
	})

	t.Run("alias", func(t *testing.T) {
		// A rollback of stable from 2 to 1, signed by the controller.
		code, _, body := call(t, d, editor, http.MethodPost, "aliases", map[string]any{"model": "fashion", "alias": "stable", "version": 1, "reason": "canary errors"})
		answers.Write(body)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		var ans struct {
			Version, Previous, Sequence int64
			Signed, Changed             bool
			By, Reason                  string
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.Version != 1 || ans.Previous != 2 || !ans.Signed || !ans.Changed ||
			ans.By != "grafana" || ans.Reason != "grafana user ana: canary errors" {
			t.Fatalf("%s: %v", body, err)
		}
		repo := modelrepo.New(e.bucket)
		a, err := repo.Alias(context.Background(), "fashion", "stable")
		if err != nil {
			t.Fatal(err)
		}
		if err := modelrepo.VerifyPointer(&a, modelrepo.NewVerifier(e.signer.Public()), "fashion", "stable"); err != nil || a.Version != 1 || a.Sequence != ans.Sequence {
			t.Fatalf("stored alias %+v: %v", a, err)
		}
		if !strings.Contains(log.String(), `"action":"alias","user":"ana","role":"Editor","model":"fashion","alias":"stable","version":1,"status":200`) {
			t.Errorf("alias action not logged:\n%s", log.String())
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			name, path string
			body       any
			code       int
			want       string
		}{
			{"labels unknown field", "labels", map[string]any{"model": "fashion", "labels": []map[string]any{{"key": e.samples[0].key, "label": 1, "source": "me"}}}, 400, `unknown field \"source\"`},
			{"labels bad key", "labels", map[string]any{"model": "fashion", "labels": []map[string]any{{"key": "xyz", "label": 1}}}, 400, "labels[0].key"},
			{"labels none", "labels", map[string]any{"model": "fashion"}, 400, "at least one label"},
			{"labels not JSON", "labels", []byte("{"), 400, "body:"},
			{"labels too large", "labels", bytes.Repeat([]byte(" "), maxLabelsBody+1), 413, "more than"},
			{"retrain bad model", "retrain", map[string]any{"model": "a b"}, 400, "is not a model name"},
			{"retrain unknown model", "retrain", map[string]any{"model": "digits"}, 404, "not in the controller's models"},
			{"retrain long reason", "retrain", map[string]any{"model": "fashion", "reason": strings.Repeat("x", 1100)}, 400, "reason: at most"},
			{"cancel unknown job", "jobs/job-nope/cancel", nil, 404, `no job \"job-nope\"`},
			{"alias latest", "aliases", map[string]any{"model": "fashion", "alias": "latest", "version": 1}, 400, `\"latest\" is not an alias`},
			{"alias no such version", "aliases", map[string]any{"model": "fashion", "alias": "stable", "version": 9}, 404, "fashion has no version 9"},
			{"alias no version", "aliases", map[string]any{"model": "fashion", "alias": "stable"}, 400, "version: want a positive"},
			{"alias bad name", "aliases", map[string]any{"model": "fashion", "alias": "a/b", "version": 1}, 400, "is not an alias name"},
			{"alias unknown model", "aliases", map[string]any{"model": "digits", "alias": "stable", "version": 1}, 404, "not in the controller's models"},
			{"alias unknown field", "aliases", map[string]any{"model": "fashion", "alias": "stable", "version": 1, "key": "k"}, 400, `unknown field \"key\"`},
			{"no such resource", "jobs", nil, 404, "no resource POST /jobs"},
		} {
			t.Run(c.name, func(t *testing.T) {
				code, _, body := call(t, d, admin, http.MethodPost, c.path, c.body)
				answers.Write(body)
				if code != c.code || !strings.Contains(string(body), c.want) {
					t.Fatalf("%d %s; want %d containing %q", code, body, c.code, c.want)
				}
			})
		}
	})

	t.Run("models", func(t *testing.T) {
		code, _, body := call(t, d, viewer, http.MethodGet, "models", nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"models":["camera","fashion"]`) {
			t.Errorf("%d %s", code, body)
		}
	})
	noSecrets(t, "answers", answers.Bytes())
	noSecrets(t, "log", []byte(log.String()))
}

func thumb(t *testing.T, d *Datasource, key string) image.Image {
	t.Helper()
	code, _, body := call(t, d, viewer, http.MethodGet, "thumbnail?key="+key, nil)
	if code != http.StatusOK {
		t.Fatalf("thumbnail %s: %d %s", key, code, body)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestHealth checks that the health check tells which server answers and whether its
// credentials work, and names a bad setting, never quoting a secret.
func TestHealth(t *testing.T) {
	e := fileEnv(t)
	closed := "http://127.0.0.1:1"
	for _, c := range []struct {
		name     string
		jsonData map[string]any
		secure   map[string]string
		repo     string
		ok       bool
		want     []string
	}{
		{"all work", nil, nil, e.bucketURL, true, []string{"collector: answers, credentials work", "controller: answers, credentials work", "repository: answers, credentials work (1 models)"}},
		{"no repository", nil, nil, "", true, []string{"repository: not configured"}},
		{"repository through the collector", nil, map[string]string{SecretRepositoryToken: "token-" + edgeNode}, e.collURL + "/v1/repo", true, []string{"repository: answers, credentials work (1 models)"}},
		{"repository refuses", nil, map[string]string{SecretRepositoryToken: "wrong"}, e.collURL + "/v1/repo", false, []string{"repository: cannot list the models"}},
		{"wrong collector token", nil, map[string]string{SecretCollectorToken: "not-the-token"}, "", false, []string{"collector: answers, but refuses the operator token (401: unknown or revoked operator token)", "controller: answers, credentials work"}},
		{"controller's token for the collector", nil, map[string]string{SecretCollectorToken: controllerOpToken}, "", false, []string{"collector: answers, but refuses"}},
		{"controller down", map[string]any{"controllerUrl": closed}, nil, "", false, []string{"collector: answers, credentials work", "controller: does not answer"}},
		{"controller only", map[string]any{"collectorUrl": ""}, nil, "", true, []string{"collector: not configured", "controller: answers"}},
		{"unknown key", map[string]any{"colectorUrl": "x"}, nil, "", false, []string{`jsonData: json: unknown field "colectorUrl"`}},
		{"bad URL", map[string]any{"collectorUrl": "ftp://c"}, nil, "", false, []string{"jsonData.collectorUrl: want an http:// or https:// URL"}},
		{"token in URL", map[string]any{"collectorUrl": "https://u:" + collectorOpToken + "@c"}, nil, "", false, []string{"jsonData.collectorUrl: credentials in the URL are not accepted"}},
		{"no token", nil, map[string]string{SecretControllerToken: ""}, "", false, []string{"secureJsonData.controllerToken: must be set"}},
		{"token with spaces", nil, map[string]string{SecretCollectorToken: "two words"}, "", false, []string{"secureJsonData.collectorToken: the token must be printable ASCII"}},
		{"bad role", map[string]any{"allowedRoles": []string{"Editor", "Owner"}}, nil, "", false, []string{`jsonData.allowedRoles[1]: "Owner" is not a Grafana role`}},
		{"nothing", map[string]any{"collectorUrl": "", "controllerUrl": ""}, nil, "", false, []string{"jsonData.collectorUrl: set it, controllerUrl, or both"}},
		{"bad CA", nil, map[string]string{SecretTLSCACert: "not PEM"}, "", false, []string{"secureJsonData.tlsCACert: holds no PEM certificate"}},
		{"bad repository URL", nil, nil, "s3://b?endpoint=x&color=red", false, []string{"jsonData.repositoryUrl:", `unknown parameter "color"`}},
		{"http repository without token", nil, nil, e.collURL + "/v1/repo", false, []string{"set secureJsonData.repositoryToken"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, log := newDS(t, e.settings(t, c.repo, c.jsonData, c.secure))
			res, err := d.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if (res.Status == backend.HealthStatusOk) != c.ok {
				t.Errorf("status %v, want ok %v: %s", res.Status, c.ok, res.Message)
			}
			for _, w := range c.want {
				if !strings.Contains(res.Message, w) {
					t.Errorf("message %q lacks %q", res.Message, w)
				}
			}
			noSecrets(t, "health", append([]byte(res.Message), res.JSONDetails...))
			noSecrets(t, "log", []byte(log.String()))
			if strings.HasPrefix(res.Message, "configuration:") {
				// A data source whose settings do not validate answers the error to queries too.
				res := queryRes(t, d, QueryJobs, nil, lastHour())
				if res.Error == nil || !strings.Contains(res.Error.Error(), "configuration:") {
					t.Errorf("query on bad settings: %v", res.Error)
				}
			}
		})
	}
}

// TestThumbCache checks the cache's two bounds and its recency order.
func TestThumbCache(t *testing.T) {
	for _, c := range []struct {
		name               string
		entries, bytes     int
		puts               []int // sizes of entries k0, k1, ...
		touch              string
		wantKept, wantGone []string
	}{
		{"entries", 2, 1000, []int{10, 10, 10}, "", []string{"k1", "k2"}, []string{"k0"}},
		{"recency", 2, 1000, []int{10, 10, 10}, "k0", []string{"k0", "k2"}, []string{"k1"}},
		{"bytes", 10, 25, []int{10, 10, 10}, "", []string{"k1", "k2"}, []string{"k0"}},
		{"too big", 10, 25, []int{30, 10}, "", []string{"k1"}, []string{"k0"}},
		{"off", 0, 25, []int{1}, "", nil, []string{"k0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc := newThumbCache(c.entries, c.bytes)
			for i, n := range c.puts {
				key := "k" + string(rune('0'+i))
				tc.put(key, make([]byte, n))
				if c.touch != "" && i == 1 {
					tc.get(c.touch)
				}
			}
			for _, k := range c.wantKept {
				if _, ok := tc.get(k); !ok {
					t.Errorf("%s evicted", k)
				}
			}
			for _, k := range c.wantGone {
				if _, ok := tc.get(k); ok {
					t.Errorf("%s kept", k)
				}
			}
			if _, b, _, _ := tc.stats(); b > c.bytes {
				t.Errorf("%d bytes held, bound %d", b, c.bytes)
			}
		})
	}
}

// TestRepositoryCredentialsFromSettings checks that an s3 repository takes its keys from
// secureJsonData, not from Grafana's environment.
func TestRepositoryCredentialsFromSettings(t *testing.T) {
	t.Setenv(objstore.EnvAccessKey, "env-key")
	t.Setenv(objstore.EnvSecretKey, "env-secret")
	s := &Settings{RepositoryURL: "s3://models?endpoint=minio:9000", repoAccessKey: "ak", repoSecretKey: "sk"}
	tg, err := s.repositoryTarget()
	if err != nil {
		t.Fatal(err)
	}
	if tg.S3.AccessKey != "ak" || tg.S3.SecretKey != "sk" {
		t.Errorf("keys %q %q, want those of secureJsonData", tg.S3.AccessKey, tg.S3.SecretKey)
	}
	s.repoAccessKey, s.repoSecretKey = "", ""
	if tg, err = s.repositoryTarget(); err != nil || tg.S3.AccessKey != "" {
		t.Errorf("no keys: %q, %v; want anonymous, not the environment's", tg.S3.AccessKey, err)
	}
}
