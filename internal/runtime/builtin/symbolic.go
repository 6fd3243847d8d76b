package builtin

import (
	"fmt"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// Symbolic dimensions let the integer subgraphs that PyTorch writes around a Reshape fold at
// load even when they read a dynamic dimension: x.view(x.size(0), -1) with a dynamic batch
// becomes Shape(x) → Gather(0) → Unsqueeze → Concat([·, -1]) → Reshape. Shape puts, for each
// dimension unknown at load, a reference "dimension d of value slot s" into its constant,
// encoded as an integer below symBase; Gather, Concat, Unsqueeze, Squeeze, Slice, Identity and
// casts between integer types move such elements like any other, and slotInfo.sym marks the
// constants that may hold them. Arithmetic on them and every consumer other than Reshape's
// target refuse them (constInts); Reshape takes the referenced values as extra inputs of its
// step and reads their dimensions at run time.

// symBase is the largest encoded reference: no real shape or index comes near it.
const symBase = -(int64(1) << 62)

// symRef is one symbolic element of a Reshape target.
type symRef struct {
	pos  int // the element's index in the target
	slot int // the value whose dimension it is
	dim  int
}

func encodeSym(slot, dim int) int64 { return symBase - int64(slot)*onnx.MaxRank - int64(dim) }

func hasSym(v []int64) bool {
	for _, x := range v {
		if x <= symBase {
			return true
		}
	}
	return false
}

// reshapeTarget reads Reshape's target, resolving symbolic elements into references that
// are checked against the values they name.
func (c *compiler) reshapeTarget(n *onnx.Node, args []arg) (*reshape, error) {
	if !present(args, 1) {
		return nil, fmt.Errorf("input 1 is required")
	}
	a := args[1]
	if !a.info.sym || !hasSym(a.val.ints) {
		target, err := constInts(n, args, 1)
		if err != nil {
			return nil, err
		}
		return &reshape{target: target}, nil
	}
	r := &reshape{target: a.val.ints}
	for i, v := range a.val.ints {
		if v > symBase {
			continue
		}
		k := symBase - v
		slot, dim := int(k/onnx.MaxRank), int(k%onnx.MaxRank)
		if slot >= len(c.slots) || dim >= len(c.slots[slot].shape) {
			return nil, fmt.Errorf("input %q: element %d = %d is not a dimension", n.Inputs[1], i, v)
		}
		r.refs = append(r.refs, symRef{pos: i, slot: slot, dim: dim})
	}
	return r, nil
}
