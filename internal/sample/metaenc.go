package sample

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// marshalMeta is json.Marshal(m) without reflection, byte for byte (FuzzParseMeta compares
// them): encoding/json cost the collector about 2 µs a sample to validate each sample's
// metadata and as much again for its index line. Anything the plain path does not cover — a
// string JSON would escape, a label, a float JSON cannot hold — goes to json.Marshal.
func marshalMeta(m *Meta) ([]byte, error) {
	if b, ok := appendMeta(make([]byte, 0, 512), m); ok {
		return b, nil
	}
	return json.Marshal(m)
}

// marshalIndex is json.Marshal(e) the same way.
func marshalIndex(e *IndexEntry) ([]byte, error) {
	if b, ok := appendIndex(make([]byte, 0, 384), e); ok {
		return b, nil
	}
	return json.Marshal(e)
}

func appendMeta(b []byte, m *Meta) ([]byte, bool) {
	if len(m.Label) > 0 {
		return nil, false // raw JSON: encoding/json compacts and escapes it
	}
	ok := true
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	b, ok = appendField(b, ok, `,"key":`, m.Key)
	b, ok = appendField(b, ok, `,"model":`, m.Model)
	b, ok = appendField(b, ok, `,"version":`, m.Version)
	b, ok = appendField(b, ok, `,"node":`, m.Node)
	b = append(b, `,"time":`...)
	t, err := m.Time.MarshalJSON()
	if err != nil {
		return nil, false
	}
	b = append(b, t...)
	if m.RequestID != "" {
		b, ok = appendField(b, ok, `,"request_id":`, m.RequestID)
	}
	b = append(b, `,"prediction":`...)
	b = strconv.AppendInt(b, int64(m.Prediction), 10)
	if m.PredictedClass != "" {
		b, ok = appendField(b, ok, `,"predicted_class":`, m.PredictedClass)
	}
	b = append(b, `,"scores":`...)
	if m.Scores == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, v := range m.Scores {
			if i > 0 {
				b = append(b, ',')
			}
			b, ok = appendFloat(b, ok, float64(v), 32)
		}
		b = append(b, ']')
	}
	b, ok = appendField(b, ok, `,"scores_kind":`, m.ScoresKind)
	b = append(b, `,"confidence":`...)
	if m.Confidence == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		names := make([]string, 0, len(m.Confidence))
		for name := range m.Confidence {
			names = append(names, name)
		}
		slices.Sort(names) // encoding/json sorts map keys bytewise
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b, ok = appendString(b, ok, name)
			b = append(b, ':')
			b, ok = appendFloat(b, ok, m.Confidence[name], 64)
		}
		b = append(b, '}')
	}
	b, ok = appendField(b, ok, `,"reason":`, m.Reason)
	if m.TraceID != "" {
		b, ok = appendField(b, ok, `,"trace_id":`, m.TraceID)
	}
	in := &m.Input
	b, ok = appendField(b, ok, `,"input":{"name":`, in.Name)
	b, ok = appendField(b, ok, `,"datatype":`, in.Datatype)
	b = append(b, `,"shape":`...)
	if in.Shape == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, d := range in.Shape {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, ']')
	}
	b, ok = appendField(b, ok, `,"file":`, in.File)
	b = append(b, "}}"...)
	return b, ok
}

func appendIndex(b []byte, e *IndexEntry) ([]byte, bool) {
	ok := true
	b, ok = appendField(b, ok, `{"key":`, e.Key)
	b, ok = appendField(b, ok, `,"model":`, e.Model)
	b, ok = appendField(b, ok, `,"version":`, e.Version)
	b, ok = appendField(b, ok, `,"node":`, e.Node)
	b = append(b, `,"time":`...)
	t, err := e.Time.MarshalJSON()
	if err != nil {
		return nil, false
	}
	b = append(b, t...)
	if e.RequestID != "" {
		b, ok = appendField(b, ok, `,"request_id":`, e.RequestID)
	}
	b, ok = appendField(b, ok, `,"reason":`, e.Reason)
	b = append(b, `,"prediction":`...)
	b = strconv.AppendInt(b, int64(e.Prediction), 10)
	if e.PredictedClass != "" {
		b, ok = appendField(b, ok, `,"predicted_class":`, e.PredictedClass)
	}
	b = append(b, `,"max_softmax":`...)
	b, ok = appendFloat(b, ok, e.MaxSoftmax, 64)
	b, ok = appendField(b, ok, `,"input":`, e.Input)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, '}')
	return b, ok
}

// appendField appends a field's name (with its punctuation) and string value.
func appendField(b []byte, ok bool, name, v string) ([]byte, bool) {
	return appendString(append(b, name...), ok, v)
}

// appendString appends v quoted when JSON needs no escape in it: printable ASCII other than
// '"', '\\' and the '<', '>' and '&' encoding/json escapes for HTML. Otherwise ok turns false.
func appendString(b []byte, ok bool, v string) ([]byte, bool) {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			ok = false
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"'), ok
}

// appendFloat appends f as encoding/json's float encoder does: the shortest representation,
// in exponent form below 1e-6 and from 1e21, with a one-digit exponent not padded.
func appendFloat(b []byte, ok bool, f float64, bits int) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false // encoding/json refuses them
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, ok
}
