// Package oip is the wire format of the Open Inference Protocol (KServe V2, Triton) REST API
// that the inference front and the upstream runtime share: inference requests and responses
// with JSON tensors, and the binary tensor data extension, in which a JSON header of
// Inference-Header-Content-Length bytes is followed by the raw bytes of the tensors that
// declare a binary_data_size.
//
// Tensor data is decoded by a scanner of its own rather than into []any: a 784-pixel image is
// 784 JSON numbers, and decoding them through interfaces would cost more than running the model.
package oip

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/edgeloop/edgeloop/internal/datatype"
)

// HeaderContentLength is the binary tensor data extension's header: the length of the JSON
// part of a request or response body, the tensors' raw bytes following it.
const HeaderContentLength = "Inference-Header-Content-Length"

// Request is a decoded inference request.
type Request struct {
	// ID is the client's request id, echoed in the response.
	ID string
	// Inputs holds the input tensors in request order.
	Inputs []Input
	// Outputs lists the outputs the client asked for; empty means all of them.
	Outputs []OutputRequest
	// BinaryOutput is the request parameter binary_data_output: every output in binary form.
	BinaryOutput bool
}

// Input is one input tensor of a request. Its data is decoded on demand by Float32s.
type Input struct {
	// Name, Datatype and Shape are as the client sent them.
	Name     string
	Datatype string
	Shape    []int64
	data     json.RawMessage // JSON data; nil for binary data
	raw      []byte          // binary data (binary tensor data extension)
	binary   bool
	output   bool // an output of a response being read (ParseOutput), for error messages
}

func (in *Input) role() string {
	if in.output {
		return "output"
	}
	return "input"
}

// OutputRequest is one entry of a request's outputs list.
type OutputRequest struct {
	// Name is the output tensor's name.
	Name string
	// Binary is the output parameter binary_data: return this output in binary form.
	Binary bool
}

// ParseRequest decodes an inference request body. headerLen is the value of the
// Inference-Header-Content-Length header, or -1 when the request has none (all JSON). Every
// error describes a malformed request, for a 400 answer. The returned Request refers to body.
func ParseRequest(body []byte, headerLen int) (*Request, error) {
	jsonPart, rest := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, fmt.Errorf("%s is %d but the body has only %d bytes", HeaderContentLength, headerLen, len(body))
		}
		jsonPart, rest = body[:headerLen], body[headerLen:]
	}
	w, err := parseMessage(jsonPart)
	if err != nil {
		return nil, err
	}
	req := &Request{Inputs: make([]Input, 0, len(w.Inputs))}
	if w.ID != nil {
		req.ID = *w.ID
	}
	if req.BinaryOutput, err = boolParam(w.Parameters, "binary_data_output"); err != nil {
		return nil, err
	}
	if len(w.Inputs) == 0 {
		return nil, errors.New("the request has no inputs")
	}
	for i, in := range w.Inputs {
		if in.Name == "" {
			return nil, fmt.Errorf("inputs[%d]: name is missing", i)
		}
		if in.Datatype == "" {
			return nil, fmt.Errorf("input %q: datatype is missing", in.Name)
		}
		if in.Shape == nil {
			return nil, fmt.Errorf("input %q: shape is missing", in.Name)
		}
		for _, d := range in.Shape {
			if d < 0 {
				return nil, fmt.Errorf("input %q: shape %v has a negative dimension", in.Name, in.Shape)
			}
		}
		for j := range i {
			if w.Inputs[j].Name == in.Name {
				return nil, fmt.Errorf("input %q is given twice", in.Name)
			}
		}
		x := Input{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
		size, hasSize, err := intParam(in.Parameters, "binary_data_size")
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		switch {
		case hasSize && headerLen < 0:
			return nil, fmt.Errorf("input %q: binary_data_size without the %s header", in.Name, HeaderContentLength)
		case hasSize && len(in.Data) > 0:
			return nil, fmt.Errorf("input %q: both data and binary_data_size", in.Name)
		case hasSize:
			if size < 0 || size > int64(len(rest)) {
				return nil, fmt.Errorf("input %q: binary_data_size %d, but only %d bytes of binary data remain", in.Name, size, len(rest))
			}
			x.raw, rest, x.binary = rest[:size], rest[size:], true
		case len(in.Data) == 0 || string(in.Data) == "null":
			return nil, fmt.Errorf("input %q: data is missing", in.Name)
		default:
			x.data = in.Data
		}
		req.Inputs = append(req.Inputs, x)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d bytes of binary data belong to no input", len(rest))
	}
	for i, out := range w.Outputs {
		if out.Name == "" {
			return nil, fmt.Errorf("outputs[%d]: name is missing", i)
		}
		if _, ok := out.Parameters["classification"]; ok {
			return nil, fmt.Errorf("output %q: the classification extension is not supported", out.Name)
		}
		b, err := boolParam(out.Parameters, "binary_data")
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", out.Name, err)
		}
		req.Outputs = append(req.Outputs, OutputRequest{Name: out.Name, Binary: b})
	}
	return req, nil
}

func boolParam(params map[string]json.RawMessage, name string) (bool, error) {
	raw, ok := params[name]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, fmt.Errorf("parameter %s must be a boolean", name)
	}
	return b, nil
}

func intParam(params map[string]json.RawMessage, name string) (int64, bool, error) {
	raw, ok := params[name]
	if !ok {
		return 0, false, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, false, fmt.Errorf("parameter %s must be an integer", name)
	}
	return n, true, nil
}

// NumElements returns the number of elements of shape, or an error when it exceeds limit.
func NumElements(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d > 0 && n > limit/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		}
		n *= d
	}
	return n, nil
}

// Float32s decodes the input's data into dst[:0] as float32 values and checks that there are
// exactly as many as its shape holds. Numeric datatypes are converted; BOOL and BYTES are not
// numbers and are refused.
func (in *Input) Float32s(dst []float32) ([]float32, error) {
	n, err := NumElements(in.Shape, math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", in.role(), in.Name, err)
	}
	if in.binary {
		size := datatype.Size(in.Datatype)
		if size == 0 || in.Datatype == datatype.Bool {
			return nil, fmt.Errorf("%s %q: datatype %s cannot be read as numbers", in.role(), in.Name, in.Datatype)
		}
		if int64(len(in.raw)) != n*int64(size) {
			return nil, fmt.Errorf("%s %q: shape %v of %s needs %d bytes of binary data, got %d", in.role(), in.Name, in.Shape, in.Datatype, n*int64(size), len(in.raw))
		}
		return DecodeBinary(dst[:0], in.Datatype, in.raw), nil
	}
	if datatype.Size(in.Datatype) == 0 || in.Datatype == datatype.Bool {
		return nil, fmt.Errorf("%s %q: datatype %s cannot be read as numbers", in.role(), in.Name, in.Datatype)
	}
	if cap(dst) < int(n) && n <= int64(len(in.data)) { // a number takes at least one byte
		dst = make([]float32, 0, n)
	}
	out, err := appendNumbers(dst[:0], in.data)
	if err != nil {
		return nil, fmt.Errorf("%s %q: data: %w", in.role(), in.Name, err)
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("%s %q: shape %v needs %d values, data has %d", in.role(), in.Name, in.Shape, n, len(out))
	}
	return out, nil
}

// DecodeBinary appends the little-endian elements of raw, of a numeric datatype, to dst as
// float32 values. A trailing partial element is ignored; callers check the length first.
func DecodeBinary(dst []float32, dt string, raw []byte) []float32 {
	le := binary.LittleEndian
	switch dt {
	case datatype.FP32:
		for i := 0; i+4 <= len(raw); i += 4 {
			dst = append(dst, math.Float32frombits(le.Uint32(raw[i:])))
		}
	case datatype.FP64:
		for i := 0; i+8 <= len(raw); i += 8 {
			dst = append(dst, float32(math.Float64frombits(le.Uint64(raw[i:]))))
		}
	case datatype.FP16:
		for i := 0; i+2 <= len(raw); i += 2 {
			dst = append(dst, float16(le.Uint16(raw[i:])))
		}
	case datatype.BF16: // the top half of a float32
		for i := 0; i+2 <= len(raw); i += 2 {
			dst = append(dst, math.Float32frombits(uint32(le.Uint16(raw[i:]))<<16))
		}
	case datatype.Uint8:
		for _, b := range raw {
			dst = append(dst, float32(b))
		}
	case datatype.Int8:
		for _, b := range raw {
			dst = append(dst, float32(int8(b)))
		}
	case datatype.Uint16:
		for i := 0; i+2 <= len(raw); i += 2 {
			dst = append(dst, float32(le.Uint16(raw[i:])))
		}
	case datatype.Int16:
		for i := 0; i+2 <= len(raw); i += 2 {
			dst = append(dst, float32(int16(le.Uint16(raw[i:]))))
		}
	case datatype.Uint32:
		for i := 0; i+4 <= len(raw); i += 4 {
			dst = append(dst, float32(le.Uint32(raw[i:])))
		}
	case datatype.Int32:
		for i := 0; i+4 <= len(raw); i += 4 {
			dst = append(dst, float32(int32(le.Uint32(raw[i:]))))
		}
	case datatype.Uint64:
		for i := 0; i+8 <= len(raw); i += 8 {
			dst = append(dst, float32(le.Uint64(raw[i:])))
		}
	case datatype.Int64:
		for i := 0; i+8 <= len(raw); i += 8 {
			dst = append(dst, float32(int64(le.Uint64(raw[i:]))))
		}
	}
	return dst
}

// float16 converts an IEEE 754 half-precision value to float32.
func float16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac · 2^-24
		v := float32(frac) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// appendNumbers appends the numbers of a JSON number or (nested) array of numbers to dst,
// flattened in row-major order. The data was already checked to be valid JSON by the
// request decoder; this still refuses anything that is not a number or an array.
func appendNumbers(dst []float32, data []byte) ([]float32, error) {
	depth := 0
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case ' ', '\t', '\n', '\r', ',':
			i++
		case '[':
			depth++
			i++
		case ']':
			depth--
			i++
		default:
			if c != '-' && (c < '0' || c > '9') {
				return nil, fmt.Errorf("unexpected %q at offset %d: want numbers or arrays of numbers", c, i)
			}
			v, n, err := parseNumber(data[i:])
			if err != nil {
				return nil, fmt.Errorf("offset %d: %w", i, err)
			}
			dst = append(dst, float32(v))
			i += n
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced brackets")
	}
	return dst, nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseNumber parses the JSON number at the start of b and returns it and its length.
//
// The common case, at most 15 significant digits and a small exponent, is computed exactly
// (Clinger's fast path: an exact integer times or divided by an exact power of ten, one
// rounding); anything else goes to strconv.ParseFloat, which allocates. The float64 is then
// rounded to float32 by the caller: that double rounding can differ from a direct float32
// parse by one unit in the last place, for about one decimal string in 2^29.
func parseNumber(b []byte) (float64, int, error) {
	i, neg := 0, false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	digits, exp := 0, 0
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if digits < 19 {
			mant = mant*10 + uint64(b[i]-'0')
			if mant != 0 {
				digits++
			}
		} else {
			exp++
		}
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return 0, 0, errors.New("malformed number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if digits < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				if mant != 0 {
					digits++
				}
				exp--
			}
		}
		if i == fs {
			return 0, 0, errors.New("malformed number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		es, e := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == es {
			return 0, 0, errors.New("malformed number")
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if digits <= 15 && exp >= -22 && exp <= 22 {
		f := float64(mant)
		if exp < 0 {
			f /= pow10[-exp]
		} else {
			f *= pow10[exp]
		}
		if neg {
			f = -f
		}
		return f, i, nil
	}
	f, err := strconv.ParseFloat(string(b[:i]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, 0, fmt.Errorf("malformed number %q", b[:i])
	}
	return f, i, nil
}
