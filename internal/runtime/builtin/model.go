// Package builtin runs ONNX classification models on the CPU in Go, so that an edge node
// without Triton can serve the reference model from the exporter itself.
//
// Load compiles the graph once into a plan: one kernel per node, in the graph's topological
// order, with every shape checked as far as the fixed dimensions allow. Nodes whose inputs are
// all constants, and the integer subgraphs exporters write around Reshape (Shape, Gather,
// Unsqueeze, Concat, ...), are computed at load (fold.go, symbolic.go). The plan is immutable
// and shared by all requests; each Run borrows its intermediate buffers from a sync.Pool, so
// the steady state allocates only the Result and any number of goroutines may Run the same
// Model.
//
// The supported operators are those of MLP and CNN image classifiers (NCHW) as PyTorch,
// scikit-learn (skl2onnx) and `edgeloop train` export them: Gemm, MatMul, Conv (grouped and
// depthwise), MaxPool, AveragePool, the global pools, BatchNormalization, the usual
// activations, element-wise arithmetic with broadcasting, reductions, Concat, Transpose, Pad
// and the shape operators; docs/inference.md lists them with their attributes. Anything else is
// refused at load with the node and operator named, never at request time. Matrix products
// use gonum's float32 BLAS in pure Go, or OpenBLAS through cgo when built with -tags openblas
// (see docs/inference.md for why gonum was chosen over our own kernel and over gonnx).
package builtin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/edgeloop/edgeloop/internal/onnx"
)

// TensorInfo describes a graph input or output as the Open Inference Protocol's model
// metadata does.
type TensorInfo struct {
	// Name is the tensor's name in the graph.
	Name string
	// Datatype is the V2 datatype name; the built-in runtime computes in FP32 only.
	Datatype string
	// Shape holds the dimensions; -1 marks a dynamic one (usually the batch).
	Shape []int64
}

// Tensor is a dense FP32 tensor in row-major order.
type Tensor struct {
	// Shape holds the dimensions; the product must equal len(Data).
	Shape []int64
	// Data holds the elements.
	Data []float32
}

// InputError is a request whose inputs do not fit the model (count, shape, size). The
// inference front answers it with 400; every other Run error is the runtime's fault.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

// Model is a compiled ONNX model. It is immutable after Load and safe for concurrent use.
type Model struct {
	inputs   []TensorInfo
	outputs  []TensorInfo
	inSlots  []int // value slot of each input
	outSlots []int // value slot of each output
	steps    []step
	consts   []value // slot-indexed; non-nil data only for constants
	maxIn    int     // most inputs of one step, to size the scratch argument lists
	metadata map[string]string
	pool     sync.Pool // *scratch
}

// Load decodes an ONNX model file and compiles it; see Compile.
func Load(data []byte) (*Model, error) {
	m, err := onnx.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("builtin: %w", err)
	}
	return Compile(m)
}

// Compile checks a decoded ONNX model and turns its graph into a plan of kernels. An operator,
// attribute or data type the runtime does not support, a node that reads a value no earlier
// node produced, or inconsistent fixed dimensions are load errors naming the node.
func Compile(m *onnx.Model) (*Model, error) {
	mod, err := compile(m)
	if err != nil {
		return nil, fmt.Errorf("builtin: %w", err)
	}
	return mod, nil
}

// Inputs describes the graph inputs a request must supply, in the order Run takes them.
func (m *Model) Inputs() []TensorInfo { return m.inputs }

// Outputs describes the graph outputs, in the order Run returns them.
func (m *Model) Outputs() []TensorInfo { return m.outputs }

// Metadata returns a copy of the model's metadata_props (edgeloop stores "classes" there).
func (m *Model) Metadata() map[string]string { return maps.Clone(m.metadata) }

// Result holds the outputs of one Run. Its tensors live in pooled buffers: read them, then
// call Release, after which they must not be used.
type Result struct {
	// Outputs holds one tensor per graph output, in the order of Model.Outputs.
	Outputs []Tensor
	model   *Model
	s       *scratch
}

// Release returns the result's buffers to the model's pool. It is idempotent.
func (r *Result) Release() {
	s := r.s
	if s == nil {
		return
	}
	r.s, r.Outputs = nil, nil
	r.model.putScratch(s)
}

// Run computes the outputs for inputs, which follow the order of Model.Inputs. The input data
// is read, never written, and not retained after Run returns. Inputs that do not fit the model
// yield an *InputError. ctx is checked between kernels, so a canceled request stops early.
func (m *Model) Run(ctx context.Context, inputs []Tensor) (*Result, error) {
	if err := m.CheckInputs(inputs); err != nil {
		return nil, err
	}
	s := m.getScratch()
	vals := s.vals
	for i, in := range inputs {
		v := &vals[m.inSlots[i]]
		v.shape = append(v.shape[:0], in.Shape...)
		v.data = in.Data
	}
	for i := range m.steps {
		if i%8 == 7 { // a context check per kernel would cost more than the small ones
			if err := ctx.Err(); err != nil {
				m.putScratch(s)
				return nil, fmt.Errorf("builtin: run: %w", err)
			}
		}
		st := &m.steps[i]
		if err := st.exec(vals, s.shapes[:len(st.in)], s.args[:len(st.in)]); err != nil {
			m.putScratch(s)
			return nil, fmt.Errorf("builtin: run: %w", err)
		}
	}
	// The Result is its own allocation, not part of the pooled scratch, so that a second
	// Release of it can never return a scratch that another request owns by then.
	res := &Result{model: m, s: s, Outputs: s.outs[:0]}
	for _, slot := range m.outSlots {
		v := &vals[slot]
		res.Outputs = append(res.Outputs, Tensor{Shape: v.shape, Data: v.data})
	}
	return res, nil
}

// CheckInputs validates inputs as Run does, returning an *InputError for the first that does
// not fit, so a caller can tell a bad request from a failed run before running anything.
func (m *Model) CheckInputs(inputs []Tensor) error {
	if len(inputs) != len(m.inputs) {
		return inputErrorf("model takes %d inputs, got %d", len(m.inputs), len(inputs))
	}
	for i, in := range inputs {
		if err := checkInput(m.inputs[i], in); err != nil {
			return err
		}
	}
	return nil
}

// checkInput validates one request tensor against the graph input it is given for.
func checkInput(info TensorInfo, in Tensor) error {
	if len(in.Shape) != len(info.Shape) {
		return inputErrorf("input %q: shape %v has %d dimensions, the model expects %d (%v)", info.Name, in.Shape, len(in.Shape), len(info.Shape), info.Shape)
	}
	n := int64(1)
	for d, got := range in.Shape {
		if want := info.Shape[d]; want >= 0 && got != want {
			return inputErrorf("input %q: shape %v does not match the model's %v at dimension %d", info.Name, in.Shape, info.Shape, d)
		}
		if got < 1 {
			return inputErrorf("input %q: dimension %d is %d, must be at least 1", info.Name, d, got)
		}
		if got > onnx.MaxElements || n > onnx.MaxElements/got {
			return inputErrorf("input %q: shape %v has more than %d elements", info.Name, in.Shape, int64(onnx.MaxElements))
		}
		n *= got
	}
	if int64(len(in.Data)) != n {
		return inputErrorf("input %q: shape %v needs %d values, got %d", info.Name, in.Shape, n, len(in.Data))
	}
	return nil
}

// scratch is one request's working memory: a value per slot and argument lists for the steps.
// Buffers keep their capacity between requests, so a steady batch size allocates nothing.
type scratch struct {
	vals   []value
	shapes [][]int64
	args   []*value
	outs   []Tensor
}

func (m *Model) getScratch() *scratch {
	if s, ok := m.pool.Get().(*scratch); ok {
		return s
	}
	s := &scratch{
		vals:   make([]value, len(m.consts)),
		shapes: make([][]int64, m.maxIn),
		args:   make([]*value, m.maxIn),
		outs:   make([]Tensor, 0, len(m.outSlots)),
	}
	for i, c := range m.consts {
		if c.isConst {
			s.vals[i] = c // shared read-only: kernels never write their inputs
		}
	}
	return s
}

func (m *Model) putScratch(s *scratch) {
	// Drop the references to request data so that the pool does not keep a client's input
	// (or an aliasing output) alive.
	for _, slot := range m.inSlots {
		s.vals[slot].data = nil
	}
	for i := range m.steps {
		if st := &m.steps[i]; st.alias {
			s.vals[st.out].data = nil
		}
	}
	clear(s.outs[:cap(s.outs)])
	m.pool.Put(s)
}

// ErrUnsupported is wrapped by load errors about what the runtime does not implement (an
// operator, attribute or data type), as opposed to models that are malformed, so that a caller
// can tell "needs another runtime" from "broken file" with errors.Is.
var ErrUnsupported = errors.New("not supported by the built-in runtime")
