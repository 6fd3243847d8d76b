package sample_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/sample"
)

// goldenKey is the key of newSample(t, 0). It changes only when the canonical encoding (or the
// golden sample) does — which breaks every stored key's meaning, so it must never change
// silently. docs/wire-format.md's worked example names the same key.
const goldenKey = "fad5588f9fa415991c2682266f8889bb"

func TestNewFillsKeyVersionAndUTC(t *testing.T) {
	m := testMeta(0)
	m.Time = m.Time.In(time.FixedZone("CET", 3600))
	m.SchemaVersion = 0
	m.Key = "whatever"
	s, err := sample.New(m, npyInput(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Meta.SchemaVersion != sample.SchemaVersion {
		t.Errorf("schema_version = %d", s.Meta.SchemaVersion)
	}
	if s.Meta.Time.Location() != time.UTC || !s.Meta.Time.Equal(fixedTime) {
		t.Errorf("time = %v, want %v in UTC", s.Meta.Time, fixedTime)
	}
	if s.Meta.Key != goldenKey {
		t.Errorf("key = %s, want %s (the zone of the time is not part of the key)", s.Meta.Key, goldenKey)
	}
	if s.MetaName() != goldenKey+".json" || s.InputName() != goldenKey+".input.npy" {
		t.Errorf("names = %s, %s", s.MetaName(), s.InputName())
	}
}

// TestGolden pins the key, the metadata JSON and the tar bytes of fixed samples to files in
// testdata/golden, which were checked against an independent implementation of the key's
// canonical encoding (docs/wire-format.md) and against tar(1) and Python's tarfile.
func TestGolden(t *testing.T) {
	s := newSample(t, 0)
	if s.Meta.Key != goldenKey {
		t.Fatalf("key = %s, want %s: the canonical encoding changed", s.Meta.Key, goldenKey)
	}
	wantJSON, err := os.ReadFile("testdata/golden/sample.json")
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, err := s.MetaJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(gotJSON, '\n'), wantJSON) {
		t.Errorf("metadata JSON:\n got %s\nwant %s", gotJSON, wantJSON)
	}
	input, err := os.ReadFile("testdata/golden/sample.input.npy")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(input, s.Input) {
		t.Error("input differs from testdata/golden/sample.input.npy")
	}
	// The key recomputed from the stored files alone, as the collector does.
	var m sample.Meta
	if err := json.Unmarshal(wantJSON, &m); err != nil {
		t.Fatal(err)
	}
	if k := sample.Key(m, input); k != goldenKey {
		t.Errorf("Key(testdata) = %s, want %s", k, goldenKey)
	}
	wantTar, err := os.ReadFile("testdata/golden/batch.tar")
	if err != nil {
		t.Fatal(err)
	}
	if got := writeTar(t, s, newSample(t, 1)); !bytes.Equal(got, wantTar) {
		t.Error("WriteTar differs from testdata/golden/batch.tar")
	}
}

// TestKeyCoversContent changes one field at a time: every field but the label (and the key and
// schema version themselves) changes the key.
func TestKeyCoversContent(t *testing.T) {
	base := testMeta(0)
	input := npyInput(t, 0)
	baseKey := sample.Key(base, input)
	tests := []struct {
		name   string
		change func(m *sample.Meta, in *[]byte)
		same   bool
	}{
		{"label index", func(m *sample.Meta, _ *[]byte) { m.Label = sample.IndexLabel(3) }, true},
		{"label name", func(m *sample.Meta, _ *[]byte) { m.Label = sample.NameLabel("Sneaker") }, true},
		{"key", func(m *sample.Meta, _ *[]byte) { m.Key = "0123456789abcdef0123456789abcdef" }, true},
		{"schema version", func(m *sample.Meta, _ *[]byte) { m.SchemaVersion = 1 }, true},
		{"time zone", func(m *sample.Meta, _ *[]byte) { m.Time = m.Time.In(time.FixedZone("X", -7200)) }, true},
		{"model", func(m *sample.Meta, _ *[]byte) { m.Model = "fashion2" }, false},
		{"version", func(m *sample.Meta, _ *[]byte) { m.Version = "4" }, false},
		{"node", func(m *sample.Meta, _ *[]byte) { m.Node = "edge-0002" }, false},
		{"time nanosecond", func(m *sample.Meta, _ *[]byte) { m.Time = m.Time.Add(time.Nanosecond) }, false},
		{"request id", func(m *sample.Meta, _ *[]byte) { m.RequestID = "req-43" }, false},
		{"prediction", func(m *sample.Meta, _ *[]byte) { m.Prediction = 6 }, false},
		{"predicted class", func(m *sample.Meta, _ *[]byte) { m.PredictedClass = "Bag" }, false},
		{"score", func(m *sample.Meta, _ *[]byte) {
			m.Scores = append([]float32(nil), m.Scores...)
			m.Scores[2] = float32(math.Copysign(0, -1))
		}, false},
		{"scores kind", func(m *sample.Meta, _ *[]byte) { m.ScoresKind = sample.ScoresProbabilities }, false},
		{"confidence value", func(m *sample.Meta, _ *[]byte) {
			m.Confidence = map[string]float64{"max_softmax": 0.62, "margin": 0.27, "entropy": 1.13}
		}, false},
		{"confidence name", func(m *sample.Meta, _ *[]byte) {
			m.Confidence = map[string]float64{"max_softmax2": 0.61, "margin": 0.27, "entropy": 1.13}
		}, false},
		{"reason", func(m *sample.Meta, _ *[]byte) { m.Reason = "random" }, false},
		{"trace id", func(m *sample.Meta, _ *[]byte) { m.TraceID = "" }, false},
		{"input name", func(m *sample.Meta, _ *[]byte) { m.Input.Name = "x" }, false},
		{"input datatype", func(m *sample.Meta, _ *[]byte) { m.Input.Datatype = "UINT8" }, false},
		{"input shape", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = []int64{784} }, false},
		{"input file", func(m *sample.Meta, _ *[]byte) { m.Input.File = "input.bin" }, false},
		{"input byte", func(_ *sample.Meta, in *[]byte) {
			*in = bytes.Clone(*in)
			(*in)[len(*in)-1] ^= 1
		}, false},
		// Field boundaries are length-prefixed: moving a character between fields changes the key.
		{"boundary", func(m *sample.Meta, _ *[]byte) { m.Model, m.Version = "fashion3", "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, in := base, input
			tt.change(&m, &in)
			if got := sample.Key(m, in); (got == baseKey) != tt.same {
				t.Errorf("key %s vs %s: same = %v, want %v", got, baseKey, got == baseKey, tt.same)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name   string
		change func(m *sample.Meta, in *[]byte)
		want   string // a problem the error must list
	}{
		{"schema version", func(m *sample.Meta, _ *[]byte) { m.SchemaVersion = 2 }, "schema_version: must be 1, got 2"},
		{"model empty", func(m *sample.Meta, _ *[]byte) { m.Model = "" }, `model: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got ""`},
		{"model slash", func(m *sample.Meta, _ *[]byte) { m.Model = "a/b" }, `model: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got "a/b"`},
		{"model too long", func(m *sample.Meta, _ *[]byte) { m.Model = long }, "model: must be 1-128"},
		{"version dotdot", func(m *sample.Meta, _ *[]byte) { m.Version = ".." }, `version: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got ".."`},
		{"node space", func(m *sample.Meta, _ *[]byte) { m.Node = "edge 1" }, `node: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got "edge 1"`},
		{"reason empty", func(m *sample.Meta, _ *[]byte) { m.Reason = "" }, `reason: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter, digit or '_', got ""`},
		{"time zero", func(m *sample.Meta, _ *[]byte) { m.Time = time.Time{} }, "time: must be set"},
		{"time before 1970", func(m *sample.Meta, _ *[]byte) { m.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }, "time: must be from 1970 to 2199, got 1969-12-31T00:00:00Z"},
		{"time after 2199", func(m *sample.Meta, _ *[]byte) { m.Time = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }, "time: must be from 1970 to 2199, got 2200-01-01T00:00:00Z"},
		{"request id control", func(m *sample.Meta, _ *[]byte) { m.RequestID = "a\nb" }, `request_id: must be valid UTF-8 without control characters, got "a\nb"`},
		{"request id long", func(m *sample.Meta, _ *[]byte) { m.RequestID = strings.Repeat("r", 257) }, "request_id: must be at most 256 bytes, got 257"},
		{"predicted class utf8", func(m *sample.Meta, _ *[]byte) { m.PredictedClass = "\xff" }, `predicted_class: must be valid UTF-8 without control characters, got "\xff"`},
		{"prediction negative", func(m *sample.Meta, _ *[]byte) { m.Prediction = -1 }, "prediction: must be a class index below the 10 scores, got -1"},
		{"prediction too high", func(m *sample.Meta, _ *[]byte) { m.Prediction = 10 }, "prediction: must be a class index below the 10 scores, got 10"},
		{"no scores", func(m *sample.Meta, _ *[]byte) { m.Scores = nil; m.Prediction = 0 }, "prediction: must be a class index below the 0 scores, got 0"},
		{"score NaN", func(m *sample.Meta, _ *[]byte) { m.Scores = []float32{0, float32(math.NaN())}; m.Prediction = 0 }, "scores[1]: must be finite, got NaN"},
		{"score Inf", func(m *sample.Meta, _ *[]byte) { m.Scores = []float32{float32(math.Inf(-1))}; m.Prediction = 0 }, "scores[0]: must be finite, got -Inf"},
		{"scores kind", func(m *sample.Meta, _ *[]byte) { m.ScoresKind = "softmax" }, `scores_kind: must be "logits" or "probabilities", got "softmax"`},
		{"confidence name", func(m *sample.Meta, _ *[]byte) { m.Confidence = map[string]float64{"max softmax": 1} }, `confidence: scorer name "max softmax": must be 1-128`},
		{"confidence NaN", func(m *sample.Meta, _ *[]byte) { m.Confidence = map[string]float64{"margin": math.NaN()} }, "confidence.margin: must be finite, got NaN"},
		{"trace id short", func(m *sample.Meta, _ *[]byte) { m.TraceID = "abc" }, `trace_id: must be empty or 32 lowercase hex digits, not all zero, got "abc"`},
		{"trace id zero", func(m *sample.Meta, _ *[]byte) { m.TraceID = strings.Repeat("0", 32) }, "trace_id: must be empty or 32 lowercase hex digits, not all zero"},
		{"label negative", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage("-1") }, "label: must be a class index (an integer from 0) or a class name, got -1"},
		{"label fraction", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage("1.5") }, "label: must be a class index (an integer from 0) or a class name, got 1.5"},
		{"label object", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage(`{"a":1}`) }, `label: must be a class index or a class name, got "{\"a\":1}"`},
		{"label empty name", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage(`""`) }, `label: a class name must be 1-256 bytes of printable UTF-8, got ""`},
		{"label bad UTF-8", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage("\"\xff\"") }, `label: must be a class index or a class name, got "\"\xff\""`},
		{"label bad JSON", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage(`7 ]`) }, `label: must be a class index or a class name, got "7 ]"`},
		{"input name empty", func(m *sample.Meta, _ *[]byte) { m.Input.Name = "" }, "input.name: must be set"},
		{"input datatype", func(m *sample.Meta, _ *[]byte) { m.Input.Datatype = "float32" }, `input.datatype: must be an Open Inference Protocol datatype (BOOL, UINT8 ... INT64, FP16, FP32, FP64, BF16, BYTES), got "float32"`},
		{"input shape negative", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = []int64{-1, 784} }, "input.shape: dimension 0 is negative (-1)"},
		{"input shape huge", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = []int64{1 << 20, 1 << 20} }, "input.shape: [1048576 1048576] has more than 268435456 elements"},
		{"input shape rank", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = make([]int64, 33) }, "input.shape: must have at most 32 dimensions, got 33"},
		{"input shape product", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = []int64{1, 28, 27} }, "input: input.npy holds 784 values (shape [1 28 28]) but input.shape [1 28 27] calls for 756"},
		{"input file dir", func(m *sample.Meta, _ *[]byte) { m.Input.File = "../input.npy" }, `input.file: must be "input.npy" or "input.<ext>" with 1-16 lowercase letters or digits as ext, got "../input.npy"`},
		{"input file upper", func(m *sample.Meta, _ *[]byte) { m.Input.File = "input.PNG" }, `input.file: must be "input.npy" or "input.<ext>"`},
		{"input file two dots", func(m *sample.Meta, _ *[]byte) { m.Input.File = "input.tar.gz" }, `input.file: must be "input.npy" or "input.<ext>"`},
		{"input empty", func(_ *sample.Meta, in *[]byte) { *in = nil }, "input: the input file is empty"},
		{"input too large", func(m *sample.Meta, in *[]byte) {
			m.Input.File = "input.bin"
			*in = make([]byte, sample.MaxInputBytes+1)
		}, "input: the input file is 8388609 bytes, above the limit of 8388608"},
		{"input not npy", func(_ *sample.Meta, in *[]byte) { *in = []byte("PNG...") }, "input: input.npy: npy check: preamble: unexpected EOF"},
		{"key format", func(m *sample.Meta, _ *[]byte) { m.Key = "FAD5588F9FA415991C2682266F8889BB" }, `key: must be 32 lowercase hex digits, got "FAD5588F9FA415991C2682266F8889BB"`},
		{"key of other content", func(m *sample.Meta, _ *[]byte) { m.Key = "0123456789abcdef0123456789abcdef" }, "key: 0123456789abcdef0123456789abcdef does not match the sample's content, whose key is " + goldenKey},
		{"content changed after New", func(m *sample.Meta, _ *[]byte) { m.Prediction = 6 }, "key: " + goldenKey + " does not match the sample's content"},
		{"metadata too large", func(m *sample.Meta, _ *[]byte) { m.Scores = make([]float32, 600_000) }, "metadata is 1200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSample(t, 0)
			s.Meta.Scores = append([]float32(nil), s.Meta.Scores...)
			tt.change(&s.Meta, &s.Input)
			// Rules other than the key's are checked with the key recomputed, so that each
			// case breaks exactly one rule.
			if !strings.HasPrefix(tt.want, "key:") {
				s.Meta.Key = sample.Key(s.Meta, s.Input)
			}
			err := s.Validate()
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			if !errors.Is(err, sample.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var ie *sample.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *InvalidError", err)
			}
			found := false
			for _, p := range ie.Problems {
				found = found || strings.HasPrefix(p, tt.want)
			}
			if !found {
				t.Errorf("problems %q do not include %q", ie.Problems, tt.want)
			}
			if len(ie.Problems) != 1 {
				t.Errorf("want one problem, got %q", ie.Problems)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *sample.Meta, in *[]byte)
	}{
		{"label index", func(m *sample.Meta, _ *[]byte) { m.Label = sample.IndexLabel(7) }},
		{"label name", func(m *sample.Meta, _ *[]byte) { m.Label = sample.NameLabel("Ankle boot") }},
		{"label index as string", func(m *sample.Meta, _ *[]byte) { m.Label = json.RawMessage(`"7"`) }},
		{"no optional fields", func(m *sample.Meta, _ *[]byte) {
			m.RequestID, m.PredictedClass, m.TraceID, m.Confidence = "", "", "", nil
		}},
		{"encoded input", func(m *sample.Meta, in *[]byte) {
			m.Input = sample.InputInfo{Name: "image", Datatype: "BYTES", Shape: []int64{1}, File: "input.png"}
			*in = []byte("\x89PNG\r\n\x1a\n")
		}},
		{"scalar npy shape", func(m *sample.Meta, _ *[]byte) { m.Input.Shape = []int64{784} }},
		{"one class", func(m *sample.Meta, _ *[]byte) { m.Scores, m.Prediction = []float32{1}, 0 }},
		{"name limits", func(m *sample.Meta, _ *[]byte) { m.Model, m.Node = strings.Repeat("m", 128), "_x.y-z" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, in := testMeta(0), npyInput(t, 0)
			tt.change(&m, &in)
			s, err := sample.New(m, in)
			if err != nil {
				t.Fatal(err)
			}
			// What is valid survives both encodings unchanged.
			rec, err := s.MarshalRecord()
			if err != nil {
				t.Fatal(err)
			}
			back, err := sample.UnmarshalRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			assertSame(t, back, s)
			got, rejected, err := sample.ReadTar(bytes.NewReader(writeTar(t, s)), sample.Limits{})
			if err != nil || len(rejected) != 0 || len(got) != 1 {
				t.Fatalf("ReadTar = %d samples, %v, %v", len(got), rejected, err)
			}
			assertSame(t, got[0], s)
		})
	}
}

// assertSame compares two samples by their encodings, which is what must survive.
func assertSame(t *testing.T, got, want *sample.Sample) {
	t.Helper()
	g, err := got.MetaJSON()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.MetaJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("metadata:\n got %s\nwant %s", g, w)
	}
	if !bytes.Equal(got.Input, want.Input) {
		t.Error("input differs")
	}
}

func TestLabelHelpers(t *testing.T) {
	if got := string(sample.IndexLabel(7)); got != "7" {
		t.Errorf("IndexLabel(7) = %s", got)
	}
	if got := string(sample.NameLabel(`T-shirt/"top"`)); got != `"T-shirt/\"top\""` {
		t.Errorf("NameLabel = %s", got)
	}
}
