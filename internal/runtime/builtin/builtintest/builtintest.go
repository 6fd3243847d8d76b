// Package builtintest builds small ONNX classification models in memory for tests of the
// built-in runtime and of what serves it: a tiny model whose outputs can be worked out by hand,
// and MLPs shaped like `edgeloop train`'s reference model with seeded random weights.
package builtintest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// TinyClasses returns the class names of Tiny's three outputs.
func TinyClasses() []string { return []string{"zero", "one", "two"} }

// Tiny returns a model with input "input" FP32 [batch, 4] and outputs "logits" and
// "probabilities" FP32 [batch, 3], computing
//
//	h = relu(x0, x1, x2 − x3)
//	logits = (2·h0 + 0.5, 2·h1, 2·h2)
//	probabilities = softmax(logits)
//
// so that, for example, x = (1, 2, 4, 1) gives logits (2.5, 4, 6), class 2, and x = (3, −1, 0, 2)
// gives (6.5, 0, 0), class 0. TinyLogits computes the same in plain Go.
func Tiny() *onnx.Model {
	w1 := []float32{
		1, 0, 0, 0,
		0, 1, 0, 0,
		0, 0, 1, -1,
	}
	w2 := []float32{
		2, 0, 0,
		0, 2, 0,
		0, 0, 2,
	}
	return &onnx.Model{
		IRVersion: 8,
		Opsets:    []onnx.Opset{{Version: 13}},
		Metadata:  map[string]string{"classes": "zero,one,two"},
		Graph: onnx.Graph{
			Name: "tiny",
			Initializers: []onnx.Tensor{
				{Name: "w1", DataType: onnx.Float, Dims: []int64{3, 4}, Float32: w1},
				{Name: "b1", DataType: onnx.Float, Dims: []int64{3}, Float32: []float32{0, 0, 0}},
				{Name: "w2", DataType: onnx.Float, Dims: []int64{3, 3}, Float32: w2},
				{Name: "b2", DataType: onnx.Float, Dims: []int64{3}, Float32: []float32{0.5, 0, 0}},
			},
			Inputs:  []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: 4}}}},
			Outputs: outputs(3),
			Nodes: []onnx.Node{
				gemmNode("fc1", "input", "w1", "b1", "h1"),
				{Name: "relu1", OpType: "Relu", Inputs: []string{"h1"}, Outputs: []string{"a1"}},
				gemmNode("fc2", "a1", "w2", "b2", "logits"),
				softmaxNode(),
			},
		},
	}
}

// TinyLogits is Tiny's logits for one row of 4 inputs, computed directly.
func TinyLogits(x []float32) []float32 {
	h := []float32{max(x[0], 0), max(x[1], 0), max(x[2]-x[3], 0)}
	return []float32{2*h[0] + 0.5, 2 * h[1], 2 * h[2]}
}

// Softmax returns the softmax of one row of logits, computed in float64.
func Softmax(logits []float32) []float32 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	out := make([]float32, len(logits))
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	for i, v := range logits {
		out[i] = float32(math.Exp(float64(v)-mx) / sum)
	}
	return out
}

// Layer is one dense layer of an MLP: y = x·Wᵀ + B with W of shape [Out, In], row-major, the
// layout of a Gemm with transB=1 (and of PyTorch's nn.Linear).
type Layer struct {
	In, Out int
	W, B    []float32
}

// MLPLayers returns seeded random dense layers of the given widths (sizes[0] inputs, the last
// size outputs), He-initialised so that activations stay in a realistic range.
func MLPLayers(seed uint64, sizes ...int) []Layer {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	layers := make([]Layer, 0, len(sizes)-1)
	for i := 0; i+1 < len(sizes); i++ {
		in, out := sizes[i], sizes[i+1]
		l := Layer{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		scale := math.Sqrt(2 / float64(in))
		for j := range l.W {
			l.W[j] = float32(rng.NormFloat64() * scale)
		}
		for j := range l.B {
			l.B[j] = float32(rng.NormFloat64() * 0.1)
		}
		layers = append(layers, l)
	}
	return layers
}

// MLP returns the model of the given layers as `edgeloop train` writes it: input "input" FP32
// [batch, In], Gemm(transB=1) + Relu per hidden layer, a final Gemm to "logits" [batch, Out]
// and a Softmax to "probabilities", opset 13.
func MLP(layers []Layer) *onnx.Model {
	g := onnx.Graph{
		Name:    "mlp",
		Inputs:  []onnx.ValueInfo{{Name: "input", ElemType: onnx.Float, Shape: []onnx.Dim{{Param: "batch"}, {Value: int64(layers[0].In)}}}},
		Outputs: outputs(layers[len(layers)-1].Out),
	}
	x := "input"
	for i, l := range layers {
		w, b := fmt.Sprintf("fc%d.weight", i), fmt.Sprintf("fc%d.bias", i)
		g.Initializers = append(g.Initializers,
			onnx.Tensor{Name: w, DataType: onnx.Float, Dims: []int64{int64(l.Out), int64(l.In)}, Float32: l.W},
			onnx.Tensor{Name: b, DataType: onnx.Float, Dims: []int64{int64(l.Out)}, Float32: l.B},
		)
		if i == len(layers)-1 {
			g.Nodes = append(g.Nodes, gemmNode(fmt.Sprintf("fc%d", i), x, w, b, "logits"))
			break
		}
		h, a := fmt.Sprintf("h%d", i), fmt.Sprintf("a%d", i)
		g.Nodes = append(g.Nodes,
			gemmNode(fmt.Sprintf("fc%d", i), x, w, b, h),
			onnx.Node{Name: fmt.Sprintf("relu%d", i), OpType: "Relu", Inputs: []string{h}, Outputs: []string{a}},
		)
		x = a
	}
	g.Nodes = append(g.Nodes, softmaxNode())
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
}

// Input returns rows×cols seeded random inputs in [0, 1), like normalised pixels.
func Input(seed uint64, rows, cols int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = rng.Float32()
	}
	return x
}

func gemmNode(name, x, w, b, y string) onnx.Node {
	return onnx.Node{
		Name: name, OpType: "Gemm", Inputs: []string{x, w, b}, Outputs: []string{y},
		Attrs: map[string]onnx.Attribute{"transB": {Type: onnx.AttrInt, Int: 1}},
	}
}

func softmaxNode() onnx.Node {
	return onnx.Node{
		Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probabilities"},
		Attrs: map[string]onnx.Attribute{"axis": {Type: onnx.AttrInt, Int: -1}},
	}
}

func outputs(classes int) []onnx.ValueInfo {
	shape := []onnx.Dim{{Param: "batch"}, {Value: int64(classes)}}
	return []onnx.ValueInfo{
		{Name: "logits", ElemType: onnx.Float, Shape: shape},
		{Name: "probabilities", ElemType: onnx.Float, Shape: shape},
	}
}
