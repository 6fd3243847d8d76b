package labels_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/catalog"
	"github.com/edgeloop/edgeloop/collector/labels"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// fuzzService is a labelling API over a directory bucket with an empty catalog: the label
// endpoints store what they accept by key without looking samples up, and refuse every
// request id as unknown.
func fuzzService(f *testing.F) (http.Handler, objstore.Bucket) {
	b, err := objstore.NewFS(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	cat, err := catalog.New(catalog.Options{Bucket: b})
	if err != nil {
		f.Fatal(err)
	}
	// Loaded (empty), so that a label by request id is looked up and refused as unknown.
	if err := cat.Rebuild(context.Background()); err != nil {
		f.Fatal(err)
	}
	svc, err := labels.New(labels.Options{Bucket: b, Catalog: cat, Instance: "c0", RequireOperator: operator,
		Now: func() time.Time { return time.Date(2026, 3, 15, 8, 0, 0, 0, time.UTC) }})
	if err != nil {
		f.Fatal(err)
	}
	return svc.Handler(), b
}

// post sends body to path as an operator and checks the answer: 201 with what was stored, or
// a 4xx with a JSON error, never a 5xx (the bucket works). It returns the stored lines, read
// back from the bucket and removed again.
func post(t *testing.T, h http.Handler, b objstore.Bucket, path string, body []byte) []labels.Line {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer op")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 500 || (rec.Code != http.StatusCreated && (rec.Code < 400 || rec.Code > 499)) {
		t.Fatalf("%s answered %d: %s", path, rec.Code, rec.Body)
	}
	var answer struct {
		Error  string `json:"error"`
		Stored int    `json:"stored"`
		Object string `json:"object"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatalf("%s answered %d without JSON: %q", path, rec.Code, rec.Body)
	}
	if rec.Code != http.StatusCreated {
		if answer.Error == "" {
			t.Fatalf("%s answered %d without an error message", path, rec.Code)
		}
		return nil
	}
	if answer.Object == "" {
		if answer.Stored != 0 {
			t.Fatalf("%d labels stored without an object", answer.Stored)
		}
		return nil
	}
	ctx := context.Background()
	data, _, err := objstore.ReadAll(ctx, b, answer.Object, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, answer.Object); err != nil {
		t.Fatal(err)
	}
	var lines []labels.Line
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l labels.Line
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("stored line %q does not decode: %v", sc.Bytes(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != answer.Stored {
		t.Fatalf("answered %d stored, the object holds %d lines", answer.Stored, len(lines))
	}
	for _, l := range lines {
		if !sample.ValidKey(l.Key) {
			t.Fatalf("stored key %q is not a sample key", l.Key)
		}
		// A label is what a trainer reads: a class index or a class name, in canonical JSON.
		var name string
		if json.Unmarshal(l.Label, &name) == nil {
			if again, _ := json.Marshal(name); !bytes.Equal(again, l.Label) || name == "" {
				t.Fatalf("stored label %s is not canonical", l.Label)
			}
		} else if n, err := strconv.ParseInt(string(l.Label), 10, 64); err != nil || n < 0 || n > labels.MaxClassIndex || strconv.FormatInt(n, 10) != string(l.Label) {
			t.Fatalf("stored label %s is neither a class name nor a class index", l.Label)
		}
	}
	return lines
}

// FuzzPostLabels feeds arbitrary bodies to POST /v1/labels (seeds: testdata/fuzz): no panic,
// no 5xx, and what is stored reads back as canonical labels of sample keys.
func FuzzPostLabels(f *testing.F) {
	h, b := fuzzService(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, l := range post(t, h, b, "/v1/labels", body) {
			if l.Source == "" {
				t.Fatal("a label stored without a source")
			}
		}
	})
}

// FuzzImportLabelStudio feeds arbitrary bodies to the Label Studio import (seeds: a real
// export's shape, cancelled and empty annotations, users as ids and objects): no panic, no
// 5xx, and what is stored reads back as canonical class names with source labelstudio.
func FuzzImportLabelStudio(f *testing.F) {
	h, b := fuzzService(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, l := range post(t, h, b, "/v1/labelstudio/fashion/import", body) {
			if l.Source != "labelstudio" || l.Label[0] != '"' {
				t.Fatalf("imported line %+v: want source labelstudio and a class name", l)
			}
		}
	})
}
