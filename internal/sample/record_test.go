package sample_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/sample"
)

func TestRecordRoundTrip(t *testing.T) {
	s := newSample(t, 0)
	s.Meta.Label = sample.NameLabel("Sneaker")
	rec, err := s.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != sample.RecordVersion {
		t.Errorf("version byte = %d", rec[0])
	}
	n := binary.BigEndian.Uint32(rec[1:5])
	meta, _ := s.MetaJSON()
	if !bytes.Equal(rec[5:5+n], meta) || !bytes.Equal(rec[5+n:], s.Input) {
		t.Error("record is not header, metadata JSON, input")
	}
	back, err := sample.UnmarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, back, s)
	if back.Meta.Key != goldenKey {
		t.Errorf("key = %s: the label changed it", back.Meta.Key)
	}
	again, err := back.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, rec) {
		t.Error("marshal(unmarshal(record)) differs")
	}
}

func TestMarshalRecordRefusesInvalid(t *testing.T) {
	s := newSample(t, 0)
	s.Meta.Reason = ""
	if _, err := s.MarshalRecord(); err == nil || !strings.Contains(err.Error(), "reason: must be") {
		t.Fatalf("MarshalRecord = %v, want the validation error", err)
	}
}

func TestUnmarshalRecordErrors(t *testing.T) {
	s := newSample(t, 0)
	meta, _ := s.MetaJSON()
	record := func(version byte, metaLen uint32, meta []byte, input []byte) []byte {
		b := []byte{version, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], metaLen)
		return append(append(b, meta...), input...)
	}
	withMeta := func(m string) []byte { return record(1, uint32(len(m)), []byte(m), s.Input) }
	replace := func(old, new string) []byte {
		return withMeta(strings.Replace(string(meta), old, new, 1))
	}
	tests := []struct {
		name string
		rec  []byte
		want string
	}{
		{"empty", nil, "sample: unmarshal record: 0 bytes, shorter than the 5-byte header"},
		{"short", []byte{1, 0, 0}, "sample: unmarshal record: 3 bytes, shorter than the 5-byte header"},
		{"version", record(2, uint32(len(meta)), meta, s.Input), "sample: unmarshal record: record version 2, want 1"},
		{"zero length", record(1, 0, meta, s.Input), "sample: unmarshal record: metadata length 0, want 1 to 1048576"},
		{"huge length", record(1, 1<<31, meta, s.Input), "sample: unmarshal record: metadata length 2147483648, want 1 to 1048576"},
		{"truncated", record(1, uint32(len(meta)), meta[:10], nil), "sample: unmarshal record: metadata length 506, but only 10 bytes follow the header"},
		{"no input", record(1, uint32(len(meta)), meta, nil), "sample: unmarshal record: invalid sample: input: the input file is empty"},
		{"input cut", record(1, uint32(len(meta)), meta, s.Input[:200]), "sample: unmarshal record: invalid sample: input: input.npy: npy check: data: 72 bytes"},
		{"not JSON", withMeta("not json"), "sample: unmarshal record: invalid sample: metadata: invalid character 'o' in literal null (expecting 'u')"},
		{"unknown field", replace(`"model"`, `"colour":"red","model"`), `sample: unmarshal record: invalid sample: metadata: json: unknown field "colour"`},
		{"trailing data", withMeta(string(meta) + " {}"), "sample: unmarshal record: invalid sample: metadata: data after the JSON object"},
		{"wrong type", replace(`"prediction":7`, `"prediction":"7"`), "sample: unmarshal record: invalid sample: metadata: json: cannot unmarshal string into Go struct field Meta.prediction of type int"},
		{"tampered", replace(`"prediction":7`, `"prediction":6`), "sample: unmarshal record: invalid sample: key: " + goldenKey + " does not match"},
		{"null metadata", withMeta("null"), "sample: unmarshal record: invalid sample: schema_version: must be 1, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sample.UnmarshalRecord(tt.rec)
			if err == nil {
				t.Fatalf("accepted %+v", got.Meta)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got %q\nwant %q...", err, tt.want)
			}
		})
	}
}

// TestUnmarshalRecordNormalises: JSON that spells the time in another zone, or the label as
// null, decodes to the same sample as the canonical spelling.
func TestUnmarshalRecordNormalises(t *testing.T) {
	s := newSample(t, 0)
	meta, _ := s.MetaJSON()
	m := strings.Replace(string(meta), `"2026-03-14T15:09:26.535897932Z"`, `"2026-03-14T16:09:26.535897932+01:00"`, 1)
	m = strings.Replace(m, `"input":`, `"label":null,"input":`, 1)
	rec := []byte{1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rec[1:], uint32(len(m)))
	rec = append(append(rec, m...), s.Input...)
	back, err := sample.UnmarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, back, s)
}

// TestValidatedVariants checks the trusted paths the collector's shard builder uses: they decode
// and write what UnmarshalRecord and WriteTar would, skip only the validation, and still refuse
// a malformed record and duplicate keys.
func TestValidatedVariants(t *testing.T) {
	s := newSample(t, 0)
	rec, err := s.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	back, err := sample.UnmarshalValidatedRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, back, s)
	// A record whose sample would fail validation (its key no longer matches its content):
	// the validating decoder refuses it, the trusted one does not look.
	tampered := bytes.Clone(rec)
	tampered[len(tampered)-1] ^= 1
	if _, err := sample.UnmarshalRecord(tampered); err == nil {
		t.Fatal("UnmarshalRecord accepted a sample whose key does not match its content")
	}
	if _, err := sample.UnmarshalValidatedRecord(tampered); err != nil {
		t.Fatalf("UnmarshalValidatedRecord = %v, want no validation", err)
	}
	if _, err := sample.UnmarshalValidatedRecord(rec[:3]); err == nil {
		t.Fatal("UnmarshalValidatedRecord accepted a truncated record")
	}
	var a, b bytes.Buffer
	if err := sample.WriteTar(&a, []*sample.Sample{s}); err != nil {
		t.Fatal(err)
	}
	if err := sample.WriteValidatedTar(&b, []*sample.Sample{s}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("WriteValidatedTar wrote other bytes than WriteTar")
	}
	if err := sample.WriteValidatedTar(&b, []*sample.Sample{s, s}); err == nil {
		t.Fatal("WriteValidatedTar accepted a duplicate key")
	}
}
