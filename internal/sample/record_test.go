package sample_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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

// TestStoredRoundTrip: a sample ReadTar returned, stored and parsed, gives the metadata JSON,
// index entry and line, and tar bytes that the sample itself gives; a spool record parses to the
// same; a sample not from ReadTar is validated before it is stored.
func TestStoredRoundTrip(t *testing.T) {
	want := newSample(t, 0)
	want.Meta.Label = sample.IndexLabel(7)
	var batch bytes.Buffer
	if err := sample.WriteTar(&batch, []*sample.Sample{want}); err != nil {
		t.Fatal(err)
	}
	read, _, err := sample.ReadTar(&batch, sample.Limits{})
	if err != nil || len(read) != 1 {
		t.Fatalf("ReadTar = %d samples, %v", len(read), err)
	}
	rec, err := read[0].MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != sample.StoredVersion {
		t.Errorf("version byte = %d", rec[0])
	}
	spool, err := want.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := want.MetaJSON()
	line, _ := json.Marshal(want.Index())
	var wantTar bytes.Buffer
	if err := sample.WriteTar(&wantTar, []*sample.Sample{want}); err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string][]byte{"stored": rec, "spool record": spool} {
		st, err := sample.ParseStored(rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Entry != want.Index() || !bytes.Equal(st.Meta, meta) || !bytes.Equal(st.IndexLine, line) || !bytes.Equal(st.Input, want.Input) {
			t.Errorf("%s: parsed %+v, want entry %+v and the sample's JSON, index line and input", name, st.Entry, want.Index())
		}
		// What the shard builder reads back: the members, without the index line.
		m, in, err := sample.StoredMembers(rec)
		if err != nil || !bytes.Equal(m, meta) || !bytes.Equal(in, want.Input) {
			t.Errorf("%s: StoredMembers = %d and %d bytes, %v; want the sample's JSON and input", name, len(m), len(in), err)
		}
		var got bytes.Buffer
		tw := sample.NewStoredTarWriter(&got)
		if err := tw.Write(&st.Entry, m, in); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), wantTar.Bytes()) {
			t.Errorf("%s: StoredTarWriter wrote other bytes than WriteTar", name)
		}
		if size := sample.StoredTarSize(len(m), len(in)) + sample.StoredTarEnd; size != int64(got.Len()) {
			t.Errorf("%s: StoredTarSize says %d bytes, the tar has %d", name, size, got.Len())
		}
	}
	if _, _, err := sample.StoredMembers(rec[:5]); err == nil {
		t.Error("StoredMembers of a cut record: no error")
	}
	tampered := newSample(t, 0)
	tampered.Meta.Prediction = 1
	if _, err := tampered.MarshalStored(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("MarshalStored of a tampered sample = %v, want the key mismatch", err)
	}
}

// TestParseStoredTrustsTheSample: ParseStored does not validate the sample (the collector's
// log did, before its CRC), so a record whose content no longer matches its key parses.
func TestParseStoredTrustsTheSample(t *testing.T) {
	rec, err := newSample(t, 0).MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	rec[len(rec)-1] ^= 1
	if _, err := sample.ParseStored(rec); err != nil {
		t.Fatalf("ParseStored = %v, want no validation", err)
	}
}

func TestParseStoredErrors(t *testing.T) {
	s := newSample(t, 0)
	meta, _ := s.MetaJSON()
	line, _ := json.Marshal(s.Index())
	record := func(version byte, metaLen, lineLen int, meta, line, input []byte) []byte {
		b := []byte{version, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(metaLen))
		binary.BigEndian.PutUint32(b[5:], uint32(lineLen))
		return append(append(append(b, meta...), line...), input...)
	}
	withLine := func(old, new string) []byte {
		l := strings.Replace(string(line), old, new, 1)
		return record(2, len(meta), len(l), meta, []byte(l), s.Input)
	}
	tests := []struct {
		name string
		rec  []byte
		want string
	}{
		{"empty", nil, "sample: parse stored record: 0 bytes, shorter than the 9-byte header"},
		{"version", record(3, len(meta), len(line), meta, line, s.Input), "sample: parse stored record: record version 3, want 2 or 1"},
		{"zero metadata", record(2, 0, len(line), meta, line, s.Input), "sample: parse stored record: metadata length 0, want 1 to 1048576"},
		{"huge line", record(2, len(meta), 1<<20, meta, line, s.Input), "sample: parse stored record: index line length 1048576, want 1 to 4096"},
		{"no input", record(2, len(meta), len(line), meta, line, nil), "sample: parse stored record: metadata and index line of 506 and"},
		{"line not JSON", withLine(`{"key"`, `["key"`), "sample: parse stored record: index line: invalid character"},
		{"model path", withLine(`"model":"fashion"`, `"model":"../x"`), `sample: parse stored record: index line: invalid key "` + goldenKey + `", model "../x"`},
		{"input name", withLine(`.input.npy"`, `.input.npy/../x"`), "sample: parse stored record: index line: input"},
		{"bytes", withLine(`"bytes":`, `"bytes":1`), "sample: parse stored record: index line: 1"},
		{"spool record", []byte{1, 0, 0}, "sample: parse stored record: 3 bytes, shorter than the 5-byte header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sample.ParseStored(tt.rec)
			if err == nil {
				t.Fatalf("accepted %+v", got.Entry)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got %q\nwant %q...", err, tt.want)
			}
		})
	}
}

// TestIndexLineRequestID: an index line carries the sample's request id when it has one and
// omits it otherwise; a line written before the field existed still parses (as ""); and the
// longest valid fields, escaped, still fit a stored record's index line.
func TestIndexLineRequestID(t *testing.T) {
	s := newSample(t, 0)
	line, _ := json.Marshal(s.Index())
	if !strings.Contains(string(line), `"request_id":"req-42"`) {
		t.Fatalf("index line %s lacks the request id", line)
	}
	rec, err := s.MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sample.ParseStored(rec)
	if err != nil || st.Entry.RequestID != "req-42" {
		t.Fatalf("ParseStored = %+v, %v, want request id req-42", st, err)
	}

	// An old line: the same record with request_id cut out of its index line.
	meta, _ := s.MetaJSON()
	old := strings.Replace(string(line), `"request_id":"req-42",`, "", 1)
	b := make([]byte, 9, 9+len(meta)+len(old)+len(s.Input))
	b[0] = sample.StoredVersion
	binary.BigEndian.PutUint32(b[1:], uint32(len(meta)))
	binary.BigEndian.PutUint32(b[5:], uint32(len(old)))
	b = append(append(append(b, meta...), old...), s.Input...)
	if st, err := sample.ParseStored(b); err != nil || st.Entry.RequestID != "" || st.Entry.Key != s.Meta.Key {
		t.Fatalf("old index line: %+v, %v", st, err)
	}

	nm := testMeta(1)
	nm.RequestID = ""
	none, err := sample.New(nm, npyInput(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := json.Marshal(none.Index()); strings.Contains(string(line), "request_id") {
		t.Errorf("index line %s names a request id the sample has not", line)
	}

	// The worst case: every name at 128 bytes, class name and request id at 256 bytes that
	// JSON escapes to six bytes each.
	m := testMeta(2)
	long := strings.Repeat("n", 128)
	m.Model, m.Version, m.Node, m.Reason = long, long, long, long
	m.RequestID, m.PredictedClass = strings.Repeat("<", 256), strings.Repeat("&", 256)
	worst, err := sample.New(m, npyInput(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	rec, err = worst.MarshalStored()
	if err != nil {
		t.Fatalf("MarshalStored of the longest valid fields: %v", err)
	}
	wl, _ := json.Marshal(worst.Index())
	t.Logf("longest index line: %d bytes", len(wl))
	if st, err := sample.ParseStored(rec); err != nil || st.Entry.RequestID != m.RequestID {
		t.Fatalf("ParseStored of the longest valid fields: %v", err)
	}
}
