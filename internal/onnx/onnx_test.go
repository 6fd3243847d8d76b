package onnx

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

// sampleModel uses every kind of value the package reads and writes.
func sampleModel() *Model {
	return &Model{
		IRVersion:       8,
		ProducerName:    "edgeloop-test",
		ProducerVersion: "1.2.3",
		Opsets:          []Opset{{Domain: "", Version: 13}, {Domain: "ai.onnx.ml", Version: 3}},
		Metadata:        map[string]string{"classes": `["a","b"]`, "z": "", "author": "tests"},
		Graph: Graph{
			Name: "mlp",
			Nodes: []Node{
				{Name: "fc", OpType: "Gemm", Inputs: []string{"input", "w", "b"}, Outputs: []string{"logits"},
					Attrs: map[string]Attribute{
						"transB": {Type: AttrInt, Int: 1},
						"alpha":  {Type: AttrFloat, Float: 0.5},
						"beta":   {Type: AttrFloat, Float: float32(math.Inf(-1))},
					}},
				{OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probabilities"},
					Attrs: map[string]Attribute{"axis": {Type: AttrInt, Int: -1}}},
				{Name: "all", OpType: "Custom", Domain: "com.example", Inputs: []string{"", "x"}, Outputs: []string{"o1", "o2"},
					Attrs: map[string]Attribute{
						"s":  {Type: AttrString, String: "héllo\x00"},
						"t":  {Type: AttrTensor, Tensor: &Tensor{DataType: Int64, Dims: []int64{2}, Int64: []int64{-1, 784}}},
						"fs": {Type: AttrFloats, Floats: []float32{1, -2.5, 0}},
						"is": {Type: AttrInts, Ints: []int64{0, -7, math.MaxInt64}},
						"ss": {Type: AttrStrings, Strings: []string{"", "b"}},
					}},
			},
			Initializers: []Tensor{
				{Name: "w", DataType: Float, Dims: []int64{2, 3}, Float32: []float32{1, 2, 3, -4, 5.5, float32(math.SmallestNonzeroFloat32)}},
				{Name: "b", DataType: Float, Dims: []int64{2}, Float32: []float32{0.25, -0.25}},
				{Name: "scalar", DataType: Float, Float32: []float32{7}},
				{Name: "empty", DataType: Float, Dims: []int64{0, 4}, Float32: []float32{}},
				{Name: "i32", DataType: Int32, Dims: []int64{3}, Int64: []int64{math.MinInt32, 0, math.MaxInt32}},
				{Name: "u32", DataType: Uint32, Dims: []int64{1}, Int64: []int64{math.MaxUint32}},
				{Name: "i16", DataType: Int16, Dims: []int64{2}, Int64: []int64{-300, 300}},
				{Name: "u16", DataType: Uint16, Dims: []int64{1}, Int64: []int64{65535}},
				{Name: "i8", DataType: Int8, Dims: []int64{2}, Int64: []int64{-128, 127}},
				{Name: "u8", DataType: Uint8, Dims: []int64{2}, Int64: []int64{0, 255}},
				{Name: "flags", DataType: Bool, Dims: []int64{3}, Int64: []int64{1, 0, 1}},
			},
			Inputs: []ValueInfo{
				{Name: "input", ElemType: Float, Shape: []Dim{{Value: -1, Param: "batch"}, {Value: 784}}},
				{Name: "x", ElemType: Int64, Shape: []Dim{{Value: -1}, {Value: 0}}},
			},
			Outputs: []ValueInfo{
				{Name: "logits", ElemType: Float, Shape: []Dim{{Value: -1, Param: "batch"}, {Value: 10}}},
				{Name: "probabilities", ElemType: Float, Shape: []Dim{}},
				{Name: "o1"},
			},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	want := sampleModel()
	data, err := Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the model:\n got %+v\nwant %+v", got, want)
	}
	again, err := Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Error("encoding the decoded model gave different bytes: encoding is not deterministic")
	}
}

func TestHelpers(t *testing.T) {
	m := sampleModel()
	if w := m.Graph.Initializer("w"); w == nil || w.Dims[1] != 3 {
		t.Errorf("Initializer(w) = %+v", w)
	}
	if m.Graph.Initializer("nope") != nil {
		t.Error("Initializer(nope) found something")
	}
	n := &m.Graph.Nodes[0]
	if got := n.AttrInt("transB", 0); got != 1 {
		t.Errorf("AttrInt(transB) = %d", got)
	}
	if got := n.AttrInt("transA", 0); got != 0 {
		t.Errorf("AttrInt(transA) = %d, want the default", got)
	}
	if got := n.AttrInt("alpha", 9); got != 9 {
		t.Errorf("AttrInt on a float attribute = %d, want the default", got)
	}
	if got := n.AttrFloat("alpha", 1); got != 0.5 {
		t.Errorf("AttrFloat(alpha) = %v", got)
	}
	if got := n.AttrFloat("gamma", 1); got != 1 {
		t.Errorf("AttrFloat(gamma) = %v, want the default", got)
	}
	if Float.String() != "FLOAT" || BFloat16.String() != "BFLOAT16" || DataType(99).String() != "DataType(99)" {
		t.Errorf("DataType.String: %v %v %v", Float, BFloat16, DataType(99))
	}
}

// ld is a length-delimited field written by hand: tag byte, length as a one- or two-byte
// varint, body. The fixtures below use it so they do not depend on the encoder under test.
func ld(tag byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	switch n := len(b); {
	case n < 1<<7:
		return append([]byte{tag, byte(n)}, b...)
	case n < 1<<14:
		return append([]byte{tag, byte(n&0x7f | 0x80), byte(n >> 7)}, b...)
	}
	panic("fixture field too long")
}

func str(tag byte, s string) []byte { return ld(tag, []byte(s)) }

// tinyGraphFixture is a one-node model (y = Gemm(x, w, b, transB=1)) written field by field,
// in the encodings other writers use and Encode does not: float_data (packed), int64_data
// (packed), an unpacked float_data, an attribute without its type field (IR version 1), and a
// deprecated group and unknown fields that must be skipped.
func tinyGraphFixture() []byte {
	node := bytes.Join([][]byte{
		str(0x0a, "x"), str(0x0a, "w"), str(0x0a, "b"), // input (1)
		str(0x12, "y"),    // output (2)
		str(0x1a, "gemm"), // name (3)
		str(0x22, "Gemm"), // op_type (4)
		ld(0x2a, str(0x0a, "transB"), []byte{0x18, 0x01, 0xa0, 0x01, 0x02}), // attribute (5): name, i=1 (3), type=INT (20)
		ld(0x2a, str(0x0a, "alpha"), []byte{0x15, 0x00, 0x00, 0x00, 0x3f}),  // attribute: name, f=0.5 (2), no type
	}, nil)
	w := bytes.Join([][]byte{
		{0x08, 0x02, 0x08, 0x02}, // dims (1) unpacked: 2, 2
		{0x10, 0x01},             // data_type (2) FLOAT
		ld(0x22, []byte{0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x40}), // float_data (4) packed: 1, -2, 0, 3
		str(0x42, "w"), // name (8)
	}, nil)
	b := bytes.Join([][]byte{
		ld(0x0a, []byte{0x02}), // dims (1) packed: 2
		{0x10, 0x01},           // data_type FLOAT
		{0x25, 0x00, 0x00, 0x20, 0x41, 0x25, 0x00, 0x00, 0xa0, 0xc0}, // float_data (4) unpacked: 10, -5
		str(0x42, "b"),
		{0xf8, 0x0f, 0x07}, // unknown varint field 255 = 7
	}, nil)
	shape := ld(0x5a, // input (11)
		str(0x0a, "x"),
		ld(0x12, ld(0x0a, []byte{0x08, 0x01}, // type (2) > tensor_type (1) > elem_type FLOAT
			ld(0x12, ld(0x0a, str(0x12, "N")), ld(0x0a, []byte{0x08, 0x02})))), // shape: [N, 2]
	)
	out := ld(0x62, str(0x0a, "y"), ld(0x12, ld(0x0a, []byte{0x08, 0x01}, ld(0x12, ld(0x0a, str(0x12, "N")), ld(0x0a, []byte{0x08, 0x02})))))
	shapeTensor := bytes.Join([][]byte{
		{0x08, 0x02},                 // dims: 2
		{0x10, 0x07},                 // data_type INT64
		ld(0x3a, []byte{0x7f, 0x02}), // int64_data (7) packed: 127, 2
		str(0x42, "shape"),
	}, nil)
	graph := bytes.Join([][]byte{
		ld(0x0a, node),
		str(0x12, "tiny"),
		ld(0x2a, w), ld(0x2a, b), ld(0x2a, shapeTensor),
		shape, out,
		{0xa3, 0x01, 0x08, 0x01, 0xa4, 0x01}, // unknown field 20 as a group: start, varint field 1, end
	}, nil)
	return bytes.Join([][]byte{
		{0x08, 0x08}, // ir_version (1) = 8
		str(0x12, "hand"),
		{0x9b, 0x06, 0x08, 0x05, 0x9c, 0x06},            // unknown field 99 as a group: start, varint field 1, end
		ld(0x3a, graph),                                 // graph (7)
		ld(0x42, str(0x0a, ""), []byte{0x10, 0x0d}),     // opset_import (8): "", 13
		ld(0x72, str(0x0a, "classes"), str(0x12, "[]")), // metadata_props (14)
	}, nil)
}

func TestDecodeFixture(t *testing.T) {
	got, err := Decode(tinyGraphFixture())
	if err != nil {
		t.Fatal(err)
	}
	want := &Model{
		IRVersion:    8,
		ProducerName: "hand",
		Opsets:       []Opset{{Version: 13}},
		Metadata:     map[string]string{"classes": "[]"},
		Graph: Graph{
			Name: "tiny",
			Nodes: []Node{{Name: "gemm", OpType: "Gemm", Inputs: []string{"x", "w", "b"}, Outputs: []string{"y"},
				Attrs: map[string]Attribute{"transB": {Type: AttrInt, Int: 1}, "alpha": {Type: AttrFloat, Float: 0.5}}}},
			Initializers: []Tensor{
				{Name: "w", DataType: Float, Dims: []int64{2, 2}, Float32: []float32{1, -2, 0, 3}},
				{Name: "b", DataType: Float, Dims: []int64{2}, Float32: []float32{10, -5}},
				{Name: "shape", DataType: Int64, Dims: []int64{2}, Int64: []int64{127, 2}},
			},
			Inputs:  []ValueInfo{{Name: "x", ElemType: Float, Shape: []Dim{{Value: -1, Param: "N"}, {Value: 2}}}},
			Outputs: []ValueInfo{{Name: "y", ElemType: Float, Shape: []Dim{{Value: -1, Param: "N"}, {Value: 2}}}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded fixture:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeTruncated(t *testing.T) {
	m := sampleModel()
	m.Opsets, m.Metadata = nil, nil // so the graph is the last field and every prefix lacks part of it
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(data) {
		if _, err := Decode(data[:n]); err == nil {
			t.Fatalf("Decode of the first %d of %d bytes succeeded", n, len(data))
		}
	}
}

// encodeOrDie encodes m, failing the test on error.
func encodeOrDie(t *testing.T, m *Model) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withGraph wraps a hand-written graph body in a model.
func withGraph(graph ...[]byte) []byte {
	return append([]byte{0x08, 0x08}, ld(0x3a, graph...)...)
}

// withTensor is a model whose graph has one initializer with the given body.
func withTensor(body ...[]byte) []byte { return withGraph(ld(0x2a, body...)) }

// TestDecodeTensor reads DOUBLE tensors in each of their encodings, as the backend test data
// of ONNX stores them, and checks that Encode writes them back.
func TestDecodeTensor(t *testing.T) {
	one, two := []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, []byte{0, 0, 0, 0, 0, 0, 0, 0x40}
	tests := []struct {
		name string
		data []byte
	}{
		{"raw_data", append([]byte{0x08, 0x02, 0x10, 0x0b, 0x4a, 16}, append(one, two...)...)},
		{"packed double_data", append([]byte{0x08, 0x02, 0x10, 0x0b, 0x52, 16}, append(one, two...)...)},
		{"unpacked double_data", append(append([]byte{0x08, 0x02, 0x10, 0x0b, 0x51}, one...), append([]byte{0x51}, two...)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTensor(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if got.DataType != Double || len(got.Float64) != 2 || got.Float64[0] != 1 || got.Float64[1] != 2 {
				t.Fatalf("got %+v, want DOUBLE [1 2]", got)
			}
			m := sampleModel()
			m.Graph.Initializers = append(m.Graph.Initializers, *got)
			m.Graph.Initializers[len(m.Graph.Initializers)-1].Name = "d"
			enc := encodeOrDie(t, m)
			back, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if d := back.Graph.Initializer("d"); d == nil || len(d.Float64) != 2 || d.Float64[1] != 2 {
				t.Fatalf("after Encode and Decode: %+v", d)
			}
		})
	}
	if _, err := DecodeTensor([]byte{0x10, 0x0a, 0x4a, 2, 0, 0}); err == nil || !strings.HasPrefix(err.Error(), "onnx decode tensor: ") {
		t.Errorf("float16 tensor: error %v, want an onnx decode tensor error", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := encodeOrDie(t, sampleModel())
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "model has no graph"},
		{"git-lfs pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 26454\n"), "reserved wire type"},
		{"zero field number", []byte{0x00, 0x01}, "field tag"},
		{"truncated varint", []byte{0x08, 0x80}, "truncated"},
		{"length past end", append([]byte{0x3a, 0x7f}, make([]byte, 10)...), "truncated"},
		{"trailing garbage", append(append([]byte{}, valid...), 0x3a, 0x05, 0x01), "truncated"},
		{"ir_version as bytes", append([]byte{0x0a, 0x00}, valid...), "wire type 2, want varint"},
		{"graph twice", append(append([]byte{}, valid...), 0x3a, 0x00), "graph given twice"},
		{"duplicate metadata key", append(append([]byte{}, valid...), ld(0x72, str(0x0a, "classes"))...), `key "classes" given twice`},
		{"node without op_type", withGraph(ld(0x0a, str(0x0a, "x"))), "node[0]: node has no op_type"},
		{"attribute without name", withGraph(ld(0x0a, str(0x22, "Relu"), ld(0x2a, []byte{0x18, 0x01}))), "attribute has no name"},
		{"attribute without value", withGraph(ld(0x0a, str(0x22, "Relu"), ld(0x2a, str(0x0a, "a")))), `attribute[0] "a": attribute has no value`},
		{"graph attribute", withGraph(ld(0x0a, str(0x22, "If"), ld(0x2a, str(0x0a, "then_branch"), ld(0x32), []byte{0xa0, 0x01, 0x05}))), "not supported"},
		{"unknown attribute type", withGraph(ld(0x0a, str(0x22, "X"), ld(0x2a, str(0x0a, "a"), []byte{0xa0, 0x01, 0x63}))), "unknown attribute type 99"},
		{"duplicate attribute", withGraph(ld(0x0a, str(0x22, "X"), ld(0x2a, str(0x0a, "a"), []byte{0x18, 0x01}), ld(0x2a, str(0x0a, "a"), []byte{0x18, 0x02}))), `attribute "a" given twice`},
		{"duplicate initializer", withGraph(ld(0x2a, str(0x42, "w"), []byte{0x08, 0x00, 0x10, 0x01}), ld(0x2a, str(0x42, "w"), []byte{0x08, 0x00, 0x10, 0x01})), `initializer[1] "w": name given twice`},
		{"negative dim", withTensor([]byte{0x08, 0x7f, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x10, 0x01}), "negative dimension"},
		{"dims product overflow", withTensor([]byte{0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0x10, 0x01}), "more than 2147483647 elements"},
		{"rank above limit", withTensor(bytes.Repeat([]byte{0x08, 0x01}, MaxRank+1), []byte{0x10, 0x01}), "more than 32 dims"},
		{"dims without data", withTensor([]byte{0x08, 0x40, 0x10, 0x01}), "call for 64 elements but the tensor has no data"},
		{"raw_data too short", withTensor([]byte{0x08, 0x02, 0x10, 0x01}, str(0x4a, "abcd")), "raw_data has 4 bytes, dims [2] of FLOAT call for 8"},
		{"float_data count", withTensor([]byte{0x08, 0x02, 0x10, 0x01, 0x25, 0, 0, 0, 0}), "has 1 elements, dims [2] call for 2"},
		{"packed floats odd length", withTensor([]byte{0x10, 0x01}, ld(0x22, []byte{1, 2, 3})), "not a multiple of 4"},
		{"float_data in int64 tensor", withTensor([]byte{0x10, 0x07, 0x25, 0, 0, 0, 0}), "float_data in a tensor of type INT64"},
		{"int64_data in float tensor", withTensor([]byte{0x10, 0x01, 0x38, 0x01}), "int64_data in a tensor of type FLOAT"},
		{"two data fields", withTensor([]byte{0x10, 0x01, 0x25, 0, 0, 0, 0}, str(0x4a, "abcd")), "more than one data field"},
		{"float16 tensor", withTensor([]byte{0x10, 0x0a}, str(0x4a, "ab")), "type FLOAT16 is not supported"},
		{"string_data", withTensor([]byte{0x10, 0x08}, str(0x32, "ab")), "string tensor data is not supported"},
		{"double_data in float tensor", withTensor([]byte{0x10, 0x01, 0x51, 0, 0, 0, 0, 0, 0, 0, 0}), "double_data in a tensor of type FLOAT"},
		{"packed doubles odd length", withTensor([]byte{0x10, 0x0b}, ld(0x52, []byte{1, 2, 3})), "packed doubles of 3 bytes"},
		{"external data", withTensor([]byte{0x10, 0x01, 0x70, 0x01}), "external tensor data"},
		{"uint8 out of range", withTensor([]byte{0x08, 0x01, 0x10, 0x02, 0x28, 0xac, 0x02}), "element 0 = 300 does not fit type UINT8"},
		{"sparse initializer", withGraph(ld(0x7a)), "sparse initializers"},
		{"sequence input", withGraph(ld(0x5a, str(0x0a, "s"), ld(0x12, ld(0x22)))), `input[0] "s": type field 4: only dense tensor types`},
		{"shape rank above limit", withGraph(ld(0x62, str(0x0a, "o"), ld(0x12, ld(0x0a, ld(0x12, bytes.Repeat([]byte{0x0a, 0x00}, MaxRank+1)))))), `output[0] "o": shape has more than 32 dims`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.data)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", m)
			}
			if !strings.HasPrefix(err.Error(), "onnx decode: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *Model)
		want string
	}{
		{"data shorter than dims", func(m *Model) { m.Graph.Initializers[0].Float32 = m.Graph.Initializers[0].Float32[:5] }, `initializer[0] "w": has 5 elements of type FLOAT (and 0 of another), dims [2 3] call for 6`},
		{"float tensor with int data", func(m *Model) { m.Graph.Initializers[1].Int64 = []int64{1} }, `initializer[1] "b": has 2 elements of type FLOAT (and 1 of another)`},
		{"unsupported type", func(m *Model) { m.Graph.Initializers[0].DataType = Float16 }, "type FLOAT16 is not supported"},
		{"double tensor with float data", func(m *Model) { m.Graph.Initializers[0].DataType = Double }, "has 0 elements of type DOUBLE (and 6 of another)"},
		{"value out of range", func(m *Model) { m.Graph.Initializers[9].Int64[1] = 256 }, "element 1 = 256 does not fit type UINT8"},
		{"negative dim", func(m *Model) { m.Graph.Initializers[0].Dims = []int64{-2, -3} }, "negative dimension"},
		{"duplicate initializer", func(m *Model) { m.Graph.Initializers[1].Name = "w" }, `initializer[1] "w": name given twice`},
		{"no op_type", func(m *Model) { m.Graph.Nodes[1].OpType = "" }, "node[1]: node has no op_type"},
		{"attribute type missing", func(m *Model) { m.Graph.Nodes[0].Attrs["k"] = Attribute{Int: 3} }, `node[0] "fc": attribute "k": attribute type 0 is not supported`},
		{"attribute name empty", func(m *Model) { m.Graph.Nodes[0].Attrs[""] = Attribute{Type: AttrInt} }, "attribute has no name"},
		{"tensor attribute without tensor", func(m *Model) { m.Graph.Nodes[2].Attrs["t"] = Attribute{Type: AttrTensor} }, "tensor attribute without a tensor"},
		{"bad tensor attribute", func(m *Model) { m.Graph.Nodes[2].Attrs["t"].Tensor.Dims = []int64{3} }, `attribute "t": tensor: has 2 elements`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleModel()
			tt.edit(m)
			_, err := Encode(m)
			if err == nil {
				t.Fatal("Encode succeeded")
			}
			if !strings.HasPrefix(err.Error(), "onnx encode: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Encode(nil); err == nil {
		t.Error("Encode(nil) succeeded")
	}
}
