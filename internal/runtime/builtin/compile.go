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
	tmp     []float32 // a kernel's working storage (Conv's im2col matrix), kept likewise
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
	total, err := checkedNumel(shape)
	if err != nil { // a window or pad from the model's attributes, applied to this request
		return fmt.Errorf("%s: output: %w", st.name, err)
	}
	n := int(total)
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
	sym   bool // an integer constant that may hold symbolic dimensions (symbolic.go)
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

// constant turns an initializer or a Constant node's tensor into a value. Integer and boolean
// tensors become integer constants, usable where an operator wants one (shapes, axes, pads,
// indices) and by the folding of integer subgraphs (fold.go).
func constant(t *onnx.Tensor) (slotInfo, value, error) {
	shape := append([]int64{}, t.Dims...)
	switch t.DataType {
	case onnx.Float:
		return slotInfo{shape: shape, konst: true}, value{shape: shape, data: t.Float32, isConst: true}, nil
	case onnx.Int64, onnx.Int32, onnx.Int16, onnx.Int8, onnx.Uint32, onnx.Uint16, onnx.Uint8, onnx.Bool:
		return slotInfo{shape: shape, ints: true, konst: true}, value{shape: shape, ints: t.Int64, isConst: true}, nil
	}
	return slotInfo{}, value{}, fmt.Errorf("tensor %q: data type %s: %w", t.Name, t.DataType, ErrUnsupported)
}

// constantNode is the value of a Constant node: a tensor, or (opset 12) a scalar or list
// attribute.
func constantNode(n *onnx.Node) (slotInfo, value, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"value": onnx.AttrTensor, "value_float": onnx.AttrFloat,
		"value_floats": onnx.AttrFloats, "value_int": onnx.AttrInt, "value_ints": onnx.AttrInts}); err != nil {
		return slotInfo{}, value{}, err
	}
	if len(n.Attrs) != 1 {
		return slotInfo{}, value{}, fmt.Errorf("a Constant needs exactly one value attribute, has %d", len(n.Attrs))
	}
	for name, a := range n.Attrs {
		switch name {
		case "value":
			if a.Tensor == nil {
				return slotInfo{}, value{}, errors.New("attribute value has no tensor")
			}
			return constant(a.Tensor)
		case "value_float":
			return constant(&onnx.Tensor{DataType: onnx.Float, Float32: []float32{a.Float}})
		case "value_floats":
			return constant(&onnx.Tensor{DataType: onnx.Float, Dims: []int64{int64(len(a.Floats))}, Float32: a.Floats})
		case "value_int":
			return constant(&onnx.Tensor{DataType: onnx.Int64, Int64: []int64{a.Int}})
		case "value_ints":
			return constant(&onnx.Tensor{DataType: onnx.Int64, Dims: []int64{int64(len(a.Ints))}, Int64: a.Ints})
		}
	}
	return slotInfo{}, value{}, errors.New("a Constant needs a value attribute")
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
	fuse(mod)
	return mod, nil
}

// arg is one resolved input of a node at load.
type arg struct {
	slot int // -1 for an omitted optional input
	info slotInfo
	val  *value // the constant, when info.konst
}

// present reports whether input i was given.
func present(args []arg, i int) bool { return i < len(args) && args[i].slot >= 0 }

// node checks one node and returns its step, or nil for a node whose output is a constant:
// a Constant, or a node whose inputs are all constants (folded here, once, at load).
func (c *compiler) node(n *onnx.Node, name string, shapes [][]int64) (*step, error) {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return nil, fmt.Errorf("operator domain %q: %w", n.Domain, ErrUnsupported)
	}
	if len(n.Outputs) == 0 || n.Outputs[0] == "" {
		return nil, fmt.Errorf("has no output")
	}
	for i, o := range n.Outputs[1:] {
		if o != "" { // MaxPool's Indices, Dropout's mask, BatchNormalization's training statistics
			return nil, fmt.Errorf("output %d (%q): only the first output of %s: %w", i+1, o, n.OpType, ErrUnsupported)
		}
	}
	if n.OpType == "Constant" {
		if len(n.Inputs) != 0 {
			return nil, fmt.Errorf("a Constant takes no inputs, has %d", len(n.Inputs))
		}
		info, v, err := constantNode(n)
		if err != nil {
			return nil, err
		}
		_, err = c.add(n.Outputs[0], info, v)
		return nil, err
	}
	args := make([]arg, len(n.Inputs))
	allConst := true
	for i, in := range n.Inputs {
		if in == "" {
			args[i] = arg{slot: -1}
			continue
		}
		slot, ok := c.names[in]
		if !ok {
			return nil, fmt.Errorf("input %q is neither a graph input, an initializer nor the output of an earlier node (nodes must be in topological order)", in)
		}
		args[i] = arg{slot: slot, info: c.slots[slot]}
		if args[i].info.konst {
			args[i].val = &c.vals[slot]
		} else {
			allConst = false
		}
	}
	if info, v, ok, err := c.fold(n, args); ok || err != nil {
		if err != nil {
			return nil, err
		}
		_, err = c.add(n.Outputs[0], info, v)
		return nil, err
	}
	k, spec, err := c.kernel(n, args)
	if err != nil {
		return nil, err
	}
	maxIn := len(spec.kinds)
	if spec.variadic {
		maxIn = len(n.Inputs)
	}
	if len(n.Inputs) < spec.min || len(n.Inputs) > maxIn {
		return nil, fmt.Errorf("has %d inputs, want %d to %d", len(n.Inputs), spec.min, maxIn)
	}
	st := &step{name: name, k: k, alias: spec.alias, in: make([]int, len(n.Inputs))}
	shapes = shapes[:0]
	for i, a := range args {
		if a.slot < 0 {
			if i < spec.min {
				return nil, fmt.Errorf("input %d is required", i)
			}
			st.in[i] = -1
			shapes = append(shapes, nil)
			continue
		}
		kind := argFloat
		if !spec.variadic {
			kind = spec.kinds[i]
		}
		switch kind {
		case argFloat:
			if a.info.ints {
				return nil, fmt.Errorf("input %q: an integer tensor where %s takes FLOAT: %w", n.Inputs[i], n.OpType, ErrUnsupported)
			}
		case argConstInts:
			// The kernel read the constant when it was built (c.constInts).
		}
		st.in[i] = a.slot
		shapes = append(shapes, a.info.shape)
	}
	if r, ok := k.(*reshape); ok && len(r.refs) > 0 {
		// The target names dimensions of other values: they become extra inputs of the step,
		// so that its shape function sees their run-time shapes.
		for _, slot := range r.refs {
			st.in = append(st.in, slot.slot)
			shapes = append(shapes, c.slots[slot.slot].shape)
		}
		allConst = false
	}
	shape, err := k.shape(nil, shapes)
	if err != nil {
		return nil, err
	}
	known := make([]int64, 0, len(shape))
	for _, d := range shape {
		if d >= 0 {
			known = append(known, d)
		}
	}
	if _, err := checkedNumel(known); err != nil {
		return nil, fmt.Errorf("output of shape %v: %w", shape, err)
	}
	if allConst && len(args) > 0 {
		// Every input is a constant: compute the output once, now, and keep it as a constant
		// (a Transpose of weights, a Reshape of a bias, an Unsqueeze of a scale).
		info, v, err := c.evalConst(st, shape)
		if err != nil {
			return nil, err
		}
		_, err = c.add(n.Outputs[0], info, v)
		return nil, err
	}
	st.out, err = c.add(n.Outputs[0], slotInfo{shape: shape}, value{})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// evalConst runs a step whose inputs are all constants at load.
func (c *compiler) evalConst(st *step, shape []int64) (slotInfo, value, error) {
	if prod(shape) < 0 {
		return slotInfo{}, value{}, fmt.Errorf("constant of unknown shape %v", shape)
	}
	vals := make([]value, len(c.vals)+1)
	copy(vals, c.vals)
	out := &vals[len(c.vals)]
	out.shape = append([]int64{}, shape...)
	tmp := *st
	tmp.out = len(c.vals)
	args := make([]*value, len(st.in))
	shapes := make([][]int64, len(st.in))
	if err := tmp.exec(vals, shapes, args); err != nil {
		return slotInfo{}, value{}, err
	}
	v := value{shape: out.shape, data: out.data, isConst: true}
	if st.alias {
		v.data = append([]float32{}, out.data...)
	}
	return slotInfo{shape: v.shape, konst: true}, v, nil
}

// constInts returns the integer constant at input i, or an error naming why it cannot be used.
func constInts(n *onnx.Node, args []arg, i int) ([]int64, error) {
	if !present(args, i) {
		return nil, fmt.Errorf("input %d is required", i)
	}
	a := args[i]
	if !a.info.ints || !a.info.konst {
		return nil, fmt.Errorf("input %q: must be an INT64 initializer or Constant (computed shapes are %w)", n.Inputs[i], ErrUnsupported)
	}
	if a.info.sym && hasSym(a.val.ints) {
		return nil, fmt.Errorf("input %q: holds a dimension known only at run time, which %s cannot take: %w", n.Inputs[i], n.OpType, ErrUnsupported)
	}
	return a.val.ints, nil
}

type argKind uint8

const (
	argFloat     argKind = iota // a FLOAT tensor, constant or computed
	argConstInts                // an integer constant
)

// opSpec says which inputs an operator takes.
type opSpec struct {
	kinds    []argKind // one per input position
	min      int       // required inputs
	alias    bool
	variadic bool // any number ≥ min of FLOAT inputs (Concat)
}

func unary(alias bool) opSpec { return opSpec{kinds: []argKind{argFloat}, min: 1, alias: alias} }

func binary() opSpec { return opSpec{kinds: []argKind{argFloat, argFloat}, min: 2} }

// kernel builds the node's kernel from its attributes, refusing any attribute it does not
// implement: ignoring one would silently compute something else than the model means.
func (c *compiler) kernel(n *onnx.Node, args []arg) (kernel, opSpec, error) {
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
	case "Add", "Sub", "Mul", "Div":
		return binop{op: n.OpType}, binary(), checkAttrs(n, nil)
	case "Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Softplus", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu":
		return c.activation(n)
	case "Clip":
		return c.clip(n, args)
	case "Softmax", "LogSoftmax":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		// Opset 13 made Softmax act on one axis (default -1); before, it flattened the input
		// to 2-D at axis (default 1) and normalised each row.
		log := n.OpType == "LogSoftmax"
		if c.opset >= 13 {
			return softmax{axis: n.AttrInt("axis", -1), log: log}, unary(false), nil
		}
		return softmax{axis: n.AttrInt("axis", 1), coerce2D: true, log: log}, unary(false), nil
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
		r, err := c.reshapeTarget(n, args)
		if err != nil {
			return nil, opSpec{}, err
		}
		return r, opSpec{kinds: []argKind{argFloat, argConstInts}, min: 2, alias: true}, nil
	case "Identity":
		return identity{}, unary(true), checkAttrs(n, nil)
	case "Dropout":
		return c.dropout(n, args)
	case "Cast":
		// Cast of a computed FLOAT tensor to FLOAT; casts of constants are folded (fold.go).
		if err := checkAttrs(n, map[string]onnx.AttrType{"to": onnx.AttrInt, "saturate": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		if to := onnx.DataType(n.AttrInt("to", 0)); to != onnx.Float {
			return nil, opSpec{}, fmt.Errorf("cast of a computed tensor to %v (only to FLOAT): %w", to, ErrUnsupported)
		}
		return identity{}, unary(true), nil
	case "Conv":
		return c.conv(n, args)
	case "MaxPool", "AveragePool":
		return c.pool(n)
	case "GlobalAveragePool", "GlobalMaxPool":
		return globalPool{max: n.OpType == "GlobalMaxPool"}, unary(false), checkAttrs(n, nil)
	case "BatchNormalization":
		return c.batchNorm(n, args)
	case "Concat":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		if _, ok := n.Attrs["axis"]; !ok {
			return nil, opSpec{}, errors.New("attribute axis is required")
		}
		return concat{axis: n.AttrInt("axis", 0)}, opSpec{min: 1, variadic: true}, nil
	case "Transpose":
		if err := checkAttrs(n, map[string]onnx.AttrType{"perm": onnx.AttrInts}); err != nil {
			return nil, opSpec{}, err
		}
		var perm []int64
		if a, ok := n.Attrs["perm"]; ok {
			perm = a.Ints
		}
		return transpose{perm: perm}, unary(false), nil
	case "Squeeze", "Unsqueeze":
		return c.squeeze(n, args)
	case "Pad":
		return c.pad(n, args)
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin":
		return c.reduce(n, args)
	case "Gather":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return nil, opSpec{}, err
		}
		idx, err := constInts(n, args, 1)
		if err != nil {
			return nil, opSpec{}, err
		}
		return &gather{axis: n.AttrInt("axis", 0), indices: idx}, opSpec{kinds: []argKind{argFloat, argConstInts}, min: 2}, nil
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
