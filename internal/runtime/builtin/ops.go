package builtin

import (
	"errors"
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// activation is an element-wise operator of one input: Relu, Sigmoid, Tanh, Abs, Neg, Exp,
// Log, Sqrt, Reciprocal, Softplus, LeakyRelu, HardSigmoid, HardSwish and Elu.
type activation struct {
	op          string
	alpha, beta float32
}

func (c *compiler) activation(n *onnx.Node) (kernel, opSpec, error) {
	var known map[string]onnx.AttrType
	a := activation{op: n.OpType}
	switch n.OpType {
	case "LeakyRelu":
		known = map[string]onnx.AttrType{"alpha": onnx.AttrFloat}
		a.alpha = n.AttrFloat("alpha", 0.01)
	case "Elu":
		known = map[string]onnx.AttrType{"alpha": onnx.AttrFloat}
		a.alpha = n.AttrFloat("alpha", 1)
	case "HardSigmoid":
		known = map[string]onnx.AttrType{"alpha": onnx.AttrFloat, "beta": onnx.AttrFloat}
		a.alpha, a.beta = n.AttrFloat("alpha", 0.2), n.AttrFloat("beta", 0.5)
	case "HardSwish":
		a.alpha, a.beta = 1.0/6, 0.5
	}
	return a, unary(false), checkAttrs(n, known)
}

func (activation) shape(dst []int64, in [][]int64) ([]int64, error) {
	return append(dst, in[0]...), nil
}

func (a activation) run(out *value, in []*value) {
	x, y := in[0].data, out.data
	y = y[:len(x)]
	switch a.op {
	case "Relu":
		for i, v := range x {
			y[i] = max(v, 0)
		}
	case "LeakyRelu":
		for i, v := range x {
			if v < 0 {
				v *= a.alpha
			}
			y[i] = v
		}
	case "HardSigmoid":
		for i, v := range x {
			y[i] = min(max(a.alpha*v+a.beta, 0), 1)
		}
	case "HardSwish":
		for i, v := range x {
			y[i] = v * min(max(a.alpha*v+a.beta, 0), 1)
		}
	case "Sigmoid":
		for i, v := range x {
			y[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case "Tanh":
		for i, v := range x {
			y[i] = float32(math.Tanh(float64(v)))
		}
	case "Abs":
		for i, v := range x {
			y[i] = float32(math.Abs(float64(v)))
		}
	case "Neg":
		for i, v := range x {
			y[i] = -v
		}
	case "Exp":
		for i, v := range x {
			y[i] = float32(math.Exp(float64(v)))
		}
	case "Sqrt":
		for i, v := range x {
			y[i] = float32(math.Sqrt(float64(v)))
		}
	case "Log":
		for i, v := range x {
			y[i] = float32(math.Log(float64(v)))
		}
	case "Reciprocal":
		for i, v := range x {
			y[i] = 1 / v
		}
	case "Softplus":
		for i, v := range x {
			y[i] = float32(math.Log1p(math.Exp(float64(v))))
		}
	case "Elu":
		for i, v := range x {
			if v < 0 {
				v = a.alpha * float32(math.Expm1(float64(v)))
			}
			y[i] = v
		}
	}
}

// clip is ONNX Clip: bounds from attributes before opset 11, from optional scalar inputs
// since (ReLU6 is Clip(x, 0, 6)).
type clip struct {
	lo, hi float32
	inputs bool // read the bounds from inputs 1 and 2 when given
}

func (c *compiler) clip(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	lowest, highest := float32(-math.MaxFloat32), float32(math.MaxFloat32)
	if c.opset < 11 {
		if err := checkAttrs(n, map[string]onnx.AttrType{"min": onnx.AttrFloat, "max": onnx.AttrFloat, "consumed_inputs": onnx.AttrInts}); err != nil {
			return nil, opSpec{}, err
		}
		return &clip{lo: n.AttrFloat("min", lowest), hi: n.AttrFloat("max", highest)}, unary(false), nil
	}
	if err := checkAttrs(n, nil); err != nil {
		return nil, opSpec{}, err
	}
	k := &clip{lo: lowest, hi: highest, inputs: true}
	// Constant bounds (ReLU6's 0 and 6) are read once, here, which also lets a preceding
	// convolution apply them (fuse in fuse.go).
	k.inputs = false
	for i, dst := range []*float32{&k.lo, &k.hi} {
		if !present(args, i+1) {
			continue
		}
		a := args[i+1]
		if !a.info.konst || a.info.ints || len(a.val.data) != 1 {
			k.inputs = true
			continue
		}
		*dst = a.val.data[0]
	}
	if k.inputs {
		k.lo, k.hi = lowest, highest
	}
	return k, opSpec{kinds: []argKind{argFloat, argFloat, argFloat}, min: 1}, nil
}

func (*clip) shape(dst []int64, in [][]int64) ([]int64, error) {
	for i, b := range in[1:] {
		if b != nil && prod(b) > 1 {
			return nil, fmt.Errorf("bound %d of shape %v: want a scalar", i+1, b)
		}
	}
	return append(dst, in[0]...), nil
}

func (cl *clip) run(out *value, in []*value) {
	lo, hi := cl.lo, cl.hi
	if cl.inputs {
		if len(in) > 1 && in[1] != nil && len(in[1].data) == 1 {
			lo = in[1].data[0]
		}
		if len(in) > 2 && in[2] != nil && len(in[2].data) == 1 {
			hi = in[2].data[0]
		}
	}
	y := out.data
	for i, v := range in[0].data {
		y[i] = min(max(v, lo), hi)
	}
}

// dropout is ONNX Dropout at inference: the identity. Training mode and the mask output are
// refused.
func (c *compiler) dropout(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"ratio": onnx.AttrFloat, "is_test": onnx.AttrInt, "seed": onnx.AttrInt, "consumed_inputs": onnx.AttrInts}); err != nil {
		return nil, opSpec{}, err
	}
	if present(args, 2) {
		a := args[2]
		if !a.info.konst || !a.info.ints {
			return nil, opSpec{}, fmt.Errorf("input training_mode %q: must be a constant: %w", n.Inputs[2], ErrUnsupported)
		}
		for _, v := range a.val.ints {
			if v != 0 {
				return nil, opSpec{}, fmt.Errorf("training_mode=true: %w", ErrUnsupported)
			}
		}
	}
	return identity{}, opSpec{kinds: []argKind{argFloat, argFloat, argConstInts}, min: 1, alias: true}, nil
}

// normAxis resolves a possibly negative axis for a rank.
func normAxis(axis int64, rank int) (int, error) {
	a := axis
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for %d dimensions", axis, rank)
	}
	return int(a), nil
}

// concat is ONNX Concat.
type concat struct{ axis int64 }

func (c concat) shape(dst []int64, in [][]int64) ([]int64, error) {
	first := in[0]
	axis, err := normAxis(c.axis, len(first))
	if err != nil {
		return nil, err
	}
	start := len(dst)
	dst = append(dst, first...)
	for _, s := range in[1:] {
		if len(s) != len(first) {
			return nil, fmt.Errorf("inputs of shapes %v and %v have different ranks", first, s)
		}
		for d, v := range s {
			cur := dst[start+d]
			switch {
			case d == axis:
				if cur < 0 || v < 0 {
					dst[start+d] = -1
				} else {
					dst[start+d] = cur + v
				}
			case cur < 0:
				dst[start+d] = v
			case v >= 0 && v != cur:
				return nil, fmt.Errorf("inputs of shapes %v and %v differ outside axis %d", first, s, axis)
			}
		}
	}
	return dst, nil
}

func (c concat) run(out *value, in []*value) {
	axis, _ := normAxis(c.axis, len(out.shape))
	concatInto(out.data, out.shape, axis, len(in), func(i int) ([]float32, []int64) { return in[i].data, in[i].shape })
}

// concatInto writes the concatenation of parts along axis into dst of shape out.
func concatInto[T any](dst []T, out []int64, axis, parts int, part func(i int) ([]T, []int64)) {
	outer := int(numel(out[:axis]))
	inner := int(numel(out[axis+1:]))
	row := int(out[axis]) * inner
	off := 0
	for p := range parts {
		data, shape := part(p)
		n := int(shape[axis]) * inner
		for o := range outer {
			copy(dst[o*row+off:o*row+off+n], data[o*n:(o+1)*n])
		}
		off += n
	}
}

// transpose is ONNX Transpose.
type transpose struct{ perm []int64 }

func (t transpose) permFor(rank int) ([]int64, error) {
	if t.perm == nil {
		p := make([]int64, rank)
		for i := range p {
			p[i] = int64(rank - 1 - i)
		}
		return p, nil
	}
	if len(t.perm) != rank {
		return nil, fmt.Errorf("perm %v for %d dimensions", t.perm, rank)
	}
	var seen [onnx.MaxRank]bool
	for _, p := range t.perm {
		if p < 0 || p >= int64(rank) || seen[p] {
			return nil, fmt.Errorf("perm %v is not a permutation of %d dimensions", t.perm, rank)
		}
		seen[p] = true
	}
	return t.perm, nil
}

func (t transpose) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if t.perm != nil {
		if _, err := t.permFor(len(x)); err != nil {
			return nil, err
		}
		for _, p := range t.perm {
			dst = append(dst, x[p])
		}
		return dst, nil
	}
	for i := len(x) - 1; i >= 0; i-- {
		dst = append(dst, x[i])
	}
	return dst, nil
}

func (t transpose) run(out *value, in []*value) {
	x := in[0]
	r := len(x.shape)
	var perm [onnx.MaxRank]int64
	if t.perm != nil {
		copy(perm[:], t.perm)
	} else {
		for i := range r {
			perm[i] = int64(r - 1 - i)
		}
	}
	// Walk the output in order; the source offset moves by the input stride of the input
	// dimension each output dimension comes from.
	var inStride, stride, dims, idx [onnx.MaxRank]int64
	s := int64(1)
	for d := r - 1; d >= 0; d-- {
		inStride[d] = s
		s *= x.shape[d]
	}
	for d := range r {
		stride[d], dims[d] = inStride[perm[d]], out.shape[d]
	}
	var src int64
	y := out.data
	for i := range y {
		y[i] = x.data[src]
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			src += stride[d]
			if idx[d] < dims[d] {
				break
			}
			src -= stride[d] * dims[d]
			idx[d] = 0
		}
	}
}

// squeeze is ONNX Squeeze and Unsqueeze: the output shares the input's data.
type squeeze struct {
	unsqueeze bool
	axes      []int64 // nil for a Squeeze of every dimension of size 1
}

func (c *compiler) squeeze(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	k := &squeeze{unsqueeze: n.OpType == "Unsqueeze"}
	spec := opSpec{kinds: []argKind{argFloat, argConstInts}, min: 1, alias: true}
	if c.opset < 13 {
		if err := checkAttrs(n, map[string]onnx.AttrType{"axes": onnx.AttrInts}); err != nil {
			return nil, opSpec{}, err
		}
		if a, ok := n.Attrs["axes"]; ok {
			k.axes = a.Ints
		}
		spec.kinds = spec.kinds[:1]
	} else {
		if err := checkAttrs(n, nil); err != nil {
			return nil, opSpec{}, err
		}
		if present(args, 1) {
			axes, err := constInts(n, args, 1)
			if err != nil {
				return nil, opSpec{}, err
			}
			k.axes = axes
		}
	}
	if k.unsqueeze && k.axes == nil {
		return nil, opSpec{}, errors.New("an Unsqueeze needs axes")
	}
	return k, spec, nil
}

func (s *squeeze) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if s.unsqueeze {
		r := len(x) + len(s.axes)
		if r > onnx.MaxRank {
			return nil, fmt.Errorf("more than %d dimensions", onnx.MaxRank)
		}
		var mark [onnx.MaxRank]bool
		for _, a := range s.axes {
			ax, err := normAxis(a, r)
			if err != nil {
				return nil, err
			}
			if mark[ax] {
				return nil, fmt.Errorf("axes %v repeat an axis", s.axes)
			}
			mark[ax] = true
		}
		j := 0
		for i := range r {
			if mark[i] {
				dst = append(dst, 1)
				continue
			}
			dst = append(dst, x[j])
			j++
		}
		return dst, nil
	}
	if s.axes == nil {
		for _, d := range x {
			if d < 0 {
				return nil, fmt.Errorf("a Squeeze without axes of shape %v with dynamic dimensions: %w", x, ErrUnsupported)
			}
			if d != 1 {
				dst = append(dst, d)
			}
		}
		return dst, nil
	}
	var mark [onnx.MaxRank]bool
	for _, a := range s.axes {
		ax, err := normAxis(a, len(x))
		if err != nil {
			return nil, err
		}
		if x[ax] >= 0 && x[ax] != 1 {
			return nil, fmt.Errorf("axis %d of shape %v is not 1", a, x)
		}
		mark[ax] = true
	}
	for i, d := range x {
		if !mark[i] {
			dst = append(dst, d)
		}
	}
	return dst, nil
}

func (*squeeze) run(*value, []*value) {}

// pad is ONNX Pad in constant, reflect and edge modes. Negative pads crop.
type pad struct {
	mode  string
	pads  []int64 // begins, then ends
	value float32
}

func (c *compiler) pad(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	p := &pad{mode: "constant"}
	spec := opSpec{kinds: []argKind{argFloat, argConstInts, argFloat}, min: 2}
	if c.opset < 11 {
		if err := checkAttrs(n, map[string]onnx.AttrType{"mode": onnx.AttrString, "pads": onnx.AttrInts, "value": onnx.AttrFloat, "paddings": onnx.AttrInts}); err != nil {
			return nil, opSpec{}, err
		}
		a, ok := n.Attrs["pads"]
		if !ok {
			a, ok = n.Attrs["paddings"] // opset 1
		}
		if !ok {
			return nil, opSpec{}, errors.New("attribute pads is required")
		}
		p.pads, p.value = a.Ints, n.AttrFloat("value", 0)
		spec = unary(false)
	} else {
		if err := checkAttrs(n, map[string]onnx.AttrType{"mode": onnx.AttrString}); err != nil {
			return nil, opSpec{}, err
		}
		if len(n.Inputs) > 3 {
			return nil, opSpec{}, fmt.Errorf("input axes: %w", ErrUnsupported)
		}
		pads, err := constInts(n, args, 1)
		if err != nil {
			return nil, opSpec{}, err
		}
		p.pads = pads
	}
	if a, ok := n.Attrs["mode"]; ok {
		p.mode = a.String
	}
	switch p.mode {
	case "constant", "reflect", "edge":
	default:
		return nil, opSpec{}, fmt.Errorf("mode %q: %w", p.mode, ErrUnsupported)
	}
	return p, spec, nil
}

func (p *pad) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if len(p.pads) != 2*len(x) {
		return nil, fmt.Errorf("pads %v: want %d values for %d dimensions", p.pads, 2*len(x), len(x))
	}
	for _, v := range p.pads {
		if v > onnx.MaxElements || v < -onnx.MaxElements { // keeps the sums far from overflow
			return nil, fmt.Errorf("pads %v: values beyond ±%d", p.pads, int64(onnx.MaxElements))
		}
	}
	if len(in) > 2 && in[2] != nil && prod(in[2]) > 1 {
		return nil, fmt.Errorf("constant_value of shape %v: want a scalar", in[2])
	}
	for d, v := range x {
		if v < 0 {
			dst = append(dst, -1)
			continue
		}
		o := v + p.pads[d] + p.pads[len(x)+d]
		if o < 0 || (p.mode != "constant" && v == 0 && o > 0) {
			return nil, fmt.Errorf("pads %v do not fit shape %v", p.pads, x)
		}
		if p.mode == "reflect" && (p.pads[d] >= v || p.pads[len(x)+d] >= v) && (p.pads[d] > 0 || p.pads[len(x)+d] > 0) {
			return nil, fmt.Errorf("reflect pads %v need more than %d elements in dimension %d", p.pads, v, d)
		}
		dst = append(dst, o)
	}
	return dst, nil
}

func (p *pad) run(out *value, in []*value) {
	x := in[0]
	r := len(x.shape)
	val := p.value
	if len(in) > 2 && in[2] != nil && len(in[2].data) == 1 {
		val = in[2].data[0]
	}
	var inStride [onnx.MaxRank]int64
	s := int64(1)
	for d := r - 1; d >= 0; d-- {
		inStride[d] = s
		s *= x.shape[d]
	}
	// Walk the output rows (the last dimension) by an odometer over the others.
	last := r - 1
	ow := int(out.shape[last])
	rows := len(out.data) / max(ow, 1)
	var idx [onnx.MaxRank]int64
	for row := range rows {
		dst := out.data[row*ow : (row+1)*ow]
		base, inside := int64(0), true
		for d := range last {
			i, ok := p.source(idx[d], x.shape[d], p.pads[d])
			if !ok {
				inside = false
				break
			}
			base += i * inStride[d]
		}
		for o := range dst {
			i, ok := p.source(int64(o), x.shape[last], p.pads[last])
			if !inside || !ok {
				dst[o] = val
				continue
			}
			dst[o] = x.data[base+i]
		}
		for d := last - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < out.shape[d] {
				break
			}
			idx[d] = 0
		}
	}
}

// source maps an output index of one dimension to the input index it reads, or false for a
// constant-padded position.
func (p *pad) source(o, n, begin int64) (int64, bool) {
	i := o - begin
	if i >= 0 && i < n {
		return i, true
	}
	switch p.mode {
	case "edge":
		return min(max(i, 0), n-1), true
	case "reflect":
		period := 2 * (n - 1)
		if period == 0 {
			return 0, true
		}
		i = ((i % period) + period) % period
		if i >= n {
			i = period - i
		}
		return i, true
	}
	return 0, false
}

// gather is ONNX Gather with constant indices: slices of the data along axis.
type gather struct {
	axis    int64
	indices []int64
}

func (g *gather) shape(dst []int64, in [][]int64) ([]int64, error) {
	x, idx := in[0], in[1]
	axis, err := normAxis(g.axis, len(x))
	if err != nil {
		return nil, err
	}
	if n := x[axis]; n >= 0 {
		for _, i := range g.indices {
			if i < -n || i >= n {
				return nil, fmt.Errorf("index %d is out of range for dimension %d of shape %v", i, axis, x)
			}
		}
	}
	dst = append(dst, x[:axis]...)
	dst = append(dst, idx...)
	return append(dst, x[axis+1:]...), nil
}

func (g *gather) run(out *value, in []*value) {
	axis, _ := normAxis(g.axis, len(in[0].shape))
	gatherInto(out.data, in[0].data, in[0].shape, axis, g.indices)
}

// gatherInto copies the slices of src (of shape) at indices along axis into dst.
func gatherInto[T any](dst, src []T, shape []int64, axis int, indices []int64) {
	outer := int(numel(shape[:axis]))
	n := shape[axis]
	inner := int(numel(shape[axis+1:]))
	off := 0
	for o := range outer {
		for _, i := range indices {
			if i < 0 {
				i += n
			}
			start := (o*int(n) + int(i)) * inner
			copy(dst[off:off+inner], src[start:start+inner])
			off += inner
		}
	}
}
