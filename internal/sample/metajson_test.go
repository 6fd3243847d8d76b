package sample

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// metaFixture is a complete metadata as the exporter writes it.
func metaFixture() Meta {
	return Meta{
		SchemaVersion:  SchemaVersion,
		Key:            "0123456789abcdef0123456789abcdef",
		Model:          "fashion",
		Version:        "3",
		Node:           "edge-0001",
		Time:           time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC),
		RequestID:      "req-42",
		Prediction:     7,
		PredictedClass: "Sneaker",
		Scores:         []float32{-1.5, 0.25, 0, 1e-7, -3, 2, 0.5, 4.75, -0.125, 1, 3.4028235e38},
		ScoresKind:     ScoresLogits,
		Confidence:     map[string]float64{"max_softmax": 0.61, "margin": 0.27, "entropy": 1.13},
		Reason:         "low_confidence",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
		Input:          InputInfo{Name: "input", Datatype: "FP32", Shape: []int64{1, 28, 28}, File: NPYFile},
	}
}

// checkParseMeta holds decodeMeta (parseMeta, then encoding/json for what it leaves) to
// encoding/json alone: the same metadata or the same error, and parseMeta never accepting what
// encoding/json refuses.
func checkParseMeta(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	want, wantErr := decodeMetaJSON(b)
	got, err := decodeMeta(b)
	var m Meta
	fast = parseMeta(b, &m)
	switch {
	case fast && wantErr != nil:
		t.Fatalf("parseMeta accepts %q, which encoding/json refuses: %v", b, wantErr)
	case (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error():
		t.Fatalf("decodeMeta(%q) = error %v, encoding/json %v", b, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("decodeMeta(%q) =\n%#v\nencoding/json:\n%#v", b, got, want)
	}
	if wantErr == nil {
		checkMarshalMeta(t, &want)
	}
	return fast
}

// checkMarshalMeta holds marshalMeta and marshalIndex to json.Marshal: the same bytes, or
// the same refusal.
func checkMarshalMeta(t *testing.T, m *Meta) {
	t.Helper()
	want, wantErr := json.Marshal(m)
	got, err := marshalMeta(m)
	if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("marshalMeta(%#v) = %s, %v; json.Marshal: %s, %v", m, got, err, want, wantErr)
	}
	s := &Sample{Meta: *m, Input: []byte("input")}
	e := s.index(len(want))
	want, wantErr = json.Marshal(&e)
	got, err = marshalIndex(&e)
	if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("marshalIndex(%#v) = %s, %v; json.Marshal: %s, %v", e, got, err, want, wantErr)
	}
}

// TestMarshalMeta checks the hand-written encoders against json.Marshal on metadata they
// encode themselves and on metadata they leave to it.
func TestMarshalMeta(t *testing.T) {
	base := metaFixture()
	if _, ok := appendMeta(nil, &base); !ok {
		t.Fatal("appendMeta left the fixture to encoding/json")
	}
	cases := map[string]func(m *Meta){
		"as is":            func(m *Meta) {},
		"no optional text": func(m *Meta) { m.RequestID, m.PredictedClass, m.TraceID = "", "", "" },
		"nil lists":        func(m *Meta) { m.Scores, m.Confidence, m.Input.Shape = nil, nil, nil },
		"empty lists":      func(m *Meta) { m.Scores, m.Confidence, m.Input.Shape = []float32{}, map[string]float64{}, []int64{} },
		"label":            func(m *Meta) { m.Label = json.RawMessage(` "A<b>" `) },
		"html":             func(m *Meta) { m.PredictedClass = "a<b>&c" },
		"utf-8":            func(m *Meta) { m.PredictedClass = "Größe\u2028" },
		"invalid utf-8":    func(m *Meta) { m.RequestID = "a\xffb" },
		"quote":            func(m *Meta) { m.RequestID = `a"b\\c` },
		"control":          func(m *Meta) { m.RequestID = "a\nb\x7f" },
		"tiny and huge":    func(m *Meta) { m.Scores = []float32{1e-7, -1e-10, 1e21, 3e38, 1e-45, 123456789} },
		"float64 exponents": func(m *Meta) {
			m.Confidence = map[string]float64{"a": 1e-7, "b": 1e21, "c": 1e300, "d": 5e-324, "e": math.Copysign(0, -1)}
		},
		"nan":              func(m *Meta) { m.Confidence = map[string]float64{"a": math.NaN()} },
		"infinite score":   func(m *Meta) { m.Scores = []float32{float32(math.Inf(1))} },
		"zone":             func(m *Meta) { m.Time = m.Time.In(time.FixedZone("x", 3600)) },
		"year 10000":       func(m *Meta) { m.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative numbers": func(m *Meta) { m.Prediction, m.SchemaVersion, m.Input.Shape = -3, -1, []int64{-1, 0} },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			m := metaFixture()
			change(&m)
			checkMarshalMeta(t, &m)
		})
	}
}

// TestParseMeta checks that what edgeloop's encoders write takes the hand-written path, and
// that documents off that path decode (or fail) exactly as by encoding/json.
func TestParseMeta(t *testing.T) {
	m := metaFixture()
	plain, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	indented, _ := json.MarshalIndent(&m, " ", "\t")
	empty := metaFixture()
	empty.RequestID, empty.PredictedClass, empty.TraceID = "", "", ""
	empty.Scores, empty.Confidence, empty.Input.Shape = []float32{}, map[string]float64{}, []int64{}
	emptyJSON, _ := json.Marshal(&empty)
	utf := metaFixture()
	utf.PredictedClass = "T-Shirt/Top Größe ✓"
	utfJSON, _ := json.Marshal(&utf)
	for name, b := range map[string][]byte{"marshalled": plain, "indented": indented, "empty lists": emptyJSON, "utf-8": utfJSON} {
		if !checkParseMeta(t, b) {
			t.Errorf("%s: parseMeta left %s to encoding/json", name, b)
		}
	}
	s := string(plain)
	off := map[string]string{
		"label index":        strings.Replace(s, `"reason"`, `"label":3,"reason"`, 1),
		"label name":         strings.Replace(s, `"reason"`, `"label":"Sneaker","reason"`, 1),
		"label null":         strings.Replace(s, `"reason"`, `"label":null,"reason"`, 1),
		"escaped string":     strings.Replace(s, `"req-42"`, `"req-\u0034\n2"`, 1),
		"html escape":        strings.Replace(s, `"Sneaker"`, `"A\u0026B"`, 1),
		"invalid utf-8":      strings.Replace(s, `"Sneaker"`, "\"Sn\xffeaker\"", 1),
		"control character":  strings.Replace(s, `"Sneaker"`, "\"Sn\x01eaker\"", 1),
		"duplicate field":    strings.Replace(s, `"reason"`, `"model":"other","reason"`, 1),
		"duplicate map":      strings.Replace(s, `"confidence":{`, `"confidence":{"x":1},"confidence":{`, 1),
		"map key twice":      strings.Replace(s, `"confidence":{`, `"confidence":{"margin":5,`, 1),
		"upper-case field":   strings.Replace(s, `"model"`, `"Model"`, 1),
		"unknown field":      strings.Replace(s, `"reason"`, `"extra":1,"reason"`, 1),
		"null string":        strings.Replace(s, `"req-42"`, `null`, 1),
		"null scores":        strings.Replace(s, `"scores":[`, `"scores":null,"x":[`, 1),
		"float prediction":   strings.Replace(s, `"prediction":7`, `"prediction":7.0`, 1),
		"exponent int":       strings.Replace(s, `"prediction":7`, `"prediction":7e0`, 1),
		"int overflow":       strings.Replace(s, `"prediction":7`, `"prediction":99999999999999999999`, 1),
		"negative zero":      strings.Replace(s, `"prediction":7`, `"prediction":-0`, 1),
		"leading zero":       strings.Replace(s, `"prediction":7`, `"prediction":07`, 1),
		"float32 overflow":   strings.Replace(s, `"scores":[`, `"scores":[1e39,`, 1),
		"float64 overflow":   strings.Replace(s, `"confidence":{`, `"confidence":{"big":1e309,`, 1),
		"string for number":  strings.Replace(s, `"prediction":7`, `"prediction":"7"`, 1),
		"bad time":           strings.Replace(s, `"2026-03-14T15:09:26.535897932Z"`, `"2026-03-14 15:09:26Z"`, 1),
		"offset time":        strings.Replace(s, `"2026-03-14T15:09:26.535897932Z"`, `"2026-03-14T17:09:26.5+02:00"`, 1),
		"time not a string":  strings.Replace(s, `"2026-03-14T15:09:26.535897932Z"`, `1`, 1),
		"trailing data":      s + " {}",
		"trailing comma":     strings.Replace(s, `}}`, `},}`, 1),
		"truncated":          s[:len(s)/2],
		"not an object":      `[1,2]`,
		"null document":      `null`,
		"empty":              ``,
		"shape of floats":    strings.Replace(s, `"shape":[1,28,28]`, `"shape":[1,28.5,28]`, 1),
		"shape of negatives": strings.Replace(s, `"shape":[1,28,28]`, `"shape":[-1,28,28]`, 1),
	}
	for name, doc := range off {
		t.Run(name, func(t *testing.T) { checkParseMeta(t, []byte(doc)) })
	}
}

// FuzzParseMeta compares decodeMeta with encoding/json on arbitrary documents (seeds: the
// fixture and variations of it).
func FuzzParseMeta(f *testing.F) {
	m := metaFixture()
	b, _ := json.Marshal(&m)
	f.Add(b)
	b, _ = json.MarshalIndent(&m, "", "  ")
	f.Add(b)
	m.Label = json.RawMessage(`"Sneaker"`)
	b, _ = json.Marshal(&m)
	f.Add(b)
	f.Add([]byte(`{"scores":[],"confidence":{},"input":{"shape":[]}}`))
	f.Add([]byte(`{"prediction":-0,"scores":[1e-45,-0.0,3.4e38],"confidence":{"a":1E+2,"a":2}}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkParseMeta(t, b) })
}

// BenchmarkMarshalMeta measures encoding one sample's metadata and index line, the
// hand-written path against encoding/json.
func BenchmarkMarshalMeta(b *testing.B) {
	m := metaFixture()
	s := &Sample{Meta: m, Input: make([]byte, 4096)}
	e := s.index(600)
	for _, c := range []struct {
		name  string
		meta  func(*Meta) ([]byte, error)
		index func(*IndexEntry) ([]byte, error)
	}{
		{"handwritten", marshalMeta, marshalIndex},
		{"encoding-json", func(m *Meta) ([]byte, error) { return json.Marshal(m) }, func(e *IndexEntry) ([]byte, error) { return json.Marshal(e) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.meta(&m); err != nil {
					b.Fatal(err)
				}
				if _, err := c.index(&e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeMeta measures decoding one sample's metadata, the hand-written path against
// encoding/json.
func BenchmarkDecodeMeta(b *testing.B) {
	m := metaFixture()
	doc, _ := json.Marshal(&m)
	for _, c := range []struct {
		name   string
		decode func([]byte) (Meta, error)
	}{{"handwritten", decodeMeta}, {"encoding-json", decodeMetaJSON}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.decode(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
