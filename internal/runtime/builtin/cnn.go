package builtin

import (
	"errors"
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// window is the geometry of a convolution or pooling window over the spatial dimensions of an
// NCHW tensor, normalised to two dimensions: a 1-D operator has height 1.
type window struct {
	rank      int      // spatial dimensions in the model: 1 or 2
	kernel    [2]int64 // 0 when taken from the weights (Conv without kernel_shape)
	strides   [2]int64
	dilations [2]int64
	pads      [4]int64 // top, left, bottom, right (ONNX order: begins, then ends)
	autoPad   string
	ceil      bool
}

// parseWindow reads the window attributes shared by Conv, MaxPool and AveragePool.
func parseWindow(n *onnx.Node, rank int, needKernel bool) (window, error) {
	w := window{rank: rank, strides: [2]int64{1, 1}, dilations: [2]int64{1, 1}, kernel: [2]int64{1, 1}}
	if rank != 1 && rank != 2 {
		return w, fmt.Errorf("%d spatial dimensions (only 1 and 2): %w", rank, ErrUnsupported)
	}
	off := 2 - rank // a 1-D window fills the second (width) slot
	get := func(name string, want int) ([]int64, error) {
		a, ok := n.Attrs[name]
		if !ok {
			return nil, nil
		}
		if len(a.Ints) != want {
			return nil, fmt.Errorf("attribute %s has %d values, want %d for %d spatial dimensions", name, len(a.Ints), want, rank)
		}
		for _, v := range a.Ints {
			if v > onnx.MaxElements { // keeps the window arithmetic far from overflow
				return nil, fmt.Errorf("attribute %s %v: values above %d", name, a.Ints, int64(onnx.MaxElements))
			}
		}
		return a.Ints, nil
	}
	k, err := get("kernel_shape", rank)
	if err != nil {
		return w, err
	}
	if k == nil && needKernel {
		return w, errors.New("attribute kernel_shape is required")
	}
	if k == nil {
		w.kernel = [2]int64{}
	}
	for i, v := range k {
		if v < 1 {
			return w, fmt.Errorf("kernel_shape %v: dimensions must be positive", k)
		}
		w.kernel[off+i] = v
	}
	for _, f := range []struct {
		name string
		dst  *[2]int64
	}{{"strides", &w.strides}, {"dilations", &w.dilations}} {
		v, err := get(f.name, rank)
		if err != nil {
			return w, err
		}
		for i, x := range v {
			if x < 1 {
				return w, fmt.Errorf("%s %v: values must be positive", f.name, v)
			}
			f.dst[off+i] = x
		}
	}
	p, err := get("pads", 2*rank)
	if err != nil {
		return w, err
	}
	for i, x := range p {
		if x < 0 {
			return w, fmt.Errorf("pads %v: values must not be negative", p)
		}
		side := i / rank // 0 begin, 1 end
		w.pads[side*2+off+i%rank] = x
	}
	w.autoPad = "NOTSET"
	if a, ok := n.Attrs["auto_pad"]; ok {
		w.autoPad = a.String
	}
	switch w.autoPad {
	case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
	default:
		return w, fmt.Errorf("auto_pad %q: %w", w.autoPad, ErrUnsupported)
	}
	if w.autoPad != "NOTSET" && p != nil {
		for _, x := range p {
			if x != 0 {
				return w, fmt.Errorf("auto_pad %s with explicit pads %v", w.autoPad, p)
			}
		}
	}
	return w, nil
}

// geometry is a window applied to an input size: the pads actually used and the output size.
type geometry struct {
	k, s, d    [2]int64
	padB, padE [2]int64 // begin and end pads per dimension
	in, out    [2]int64
}

// apply computes the output size for spatial input dimensions in (height, width; -1 unknown)
// and a kernel k taken from the weights where the window has none.
func (w *window) apply(in, k [2]int64) (geometry, error) {
	g := geometry{k: k, s: w.strides, d: w.dilations, in: in}
	for i := range 2 {
		if w.kernel[i] > 0 {
			g.k[i] = w.kernel[i]
		}
		ext := (g.k[i]-1)*g.d[i] + 1 // the dilated kernel's extent
		if in[i] < 0 {
			g.out[i] = -1
			continue
		}
		switch w.autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			g.out[i] = (in[i] + g.s[i] - 1) / g.s[i]
			total := max(0, (g.out[i]-1)*g.s[i]+ext-in[i])
			small := total / 2
			g.padB[i], g.padE[i] = small, total-small
			if w.autoPad == "SAME_LOWER" {
				g.padB[i], g.padE[i] = total-small, small
			}
			continue
		case "VALID":
		default:
			g.padB[i], g.padE[i] = w.pads[i], w.pads[2+i]
		}
		span := in[i] + g.padB[i] + g.padE[i] - ext
		if span < 0 {
			return g, fmt.Errorf("the window (extent %d) is larger than the padded input (%d)", ext, in[i]+g.padB[i]+g.padE[i])
		}
		g.out[i] = span/g.s[i] + 1
		if w.ceil && span%g.s[i] != 0 {
			g.out[i]++
			// The last window must start inside the input or its begin padding.
			if (g.out[i]-1)*g.s[i] >= in[i]+g.padB[i] {
				g.out[i]--
			}
		}
	}
	return g, nil
}

// spatial returns the height and width of an NCHW (or NCW) shape.
func spatial(shape []int64) [2]int64 {
	if len(shape) == 3 {
		return [2]int64{1, shape[2]}
	}
	return [2]int64{shape[2], shape[3]}
}

// appendSpatial appends the output's spatial dimensions in the model's rank.
func appendSpatial(dst []int64, rank int, out [2]int64) []int64 {
	if rank == 1 {
		return append(dst, out[1])
	}
	return append(dst, out[0], out[1])
}

// conv is ONNX Conv (1-D and 2-D, any group count, with or without bias), computed as im2col
// followed by one matrix product per image and group.
type conv struct {
	w     window
	group int64
	// post is an activation applied to each output block while it is in cache, set when the
	// convolution's only consumer was a Relu or a Clip with constant bounds (fuse.go).
	post *clip
}

func (c *compiler) conv(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"auto_pad": onnx.AttrString, "dilations": onnx.AttrInts, "group": onnx.AttrInt,
		"kernel_shape": onnx.AttrInts, "pads": onnx.AttrInts, "strides": onnx.AttrInts}); err != nil {
		return nil, opSpec{}, err
	}
	rank := 2
	if a, ok := n.Attrs["kernel_shape"]; ok {
		rank = len(a.Ints)
	} else if present(args, 1) {
		rank = len(args[1].info.shape) - 2 // W is [M, C/group, spatial…]
	}
	w, err := parseWindow(n, rank, false)
	if err != nil {
		return nil, opSpec{}, err
	}
	g := n.AttrInt("group", 1)
	if g < 1 {
		return nil, opSpec{}, fmt.Errorf("group %d must be positive", g)
	}
	return &conv{w: w, group: g}, opSpec{kinds: []argKind{argFloat, argFloat, argFloat}, min: 2}, nil
}

func (c *conv) geometry(x, w []int64) (geometry, error) {
	if len(x) != c.w.rank+2 {
		return geometry{}, fmt.Errorf("input X of shape %v: want %d dimensions (N, C and %d spatial)", x, c.w.rank+2, c.w.rank)
	}
	if len(w) != len(x) {
		return geometry{}, fmt.Errorf("weights W of shape %v do not match input X of shape %v", w, x)
	}
	k := spatial(w)
	for i, d := range k {
		if c.w.kernel[i] > 0 && d >= 0 && d != c.w.kernel[i] {
			return geometry{}, fmt.Errorf("kernel_shape does not match weights W of shape %v", w)
		}
	}
	return c.w.apply(spatial(x), k)
}

func (c *conv) shape(dst []int64, in [][]int64) ([]int64, error) {
	x, w := in[0], in[1]
	g, err := c.geometry(x, w)
	if err != nil {
		return nil, err
	}
	if x[1] >= 0 && w[1] >= 0 && x[1] != w[1]*c.group {
		return nil, fmt.Errorf("input X has %d channels, weights W of shape %v with group %d take %d", x[1], w, c.group, w[1]*c.group)
	}
	if w[0] >= 0 && w[0]%c.group != 0 {
		return nil, fmt.Errorf("weights W of shape %v: %d output channels do not divide into %d groups", w, w[0], c.group)
	}
	if len(in) > 2 && in[2] != nil {
		if b := in[2]; len(b) != 1 || b[0] >= 0 && w[0] >= 0 && b[0] != w[0] {
			return nil, fmt.Errorf("bias B of shape %v: want [%d]", b, w[0])
		}
	}
	dst = append(dst, x[0], w[0])
	return appendSpatial(dst, c.w.rank, g.out), nil
}

func (c *conv) run(out *value, in []*value) {
	x, w := in[0], in[1]
	g, _ := c.geometry(x.shape, w.shape) // checked by shape
	batch, channels := int(x.shape[0]), int(x.shape[1])
	m := int(w.shape[0])
	groups := int(c.group)
	cg, mg := channels/groups, m/groups
	hw := int(g.in[0] * g.in[1])
	p := int(g.out[0] * g.out[1])
	kk := cg * int(g.k[0]*g.k[1])
	pointwise := g.k == [2]int64{1, 1} && g.s == [2]int64{1, 1} && g.padB == [2]int64{} && g.padE == [2]int64{}
	var col []float32
	if !pointwise {
		if cap(out.tmp) < kk*p {
			out.tmp = make([]float32, kk*p)
		}
		col = out.tmp[:kk*p]
	}
	var bias []float32
	if len(in) > 2 && in[2] != nil {
		bias = in[2].data
	}
	for b := range batch {
		for gr := range groups {
			xg := x.data[(b*channels+gr*cg)*hw : (b*channels+(gr+1)*cg)*hw]
			yg := out.data[(b*m+gr*mg)*p : (b*m+(gr+1)*mg)*p]
			src := xg
			if !pointwise {
				im2col(col, xg, cg, &g)
				src = col
			}
			var beta float32
			if bias != nil {
				for o := range mg {
					row := yg[o*p : (o+1)*p]
					v := bias[gr*mg+o]
					for i := range row {
						row[i] = v
					}
				}
				beta = 1
			}
			sgemm(false, false, mg, p, kk, 1, w.data[gr*mg*kk:(gr+1)*mg*kk], kk, src, p, beta, yg, p)
			if c.post != nil {
				lo, hi := c.post.lo, c.post.hi
				for i, v := range yg {
					yg[i] = min(max(v, lo), hi)
				}
			}
		}
	}
}

// im2col writes the patches of the channels of x (cg planes of in[0]×in[1]) into col, one row
// per (channel, kernel row, kernel column) and one column per output position; positions in
// the padding are zero.
func im2col(col, x []float32, cg int, g *geometry) {
	ih, iw := int(g.in[0]), int(g.in[1])
	oh, ow := int(g.out[0]), int(g.out[1])
	kh, kw := int(g.k[0]), int(g.k[1])
	sh, sw := int(g.s[0]), int(g.s[1])
	dh, dw := int(g.d[0]), int(g.d[1])
	pt, pl := int(g.padB[0]), int(g.padB[1])
	p := oh * ow
	row := 0
	for c := range cg {
		plane := x[c*ih*iw : (c+1)*ih*iw]
		for ki := range kh {
			for kj := range kw {
				dst := col[row*p : (row+1)*p]
				row++
				for oy := range oh {
					d := dst[oy*ow : (oy+1)*ow]
					iy := oy*sh - pt + ki*dh
					if iy < 0 || iy >= ih {
						clear(d)
						continue
					}
					src := plane[iy*iw : (iy+1)*iw]
					x0 := kj*dw - pl // input column of output column 0
					if sw == 1 {
						// Output columns [lo, hi) read input columns lo+x0 …: one copy.
						lo, hi := max(0, -x0), min(ow, iw-x0)
						if hi <= lo {
							clear(d)
							continue
						}
						clear(d[:lo])
						copy(d[lo:hi], src[lo+x0:hi+x0])
						clear(d[hi:])
						continue
					}
					for ox := range ow {
						ix := ox*sw + x0
						if ix >= 0 && ix < iw {
							d[ox] = src[ix]
						} else {
							d[ox] = 0
						}
					}
				}
			}
		}
	}
}

// pool is ONNX MaxPool and AveragePool over 1 or 2 spatial dimensions.
type pool struct {
	w           window
	max         bool
	includePads bool // AveragePool's count_include_pad
}

func (c *compiler) pool(n *onnx.Node) (kernel, opSpec, error) {
	known := map[string]onnx.AttrType{"auto_pad": onnx.AttrString, "ceil_mode": onnx.AttrInt, "kernel_shape": onnx.AttrInts,
		"pads": onnx.AttrInts, "strides": onnx.AttrInts}
	isMax := n.OpType == "MaxPool"
	if isMax {
		known["dilations"] = onnx.AttrInts
		known["storage_order"] = onnx.AttrInt // it orders the Indices output only, which is refused
	} else {
		known["count_include_pad"] = onnx.AttrInt
	}
	if err := checkAttrs(n, known); err != nil {
		return nil, opSpec{}, err
	}
	a := n.Attrs["kernel_shape"]
	w, err := parseWindow(n, len(a.Ints), true)
	if err != nil {
		return nil, opSpec{}, err
	}
	w.ceil = n.AttrInt("ceil_mode", 0) != 0
	return &pool{w: w, max: isMax, includePads: n.AttrInt("count_include_pad", 0) != 0}, unary(false), nil
}

func (pl *pool) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if len(x) != pl.w.rank+2 {
		return nil, fmt.Errorf("input X of shape %v: want %d dimensions (N, C and %d spatial)", x, pl.w.rank+2, pl.w.rank)
	}
	g, err := pl.w.apply(spatial(x), pl.w.kernel)
	if err != nil {
		return nil, err
	}
	dst = append(dst, x[0], x[1])
	return appendSpatial(dst, pl.w.rank, g.out), nil
}

func (pl *pool) run(out *value, in []*value) {
	x := in[0]
	g, _ := pl.w.apply(spatial(x.shape), pl.w.kernel) // checked by shape
	planes := int(x.shape[0] * x.shape[1])
	ih, iw := int(g.in[0]), int(g.in[1])
	oh, ow := int(g.out[0]), int(g.out[1])
	kh, kw := int(g.k[0]), int(g.k[1])
	sh, sw := int(g.s[0]), int(g.s[1])
	dh, dw := int(g.d[0]), int(g.d[1])
	pt, pleft := int(g.padB[0]), int(g.padB[1])
	// The padded extent, for count_include_pad: windows that run past it (ceil_mode) count
	// only the positions inside.
	ph, pw := ih+int(g.padE[0]), iw+int(g.padE[1])
	if pl.max && kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1 && pt == 0 && pleft == 0 && 2*oh <= ih && 2*ow <= iw {
		maxPool2x2(out.data, x.data, planes, ih, iw, oh, ow) // every window inside the input
		return
	}
	for c := range planes {
		src := x.data[c*ih*iw : (c+1)*ih*iw]
		dst := out.data[c*oh*ow : (c+1)*oh*ow]
		for oy := range oh {
			y0 := oy*sh - pt
			kiLo, kiHi := validRange(y0, kh, dh, 0, ih)
			piLo, piHi := validRange(y0, kh, dh, -pt, ph)
			for ox := range ow {
				x0 := ox*sw - pleft
				kjLo, kjHi := validRange(x0, kw, dw, 0, iw)
				if pl.max {
					acc := float32(math.Inf(-1))
					for ki := kiLo; ki < kiHi; ki++ {
						row := src[(y0+ki*dh)*iw:]
						for kj := kjLo; kj < kjHi; kj++ {
							acc = max(acc, row[x0+kj*dw])
						}
					}
					dst[oy*ow+ox] = acc
					continue
				}
				var acc float32
				for ki := kiLo; ki < kiHi; ki++ {
					row := src[(y0+ki*dh)*iw:]
					for kj := kjLo; kj < kjHi; kj++ {
						acc += row[x0+kj*dw]
					}
				}
				count := (kiHi - kiLo) * (kjHi - kjLo)
				if pl.includePads {
					lo, hi := validRange(x0, kw, dw, -pleft, pw)
					count = (piHi - piLo) * (hi - lo)
				}
				if count > 0 {
					acc /= float32(count)
				}
				dst[oy*ow+ox] = acc
			}
		}
	}
}

// maxPool2x2 is MaxPool with 2×2 windows, stride 2, no padding, all windows inside the input:
// the pooling of most CNNs, without the general loop's bookkeeping.
func maxPool2x2(dst, src []float32, planes, ih, iw, oh, ow int) {
	for c := range planes {
		plane := src[c*ih*iw : (c+1)*ih*iw]
		out := dst[c*oh*ow : (c+1)*oh*ow]
		for oy := range oh {
			r0 := plane[2*oy*iw : 2*oy*iw+2*ow]
			r1 := plane[(2*oy+1)*iw : (2*oy+1)*iw+2*ow]
			o := out[oy*ow : (oy+1)*ow]
			for ox := range o {
				o[ox] = max(max(r0[2*ox], r0[2*ox+1]), max(r1[2*ox], r1[2*ox+1]))
			}
		}
	}
}

// validRange returns the kernel taps [lo, hi) whose positions x0 + j·d, j < k, fall in
// [lo, hi) of the input.
func validRange(x0, k, d, lo, hi int) (int, int) {
	first, last := 0, k
	for first < k && x0+first*d < lo {
		first++
	}
	for last > first && x0+(last-1)*d >= hi {
		last--
	}
	return first, last
}

// globalPool is ONNX GlobalAveragePool and GlobalMaxPool: one value per image and channel.
type globalPool struct{ max bool }

func (globalPool) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if len(x) < 3 {
		return nil, fmt.Errorf("input X of shape %v: want N, C and at least one spatial dimension", x)
	}
	dst = append(dst, x[0], x[1])
	for range x[2:] {
		dst = append(dst, 1)
	}
	return dst, nil
}

func (gp globalPool) run(out *value, in []*value) {
	x := in[0].data
	inner := len(x) / len(out.data)
	for c := range out.data {
		plane := x[c*inner : (c+1)*inner]
		if gp.max {
			m := float32(math.Inf(-1))
			for _, v := range plane {
				m = max(m, v)
			}
			out.data[c] = m
			continue
		}
		var s float32
		for _, v := range plane {
			s += v
		}
		out.data[c] = s / float32(inner)
	}
}

// batchNorm is ONNX BatchNormalization in inference mode: y = (x − mean)/√(var + ε)·scale + B
// per channel. With constant parameters the per-channel factor and offset are computed once at
// load.
type batchNorm struct {
	eps          float32
	scale, shift []float32 // precomputed, or nil when the parameters are computed
}

func (c *compiler) batchNorm(n *onnx.Node, args []arg) (kernel, opSpec, error) {
	if err := checkAttrs(n, map[string]onnx.AttrType{"epsilon": onnx.AttrFloat, "momentum": onnx.AttrFloat, "spatial": onnx.AttrInt,
		"training_mode": onnx.AttrInt, "is_test": onnx.AttrInt, "consumed_inputs": onnx.AttrInts}); err != nil {
		return nil, opSpec{}, err
	}
	if n.AttrInt("training_mode", 0) != 0 {
		return nil, opSpec{}, fmt.Errorf("training_mode=1: %w", ErrUnsupported)
	}
	if n.AttrInt("spatial", 1) != 1 {
		return nil, opSpec{}, fmt.Errorf("spatial=0 (per-activation statistics): %w", ErrUnsupported)
	}
	bn := &batchNorm{eps: n.AttrFloat("epsilon", 1e-5)}
	spec := opSpec{kinds: []argKind{argFloat, argFloat, argFloat, argFloat, argFloat}, min: 5}
	konst := len(args) == 5
	for _, a := range args[min(1, len(args)):] {
		konst = konst && a.slot >= 0 && a.info.konst && !a.info.ints
	}
	if konst {
		s, b, m, v := args[1].val.data, args[2].val.data, args[3].val.data, args[4].val.data
		if len(b) != len(s) || len(m) != len(s) || len(v) != len(s) {
			return nil, opSpec{}, fmt.Errorf("scale, B, mean and var have %d, %d, %d and %d values, want the same count", len(s), len(b), len(m), len(v))
		}
		bn.scale, bn.shift = make([]float32, len(s)), make([]float32, len(s))
		bnFactors(bn.scale, bn.shift, s, b, m, v, bn.eps)
	}
	return bn, spec, nil
}

// bnFactors computes y = x·scale + shift per channel from the BatchNormalization parameters.
func bnFactors(scale, shift, s, b, m, v []float32, eps float32) {
	for i := range scale {
		a := s[i] / float32(math.Sqrt(float64(v[i]+eps)))
		scale[i], shift[i] = a, b[i]-m[i]*a
	}
}

func (*batchNorm) shape(dst []int64, in [][]int64) ([]int64, error) {
	x := in[0]
	if len(x) < 2 {
		return nil, fmt.Errorf("input X of shape %v: want at least N and C", x)
	}
	for i, p := range in[1:] {
		if len(p) != 1 || p[0] >= 0 && x[1] >= 0 && p[0] != x[1] {
			return nil, fmt.Errorf("parameter %d of shape %v: want [%d] (one per channel)", i+1, p, x[1])
		}
	}
	return append(dst, x...), nil
}

func (bn *batchNorm) run(out *value, in []*value) {
	x := in[0]
	channels := int(x.shape[1])
	scale, shift := bn.scale, bn.shift
	if scale == nil {
		// Computed parameters: derive the factors into the output's working storage.
		if cap(out.tmp) < 2*channels {
			out.tmp = make([]float32, 2*channels)
		}
		scale, shift = out.tmp[:channels], out.tmp[channels:2*channels]
		bnFactors(scale, shift, in[1].data, in[2].data, in[3].data, in[4].data, bn.eps)
	}
	inner := int(numel(x.shape[2:]))
	for i := range len(x.data) / inner {
		c := i % channels
		a, b := scale[c], shift[c]
		src, dst := x.data[i*inner:(i+1)*inner], out.data[i*inner:(i+1)*inner]
		for j, v := range src {
			dst[j] = v*a + b
		}
	}
}
