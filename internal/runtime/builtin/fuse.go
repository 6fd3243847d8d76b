package builtin

import "math"

// fuse lets a Conv apply the Relu or constant-bound Clip (ReLU6) that follows it to each block
// of its output while the block is still in cache, instead of a second pass over the whole
// tensor. It applies only when the convolution's output feeds that activation and nothing
// else (no other step, no graph output); the activation's step then becomes an alias of the
// convolution's output.
func fuse(m *Model) {
	uses := make([]int, len(m.consts))
	for i := range m.steps {
		for _, slot := range m.steps[i].in {
			if slot >= 0 {
				uses[slot]++
			}
		}
	}
	for _, slot := range m.outSlots {
		uses[slot]++
	}
	producer := make(map[int]*step, len(m.steps))
	for i := range m.steps {
		producer[m.steps[i].out] = &m.steps[i]
	}
	for i := range m.steps {
		st := &m.steps[i]
		if len(st.in) == 0 || st.in[0] < 0 || uses[st.in[0]] != 1 {
			continue
		}
		var post *clip
		switch k := st.k.(type) {
		case activation:
			if k.op == "Relu" {
				post = &clip{lo: 0, hi: float32(math.Inf(1))}
			}
		case *clip:
			if !k.inputs {
				post = k
			}
		}
		if post == nil {
			continue
		}
		src := producer[st.in[0]]
		if src == nil {
			continue
		}
		c, ok := src.k.(*conv)
		if !ok || c.post != nil {
			continue
		}
		c.post = post
		st.k, st.alias = identity{}, true
	}
}
