// Package onnx reads and writes the subset of the ONNX model format (onnx.proto, IR version 3
// and later) that edgeloop's classification models use: one graph of nodes with attributes,
// dense initializers, typed graph inputs and outputs, opset imports and metadata.
//
// It is written directly on protowire rather than on code generated from onnx.proto: the
// available Go ONNX libraries pull in large dependency trees (gorgonia, arrow, flatbuffers)
// for models that this package reads and writes in about a thousand lines, half of them
// comments and error handling. Field numbers follow onnx/onnx.proto of the ONNX project.
//
// Decode parses bytes that may come from the network: it never panics, rejects truncated or
// malformed input with an error naming the place (for example `graph: initializer[2] "w1":
// ...`), and allocates memory in proportion to the input only: declared dimensions are
// checked against the data actually present, never trusted for an allocation. What it does not
// support (subgraph attributes, sparse or external tensors, string and float16 tensors) is
// skipped when it cannot matter and refused with an error when it would change the meaning of
// the model.
package onnx

import "strconv"

// DataType is an element type, numbered as TensorProto.DataType.
type DataType int32

// The element types of onnx.proto. Tensor data is decoded for Float (into Tensor.Float32), Double
// (into Tensor.Float64) and for the integer and boolean types (widened into Tensor.Int64); the
// others may appear in ValueInfo but not as tensor data.
const (
	Undefined  DataType = 0
	Float      DataType = 1
	Uint8      DataType = 2
	Int8       DataType = 3
	Uint16     DataType = 4
	Int16      DataType = 5
	Int32      DataType = 6
	Int64      DataType = 7
	String     DataType = 8
	Bool       DataType = 9
	Float16    DataType = 10
	Double     DataType = 11
	Uint32     DataType = 12
	Uint64     DataType = 13
	Complex64  DataType = 14
	Complex128 DataType = 15
	BFloat16   DataType = 16
)

// String returns the onnx.proto name of the type, such as "FLOAT".
func (d DataType) String() string {
	switch d {
	case Undefined:
		return "UNDEFINED"
	case Float:
		return "FLOAT"
	case Uint8:
		return "UINT8"
	case Int8:
		return "INT8"
	case Uint16:
		return "UINT16"
	case Int16:
		return "INT16"
	case Int32:
		return "INT32"
	case Int64:
		return "INT64"
	case String:
		return "STRING"
	case Bool:
		return "BOOL"
	case Float16:
		return "FLOAT16"
	case Double:
		return "DOUBLE"
	case Uint32:
		return "UINT32"
	case Uint64:
		return "UINT64"
	case Complex64:
		return "COMPLEX64"
	case Complex128:
		return "COMPLEX128"
	case BFloat16:
		return "BFLOAT16"
	}
	return "DataType(" + strconv.Itoa(int(d)) + ")"
}

// elemSize is the width of one element in raw_data, and whether tensor data of the type is
// supported (into Float32 for Float, Float64 for Double, widened into Int64 for the integer and
// boolean types).
func (d DataType) elemSize() (int, bool) {
	switch d {
	case Float, Int32, Uint32:
		return 4, true
	case Int64, Double:
		return 8, true
	case Uint8, Int8, Bool:
		return 1, true
	case Uint16, Int16:
		return 2, true
	}
	return 0, false
}

// AttrType says which value of an Attribute is set, numbered as AttributeProto.AttributeType.
type AttrType int32

// The attribute types this package decodes. Graph, sparse-tensor and tensor-list attributes
// exist in onnx.proto but are refused: no operator our runtime supports takes them.
const (
	AttrUndefined AttrType = 0
	AttrFloat     AttrType = 1
	AttrInt       AttrType = 2
	AttrString    AttrType = 3
	AttrTensor    AttrType = 4
	AttrFloats    AttrType = 6
	AttrInts      AttrType = 7
	AttrStrings   AttrType = 8
)

// Model is an ONNX ModelProto: the graph and what describes it.
type Model struct {
	// IRVersion is the ONNX IR version the file follows (8 for ONNX 1.10 to 1.12).
	IRVersion int64
	// ProducerName and ProducerVersion name the tool that wrote the model.
	ProducerName, ProducerVersion string
	// Opsets are the operator sets the graph's nodes bind to.
	Opsets []Opset
	// Graph is the computation.
	Graph Graph
	// Metadata is metadata_props: free-form key/value pairs (edgeloop stores "classes" here).
	Metadata map[string]string
}

// Opset is an OperatorSetIdProto: an operator set domain ("" is the default ai.onnx set) and
// its version.
type Opset struct {
	Domain  string
	Version int64
}

// Graph is a GraphProto: nodes in topological order, constant tensors and the typed inputs and
// outputs.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Node is a NodeProto: one operator application.
type Node struct {
	Name string
	// OpType is the operator, such as "Gemm"; Domain is its operator set ("" for ai.onnx).
	OpType, Domain string
	// Inputs and Outputs name values of the graph; an empty input name is an omitted optional
	// input.
	Inputs, Outputs []string
	// Attrs holds the attributes by name.
	Attrs map[string]Attribute
}

// Attribute is an AttributeProto: Type says which one of the other fields holds the value.
type Attribute struct {
	Type    AttrType
	Float   float32
	Int     int64
	String  string
	Tensor  *Tensor
	Floats  []float32
	Ints    []int64
	Strings []string
}

// Tensor is a dense TensorProto. Float tensors hold their data in Float32; integer and boolean
// tensors in Int64 (widened, DataType keeps the declared type). The number of elements always
// equals the product of Dims (1 for a scalar, whose Dims are empty).
type Tensor struct {
	Name     string
	DataType DataType
	Dims     []int64
	Float32  []float32
	Int64    []int64
	Float64  []float64 // the elements of a DOUBLE tensor
}

// ValueInfo is a ValueInfoProto of a tensor type: a graph input or output.
type ValueInfo struct {
	Name     string
	ElemType DataType
	// Shape is nil when the file gives no shape (unknown rank); a non-nil empty Shape is a
	// scalar.
	Shape []Dim
}

// Dim is one dimension of a ValueInfo shape: a named symbolic size when Param is set (such as
// "batch"; Value is then −1 after Decode and ignored by Encode), else a fixed size Value ≥ 0,
// or unknown when Value < 0.
type Dim struct {
	Value int64
	Param string
}

// Initializer returns the initializer called name, or nil.
func (g *Graph) Initializer(name string) *Tensor {
	for i := range g.Initializers {
		if g.Initializers[i].Name == name {
			return &g.Initializers[i]
		}
	}
	return nil
}

// AttrInt returns the integer attribute name, or def when the node does not have it.
func (n *Node) AttrInt(name string, def int64) int64 {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrInt {
		return a.Int
	}
	return def
}

// AttrFloat returns the float attribute name, or def when the node does not have it.
func (n *Node) AttrFloat(name string, def float32) float32 {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrFloat {
		return a.Float
	}
	return def
}

// Limits on what Decode accepts, far above any classification model and low enough that a
// hostile file cannot make arithmetic on shapes overflow.
const (
	// MaxRank is the most dimensions a tensor or shape may have.
	MaxRank = 32
	// MaxElements is the most elements one tensor may hold (2^31−1: indices fit in an int32).
	MaxElements = 1<<31 - 1
)
