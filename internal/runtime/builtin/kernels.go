package builtin

import (
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// gemm is ONNX Gemm: Y = alpha·op(A)·op(B) + beta·C, C broadcast to Y's shape.
type gemm struct {
	alpha, beta    float32
	transA, transB bool
}

func (g *gemm) shape(dst []int64, in [][]int64) ([]int64, error) {
	a, b := in[0], in[1]
	if len(a) != 2 || len(b) != 2 {
		return nil, fmt.Errorf("inputs A and B must be 2-D, got shapes %v and %v", a, b)
	}
	m, ka := a[0], a[1]
	if g.transA {
		m, ka = a[1], a[0]
	}
	kb, n := b[0], b[1]
	if g.transB {
		kb, n = b[1], b[0]
	}
	if ka >= 0 && kb >= 0 && ka != kb {
		return nil, fmt.Errorf("inner dimensions differ: A %v, B %v (transA=%t, transB=%t)", a, b, g.transA, g.transB)
	}
	if len(in) > 2 && in[2] != nil {
		c := in[2]
		if len(c) > 2 {
			return nil, fmt.Errorf("input C must have at most 2 dimensions, got shape %v", c)
		}
		target := [2]int64{m, n}
		for i := range c {
			d, t := c[len(c)-1-i], target[1-i]
			if d != 1 && d >= 0 && t >= 0 && d != t {
				return nil, fmt.Errorf("input C of shape %v does not broadcast to [%d %d]", c, m, n)
			}
		}
	}
	return append(dst, m, n), nil
}

func (g *gemm) run(out *value, in []*value) {
	a, b := in[0], in[1]
	m, n := int(out.shape[0]), int(out.shape[1])
	k := int(a.shape[1])
	if g.transA {
		k = int(a.shape[0])
	}
	var beta float32
	if len(in) > 2 && in[2] != nil && g.beta != 0 {
		fillBias(out.data, m, n, in[2], g.beta)
		beta = 1
	}
	sgemm(g.transA, g.transB, m, n, k, g.alpha, a.data, int(a.shape[1]), b.data, int(b.shape[1]), beta, out.data, n)
}

// fillBias writes beta·C, broadcast to m×n, into y: the usual C is a bias row of n values.
func fillBias(y []float32, m, n int, c *value, beta float32) {
	rows, cols := 1, 1
	switch len(c.shape) {
	case 2:
		rows, cols = int(c.shape[0]), int(c.shape[1])
	case 1:
		cols = int(c.shape[0])
	}
	for i := range m {
		row := y[i*n : (i+1)*n]
		src := 0
		if rows > 1 {
			src = i * cols
		}
		if cols == 1 {
			v := beta * c.data[src]
			for j := range row {
				row[j] = v
			}
			continue
		}
		for j, v := range c.data[src : src+n] {
			row[j] = beta * v
		}
	}
}

// matmul is ONNX MatMul with a 1-D or 2-D right operand (the weights of a dense layer); the
// left operand's leading dimensions are a batch. A batched right operand is refused at load.
type matmul struct{}

func (matmul) shape(dst []int64, in [][]int64) ([]int64, error) {
	a, b := in[0], in[1]
	if len(a) == 0 || len(b) == 0 {
		return nil, fmt.Errorf("operands must have at least 1 dimension, got shapes %v and %v", a, b)
	}
	if len(b) > 2 {
		return nil, fmt.Errorf("right operand of shape %v (batched, more than 2 dimensions): %w", b, ErrUnsupported)
	}
	if ka, kb := a[len(a)-1], b[0]; ka >= 0 && kb >= 0 && ka != kb {
		return nil, fmt.Errorf("inner dimensions differ: %v × %v", a, b)
	}
	dst = append(dst, a[:len(a)-1]...)
	return append(dst, b[1:]...), nil
}

func (matmul) run(out *value, in []*value) {
	a, b := in[0], in[1]
	k := int(b.shape[0])
	n := 1
	if len(b.shape) == 2 {
		n = int(b.shape[1])
	}
	rows := len(a.data) / k
	sgemm(false, false, rows, n, k, 1, a.data, k, b.data, n, 0, out.data, n)
}

// binop is ONNX Add, Sub, Mul and Div with multidirectional (NumPy) broadcasting.
type binop struct{ op string }

func (binop) shape(dst []int64, in [][]int64) ([]int64, error) {
	return broadcastShape(dst, in[0], in[1])
}

// broadcastShape appends the NumPy broadcast of a and b to dst; -1 dimensions are unknown.
func broadcastShape(dst, a, b []int64) ([]int64, error) {
	r := max(len(a), len(b))
	for i := range r {
		da, db := dimFromRight(a, r-1-i), dimFromRight(b, r-1-i)
		var d int64
		switch {
		case da == 1:
			d = db
		case db == 1 || da == db:
			d = da
		case da < 0:
			d = db
		case db < 0:
			d = da
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
		dst = append(dst, d)
	}
	return dst, nil
}

// dimFromRight is dimension i of shape aligned to rank len-from-the-right, 1 where shape is
// shorter (the implicit leading ones of broadcasting).
func dimFromRight(shape []int64, fromRight int) int64 {
	if fromRight >= len(shape) {
		return 1
	}
	return shape[len(shape)-1-fromRight]
}

func (o binop) run(out *value, in []*value) {
	a, b, y := in[0].data, in[1].data, out.data
	switch {
	case len(a) == len(y) && len(b) == len(y):
		applyRows(o.op, y, a, b, false)
	case len(a) == len(y) && isTrailing(in[1].shape, out.shape):
		applyRows(o.op, y, a, b, false)
	case len(b) == len(y) && isTrailing(in[0].shape, out.shape):
		applyRows(o.op, y, b, a, true)
	case len(a) == len(y) && len(b) > 0 && isChannel(in[1].shape, out.shape):
		applyChannels(o.op, y, a, b, false)
	case len(b) == len(y) && len(a) > 0 && isChannel(in[0].shape, out.shape):
		applyChannels(o.op, y, b, a, true)
	default:
		i := 0
		broadcastEach(out.shape, in[0].shape, in[1].shape, func(ia, ib int) {
			y[i] = apply(o.op, a[ia], b[ib])
			i++
		})
	}
}

// isTrailing reports whether shape, without its leading ones, equals the trailing dimensions
// of full: then it repeats along full's leading dimensions, like a bias row.
func isTrailing(shape, full []int64) bool {
	for len(shape) > 0 && shape[0] == 1 {
		shape = shape[1:]
	}
	if len(shape) > len(full) {
		return false
	}
	tail := full[len(full)-len(shape):]
	for i := range shape {
		if shape[i] != tail[i] {
			return false
		}
	}
	return true
}

func apply(op string, a, b float32) float32 {
	switch op {
	case "Add":
		return a + b
	case "Sub":
		return a - b
	case "Mul":
		return a * b
	}
	return a / b
}

// applyRows computes y = a op r for every len(r)-long row of a (r is as long as a or one
// repeated row); swapped computes r op a, for a broadcast left operand.
func applyRows(op string, y, a, r []float32, swapped bool) {
	n := len(r)
	for off := 0; off < len(y); off += n {
		ya, aa := y[off:off+n], a[off:off+n]
		switch {
		case op == "Add":
			for j, v := range r {
				ya[j] = aa[j] + v
			}
		case op == "Mul":
			for j, v := range r {
				ya[j] = aa[j] * v
			}
		case op == "Sub" && !swapped:
			for j, v := range r {
				ya[j] = aa[j] - v
			}
		case op == "Sub":
			for j, v := range r {
				ya[j] = v - aa[j]
			}
		case !swapped:
			for j, v := range r {
				ya[j] = aa[j] / v
			}
		default:
			for j, v := range r {
				ya[j] = v / aa[j]
			}
		}
	}
}

// isChannel reports whether shape is one value per channel of an NCHW-like full shape:
// [C, 1, …, 1] aligned on full's dimension 1 (a per-channel scale or bias).
func isChannel(shape, full []int64) bool {
	for len(shape) > 0 && shape[0] == 1 && len(shape) > len(full)-1 {
		shape = shape[1:]
	}
	if len(full) < 3 || len(shape) != len(full)-1 || shape[0] != full[1] {
		return false
	}
	for _, d := range shape[1:] {
		if d != 1 {
			return false
		}
	}
	return true
}

// applyChannels computes y = a op c[channel] over an NCHW-like a, c holding one value per
// channel.
func applyChannels(op string, y, a, c []float32, swapped bool) {
	inner := len(y) / len(c)
	for blk := range len(y) / inner {
		v := c[blk%len(c)]
		ya, aa := y[blk*inner:(blk+1)*inner], a[blk*inner:(blk+1)*inner]
		for j, x := range aa {
			if swapped {
				ya[j] = apply(op, v, x)
			} else {
				ya[j] = apply(op, x, v)
			}
		}
	}
}

// broadcastEach calls fn with the element offsets into a and b of each element of out, in
// order, stepping with stride 0 along broadcast dimensions.
func broadcastEach(out, sa, sb []int64, fn func(ia, ib int)) {
	r := len(out)
	var dims, stA, stB, idx [onnx.MaxRank]int64
	strides := func(shape []int64, s *[onnx.MaxRank]int64) {
		step := int64(1)
		for i := r - 1; i >= 0; i-- {
			d := dimFromRight(shape, r-1-i)
			if d == 1 {
				s[i] = 0
			} else {
				s[i] = step
			}
			step *= d
		}
	}
	copy(dims[:], out)
	strides(sa, &stA)
	strides(sb, &stB)
	var ia, ib int64
	for range numel(out) {
		fn(int(ia), int(ib))
		// Advance the odometer from the last dimension, undoing a dimension's strides when it
		// wraps.
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			ia += stA[d]
			ib += stB[d]
			if idx[d] < dims[d] {
				break
			}
			ia -= stA[d] * dims[d]
			ib -= stB[d] * dims[d]
			idx[d] = 0
		}
	}
}

// softmax is ONNX Softmax. From opset 13 it normalises along one axis; before, it flattened
// the input to 2-D at axis and normalised each row (coerce2D).
type softmax struct {
	axis     int64
	coerce2D bool
	log      bool // LogSoftmax
}

func (s softmax) norm(rank int) (int, error) {
	a := s.axis
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for %d dimensions", s.axis, rank)
	}
	return int(a), nil
}

func (s softmax) shape(dst []int64, in [][]int64) ([]int64, error) {
	if _, err := s.norm(len(in[0])); err != nil {
		return nil, err
	}
	return append(dst, in[0]...), nil
}

func (s softmax) run(out *value, in []*value) {
	shape := in[0].shape
	axis, _ := s.norm(len(shape)) // checked by shape
	outer := int(numel(shape[:axis]))
	n, inner := int(shape[axis]), int(numel(shape[axis+1:]))
	if s.coerce2D {
		n, inner = int(numel(shape[axis:])), 1
	}
	x, y := in[0].data, out.data
	for o := range outer {
		for i := range inner {
			base := o*n*inner + i
			mx := float32(math.Inf(-1))
			for j := range n {
				mx = max(mx, x[base+j*inner])
			}
			var sum float64
			for j := range n {
				e := math.Exp(float64(x[base+j*inner] - mx))
				y[base+j*inner] = float32(e)
				sum += e
			}
			if s.log {
				ls := float32(math.Log(sum))
				for j := range n {
					y[base+j*inner] = x[base+j*inner] - mx - ls
				}
				continue
			}
			inv := 1 / sum
			for j := range n {
				y[base+j*inner] = float32(float64(y[base+j*inner]) * inv)
			}
		}
	}
}

// flatten is ONNX Flatten: the output shares the input's data.
type flatten struct{ axis int64 }

func (f flatten) shape(dst []int64, in [][]int64) ([]int64, error) {
	r := int64(len(in[0]))
	a := f.axis
	if a < 0 {
		a += r
	}
	if a < 0 || a > r {
		return nil, fmt.Errorf("axis %d is out of range for %d dimensions", f.axis, r)
	}
	return append(dst, prod(in[0][:a]), prod(in[0][a:])), nil
}

func (flatten) run(*value, []*value) {}

// reshape is ONNX Reshape with the target shape from a constant: 0 copies the input's
// dimension, -1 is inferred. The output shares the input's data.
type reshape struct {
	target []int64
	// refs are the target's symbolic dimensions (symbolic.go), one per element whose pos is
	// set: that element is dimension dim of the step's extra input 2+i.
	refs []symRef
}

func (r *reshape) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if len(in[1]) != 1 {
		return nil, fmt.Errorf("the shape tensor must be 1-D, got shape %v", in[1])
	}
	total := prod(x)
	infer := -1
	known := int64(1) // product of the output dimensions other than the inferred one
	start := len(dst)
	next := 0 // the next symbolic reference
	for i, d := range r.target {
		if next < len(r.refs) && r.refs[next].pos == i {
			d = in[2+next][r.refs[next].dim]
			next++
			if d < 0 { // known only at run time
				dst = append(dst, -1)
				known = -1
				continue
			}
			if d == 0 {
				return nil, fmt.Errorf("target %v: a dimension of size 0", r.target)
			}
		}
		switch {
		case d == 0:
			if i >= len(x) {
				return nil, fmt.Errorf("target %v copies dimension %d of a %d-dimensional input", r.target, i, len(x))
			}
			d = x[i]
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("target %v has more than one -1", r.target)
			}
			infer = i
		case d < -1:
			return nil, fmt.Errorf("target %v has a negative dimension", r.target)
		}
		dst = append(dst, d)
		if i == infer {
			continue
		}
		if d < 0 || known < 0 {
			known = -1
		} else if known *= d; known > onnx.MaxElements {
			return nil, fmt.Errorf("target %v has more than %d elements", r.target, int64(onnx.MaxElements))
		}
	}
	switch {
	case infer >= 0 && total >= 0 && known >= 0:
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", x, total, r.target)
		}
		dst[start+infer] = total / known
	case infer >= 0:
		dst[start+infer] = -1
	case total >= 0 && known >= 0 && total != known:
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v (%d)", x, total, r.target, known)
	}
	return dst, nil
}

func (*reshape) run(*value, []*value) {}

// identity is ONNX Identity: the output is the input.
type identity struct{}

func (identity) shape(dst []int64, in [][]int64) ([]int64, error) { return append(dst, in[0]...), nil }

func (identity) run(*value, []*value) {}
