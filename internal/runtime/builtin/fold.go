package builtin

import (
	"errors"
	"fmt"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// fold computes at load the integer subgraphs that exporters emit around Reshape and Flatten
// (PyTorch's Shape → Gather → Unsqueeze → Concat → Reshape), and casts of constants. It
// reports ok when the node's output became a constant. Integer tensors exist only as
// constants in the plan: an integer computation that needs a value known only at run time
// (the Shape of a dynamic dimension, an integer graph input) is refused with ErrUnsupported.
func (c *compiler) fold(n *onnx.Node, args []arg) (slotInfo, value, bool, error) {
	switch n.OpType {
	case "Shape":
		info, v, err := foldShape(n, args)
		return info, v, true, err
	case "ConstantOfShape":
		info, v, err := foldConstantOfShape(n, args)
		return info, v, true, err
	case "Cast":
		if !present(args, 0) || !args[0].info.konst {
			return slotInfo{}, value{}, false, nil // a computed FLOAT to FLOAT cast: the kernel
		}
		info, v, err := foldCast(n, args[0])
		return info, v, true, err
	case "Gather", "Concat", "Unsqueeze", "Squeeze", "Identity", "Reshape", "Flatten", "Slice", "Add", "Sub", "Mul", "Div":
	default:
		return slotInfo{}, value{}, false, nil
	}
	ints := present(args, 0) && args[0].info.ints
	if n.OpType == "Concat" || n.OpType == "Add" || n.OpType == "Sub" || n.OpType == "Mul" || n.OpType == "Div" {
		for _, a := range args {
			ints = ints || a.slot >= 0 && a.info.ints
		}
	}
	allConst := true
	for _, a := range args {
		allConst = allConst && (a.slot < 0 || a.info.konst)
	}
	if n.OpType == "Slice" && allConst {
		ints = true // Slice has no run-time kernel: fold it on constants of either type
	}
	if !ints {
		return slotInfo{}, value{}, false, nil
	}
	for i, a := range args {
		if a.slot >= 0 && !a.info.konst {
			return slotInfo{}, value{}, true, fmt.Errorf("input %q: an integer computation on a value known only at run time (the runtime folds integer subgraphs at load): %w", n.Inputs[i], ErrUnsupported)
		}
	}
	sym := false
	for _, a := range args {
		sym = sym || a.slot >= 0 && a.info.sym && hasSym(a.val.ints)
	}
	if sym && (n.OpType == "Add" || n.OpType == "Sub" || n.OpType == "Mul" || n.OpType == "Div") {
		return slotInfo{}, value{}, true, fmt.Errorf("arithmetic on a dimension known only at run time: %w", ErrUnsupported)
	}
	info, v, err := c.foldInts(n, args)
	info.sym = sym && hasSym(v.ints)
	return info, v, true, err
}

// shapesOf returns the shapes of the node's inputs, nil for an omitted one.
func shapesOf(args []arg) [][]int64 {
	s := make([][]int64, len(args))
	for i, a := range args {
		if a.slot >= 0 {
			s[i] = a.info.shape
		}
	}
	return s
}

func intConst(shape, ints []int64) (slotInfo, value, error) {
	return slotInfo{shape: shape, ints: true, konst: true}, value{shape: shape, ints: ints, isConst: true}, nil
}

func (c *compiler) foldInts(n *onnx.Node, args []arg) (slotInfo, value, error) {
	shapes := shapesOf(args)
	switch n.OpType {
	case "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze":
		// Only the shape changes: compute it with the FLOAT kernel's rule and keep the data.
		k, _, err := c.kernel(n, args)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		shape, err := k.shape(nil, shapes)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		return intConst(shape, args[0].val.ints)
	case "Gather":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return slotInfo{}, value{}, err
		}
		idx, err := constInts(n, args, 1)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		g := &gather{axis: n.AttrInt("axis", 0), indices: idx}
		shape, err := g.shape(nil, shapes)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		axis, _ := normAxis(g.axis, len(shapes[0]))
		out := make([]int64, numel(shape))
		gatherInto(out, args[0].val.ints, shapes[0], axis, idx)
		return intConst(shape, out)
	case "Concat":
		if err := checkAttrs(n, map[string]onnx.AttrType{"axis": onnx.AttrInt}); err != nil {
			return slotInfo{}, value{}, err
		}
		for i, a := range args {
			if a.slot < 0 || !a.info.ints {
				return slotInfo{}, value{}, fmt.Errorf("input %d: Concat of integer and FLOAT tensors", i)
			}
		}
		k := concat{axis: n.AttrInt("axis", 0)}
		shape, err := k.shape(nil, shapes)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		axis, _ := normAxis(k.axis, len(shape))
		out := make([]int64, numel(shape))
		concatInto(out, shape, axis, len(args), func(i int) ([]int64, []int64) { return args[i].val.ints, shapes[i] })
		return intConst(shape, out)
	case "Add", "Sub", "Mul", "Div":
		if err := checkAttrs(n, nil); err != nil {
			return slotInfo{}, value{}, err
		}
		if len(args) != 2 || !args[0].info.ints || !args[1].info.ints {
			return slotInfo{}, value{}, fmt.Errorf("%s of an integer and a FLOAT tensor", n.OpType)
		}
		shape, err := broadcastShape(nil, shapes[0], shapes[1])
		if err != nil {
			return slotInfo{}, value{}, err
		}
		a, b := args[0].val.ints, args[1].val.ints
		out := make([]int64, 0, numel(shape))
		var divZero bool
		broadcastEach(shape, shapes[0], shapes[1], func(ia, ib int) {
			x, y := a[ia], b[ib]
			switch n.OpType {
			case "Add":
				x += y
			case "Sub":
				x -= y
			case "Mul":
				x *= y
			default:
				if y == 0 {
					divZero = true
					y = 1
				}
				x /= y
			}
			out = append(out, x)
		})
		if divZero {
			return slotInfo{}, value{}, errors.New("integer division by zero")
		}
		return intConst(shape, out)
	case "Slice":
		return c.foldSlice(n, args)
	}
	return slotInfo{}, value{}, fmt.Errorf("operator %q on integer tensors: %w", n.OpType, ErrUnsupported)
}

func foldShape(n *onnx.Node, args []arg) (slotInfo, value, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"start": onnx.AttrInt, "end": onnx.AttrInt}); err != nil {
		return slotInfo{}, value{}, err
	}
	if len(args) != 1 || args[0].slot < 0 {
		return slotInfo{}, value{}, fmt.Errorf("has %d inputs, want 1", len(args))
	}
	x := args[0].info.shape
	r := int64(len(x))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end := clamp(n.AttrInt("start", 0)), clamp(n.AttrInt("end", r))
	dims := []int64{}
	if start < end {
		dims = append(dims, x[start:end]...)
	}
	sym := false
	for i, d := range dims {
		if d < 0 { // a symbolic dimension (symbolic.go)
			dims[i] = encodeSym(args[0].slot, int(start)+i)
			sym = true
		}
	}
	info, v, err := intConst([]int64{int64(len(dims))}, dims)
	info.sym = sym
	return info, v, err
}

func foldConstantOfShape(n *onnx.Node, args []arg) (slotInfo, value, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"value": onnx.AttrTensor}); err != nil {
		return slotInfo{}, value{}, err
	}
	shape, err := constInts(n, args, 0)
	if err != nil {
		return slotInfo{}, value{}, err
	}
	if len(args) != 1 {
		return slotInfo{}, value{}, fmt.Errorf("has %d inputs, want 1", len(args))
	}
	total, err := checkedNumel(shape)
	if err != nil {
		return slotInfo{}, value{}, err
	}
	shape = append([]int64{}, shape...)
	fill := onnx.Tensor{DataType: onnx.Float, Float32: []float32{0}}
	if a, ok := n.Attrs["value"]; ok && a.Tensor != nil {
		fill = *a.Tensor
	}
	info, v, err := constant(&fill)
	if err != nil {
		return slotInfo{}, value{}, err
	}
	if numel(info.shape) != 1 {
		return slotInfo{}, value{}, fmt.Errorf("value has shape %v, want one element", info.shape)
	}
	if info.ints {
		out := make([]int64, total)
		for i := range out {
			out[i] = v.ints[0]
		}
		return intConst(shape, out)
	}
	out := make([]float32, total)
	for i := range out {
		out[i] = v.data[0]
	}
	return slotInfo{shape: shape, konst: true}, value{shape: shape, data: out, isConst: true}, nil
}

// checkedNumel is the element count of a shape from a model's data, refusing negative and
// overlarge ones.
func checkedNumel(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && n > onnx.MaxElements/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, int64(onnx.MaxElements))
		}
		n *= d
	}
	return n, nil
}

func foldCast(n *onnx.Node, a arg) (slotInfo, value, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"to": onnx.AttrInt, "saturate": onnx.AttrInt}); err != nil {
		return slotInfo{}, value{}, err
	}
	to := onnx.DataType(n.AttrInt("to", 0))
	shape := a.info.shape
	if a.info.sym && hasSym(a.val.ints) {
		if to != onnx.Int64 && to != onnx.Int32 {
			return slotInfo{}, value{}, fmt.Errorf("cast of a dimension known only at run time to %v: %w", to, ErrUnsupported)
		}
		info, v, err := intConst(shape, a.val.ints)
		info.sym = true
		return info, v, err
	}
	switch to {
	case onnx.Float:
		if !a.info.ints {
			return slotInfo{shape: shape, konst: true}, *a.val, nil
		}
		out := make([]float32, len(a.val.ints))
		for i, v := range a.val.ints {
			out[i] = float32(v)
		}
		return slotInfo{shape: shape, konst: true}, value{shape: shape, data: out, isConst: true}, nil
	case onnx.Int64, onnx.Int32, onnx.Int16, onnx.Int8, onnx.Uint32, onnx.Uint16, onnx.Uint8, onnx.Bool:
		var out []int64
		if a.info.ints {
			out = append([]int64{}, a.val.ints...)
		} else {
			out = make([]int64, len(a.val.data))
			for i, v := range a.val.data {
				out[i] = int64(v) // ONNX casts truncate toward zero, as Go does
			}
		}
		if to == onnx.Bool {
			for i, v := range out {
				if v != 0 {
					out[i] = 1
				}
			}
		}
		return intConst(shape, out)
	}
	return slotInfo{}, value{}, fmt.Errorf("cast to %v: %w", to, ErrUnsupported)
}

// foldSlice is ONNX Slice on a constant: starts, ends, axes and steps from attributes before
// opset 10 and from constant inputs since.
func (c *compiler) foldSlice(n *onnx.Node, args []arg) (slotInfo, value, error) {
	var starts, ends, axes, steps []int64
	if c.opset < 10 {
		if err := checkAttrs(n, map[string]onnx.AttrType{"starts": onnx.AttrInts, "ends": onnx.AttrInts, "axes": onnx.AttrInts}); err != nil {
			return slotInfo{}, value{}, err
		}
		starts, ends, axes = n.Attrs["starts"].Ints, n.Attrs["ends"].Ints, n.Attrs["axes"].Ints
	} else {
		if err := checkAttrs(n, nil); err != nil {
			return slotInfo{}, value{}, err
		}
		var err error
		if starts, err = constInts(n, args, 1); err != nil {
			return slotInfo{}, value{}, err
		}
		if ends, err = constInts(n, args, 2); err != nil {
			return slotInfo{}, value{}, err
		}
		if present(args, 3) {
			if axes, err = constInts(n, args, 3); err != nil {
				return slotInfo{}, value{}, err
			}
		}
		if present(args, 4) {
			if steps, err = constInts(n, args, 4); err != nil {
				return slotInfo{}, value{}, err
			}
		}
	}
	x := args[0].info.shape
	r := len(x)
	if len(ends) != len(starts) || axes != nil && len(axes) != len(starts) || steps != nil && len(steps) != len(starts) {
		return slotInfo{}, value{}, fmt.Errorf("starts %v, ends %v, axes %v and steps %v differ in length", starts, ends, axes, steps)
	}
	// Per dimension: first index, step and count.
	first, step, count := make([]int64, r), make([]int64, r), append([]int64{}, x...)
	for d := range step {
		step[d] = 1
	}
	for i := range starts {
		ax := int64(i)
		if axes != nil {
			ax = axes[i]
		}
		d, err := normAxis(ax, r)
		if err != nil {
			return slotInfo{}, value{}, err
		}
		s := int64(1)
		if steps != nil {
			s = steps[i]
		}
		if s == 0 {
			return slotInfo{}, value{}, errors.New("a step is 0")
		}
		dim := x[d]
		clamp := func(v, lo, hi int64) int64 {
			if v < 0 {
				v += dim
			}
			return min(max(v, lo), hi)
		}
		var b, e int64
		if s > 0 {
			b, e = clamp(starts[i], 0, dim), clamp(ends[i], 0, dim)
		} else {
			b, e = clamp(starts[i], -1, dim-1), clamp(ends[i], -1, dim-1)
		}
		cnt := int64(0)
		if s > 0 && e > b {
			cnt = (e - b + s - 1) / s
		} else if s < 0 && b > e {
			cnt = (b - e - s - 1) / -s
		}
		first[d], step[d], count[d] = b, s, cnt
	}
	strides := make([]int64, r)
	st := int64(1)
	for d := r - 1; d >= 0; d-- {
		strides[d] = st
		st *= x[d]
	}
	var src []int64
	idx := make([]int64, r)
	for range numel(count) {
		off := int64(0)
		for d := range r {
			off += (first[d] + idx[d]*step[d]) * strides[d]
		}
		src = append(src, off)
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < count[d] {
				break
			}
			idx[d] = 0
		}
	}
	if args[0].info.ints {
		out := make([]int64, len(src))
		for i, o := range src {
			out[i] = args[0].val.ints[o]
		}
		return intConst(count, out)
	}
	out := make([]float32, len(src))
	for i, o := range src {
		out[i] = args[0].val.data[o]
	}
	return slotInfo{shape: count, konst: true}, value{shape: count, data: out, isConst: true}, nil
}
