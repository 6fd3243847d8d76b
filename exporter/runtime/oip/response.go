package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Output is one output tensor of a response being encoded.
type Output struct {
	// Name and Shape describe the tensor; its datatype is FP32.
	Name  string
	Shape []int64
	// Data holds the elements in row-major order.
	Data []float32
	// Binary sends the data in binary form after the JSON header.
	Binary bool
}

// AppendResponse appends the inference response to dst. When an output is binary it returns
// the length of the JSON header, for the Inference-Header-Content-Length header, and the raw
// data follows it; otherwise jsonLen is -1. Non-finite values, which JSON cannot carry, are
// written as null.
func AppendResponse(dst []byte, model, version, id string, outputs []Output) (body []byte, jsonLen int) {
	start := len(dst)
	dst = append(dst, `{"model_name":`...)
	dst = appendString(dst, model)
	dst = append(dst, `,"model_version":`...)
	dst = appendString(dst, version)
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, id)
	}
	dst = append(dst, `,"outputs":[`...)
	anyBinary := false
	for i, o := range outputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, o.Name)
		dst = append(dst, `,"datatype":"FP32","shape":[`...)
		for j, d := range o.Shape {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, d, 10)
		}
		dst = append(dst, ']')
		if o.Binary {
			anyBinary = true
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(4*len(o.Data)), 10)
			dst = append(dst, "}}"...)
			continue
		}
		dst = append(dst, `,"data":[`...)
		for j, v := range o.Data {
			if j > 0 {
				dst = append(dst, ',')
			}
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				dst = append(dst, "null"...)
			} else {
				dst = strconv.AppendFloat(dst, f, 'g', -1, 32)
			}
		}
		dst = append(dst, "]}"...)
	}
	dst = append(dst, "]}"...)
	if !anyBinary {
		return dst, -1
	}
	jsonLen = len(dst) - start
	for _, o := range outputs {
		if o.Binary {
			for _, v := range o.Data {
				dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
			}
		}
	}
	return dst, jsonLen
}

// appendString appends s as a JSON string. Names and ids are short and mostly plain ASCII.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = fmt.Appendf(dst, `\u%04x`, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendError appends the protocol's error body, {"error": msg}.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, msg)
	return append(dst, '}')
}

// ParseOutput finds the output tensor name in an inference response body (headerLen as for
// ParseRequest) and decodes its numbers into dst[:0]. It is how the upstream runtime reads the
// scores of a response it passes on unchanged.
func ParseOutput(body []byte, headerLen int, name string, dst []float32) (shape []int64, data []float32, err error) {
	jsonPart, rest := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, nil, fmt.Errorf("%s is %d but the body has only %d bytes", HeaderContentLength, headerLen, len(body))
		}
		jsonPart, rest = body[:headerLen], body[headerLen:]
	}
	w, err := parseMessage(jsonPart)
	if err != nil {
		return nil, nil, fmt.Errorf("response: %w", err)
	}
	for _, o := range w.Outputs {
		size, hasSize, err := intParam(o.Parameters, "binary_data_size")
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", o.Name, err)
		}
		var raw []byte
		if hasSize {
			if headerLen < 0 || size < 0 || size > int64(len(rest)) {
				return nil, nil, fmt.Errorf("output %q: binary_data_size %d does not fit the body", o.Name, size)
			}
			raw, rest = rest[:size], rest[size:]
		}
		if o.Name != name {
			continue
		}
		in := Input{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, data: o.Data, raw: raw, binary: hasSize, output: true}
		if !hasSize && (len(o.Data) == 0 || string(o.Data) == "null") {
			return nil, nil, fmt.Errorf("output %q has no data", name)
		}
		data, err := in.Float32s(dst)
		if err != nil {
			return nil, nil, err
		}
		return o.Shape, data, nil
	}
	return nil, nil, fmt.Errorf("the response has no output %q", name)
}
