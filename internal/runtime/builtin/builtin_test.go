package builtin

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

func mustCompile(t testing.TB, m *onnx.Model) *Model {
	t.Helper()
	mod, err := Compile(m)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return mod
}

func run(t testing.TB, m *Model, in ...Tensor) []Tensor {
	t.Helper()
	res, err := m.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	defer res.Release()
	out := make([]Tensor, len(res.Outputs))
	for i, o := range res.Outputs {
		out[i] = Tensor{Shape: append([]int64(nil), o.Shape...), Data: append([]float32(nil), o.Data...)}
	}
	return out
}

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-float64(b[i])) > tol*math.Max(1, math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// TestTinyByHand checks the tiny model against outputs worked out by hand, through an
// Encode/Load round trip so the file path is the one production takes.
func TestTinyByHand(t *testing.T) {
	data, err := onnx.Encode(builtintest.Tiny())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := m.Inputs(); len(got) != 1 || got[0].Name != "input" || got[0].Datatype != "FP32" || got[0].Shape[0] != -1 || got[0].Shape[1] != 4 {
		t.Fatalf("Inputs = %+v", got)
	}
	if got := m.Outputs(); len(got) != 2 || got[0].Name != "logits" || got[1].Name != "probabilities" || got[1].Shape[1] != 3 {
		t.Fatalf("Outputs = %+v", got)
	}
	if m.Metadata()["classes"] != "zero,one,two" {
		t.Fatalf("Metadata = %v", m.Metadata())
	}
	out := run(t, m, Tensor{Shape: []int64{2, 4}, Data: []float32{1, 2, 4, 1, 3, -1, 0, 2}})
	wantLogits := []float32{2.5, 4, 6, 6.5, 0, 0}
	if ref := append(builtintest.TinyLogits([]float32{1, 2, 4, 1}), builtintest.TinyLogits([]float32{3, -1, 0, 2})...); !near(ref, wantLogits, 0) {
		t.Fatalf("TinyLogits = %v, disagrees with the hand computation %v", ref, wantLogits)
	}
	if !near(out[0].Data, wantLogits, 1e-6) || out[0].Shape[0] != 2 || out[0].Shape[1] != 3 {
		t.Fatalf("logits = %v %v, want [2 3] %v", out[0].Shape, out[0].Data, wantLogits)
	}
	// softmax(2.5, 4, 6): e^−3.5 = 0.030197, e^−2 = 0.135335 and e^0 = 1, each over their sum
	// 1.165532; softmax(6.5, 0, 0): 1 and twice e^−6.5 = 0.0015034, over 1.0030068.
	want := []float32{0.0259087, 0.1161145, 0.8579768, 0.9970022, 0.0014989, 0.0014989}
	if !near(out[1].Data, want, 1e-4) {
		t.Fatalf("probabilities = %v, want %v", out[1].Data, want)
	}
	if argmax(out[1].Data[:3]) != 2 || argmax(out[1].Data[3:]) != 0 {
		t.Fatalf("argmax wrong: %v", out[1].Data)
	}
}

// TestMLPMatchesReference runs a seeded MLP at several batch sizes against a plain Go forward
// pass of the same weights.
func TestMLPMatchesReference(t *testing.T) {
	layers := builtintest.MLPLayers(7, 20, 16, 8, 5)
	m := mustCompile(t, builtintest.MLP(layers))
	for _, batch := range []int{1, 3, 33} {
		x := builtintest.Input(uint64(batch), batch, 20)
		out := run(t, m, Tensor{Shape: []int64{int64(batch), 20}, Data: x})
		want := referenceForward(layers, x, batch)
		if !near(out[0].Data, want, 1e-4) {
			t.Fatalf("batch %d: logits differ\n got %v\nwant %v", batch, out[0].Data, want)
		}
		for r := range batch {
			p := builtintest.Softmax(want[r*5 : (r+1)*5])
			if !near(out[1].Data[r*5:(r+1)*5], p, 1e-4) {
				t.Fatalf("batch %d row %d: probabilities %v, want %v", batch, r, out[1].Data[r*5:(r+1)*5], p)
			}
		}
	}
}

// referenceForward is the MLP computed with loops, no BLAS.
func referenceForward(layers []builtintest.Layer, x []float32, batch int) []float32 {
	for li, l := range layers {
		y := make([]float32, batch*l.Out)
		for r := range batch {
			for o := range l.Out {
				s := float64(l.B[o])
				for i := range l.In {
					s += float64(x[r*l.In+i]) * float64(l.W[o*l.In+i])
				}
				if li < len(layers)-1 {
					s = math.Max(s, 0)
				}
				y[r*l.Out+o] = float32(s)
			}
		}
		x = y
	}
	return x
}

// graph builds a one-input model from nodes, for operator tests.
func graph(opset int64, in onnx.ValueInfo, inits []onnx.Tensor, out string, nodes ...onnx.Node) *onnx.Model {
	return &onnx.Model{
		Opsets: []onnx.Opset{{Version: opset}},
		Graph: onnx.Graph{
			Inputs:       []onnx.ValueInfo{in},
			Initializers: inits,
			Nodes:        nodes,
			Outputs:      []onnx.ValueInfo{{Name: out, ElemType: onnx.Float}},
		},
	}
}

func input(dims ...int64) onnx.ValueInfo {
	vi := onnx.ValueInfo{Name: "x", ElemType: onnx.Float}
	for _, d := range dims {
		if d < 0 {
			vi.Shape = append(vi.Shape, onnx.Dim{Param: "n"})
		} else {
			vi.Shape = append(vi.Shape, onnx.Dim{Value: d})
		}
	}
	return vi
}

func floats(name string, dims []int64, v ...float32) onnx.Tensor {
	return onnx.Tensor{Name: name, DataType: onnx.Float, Dims: dims, Float32: v}
}

func ints(name string, v ...int64) onnx.Tensor {
	return onnx.Tensor{Name: name, DataType: onnx.Int64, Dims: []int64{int64(len(v))}, Int64: v}
}

func node(op string, in []string, attrs map[string]onnx.Attribute) onnx.Node {
	return onnx.Node{Name: strings.ToLower(op), OpType: op, Inputs: in, Outputs: []string{"y"}, Attrs: attrs}
}

func aInt(v int64) onnx.Attribute     { return onnx.Attribute{Type: onnx.AttrInt, Int: v} }
func aFloat(v float32) onnx.Attribute { return onnx.Attribute{Type: onnx.AttrFloat, Float: v} }

// TestOperators checks each kernel, including the attribute and broadcast variants, on values
// small enough to verify by hand.
func TestOperators(t *testing.T) {
	x23 := []float32{1, 2, 3, 4, 5, 6} // [[1 2 3] [4 5 6]]
	tests := []struct {
		name      string
		model     *onnx.Model
		x         Tensor
		wantShape []int64
		want      []float32
	}{
		{
			name: "gemm alpha beta transA and a column C",
			// Aᵀ is [[1 4] [2 5] [3 6]]; Aᵀ·B with B = [[1 0] [0 1]] is Aᵀ; ·2 plus 0.5·C[i].
			model: graph(13, input(2, 3), []onnx.Tensor{floats("b", []int64{2, 2}, 1, 0, 0, 1), floats("c", []int64{3, 1}, 2, 4, 6)}, "y",
				node("Gemm", []string{"x", "b", "c"}, map[string]onnx.Attribute{"alpha": aFloat(2), "beta": aFloat(0.5), "transA": aInt(1)})),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{3, 2},
			want:      []float32{3, 9, 6, 12, 9, 15},
		},
		{
			name: "gemm without C",
			model: graph(13, input(-1, 3), []onnx.Tensor{floats("w", []int64{1, 3}, 1, 1, 1)}, "y",
				node("Gemm", []string{"x", "w"}, map[string]onnx.Attribute{"transB": aInt(1)})),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 1},
			want:      []float32{6, 15},
		},
		{
			name: "gemm scalar C",
			model: graph(13, input(-1, 3), []onnx.Tensor{floats("w", []int64{3, 1}, 1, 0, 0), floats("c", nil, 10)}, "y",
				node("Gemm", []string{"x", "w", "c"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 1},
			want:      []float32{11, 14},
		},
		{
			name: "matmul with a batch of matrices on the left",
			model: graph(13, input(-1, 2, 3), []onnx.Tensor{floats("w", []int64{3, 2}, 1, 0, 0, 1, 1, 1)}, "y",
				node("MatMul", []string{"x", "w"}, nil)),
			x:         Tensor{Shape: []int64{1, 2, 3}, Data: x23},
			wantShape: []int64{1, 2, 2},
			want:      []float32{4, 5, 10, 11},
		},
		{
			name: "matmul with a vector on the right",
			model: graph(13, input(2, 3), []onnx.Tensor{floats("w", []int64{3}, 1, 1, 0)}, "y",
				node("MatMul", []string{"x", "w"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2},
			want:      []float32{3, 9},
		},
		{
			name:      "add a bias row",
			model:     graph(13, input(-1, 3), []onnx.Tensor{floats("b", []int64{3}, 10, 20, 30)}, "y", node("Add", []string{"x", "b"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 3},
			want:      []float32{11, 22, 33, 14, 25, 36},
		},
		{
			name:      "add with the constant first",
			model:     graph(13, input(-1, 3), []onnx.Tensor{floats("b", []int64{1, 3}, 10, 20, 30)}, "y", node("Add", []string{"b", "x"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 3},
			want:      []float32{11, 22, 33, 14, 25, 36},
		},
		{
			name:      "add broadcasting both ways",
			model:     graph(13, input(2, 1), []onnx.Tensor{floats("b", []int64{3}, 10, 20, 30)}, "y", node("Add", []string{"x", "b"}, nil)),
			x:         Tensor{Shape: []int64{2, 1}, Data: []float32{1, 2}},
			wantShape: []int64{2, 3},
			want:      []float32{11, 21, 31, 12, 22, 32},
		},
		{
			name:      "add same shape",
			model:     graph(13, input(2, 3), []onnx.Tensor{floats("b", []int64{2, 3}, 1, 1, 1, 2, 2, 2)}, "y", node("Add", []string{"x", "b"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 3},
			want:      []float32{2, 3, 4, 6, 7, 8},
		},
		{
			name:      "relu",
			model:     graph(13, input(4), nil, "y", node("Relu", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{4}, Data: []float32{-1, 0, 2, -0.5}},
			wantShape: []int64{4},
			want:      []float32{0, 0, 2, 0},
		},
		{
			name:      "sigmoid",
			model:     graph(13, input(3), nil, "y", node("Sigmoid", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{3}, Data: []float32{0, 2, -2}},
			wantShape: []int64{3},
			want:      []float32{0.5, 0.880797, 0.119203},
		},
		{
			name:      "softmax over axis 0 (opset 13)",
			model:     graph(13, input(2, 2), nil, "y", node("Softmax", []string{"x"}, map[string]onnx.Attribute{"axis": aInt(0)})),
			x:         Tensor{Shape: []int64{2, 2}, Data: []float32{0, 1, 0, 1}},
			wantShape: []int64{2, 2},
			want:      []float32{0.5, 0.5, 0.5, 0.5},
		},
		{
			name: "softmax coerced to 2-D (opset 11)",
			// axis 1 of [1 2 2] flattens to one row of 4 values.
			model:     graph(11, input(1, 2, 2), nil, "y", node("Softmax", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{1, 2, 2}, Data: []float32{0, 0, 0, 0}},
			wantShape: []int64{1, 2, 2},
			want:      []float32{0.25, 0.25, 0.25, 0.25},
		},
		{
			name:      "flatten",
			model:     graph(13, input(-1, 2, 3), nil, "y", node("Flatten", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{1, 2, 3}, Data: x23},
			wantShape: []int64{1, 6},
			want:      x23,
		},
		{
			name:      "reshape with 0 and -1",
			model:     graph(13, input(-1, 2, 3), []onnx.Tensor{ints("s", 0, -1)}, "y", node("Reshape", []string{"x", "s"}, nil)),
			x:         Tensor{Shape: []int64{1, 2, 3}, Data: x23},
			wantShape: []int64{1, 6},
			want:      x23,
		},
		{
			name: "reshape to a Constant node's shape",
			model: graph(13, input(6), nil, "y",
				onnx.Node{OpType: "Constant", Outputs: []string{"s"}, Attrs: map[string]onnx.Attribute{"value": {Type: onnx.AttrTensor, Tensor: ptr(ints("", 3, 2))}}},
				node("Reshape", []string{"x", "s"}, nil)),
			x:         Tensor{Shape: []int64{6}, Data: x23},
			wantShape: []int64{3, 2},
			want:      x23,
		},
		{
			name:      "identity",
			model:     graph(13, input(2, 3), nil, "y", node("Identity", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{2, 3}, Data: x23},
			wantShape: []int64{2, 3},
			want:      x23,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, tt.model)
			out := run(t, m, tt.x)
			if !equalShape(out[0].Shape, tt.wantShape) || !near(out[0].Data, tt.want, 1e-5) {
				t.Fatalf("got %v %v, want %v %v", out[0].Shape, out[0].Data, tt.wantShape, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLoadErrors checks that what the runtime cannot run is refused at load, with the node
// and the reason named.
func TestLoadErrors(t *testing.T) {
	w := floats("w", []int64{2, 3}, 1, 2, 3, 4, 5, 6)
	tests := []struct {
		name        string
		model       *onnx.Model
		want        string
		unsupported bool
	}{
		{
			name:        "unknown operator",
			model:       graph(13, input(-1, 3), nil, "y", node("LSTM", []string{"x"}, nil)),
			want:        `builtin: node[0] "lstm" (LSTM): operator "LSTM": not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:        "unknown attribute",
			model:       graph(13, input(-1, 3), []onnx.Tensor{w}, "y", node("Gemm", []string{"x", "w"}, map[string]onnx.Attribute{"transB": aInt(1), "broadcast": aInt(1)})),
			want:        `builtin: node[0] "gemm" (Gemm): attribute "broadcast": not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:  "attribute of the wrong type",
			model: graph(13, input(-1, 3), []onnx.Tensor{w}, "y", node("Gemm", []string{"x", "w"}, map[string]onnx.Attribute{"alpha": aInt(2)})),
			want:  `builtin: node[0] "gemm" (Gemm): attribute "alpha" has type INT, want FLOAT`,
		},
		{
			name:        "allowzero",
			model:       graph(13, input(6), []onnx.Tensor{ints("s", 2, 3)}, "y", node("Reshape", []string{"x", "s"}, map[string]onnx.Attribute{"allowzero": aInt(1)})),
			want:        `builtin: node[0] "reshape" (Reshape): attribute allowzero=1: not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name: "nodes out of topological order",
			model: graph(13, input(3), nil, "y",
				onnx.Node{Name: "second", OpType: "Relu", Inputs: []string{"h"}, Outputs: []string{"y"}},
				onnx.Node{Name: "first", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"h"}}),
			want: `builtin: node[0] "second" (Relu): input "h" is neither a graph input, an initializer nor the output of an earlier node (nodes must be in topological order)`,
		},
		{
			name:  "inner dimensions differ",
			model: graph(13, input(-1, 4), []onnx.Tensor{w}, "y", node("Gemm", []string{"x", "w"}, map[string]onnx.Attribute{"transB": aInt(1)})),
			want:  `builtin: node[0] "gemm" (Gemm): inner dimensions differ: A [-1 4], B [2 3] (transA=false, transB=true)`,
		},
		{
			name:  "C does not broadcast",
			model: graph(13, input(-1, 3), []onnx.Tensor{w, floats("c", []int64{3}, 1, 2, 3)}, "y", node("Gemm", []string{"x", "w", "c"}, map[string]onnx.Attribute{"transB": aInt(1)})),
			want:  `builtin: node[0] "gemm" (Gemm): input C of shape [3] does not broadcast to [-1 2]`,
		},
		{
			name:        "computed reshape target",
			model:       graph(13, input(6), nil, "y", node("Reshape", []string{"x", "x"}, nil)),
			want:        `builtin: node[0] "reshape" (Reshape): input "x": must be an INT64 initializer or Constant (computed shapes are not supported by the built-in runtime)`,
			unsupported: true,
		},
		{
			name:  "reshape to the wrong size",
			model: graph(13, input(2, 6), []onnx.Tensor{ints("s", -1, 5)}, "y", node("Reshape", []string{"x", "s"}, nil)),
			want:  `builtin: node[0] "reshape" (Reshape): cannot reshape [2 6] (12 elements) to [-1 5]`,
		},
		{
			name:        "batched matmul",
			model:       graph(13, input(2, 2, 3), []onnx.Tensor{floats("w", []int64{2, 3, 1}, 1, 2, 3, 4, 5, 6)}, "y", node("MatMul", []string{"x", "w"}, nil)),
			want:        `builtin: node[0] "matmul" (MatMul): right operand of shape [2 3 1] (batched, more than 2 dimensions): not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:  "softmax axis out of range",
			model: graph(13, input(-1, 3), nil, "y", node("Softmax", []string{"x"}, map[string]onnx.Attribute{"axis": aInt(2)})),
			want:  `builtin: node[0] "softmax" (Softmax): axis 2 is out of range for 2 dimensions`,
		},
		{
			name:        "operator domain",
			model:       graph(13, input(3), nil, "y", onnx.Node{Name: "z", OpType: "Relu", Domain: "com.microsoft", Inputs: []string{"x"}, Outputs: []string{"y"}}),
			want:        `builtin: node[0] "z" (Relu): operator domain "com.microsoft": not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:  "value defined twice",
			model: graph(13, input(3), nil, "y", node("Relu", []string{"x"}, nil), node("Relu", []string{"x"}, nil)),
			want:  `builtin: node[1] "relu" (Relu): value "y" is defined twice`,
		},
		{
			name:  "missing input",
			model: graph(13, input(3), nil, "y", node("Add", []string{"x"}, nil)),
			want:  `builtin: node[0] "add" (Add): has 1 inputs, want 2 to 2`,
		},
		{
			name:  "output nobody produces",
			model: graph(13, input(3), nil, "z", node("Relu", []string{"x"}, nil)),
			want:  `builtin: output "z": no node produces it`,
		},
		{
			name:  "no default operator set",
			model: &onnx.Model{Opsets: []onnx.Opset{{Domain: "ai.onnx.ml", Version: 3}}},
			want:  `builtin: the model imports no ai.onnx operator set`,
		},
		{
			name: "integer input",
			model: &onnx.Model{Opsets: []onnx.Opset{{Version: 13}}, Graph: onnx.Graph{
				Inputs: []onnx.ValueInfo{{Name: "ids", ElemType: onnx.Int64, Shape: []onnx.Dim{{Value: 3}}}},
			}},
			want:        `builtin: input "ids": element type INT64 (only FLOAT inputs): not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name: "input without shape",
			model: &onnx.Model{Opsets: []onnx.Opset{{Version: 13}}, Graph: onnx.Graph{
				Inputs: []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float}},
			}},
			want: `builtin: input "x": the model gives no shape, so requests cannot be checked`,
		},
		{
			name: "declared output shape disagrees",
			model: &onnx.Model{Opsets: []onnx.Opset{{Version: 13}}, Graph: onnx.Graph{
				Inputs:  []onnx.ValueInfo{input(-1, 3)},
				Nodes:   []onnx.Node{node("Relu", []string{"x"}, nil)},
				Outputs: []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "n"}, {Value: 4}}}},
			}},
			want: `builtin: output "y": declared dimension 1 is 4, the graph computes 3`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.model)
			if err == nil {
				t.Fatalf("compiled; want error %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error:\n got %s\nwant %s", err, tt.want)
			}
			if errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Fatalf("errors.Is(err, ErrUnsupported) = %t, want %t", !tt.unsupported, tt.unsupported)
			}
		})
	}
}

// TestLoadRejectsCorruptFile checks that a damaged file is a load error, not a panic.
func TestLoadRejectsCorruptFile(t *testing.T) {
	data, err := onnx.Encode(builtintest.Tiny())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(data[:len(data)/2]); err == nil || !strings.HasPrefix(err.Error(), "builtin: ") {
		t.Fatalf("Load(truncated) = %v, want a builtin: error", err)
	}
}

// TestInputErrors checks that requests that do not fit the model are *InputError values.
func TestInputErrors(t *testing.T) {
	m := mustCompile(t, builtintest.Tiny())
	tests := []struct {
		name string
		in   []Tensor
		want string
	}{
		{"no inputs", nil, "model takes 1 inputs, got 0"},
		{"rank", []Tensor{{Shape: []int64{4}, Data: make([]float32, 4)}}, `input "input": shape [4] has 1 dimensions, the model expects 2 ([-1 4])`},
		{"fixed dimension", []Tensor{{Shape: []int64{1, 5}, Data: make([]float32, 5)}}, `input "input": shape [1 5] does not match the model's [-1 4] at dimension 1`},
		{"zero batch", []Tensor{{Shape: []int64{0, 4}}}, `input "input": dimension 0 is 0, must be at least 1`},
		{"data length", []Tensor{{Shape: []int64{2, 4}, Data: make([]float32, 4)}}, `input "input": shape [2 4] needs 8 values, got 4`},
		{"huge", []Tensor{{Shape: []int64{1 << 40, 4}}}, `input "input": shape [1099511627776 4] has more than 2147483647 elements`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Run(context.Background(), tt.in)
			var ie *InputError
			if !errors.As(err, &ie) || err.Error() != tt.want {
				t.Fatalf("Run error = %v (%T), want *InputError %q", err, err, tt.want)
			}
		})
	}
}

func TestRunCanceled(t *testing.T) {
	layers := builtintest.MLPLayers(1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2) // enough steps to reach a check
	m := mustCompile(t, builtintest.MLP(layers))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Run(ctx, []Tensor{{Shape: []int64{1, 4}, Data: make([]float32, 4)}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run on a canceled context = %v, want context.Canceled", err)
	}
}

// TestConcurrentRuns runs one model from many goroutines with different batch sizes (run with
// -race): each result must match a sequential run, so no two requests share scratch.
func TestConcurrentRuns(t *testing.T) {
	layers := builtintest.MLPLayers(3, 32, 16, 4)
	m := mustCompile(t, builtintest.MLP(layers))
	const workers, iters = 8, 50
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			batch := 1 + w%4*7
			x := builtintest.Input(uint64(w), batch, 32)
			want := referenceForward(layers, x, batch)
			for range iters {
				res, err := m.Run(context.Background(), []Tensor{{Shape: []int64{int64(batch), 32}, Data: x}})
				if err != nil {
					errs <- err.Error()
					return
				}
				ok := near(res.Outputs[0].Data, want, 1e-4)
				res.Release()
				if !ok {
					errs <- "worker result differs from the reference"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	m := mustCompile(t, builtintest.Tiny())
	res, err := m.Run(context.Background(), []Tensor{{Shape: []int64{1, 4}, Data: []float32{1, 2, 4, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	res.Release()
	res.Release()
	if res.Outputs != nil {
		t.Fatal("Outputs still set after Release")
	}
}
