package builtin

import (
	"errors"
	"fmt"
	"maps"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// value is one tensor of the graph in a request's scratch (or, for constants, in the plan).
type value struct {
	shape   []int64
	data    []float32 // the elements: a view of buf, of another value, or of request data
	ints    []int64   // the elements of an integer constant (Reshape's shape)
	buf     []float32 // owned storage, kept between requests
	isConst bool
}

// kernel is one operator with its attributes resolved at load.
type kernel interface {
	// shape appends the output shape for the given input shapes to dst. At load the dynamic
	// dimensions are -1 and only what is known is checked; at run time every dimension is known.
	// An omitted optional input has a nil shape.
	shape(dst []int64, in [][]int64) ([]int64, error)
	// run computes out.data, already sized from the shape, from the inputs (nil when omitted).
	// It never writes to an input.
	run(out *value, in []*value)
}

// step is one node of the plan.
type step struct {
	name  string // how errors name the node: node[3] "fc1" (Gemm)
	in    []int  // value slot of each input, -1 for an omitted optional one
	out   int
	k     kernel
	alias bool // the output is the first input's data under another shape (no copy)
}

// exec runs the step on one request's values. shapes and args are scratch of len(st.in).
func (st *step) exec(vals []value, shapes [][]int64, args []*value) error {
	for i, slot := range st.in {
		if slot < 0 {
			shapes[i], args[i] = nil, nil
			continue
		}
		args[i] = &vals[slot]
		shapes[i] = vals[slot].shape
	}
	out := &vals[st.out]
	shape, err := st.k.shape(out.shape[:0], shapes)
	if err != nil {
		return fmt.Errorf("%s: %w", st.name, err)
	}
	out.shape = shape
	if st.alias {
		out.data = args[0].data
		return nil
	}
	n := int(numel(shape))
	if cap(out.buf) < n {
		out.buf = make([]float32, n)
	}
	out.data = out.buf[:n]
	st.k.run(out, args)
	return nil
}

// slotInfo is what the compiler knows about a value while it walks the graph.
type slotInfo struct {
	shape []int64 // -1 for dynamic dimensions
	ints  bool    // an integer constant, usable only where an operator wants one
	konst bool
}

type compiler struct {
	opset int64
	names map[string]int // value name to slot
	slots []slotInfo
	vals  []value // constants by slot
}

func (c *compiler) add(name string, info slotInfo, v value) (int, error) {
	if _, dup := c.names[name]; dup {
		return 0, fmt.Errorf("value %q is defined twice", name)
	}
	c.names[name] = len(c.slots)
	c.slots = append(c.slots, info)
	c.vals = append(c.vals, v)
	return len(c.slots) - 1, nil
}

// constant turns an initializer or a Constant node's tensor into a value.
func constant(t *onnx.Tensor) (slotInfo, value, error) {
	shape := append([]int64{}, t.Dims...)
	switch {
	case t.DataType == onnx.Float:
		return slotInfo{shape: shape, konst: true}, value{shape: shape, data: t.Float32, isConst: true}, nil
	case t.DataType == onnx.Int64 || t.DataType == onnx.Int32:
		return slotInfo{shape: shape, ints: true, konst: true}, value{shape: shape, ints: t.Int64, isConst: true}, nil
	}
	return slotInfo{}, value{}, fmt.Errorf("tensor %q: data type %s: %w", t.Name, t.DataType, ErrUnsupported)
}

func compile(m *onnx.Model) (*Model, error) {
	c := &compiler{names: map[string]int{}}
	for _, o := range m.Opsets {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			c.opset = o.Version
		}
	}
	if c.opset == 0 {
		return nil, errors.New("the model imports no ai.onnx operator set")
	}
	g := &m.Graph
	for i := range g.Initializers {
		t := &g.Initializers[i]
		info, v, err := constant(t)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", t.Name, err)
		}
		if _, err := c.add(t.Name, info, v); err != nil {
			return nil, fmt.Errorf("initializer: %w", err)
		}
	}
	mod := &Model{metadata: maps.Clone(m.Metadata)}
	for _, in := range g.Inputs {
		if _, isInit := c.names[in.Name]; isInit {
			continue // before IR 4 initializers were listed as inputs too; they are constants
		}
		if in.ElemType != onnx.Float {
			return nil, fmt.Errorf("input %q: element type %s (only FLOAT inputs): %w", in.Name, in.ElemType, ErrUnsupported)
		}
		if in.Shape == nil {
			return nil, fmt.Errorf("input %q: the model gives no shape, so requests cannot be checked", in.Name)
		}
		shape := make([]int64, len(in.Shape))
		for d, dim := range in.Shape {
			shape[d] = dim.Value
			if dim.Param != "" || dim.Value <= 0 {
				shape[d] = -1
			}
		}
		slot, err := c.add(in.Name, slotInfo{shape: shape}, value{})
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		mod.inputs = append(mod.inputs, TensorInfo{Name: in.Name, Datatype: "FP32", Shape: shape})
		mod.inSlots = append(mod.inSlots, slot)
	}
	if len(mod.inputs) == 0 {
		return nil, errors.New("the graph has no inputs")
	}
	var shapes [][]int64
	for i := range g.Nodes {
		n := &g.Nodes[i]
		name := fmt.Sprintf("node[%d] %q (%s)", i, n.Name, n.OpType)
		st, err := c.node(n, name, shapes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if st != nil {
			mod.steps = append(mod.steps, *st)
			mod.maxIn = max(mod.maxIn, len(st.in))
		}
	}
	if len(g.Outputs) == 0 {
		return nil, errors.New("the graph has no outputs")
	}
	for _, out := range g.Outputs {
		slot, ok := c.names[out.Name]
		if !ok {
			return nil, fmt.Errorf("output %q: no node produces it", out.Name)
		}
		info := c.slots[slot]
		if info.ints {
			return nil, fmt.Errorf("output %q: an integer tensor (only FLOAT outputs): %w", out.Name, ErrUnsupported)
		}
		if out.Shape != nil && len(out.Shape) != len(info.shape) {
			return nil, fmt.Errorf("output %q: declared with %d dimensions, the graph computes %d (%v)", out.Name, len(out.Shape), len(info.shape), info.shape)
		}
		for d, dim := range out.Shape {
			if dim.Param == "" && dim.Value > 0 && info.shape[d] >= 0 && dim.Value != info.shape[d] {
				return nil, fmt.Errorf("output %q: declared dimension %d is %d, the graph computes %d", out.Name, d, dim.Value, info.shape[d])
			}
		}
		mod.outputs = append(mod.outputs, TensorInfo{Name: out.Name, Datatype: "FP32", Shape: info.shape})
		mod.outSlots = append(mod.outSlots, slot)
	}
	mod.consts = c.vals
	return mod, nil
}

// node checks one node and returns its step, or nil for a Constant, which becomes a value.
func (c *compiler) node(n *onnx.Node, name string, shapes [][]int64) (*step, error) {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return nil, fmt.Errorf("operator domain %q: %w", n.Domain, ErrUnsupported)
	}
	if len(n.Outputs) != 1 || n.Outputs[0] == "" {
		return nil, fmt.Errorf("has %d outputs, want 1", len(n.Outputs))
	}
	if n.OpType == "Constant" {
		if err := checkAttrs(n, map[string]onnx.AttrType{"value": onnx.AttrTensor}); err != nil {
			return nil, err
		}
		a, ok := n.Attrs["value"]
		if !ok || a.Tensor == nil || len(n.Inputs) != 0 {
			return nil, fmt.Errorf("only a Constant with a value tensor and no inputs: %w", ErrUnsupported)
		}
		info, v, err := constant(a.Tensor)
		if err != nil {
			return nil, err
		}
		_, err = c.add(n.Outputs[0], info, v)
		return nil, err
	}
	k, spec, err := c.kernel(n)
	if err != nil {
		return nil, err
	}
	if len(n.Inputs) < spec.min || len(n.Inputs) > len(spec.kinds) {
		return nil, fmt.Errorf("has %d inputs, want %d to %d", len(n.Inputs), spec.min, len(spec.kinds))
	}
	st := &step{name: name, k: k, alias: spec.alias, in: make([]int, len(n.Inputs))}
	shapes = shapes[:0]
	for i, in := range n.Inputs {
		if in == "" {
			if i < spec.min {
				return nil, fmt.Errorf("input %d is required", i)
			}
			st.in[i] = -1
			shapes = append(shapes, nil)
			continue
		}
		slot, ok := c.names[in]
		if !ok {
			return nil, fmt.Errorf("input %q is neither a graph input, an initializer nor the output of an earlier node (nodes must be in topological order)", in)
		}
		info := c.slots[slot]
		switch spec.kinds[i] {
		case argFloat:
			if info.ints {
				return nil, fmt.Errorf("input %q: an integer tensor where %s takes FLOAT: %w", in, n.OpType, ErrUnsupported)
			}
		case argConstInts:
			if !info.ints || !info.konst {
				return nil, fmt.Errorf("input %q: must be an INT64 initializer or Constant (computed shapes are %w)", in, ErrUnsupported)
			}
			if r, ok := k.(*reshape); ok {
				r.target = c.vals[slot].ints
			}
		}
		st.in[i] = slot
		shapes = append(shapes, info.shape)
	}
	shape, err := k.shape(nil, shapes)
	if err != nil {
		return nil, err
	}
	st.out, err = c.add(n.Outputs[0], slotInfo{shape: shape}, value{})
	if err != nil {
		return nil, err
	}
	return st, nil
}

type argKind uint8

const (
	argFloat     argKind = iota // a FLOAT tensor, constant or computed
	argConstInts                // an integer constant
)

// opSpec says which inputs an operator takes.
type opSpec struct {
	kinds []argKind // one per input position
	min   int       // required inputs
	alias bool
}

func unary(alias bool) opSpec { return opSpec{kinds: []argKind{argFloat}, min: 1, alias: alias} }

func binary() opSpec { return opSpec{kinds: []argKind{argFloat, argFloat}, min: 2} }

// kernel builds the node's kernel from its attributes, refusing any attribute it does not
// implement: ignoring one would silently compute something else than the model means.
func (c *compiler) kernel(n *onnx.Node) (kernel, opSpec, error) {
	switch n.OpType {
	case "Gemm":
		if err := checkAttrs(n, map[string]onnx.AttrType{"alpha": onnx.AttrFloat, "beta": onnx.AttrFloat, "transA": onnx.AttrInt, "transB": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		ta, tb := n.AttrInt("transA", 0), n.AttrInt("transB", 0)
		if ta != 0 && ta != 1 || tb != 0 && tb != 1 {
			return nil, opSpec{}, fmt.Errorf("transA and transB must be 0 or 1, got %d and %d", ta, tb)
		}
		return &gemm{alpha: n.AttrFloat("alpha", 1), beta: n.AttrFloat("beta", 1), transA: ta == 1, transB: tb == 1},
			opSpec{kinds: []argKind{argFloat, argFloat, argFloat}, min: 2}, nil
	case "MatMul":
		return matmul{}, binary(), checkAttrs(n, nil)
	case "Add":
		return add{}, binary(), checkAttrs(n, nil)
	case "Relu":
		return relu{}, unary(false), checkAttrs(n, nil)
	case "Sigmoid":
		return sigmoid{}, unary(false), checkAttrs(n, nil)
	case "Softmax":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		// Opset 13 made Softmax act on one axis (default -1); before, it flattened the input
		// to 2-D at axis (default 1) and normalised each row.
		if c.opset >= 13 {
			return softmax{axis: n.AttrInt("axis", -1)}, unary(false), nil
		}
		return softmax{axis: n.AttrInt("axis", 1), coerce2D: true}, unary(false), nil
	case "Flatten":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		return flatten{axis: n.AttrInt("axis", 1)}, unary(true), nil
	case "Reshape":
		if err := checkAttrs(n, map[string]onnx.AttrType{"allowzero": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		if az := n.AttrInt("allowzero", 0); az != 0 {
			return nil, opSpec{}, fmt.Errorf("attribute allowzero=%d: %w", az, ErrUnsupported)
		}
		return &reshape{}, opSpec{kinds: []argKind{argFloat, argConstInts}, min: 2, alias: true}, nil
	case "Identity":
		return identity{}, unary(true), checkAttrs(n, nil)
	}
	return nil, opSpec{}, fmt.Errorf("operator %q: %w", n.OpType, ErrUnsupported)
}

// checkAttrs refuses attributes the kernel does not know and attributes of the wrong type.
func checkAttrs(n *onnx.Node, known map[string]onnx.AttrType) error {
	for name, a := range n.Attrs {
		want, ok := known[name]
		if !ok {
			return fmt.Errorf("attribute %q: %w", name, ErrUnsupported)
		}
		if a.Type != want {
			return fmt.Errorf("attribute %q has type %s, want %s", name, attrTypeName(a.Type), attrTypeName(want))
		}
	}
	return nil
}

// numel is the number of elements of a shape whose dimensions are all known.
func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// prod multiplies dimensions; the result is -1 when one of them is unknown.
func prod(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

func attrTypeName(t onnx.AttrType) string {
	switch t {
	case onnx.AttrFloat:
		return "FLOAT"
	case onnx.AttrInt:
		return "INT"
	case onnx.AttrString:
		return "STRING"
	case onnx.AttrTensor:
		return "TENSOR"
	case onnx.AttrFloats:
		return "FLOATS"
	case onnx.AttrInts:
		return "INTS"
	case onnx.AttrStrings:
		return "STRINGS"
	}
	return fmt.Sprintf("AttrType(%d)", int32(t))
}
