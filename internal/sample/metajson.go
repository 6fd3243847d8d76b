package sample

import (
	"strconv"
	"unicode/utf8"
)

// parseMeta decodes metadata JSON of the plain form every edgeloop encoder writes, without
// reflection: encoding/json cost the collector about 5 µs a sample, a quarter of the cost of
// ingesting a small one. It accepts a strict subset of what decodeMeta's encoding/json path
// accepts and sets m as that path would; anything else — an escaped or non-UTF-8 string, a
// duplicate, unknown or differently cased field, a null, a label, a number an int field would
// refuse, data after the object — makes it return false and leaves the document to
// encoding/json, so that what is accepted and every error message stay encoding/json's.
// FuzzParseMeta holds it to that.
func parseMeta(b []byte, m *Meta) bool {
	p := metaParser{b: b}
	if !p.object(p.metaField(m)) {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

// metaParser reads one JSON document front to back; every method returns false on anything
// outside the subset parseMeta accepts, after which the parser is not used again.
type metaParser struct {
	b    []byte
	i    int
	seen uint32 // the Meta and InputInfo fields set so far, one bit each
}

// Bits of metaParser.seen: a field given twice is left to encoding/json, which merges maps
// and keeps the last of other values.
const (
	seenSchema uint32 = 1 << iota
	seenKey
	seenModel
	seenVersion
	seenNode
	seenTime
	seenRequestID
	seenPrediction
	seenPredictedClass
	seenScores
	seenScoresKind
	seenConfidence
	seenReason
	seenTraceID
	seenInput
	seenInputName
	seenInputDatatype
	seenInputShape
	seenInputFile
)

// metaField returns the handler of one field of the top-level object.
func (p *metaParser) metaField(m *Meta) func(name []byte) bool {
	return func(name []byte) bool {
		var bit uint32
		ok := false
		switch string(name) { // no allocation: the compiler compares in place
		case "schema_version":
			bit = seenSchema
			m.SchemaVersion, ok = p.int()
		case "key":
			bit = seenKey
			m.Key, ok = p.str()
		case "model":
			bit = seenModel
			m.Model, ok = p.str()
		case "version":
			bit = seenVersion
			m.Version, ok = p.str()
		case "node":
			bit = seenNode
			m.Node, ok = p.str()
		case "time":
			bit = seenTime
			var raw []byte
			// time.Time's own UnmarshalJSON, as encoding/json calls it, on the quoted string.
			if raw, ok = p.quoted(); ok {
				ok = m.Time.UnmarshalJSON(raw) == nil
			}
		case "request_id":
			bit = seenRequestID
			m.RequestID, ok = p.str()
		case "prediction":
			bit = seenPrediction
			m.Prediction, ok = p.int()
		case "predicted_class":
			bit = seenPredictedClass
			m.PredictedClass, ok = p.str()
		case "scores":
			bit = seenScores
			m.Scores, ok = p.float32s()
		case "scores_kind":
			bit = seenScoresKind
			m.ScoresKind, ok = p.str()
		case "confidence":
			bit = seenConfidence
			m.Confidence, ok = p.confidence()
		case "reason":
			bit = seenReason
			m.Reason, ok = p.str()
		case "trace_id":
			bit = seenTraceID
			m.TraceID, ok = p.str()
		case "input":
			bit = seenInput
			ok = p.object(p.inputField(&m.Input))
		}
		// A label (rare at ingest: samples are labelled later) and unknown fields take
		// encoding/json's path too.
		return ok && p.see(bit)
	}
}

// inputField returns the handler of one field of the "input" object.
func (p *metaParser) inputField(in *InputInfo) func(name []byte) bool {
	return func(name []byte) bool {
		var bit uint32
		ok := false
		switch string(name) {
		case "name":
			bit = seenInputName
			in.Name, ok = p.str()
		case "datatype":
			bit = seenInputDatatype
			in.Datatype, ok = p.str()
		case "shape":
			bit = seenInputShape
			in.Shape, ok = p.int64s()
		case "file":
			bit = seenInputFile
			in.File, ok = p.str()
		}
		return ok && p.see(bit)
	}
}

// see records a field as set, false when it was set before.
func (p *metaParser) see(bit uint32) bool {
	if p.seen&bit != 0 {
		return false
	}
	p.seen |= bit
	return true
}

// space skips JSON whitespace.
func (p *metaParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after whitespace.
func (p *metaParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object reads an object, calling field for each member with the parser at its value.
func (p *metaParser) object(field func(name []byte) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	for {
		p.space()
		name, ok := p.quoted()
		if !ok || !p.byte(':') {
			return false
		}
		p.space()
		if !field(name[1 : len(name)-1]) {
			return false
		}
		if p.byte(',') {
			continue
		}
		return p.byte('}')
	}
}

// quoted reads a string of no escapes and no control characters in valid UTF-8, which
// encoding/json takes byte for byte, and returns it with its quotes.
func (p *metaParser) quoted() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i
	ascii := true
	for j := start + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			raw := p.b[start:p.i]
			if !ascii && !utf8.Valid(raw) {
				return nil, false // encoding/json replaces invalid bytes with U+FFFD
			}
			return raw, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str reads a string value.
func (p *metaParser) str() (string, bool) {
	raw, ok := p.quoted()
	if !ok {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

// number reads a number as JSON's grammar has it, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?,
// and reports whether it is an integer (no fraction, no exponent).
func (p *metaParser) number() (lit []byte, integer bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	integer = true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return nil, false
		}
		integer = false
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return nil, false
		}
		integer = false
	}
	return p.b[start:p.i], integer
}

// digits skips decimal digits and returns how many.
func (p *metaParser) digits() int {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// int64 reads an integer that fits bits bits, as encoding/json's strconv.ParseInt does.
func (p *metaParser) int64(bits int) (int64, bool) {
	lit, integer := p.number()
	if !integer {
		return 0, false // encoding/json refuses 1.0 and 1e2 for an integer field
	}
	v, err := strconv.ParseInt(string(lit), 10, bits) // no allocation: the conversion is not kept
	return v, err == nil
}

// int reads an int field.
func (p *metaParser) int() (int, bool) {
	v, ok := p.int64(strconv.IntSize)
	return int(v), ok
}

// float reads a number into a float of bits bits, as encoding/json's strconv.ParseFloat does.
func (p *metaParser) float(bits int) (float64, bool) {
	lit, _ := p.number()
	if lit == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(lit), bits)
	return v, err == nil
}

// array reads an array, calling elem with the parser at each element. An empty array is
// still an array: encoding/json sets an empty, non-nil slice.
func (p *metaParser) array(elem func() bool) bool {
	if !p.byte('[') {
		return false
	}
	if p.byte(']') {
		return true
	}
	for {
		p.space()
		if !elem() {
			return false
		}
		if p.byte(',') {
			continue
		}
		return p.byte(']')
	}
}

func (p *metaParser) float32s() ([]float32, bool) {
	v := []float32{}
	ok := p.array(func() bool {
		f, ok := p.float(32)
		v = append(v, float32(f))
		return ok
	})
	return v, ok
}

func (p *metaParser) int64s() ([]int64, bool) {
	v := []int64{}
	ok := p.array(func() bool {
		d, ok := p.int64(64)
		v = append(v, d)
		return ok
	})
	return v, ok
}

// confidence reads the confidence object; a name given twice keeps its last value, as
// encoding/json does for a map.
func (p *metaParser) confidence() (map[string]float64, bool) {
	m := map[string]float64{}
	ok := p.object(func(name []byte) bool {
		v, ok := p.float(64)
		m[string(name)] = v
		return ok
	})
	return m, ok
}
