package builtin

import (
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// reduce is ONNX ReduceMean, ReduceSum, ReduceMax and ReduceMin (x.mean([2, 3]) is how some
// PyTorch CNNs pool globally): axes from the attribute, or from a constant input where the
// opset moved them there (ReduceSum from 13); keepdims; an empty axes list reduces every
// dimension unless noop_with_empty_axes.
type reduce struct {
	op       string
	axes     []int64 // nil: every dimension
	keepdims bool
	noop     bool // noop_with_empty_axes and no axes: the identity
}

func (c *compiler) reduce(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	known := map[string]onnx.AttrType{"keepdims": onnx.AttrInt, "noop_with_empty_axes": onnx.AttrInt}
	axesInput := n.OpType == "ReduceSum" && c.opset >= 13 || c.opset >= 18
	if !axesInput {
		known["axes"] = onnx.AttrInts
	}
	if err := checkAttrs(n, known); err != nil {
		return nil, opSpec{}, err
	}
	r := &reduce{op: n.OpType, keepdims: n.AttrInt("keepdims", 1) != 0}
	spec := unary(false)
	if a, ok := n.Attrs["axes"]; ok {
		r.axes = a.Ints
	}
	if axesInput {
		spec = opSpec{kinds: []argKind{argFloat, argConstInts}, min: 1}
		if present(args, 1) {
			axes, err := constInts(n, args, 1)
			if err != nil {
				return nil, opSpec{}, err
			}
			r.axes = axes
		}
	}
	if len(r.axes) == 0 {
		r.axes = nil
		r.noop = n.AttrInt("noop_with_empty_axes", 0) != 0
	}
	return r, spec, nil
}

// reduced marks the reduced dimensions of a rank.
func (r *reduce) reduced(rank int) ([onnx.MaxRank]bool, error) {
	var mark [onnx.MaxRank]bool
	if r.axes == nil {
		for i := range rank {
			mark[i] = !r.noop
		}
		return mark, nil
	}
	for _, a := range r.axes {
		ax, err := normAxis(a, rank)
		if err != nil {
			return mark, err
		}
		mark[ax] = true
	}
	return mark, nil
}

func (r *reduce) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	mark, err := r.reduced(len(x))
	if err != nil {
		return nil, err
	}
	for i, d := range x {
		switch {
		case !mark[i]:
			dst = append(dst, d)
		case d == 0 && (r.op == "ReduceMax" || r.op == "ReduceMin"):
			return nil, fmt.Errorf("%s over an empty dimension of shape %v", r.op, x)
		case r.keepdims:
			dst = append(dst, 1)
		}
	}
	return dst, nil
}

func (r *reduce) run(out *value, in []*value) {
	x := in[0]
	rank := len(x.shape)
	mark, _ := r.reduced(rank) // checked by shape
	// The output offset of each input element: output strides over the kept dimensions,
	// stride 0 along the reduced ones.
	var ostride, dims, idx [onnx.MaxRank]int64
	s := int64(1)
	for d := rank - 1; d >= 0; d-- {
		dims[d] = x.shape[d]
		if !mark[d] {
			ostride[d] = s
			s *= x.shape[d]
		}
	}
	y := out.data
	init := float32(0)
	switch r.op {
	case "ReduceMax":
		init = float32(math.Inf(-1))
	case "ReduceMin":
		init = float32(math.Inf(1))
	}
	for i := range y {
		y[i] = init
	}
	var o int64
	for _, v := range x.data {
		switch r.op {
		case "ReduceMax":
			y[o] = max(y[o], v)
		case "ReduceMin":
			y[o] = min(y[o], v)
		default:
			y[o] += v
		}
		for d := rank - 1; d >= 0; d-- {
			idx[d]++
			o += ostride[d]
			if idx[d] < dims[d] {
				break
			}
			o -= ostride[d] * dims[d]
			idx[d] = 0
		}
	}
	if r.op == "ReduceMean" && len(y) > 0 {
		inv := float32(len(y)) / float32(len(x.data))
		for i := range y {
			y[i] *= inv
		}
	}
}
