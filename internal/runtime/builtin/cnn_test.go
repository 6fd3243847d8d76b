package builtin

import (
	"errors"
	"testing"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

func aInts(v ...int64) onnx.Attribute { return onnx.Attribute{Type: onnx.AttrInts, Ints: v} }
func aString(s string) onnx.Attribute { return onnx.Attribute{Type: onnx.AttrString, String: s} }

// named is node with an explicit output, for graphs of several nodes.
func named(op, out string, in []string, attrs map[string]onnx.Attribute) onnx.Node {
	n := node(op, in, attrs)
	n.Name, n.Outputs = out, []string{out}
	return n
}

// TestCNNOperators checks the cases of the CNN operators that the ONNX node suite does not
// reach (its pad tests use INT32 data, it has no depthwise convolution, and its Shape chains
// end in integer outputs), on values small enough to verify by hand.
func TestCNNOperators(t *testing.T) {
	x4 := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} // [1 1 4 4]
	tests := []struct {
		name      string
		model     *onnx.Model
		x         Tensor
		wantShape []int64
		want      []float32
	}{
		{
			name: "depthwise conv with bias, group = channels",
			// Channel 0 is summed over 2×2 windows (weights 1), channel 1 is doubled on its
			// top-left tap; biases 10 and 20.
			model: graph(13, input(-1, 2, 2, 2), []onnx.Tensor{floats("w", []int64{2, 1, 2, 2}, 1, 1, 1, 1, 2, 0, 0, 0), floats("b", []int64{2}, 10, 20)}, "y",
				node("Conv", []string{"x", "w", "b"}, map[string]onnx.Attribute{"group": aInt(2)})),
			x:         Tensor{Shape: []int64{1, 2, 2, 2}, Data: []float32{1, 2, 3, 4, 5, 6, 7, 8}},
			wantShape: []int64{1, 2, 1, 1},
			want:      []float32{20, 30},
		},
		{
			name: "1x1 conv (no im2col)",
			model: graph(13, input(-1, 2, 1, 2), []onnx.Tensor{floats("w", []int64{1, 2, 1, 1}, 1, -1)}, "y",
				node("Conv", []string{"x", "w"}, nil)),
			x:         Tensor{Shape: []int64{1, 2, 1, 2}, Data: []float32{5, 6, 1, 2}},
			wantShape: []int64{1, 1, 1, 2},
			want:      []float32{4, 4},
		},
		{
			name: "conv with dilation 2 and SAME_LOWER",
			model: graph(13, input(1, 1, 4, 4), []onnx.Tensor{floats("w", []int64{1, 1, 2, 2}, 1, 0, 0, 0)}, "y",
				node("Conv", []string{"x", "w"}, map[string]onnx.Attribute{"dilations": aInts(2, 2), "auto_pad": aString("SAME_LOWER")})),
			// The dilated kernel spans 3: 2 pads in all, 1 before and 1 after, so output (i, j)
			// reads (i-1, j-1).
			x:         Tensor{Shape: []int64{1, 1, 4, 4}, Data: x4},
			wantShape: []int64{1, 1, 4, 4},
			want:      []float32{0, 0, 0, 0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11},
		},
		{
			name: "conv 2x2 SAME_LOWER puts the odd pad before",
			model: graph(13, input(1, 1, 4, 4), []onnx.Tensor{floats("w", []int64{1, 1, 2, 2}, 1, 0, 0, 0)}, "y",
				node("Conv", []string{"x", "w"}, map[string]onnx.Attribute{"auto_pad": aString("SAME_LOWER")})),
			x:         Tensor{Shape: []int64{1, 1, 4, 4}, Data: x4},
			wantShape: []int64{1, 1, 4, 4},
			want:      []float32{0, 0, 0, 0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11},
		},
		{
			name: "conv 2x2 SAME_UPPER puts it after",
			model: graph(13, input(1, 1, 4, 4), []onnx.Tensor{floats("w", []int64{1, 1, 2, 2}, 1, 0, 0, 0)}, "y",
				node("Conv", []string{"x", "w"}, map[string]onnx.Attribute{"auto_pad": aString("SAME_UPPER")})),
			x:         Tensor{Shape: []int64{1, 1, 4, 4}, Data: x4},
			wantShape: []int64{1, 1, 4, 4},
			want:      x4,
		},
		{
			name: "conv 1-D with stride 2",
			model: graph(13, input(1, 1, 5), []onnx.Tensor{floats("w", []int64{1, 1, 2}, 1, 1)}, "y",
				node("Conv", []string{"x", "w"}, map[string]onnx.Attribute{"strides": aInts(2)})),
			x:         Tensor{Shape: []int64{1, 1, 5}, Data: []float32{1, 2, 3, 4, 5}},
			wantShape: []int64{1, 1, 2},
			want:      []float32{3, 7},
		},
		{
			name: "max pool 2x2 stride 2",
			model: graph(13, input(-1, 1, 4, 4), nil, "y",
				node("MaxPool", []string{"x"}, map[string]onnx.Attribute{"kernel_shape": aInts(2, 2), "strides": aInts(2, 2)})),
			x:         Tensor{Shape: []int64{1, 1, 4, 4}, Data: x4},
			wantShape: []int64{1, 1, 2, 2},
			want:      []float32{6, 8, 14, 16},
		},
		{
			name: "average pool with ceil_mode, padding not counted",
			model: graph(13, input(1, 1, 4, 4), nil, "y",
				node("AveragePool", []string{"x"}, map[string]onnx.Attribute{"kernel_shape": aInts(3, 3), "strides": aInts(2, 2), "ceil_mode": aInt(1)})),
			x:         Tensor{Shape: []int64{1, 1, 4, 4}, Data: x4},
			wantShape: []int64{1, 1, 2, 2},
			want:      []float32{6, 7.5, 12, 13.5},
		},
		{
			name: "batch norm with constant parameters",
			model: graph(15, input(-1, 2, 1, 1), []onnx.Tensor{floats("s", []int64{2}, 1, 2), floats("b", []int64{2}, 0, 1),
				floats("m", []int64{2}, 1, 0), floats("v", []int64{2}, 4, 1)}, "y",
				node("BatchNormalization", []string{"x", "s", "b", "m", "v"}, map[string]onnx.Attribute{"epsilon": aFloat(0)})),
			x:         Tensor{Shape: []int64{1, 2, 1, 1}, Data: []float32{5, 3}},
			wantShape: []int64{1, 2, 1, 1},
			want:      []float32{2, 7},
		},
		{
			name: "ReLU6 as Clip with constant bounds (opset 13)",
			model: graph(13, input(4), []onnx.Tensor{floats("lo", nil, 0), floats("hi", nil, 6)}, "y",
				node("Clip", []string{"x", "lo", "hi"}, nil)),
			x:         Tensor{Shape: []int64{4}, Data: []float32{-1, 3, 6, 9}},
			wantShape: []int64{4},
			want:      []float32{0, 3, 6, 6},
		},
		{
			name:      "Clip with attributes (opset 6)",
			model:     graph(6, input(3), nil, "y", node("Clip", []string{"x"}, map[string]onnx.Attribute{"min": aFloat(-1), "max": aFloat(1)})),
			x:         Tensor{Shape: []int64{3}, Data: []float32{-5, 0.5, 5}},
			wantShape: []int64{3},
			want:      []float32{-1, 0.5, 1},
		},
		{
			name:      "edge pad",
			model:     graph(13, input(1, 3), []onnx.Tensor{ints("p", 0, 2, 0, 1)}, "y", node("Pad", []string{"x", "p"}, map[string]onnx.Attribute{"mode": aString("edge")})),
			x:         Tensor{Shape: []int64{1, 3}, Data: []float32{1, 2, 3}},
			wantShape: []int64{1, 6},
			want:      []float32{1, 1, 1, 2, 3, 3},
		},
		{
			name:      "reflect pad",
			model:     graph(13, input(1, 3), []onnx.Tensor{ints("p", 0, 2, 0, 2)}, "y", node("Pad", []string{"x", "p"}, map[string]onnx.Attribute{"mode": aString("reflect")})),
			x:         Tensor{Shape: []int64{1, 3}, Data: []float32{1, 2, 3}},
			wantShape: []int64{1, 7},
			want:      []float32{3, 2, 1, 2, 3, 2, 1},
		},
		{
			name:      "constant pad with attributes (opset 2) and a crop",
			model:     graph(2, input(2, 2), nil, "y", node("Pad", []string{"x"}, map[string]onnx.Attribute{"pads": aInts(1, -1, 0, 0), "value": aFloat(9)})),
			x:         Tensor{Shape: []int64{2, 2}, Data: []float32{1, 2, 3, 4}},
			wantShape: []int64{3, 1},
			want:      []float32{9, 2, 4},
		},
		{
			name: "PyTorch's flatten chain folded at load: Shape, Gather, Unsqueeze, Concat, Reshape",
			model: graph(13, input(2, 3, 2), []onnx.Tensor{ints("zero", 0), {Name: "i0", DataType: onnx.Int64, Int64: []int64{0}}, ints("minus1", -1)}, "y",
				named("Shape", "s", []string{"x"}, nil),
				named("Gather", "n", []string{"s", "i0"}, map[string]onnx.Attribute{"axis": aInt(0)}),
				named("Unsqueeze", "n1", []string{"n", "zero"}, nil),
				named("Concat", "target", []string{"n1", "minus1"}, map[string]onnx.Attribute{"axis": aInt(0)}),
				node("Reshape", []string{"x", "target"}, nil)),
			x:         Tensor{Shape: []int64{2, 3, 2}, Data: []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
			wantShape: []int64{2, 6},
			want:      []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		},
		{
			name: "the same chain on a dynamic batch: the batch dimension is symbolic",
			model: graph(13, input(-1, 3, 2), []onnx.Tensor{ints("zero", 0), {Name: "i0", DataType: onnx.Int64, Int64: []int64{0}}, ints("minus1", -1)}, "y",
				named("Shape", "s", []string{"x"}, nil),
				named("Gather", "n", []string{"s", "i0"}, map[string]onnx.Attribute{"axis": aInt(0)}),
				named("Unsqueeze", "n1", []string{"n", "zero"}, nil),
				named("Cast", "n2", []string{"n1"}, map[string]onnx.Attribute{"to": aInt(int64(onnx.Int64))}),
				named("Concat", "target", []string{"n2", "minus1"}, map[string]onnx.Attribute{"axis": aInt(0)}),
				node("Reshape", []string{"x", "target"}, nil)),
			x:         Tensor{Shape: []int64{2, 3, 2}, Data: []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
			wantShape: []int64{2, 6},
			want:      []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		},
		{
			name: "ConstantOfShape and Cast folded, then added",
			model: graph(13, input(2), []onnx.Tensor{ints("shape", 2)}, "y",
				named("ConstantOfShape", "ones", []string{"shape"}, map[string]onnx.Attribute{"value": {Type: onnx.AttrTensor, Tensor: &onnx.Tensor{DataType: onnx.Int64, Dims: []int64{1}, Int64: []int64{3}}}}),
				named("Cast", "f", []string{"ones"}, map[string]onnx.Attribute{"to": aInt(int64(onnx.Float))}),
				node("Add", []string{"x", "f"}, nil)),
			x:         Tensor{Shape: []int64{2}, Data: []float32{1, 2}},
			wantShape: []int64{2},
			want:      []float32{4, 5},
		},
		{
			name: "per-channel Mul, Sub and Div broadcasting",
			model: graph(13, input(-1, 2, 1, 2), []onnx.Tensor{floats("c", []int64{2, 1, 1}, 2, 10)}, "y",
				named("Mul", "a", []string{"x", "c"}, nil), named("Sub", "b", []string{"c", "a"}, nil), node("Div", []string{"b", "c"}, nil)),
			// a = x·c, b = c − a, y = b / c = 1 − x.
			x:         Tensor{Shape: []int64{1, 2, 1, 2}, Data: []float32{1, 2, 3, 4}},
			wantShape: []int64{1, 2, 1, 2},
			want:      []float32{0, -1, -2, -3},
		},
		{
			name:      "transpose NCHW to NHWC",
			model:     graph(13, input(1, 2, 1, 3), nil, "y", node("Transpose", []string{"x"}, map[string]onnx.Attribute{"perm": aInts(0, 2, 3, 1)})),
			x:         Tensor{Shape: []int64{1, 2, 1, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
			wantShape: []int64{1, 1, 3, 2},
			want:      []float32{1, 4, 2, 5, 3, 6},
		},
		{
			name: "squeeze and unsqueeze by attribute (opset 11)",
			model: graph(11, input(-1, 1, 3), nil, "y",
				named("Squeeze", "s", []string{"x"}, map[string]onnx.Attribute{"axes": aInts(1)}),
				node("Unsqueeze", []string{"s"}, map[string]onnx.Attribute{"axes": aInts(-1)})),
			x:         Tensor{Shape: []int64{2, 1, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
			wantShape: []int64{2, 3, 1},
			want:      []float32{1, 2, 3, 4, 5, 6},
		},
		{
			name:      "HardSwish",
			model:     graph(14, input(3), nil, "y", node("HardSwish", []string{"x"}, nil)),
			x:         Tensor{Shape: []int64{3}, Data: []float32{-4, 0, 3}},
			wantShape: []int64{3},
			want:      []float32{0, 0, 3},
		},
		{
			name:      "Dropout is the identity",
			model:     graph(13, input(2), nil, "y", node("Dropout", []string{"x"}, map[string]onnx.Attribute{"seed": aInt(3)})),
			x:         Tensor{Shape: []int64{2}, Data: []float32{1, 2}},
			wantShape: []int64{2},
			want:      []float32{1, 2},
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

// TestCNNLoadErrors checks that the CNN operators refuse, at load and naming the node, what
// they do not support or what does not fit.
func TestCNNLoadErrors(t *testing.T) {
	w := floats("w", []int64{1, 2, 3, 3}, make([]float32, 18)...)
	tests := []struct {
		name        string
		model       *onnx.Model
		want        string
		unsupported bool
	}{
		{
			name:  "conv channels do not match the weights",
			model: graph(13, input(-1, 3, 8, 8), []onnx.Tensor{w}, "y", node("Conv", []string{"x", "w"}, nil)),
			want:  `builtin: node[0] "conv" (Conv): input X has 3 channels, weights W of shape [1 2 3 3] with group 1 take 2`,
		},
		{
			name:        "3-D convolution",
			model:       graph(13, input(-1, 2, 4, 4, 4), nil, "y", node("Conv", []string{"x", "x"}, map[string]onnx.Attribute{"kernel_shape": aInts(3, 3, 3)})),
			want:        `builtin: node[0] "conv" (Conv): 3 spatial dimensions (only 1 and 2): not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:  "pool window larger than the input",
			model: graph(13, input(-1, 1, 2, 2), nil, "y", node("MaxPool", []string{"x"}, map[string]onnx.Attribute{"kernel_shape": aInts(3, 3)})),
			want:  `builtin: node[0] "maxpool" (MaxPool): the window (extent 3) is larger than the padded input (2)`,
		},
		{
			name: "MaxPool indices output",
			model: graph(13, input(-1, 1, 2, 2), nil, "y", onnx.Node{Name: "mp", OpType: "MaxPool", Inputs: []string{"x"}, Outputs: []string{"y", "idx"},
				Attrs: map[string]onnx.Attribute{"kernel_shape": aInts(2, 2)}}),
			want:        `builtin: node[0] "mp" (MaxPool): output 1 ("idx"): only the first output of MaxPool: not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:        "batch norm in training mode",
			model:       graph(15, input(-1, 2), nil, "y", node("BatchNormalization", []string{"x", "x", "x", "x", "x"}, map[string]onnx.Attribute{"training_mode": aInt(1)})),
			want:        `builtin: node[0] "batchnormalization" (BatchNormalization): training_mode=1: not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name: "arithmetic on a dynamic dimension",
			model: graph(13, input(-1, 4), []onnx.Tensor{ints("two", 2)}, "y",
				named("Shape", "s", []string{"x"}, nil), named("Mul", "s2", []string{"s", "two"}, nil), node("Reshape", []string{"x", "s2"}, nil)),
			want:        `builtin: node[1] "s2" (Mul): arithmetic on a dimension known only at run time: not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name: "a dynamic dimension where a constant is needed",
			model: graph(13, input(-1, 4), nil, "y",
				named("Shape", "s", []string{"x"}, nil), node("Unsqueeze", []string{"x", "s"}, nil)),
			want:        `builtin: node[1] "unsqueeze" (Unsqueeze): input "s": holds a dimension known only at run time, which Unsqueeze cannot take: not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:        "pad mode wrap",
			model:       graph(13, input(3), []onnx.Tensor{ints("p", 1, 1)}, "y", node("Pad", []string{"x", "p"}, map[string]onnx.Attribute{"mode": aString("wrap")})),
			want:        `builtin: node[0] "pad" (Pad): mode "wrap": not supported by the built-in runtime`,
			unsupported: true,
		},
		{
			name:  "pads that would make a huge output",
			model: graph(13, input(-1, 3), []onnx.Tensor{ints("p", 0, 1<<30, 0, 1<<30)}, "y", node("Pad", []string{"x", "p"}, nil)),
			want:  `builtin: node[0] "pad" (Pad): output of shape [-1 2147483651]: shape [2147483651] has more than 2147483647 elements`,
		},
		{
			name:  "transpose perm that is not a permutation",
			model: graph(13, input(2, 3), nil, "y", node("Transpose", []string{"x"}, map[string]onnx.Attribute{"perm": aInts(0, 0)})),
			want:  `builtin: node[0] "transpose" (Transpose): perm [0 0] is not a permutation of 2 dimensions`,
		},
		{
			name:  "squeeze of a dimension that is not 1",
			model: graph(13, input(2, 3), []onnx.Tensor{ints("a", 1)}, "y", node("Squeeze", []string{"x", "a"}, nil)),
			want:  `builtin: node[0] "squeeze" (Squeeze): axis 1 of shape [2 3] is not 1`,
		},
		{
			name:        "cast of a computed tensor to an integer type",
			model:       graph(13, input(2), nil, "y", node("Cast", []string{"x"}, map[string]onnx.Attribute{"to": aInt(int64(onnx.Int64))})),
			want:        `builtin: node[0] "cast" (Cast): cast of a computed tensor to INT64 (only to FLOAT): not supported by the built-in runtime`,
			unsupported: true,
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

// TestFuse checks that the CNN exports' activations ride on their convolutions, and that an
// activation whose input has another consumer keeps its own step.
func TestFuse(t *testing.T) {
	for _, tc := range []struct {
		file  string
		fused int
	}{{"small_cnn.onnx", 2}, {"small_cnn_bn.onnx", 0}, {"mobilenet.onnx", 7}} {
		_, data := loadTestModel(t, tc.file)
		m, err := Load(data)
		if err != nil {
			t.Fatal(err)
		}
		fused := 0
		for _, st := range m.steps {
			if c, ok := st.k.(*conv); ok && c.post != nil {
				fused++
			}
		}
		// With BatchNormalization kept, the Relu follows the BatchNormalization, not the Conv.
		if fused != tc.fused {
			t.Errorf("%s: %d convolutions carry their activation, want %d", tc.file, fused, tc.fused)
		}
	}
	// y = Relu(Conv(x)) + Conv(x): the Relu must not be fused.
	m := mustCompile(t, graph(13, input(1, 1, 1, 2), []onnx.Tensor{floats("w", []int64{1, 1, 1, 1}, -1)}, "y",
		named("Conv", "c", []string{"x", "w"}, nil), named("Relu", "r", []string{"c"}, nil), node("Add", []string{"r", "c"}, nil)))
	out := run(t, m, Tensor{Shape: []int64{1, 1, 1, 2}, Data: []float32{1, -2}})
	if !near(out[0].Data, []float32{-1, 4}, 1e-6) {
		t.Errorf("Relu(Conv(x)) + Conv(x) = %v, want [-1 4]", out[0].Data)
	}
}

// TestReduceAsGlobalPool checks ReduceMean over the spatial axes, PyTorch's x.mean([2, 3]),
// with and without keepdims.
func TestReduceAsGlobalPool(t *testing.T) {
	for _, keep := range []int64{0, 1} {
		m := mustCompile(t, graph(13, input(-1, 2, 2, 2), nil, "y",
			node("ReduceMean", []string{"x"}, map[string]onnx.Attribute{"axes": aInts(2, 3), "keepdims": aInt(keep)})))
		out := run(t, m, Tensor{Shape: []int64{1, 2, 2, 2}, Data: []float32{1, 2, 3, 4, 10, 20, 30, 40}})
		want := []int64{1, 2}
		if keep == 1 {
			want = []int64{1, 2, 1, 1}
		}
		if !equalShape(out[0].Shape, want) || !near(out[0].Data, []float32{2.5, 25}, 1e-6) {
			t.Errorf("keepdims=%d: got %v %v, want %v [2.5 25]", keep, out[0].Shape, out[0].Data, want)
		}
	}
}
