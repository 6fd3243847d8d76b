package oip

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseRequestJSON(t *testing.T) {
	body := `{"id":"r1","parameters":{"binary_data_output":false,"other":{"x":1}},
	  "inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[-3e2,0.125]]}],
	  "outputs":[{"name":"probabilities"},{"name":"logits","parameters":{"binary_data":true}}]}`
	req, err := ParseRequest([]byte(body), -1)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "r1" || req.BinaryOutput || len(req.Inputs) != 1 {
		t.Fatalf("request = %+v", req)
	}
	want := []OutputRequest{{Name: "probabilities"}, {Name: "logits", Binary: true}}
	if !slices.Equal(req.Outputs, want) {
		t.Fatalf("outputs = %+v, want %+v", req.Outputs, want)
	}
	got, err := req.Inputs[0].Float32s(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{1, 2.5, -300, 0.125}) {
		t.Fatalf("data = %v", got)
	}
}

// TestParseRequestTolerates checks what a strict parser must still accept: unknown members
// (skipped whatever their type), escapes in strings, any member order, white space.
func TestParseRequestTolerates(t *testing.T) {
	body := " {\n \"extra\": {\"a\": [1, {\"b\": null}], \"c\": \"\\\"q\\u00e9\"},\n" +
		` "inputs": [ { "data" : [ [ 1 ] , [ -2.5e+1 ] ], "datatype": "FP32", "shape": [2, 1], "name": "in\u0070ut", "more": true } ],` +
		` "id": "a\"b" } `
	req, err := ParseRequest([]byte(body), -1)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != `a"b` || req.Inputs[0].Name != "input" {
		t.Fatalf("request = %+v", req)
	}
	if got, err := req.Inputs[0].Float32s(nil); err != nil || !slices.Equal(got, []float32{1, -25}) {
		t.Fatalf("data = %v, %v", got, err)
	}
}

// FuzzParseRequest checks that no body panics the parser and that every body it accepts is
// valid JSON by encoding/json's judgement.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"id":"r","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[[1,2]]}],"outputs":[{"name":"y"}]}`))
	f.Add([]byte(`{"parameters":{"binary_data_output":true},"inputs":[{"name":"a\u0041","shape":[],"datatype":"FP32","data":1e5}]}`))
	f.Add([]byte(`{"x":[{},[],"",true,false,null,-0.5e-3]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRequest(body, -1)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for i := range req.Inputs {
			_, _ = req.Inputs[i].Float32s(nil)
		}
	})
}

func TestParseRequestBinary(t *testing.T) {
	header := `{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"b","shape":[1,3],"datatype":"FP16","parameters":{"binary_data_size":6}},` +
		`{"name":"c","shape":[1],"datatype":"INT64","data":[7]}]}`
	body := []byte(header)
	body = binary.LittleEndian.AppendUint32(body, math.Float32bits(1.5))
	body = binary.LittleEndian.AppendUint32(body, math.Float32bits(-2))
	for _, h := range []uint16{0x3c00, 0xc000, 0x0001} { // 1, -2, the smallest subnormal
		body = binary.LittleEndian.AppendUint16(body, h)
	}
	req, err := ParseRequest(body, len(header))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]float32{{1.5, -2}, {1, -2, float32(math.Ldexp(1, -24))}, {7}} {
		got, err := req.Inputs[i].Float32s(nil)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("input %d: %v, %v; want %v", i, got, err, want)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name, body string
		headerLen  int
		want       string
	}{
		{"malformed", `{"inputs":[`, -1, "malformed JSON: offset 11: unexpected end of input"},
		{"trailing data", `{"inputs":[]} x`, -1, "malformed JSON: offset 14: unexpected data after the top-level value"},
		{"bad literal", `{"inputs":[],"x":tru}`, -1, "malformed JSON: offset 17: invalid literal"},
		{"unterminated string", `{"id":"abc`, -1, "malformed JSON: offset 10: unexpected end of input"},
		{"control character", "{\"id\":\"a\nb\"}", -1, "malformed JSON: offset 8: control character in a string"},
		{"bad number", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[01]}]}`, -1, "malformed JSON: offset 61: malformed number"},
		{"missing comma", `{"inputs":[] "id":"x"}`, -1, "malformed JSON: offset 13: expected ',' or '}' in an object"},
		{"not an object", `[1]`, -1, "the body must be an object, got an array"},
		{"wrong type", `{"inputs":"x"}`, -1, "inputs must be an array, got a string"},
		{"id not a string", `{"id":5,"inputs":[]}`, -1, "id must be a string, got a number"},
		{"shape not integers", `{"inputs":[{"name":"x","shape":[1.5],"datatype":"FP32","data":[1]}]}`, -1, "inputs[0].shape must hold integers, got 1.5"},
		{"name not a string", `{"inputs":[{"name":1,"shape":[1],"datatype":"FP32","data":[1]}]}`, -1, "inputs[0].name must be a string, got a number"},
		{"no inputs", `{"inputs":[]}`, -1, "the request has no inputs"},
		{"no name", `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`, -1, "inputs[0]: name is missing"},
		{"no datatype", `{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`, -1, `input "x": datatype is missing`},
		{"no shape", `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, -1, `input "x": shape is missing`},
		{"negative dim", `{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`, -1, `input "x": shape [-1] has a negative dimension`},
		{"no data", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`, -1, `input "x": data is missing`},
		{"twice", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, -1, `input "x" is given twice`},
		{"binary without header", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`, -1, `input "x": binary_data_size without the Inference-Header-Content-Length header`},
		{"binary too long", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`, 91, `input "x": binary_data_size 4, but only 0 bytes of binary data remain`},
		{"header too long", `{}`, 10, "Inference-Header-Content-Length is 10 but the body has only 2 bytes"},
		{"bad binary_data_output", `{"parameters":{"binary_data_output":"yes"},"inputs":[]}`, -1, "parameter binary_data_output must be a boolean"},
		{"classification", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"y","parameters":{"classification":3}}]}`, -1, `output "y": the classification extension is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(tt.body), tt.headerLen)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFloat32sErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"count", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`, `input "x": shape [2 2] needs 4 values, data has 3`},
		{"string", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}`, `input "x": data: unexpected '"' at offset 1: want numbers or arrays of numbers`},
		{"bool datatype", `{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[true]}]}`, `input "x": datatype BOOL cannot be read as numbers`},
		{"bytes datatype", `{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}`, `input "x": datatype BYTES cannot be read as numbers`},
		{"huge shape", `{"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`, `input "x": shape [4294967296 4294967296] has more than 2147483647 elements`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tt.body), -1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = req.Inputs[0].Float32s(nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestParseNumberMatchesStrconv checks the fast path against strconv on the formats clients
// write: Go's and Python's shortest float32 and float64 forms, fixed precision, exponents.
func TestParseNumberMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cases []string
	for range 20000 {
		f := (rng.Float64() - 0.3) * math.Pow(10, float64(rng.IntN(40)-20))
		cases = append(cases,
			strconv.FormatFloat(f, 'g', -1, 32),
			strconv.FormatFloat(f, 'g', -1, 64),
			strconv.FormatFloat(f, 'f', 6, 64),
			strconv.FormatFloat(f, 'e', 8, 64),
		)
	}
	cases = append(cases, "0", "-0", "1", "255", "0.5", "1E3", "1e+2", "123456789012345678901234567890", "1e-400", "1e400", "0.000000000000000000000000000001")
	for _, s := range cases {
		got, n, err := parseNumber([]byte(s + ","))
		if err != nil || n != len(s) {
			t.Fatalf("parseNumber(%q) = %v, %d, %v", s, got, n, err)
		}
		want, _ := strconv.ParseFloat(s, 64)
		if got != want {
			t.Fatalf("parseNumber(%q) = %v, strconv says %v", s, got, want)
		}
	}
	for _, s := range cases {
		if n := skipNumber([]byte(s + "]")); n != len(s) {
			t.Fatalf("skipNumber(%q) = %d, want %d", s, n, len(s))
		}
	}
	for _, bad := range []string{"-", "01", "-01", "1.", "1e", "1e+", ".5", "-x"} {
		if _, _, err := parseNumber([]byte(bad)); err == nil {
			t.Errorf("parseNumber(%q) accepted", bad)
		}
		if n := skipNumber([]byte(bad)); n != 0 && n == len(bad) {
			t.Errorf("skipNumber(%q) = %d, accepted it whole", bad, n)
		}
	}
}

func TestAppendResponseRoundTrip(t *testing.T) {
	outs := []Output{
		{Name: "logits", Shape: []int64{2, 3}, Data: []float32{1.5, -2, 3e-7, 0, 1e30, -0.1}},
		{Name: "probabilities", Shape: []int64{2, 3}, Data: []float32{0.1, 0.2, 0.7, 0.3, 0.3, 0.4}, Binary: true},
	}
	body, jsonLen := AppendResponse(nil, "fashion", "3", `q"1`, outs)
	if jsonLen < 0 || len(body) != jsonLen+24 {
		t.Fatalf("jsonLen = %d, body %d bytes", jsonLen, len(body))
	}
	var head map[string]any
	if err := json.Unmarshal(body[:jsonLen], &head); err != nil {
		t.Fatalf("JSON header invalid: %v\n%s", err, body[:jsonLen])
	}
	if head["model_name"] != "fashion" || head["model_version"] != "3" || head["id"] != `q"1` {
		t.Fatalf("header = %v", head)
	}
	for _, o := range outs {
		shape, data, err := ParseOutput(body, jsonLen, o.Name, nil)
		if err != nil || !slices.Equal(shape, o.Shape) || !slices.Equal(data, o.Data) {
			t.Fatalf("%s: %v %v %v, want %v %v", o.Name, shape, data, err, o.Shape, o.Data)
		}
	}
	if _, _, err := ParseOutput(body, jsonLen, "nope", nil); err == nil || err.Error() != `the response has no output "nope"` {
		t.Fatalf("missing output: %v", err)
	}
	plain, jsonLen := AppendResponse(nil, "m", "1", "", []Output{{Name: "y", Shape: []int64{2}, Data: []float32{float32(math.NaN()), 2}}})
	if jsonLen != -1 || string(plain) != `{"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[null,2]}]}` {
		t.Fatalf("plain response = %s (%d)", plain, jsonLen)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\back`, "tab\tnl\ncr\r\x01", "héllo ✓", "bad\xffutf8", ""} {
		var back string
		out := appendString(nil, s)
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: invalid JSON: %v", s, out, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Fatalf("appendString(%q) decodes to %q, want %q", s, back, want)
		}
	}
	if got := string(AppendError(nil, `no "x"`)); got != `{"error":"no \"x\""}` {
		t.Fatalf("AppendError = %s", got)
	}
}

func TestParseOutputFormats(t *testing.T) {
	body := `{"outputs":[{"name":"a","datatype":"FP64","shape":[1,2],"data":[[0.25,0.75]]},{"name":"b","datatype":"INT32","shape":[1],"data":[3]}]}`
	_, data, err := ParseOutput([]byte(body), -1, "a", nil)
	if err != nil || !slices.Equal(data, []float32{0.25, 0.75}) {
		t.Fatalf("a = %v, %v", data, err)
	}
	if _, _, err := ParseOutput([]byte(`{"outputs":[{"name":"a","datatype":"FP32","shape":[1]}]}`), -1, "a", nil); err == nil || err.Error() != `output "a" has no data` {
		t.Fatalf("no data: %v", err)
	}
	if _, _, err := ParseOutput([]byte(`{"outputs":[{"name":"a","datatype":"FP32","shape":[2],"data":[1]}]}`), -1, "a", nil); err == nil || err.Error() != `output "a": shape [2] needs 2 values, data has 1` {
		t.Fatalf("short data: %v", err)
	}
}
