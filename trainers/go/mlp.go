package trainer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas/gonum"
)

// Layer is one fully connected layer, y = W·x + B.
type Layer struct {
	// In and Out are the layer's input and output widths.
	In, Out int
	// W holds the weights row-major as [Out][In]: row j is output unit j's weights. This is
	// the layout of ONNX Gemm's B operand with transB=1, and of PyTorch's nn.Linear.
	W []float32
	// B holds the Out biases.
	B []float32
}

// Network is a multilayer perceptron: fully connected layers with ReLU between them and none
// after the last, whose outputs are the logits.
type Network struct {
	Layers []Layer
}

// NewNetwork returns a network of the given widths (input first, classes last) with He
// initialisation (weights ~ N(0, 2/In), biases 0), drawn from rng.
func NewNetwork(sizes []int, rng *rand.Rand) (*Network, error) {
	if len(sizes) < 2 {
		return nil, errors.New("new network: need at least an input and an output width")
	}
	n := &Network{}
	for i := 1; i < len(sizes); i++ {
		in, out := sizes[i-1], sizes[i]
		if in < 1 || out < 1 {
			return nil, fmt.Errorf("new network: widths must be positive, got %v", sizes)
		}
		l := Layer{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		std := math.Sqrt(2 / float64(in))
		for j := range l.W {
			l.W[j] = float32(rng.NormFloat64() * std)
		}
		n.Layers = append(n.Layers, l)
	}
	return n, nil
}

// Inputs is the width of the network's input.
func (n *Network) Inputs() int { return n.Layers[0].In }

// Classes is the width of the network's output.
func (n *Network) Classes() int { return n.Layers[len(n.Layers)-1].Out }

// Predict is the reference forward pass: plain loops, one image at a time, sums in float64.
// It returns the logits (Classes() values per image) of the images in inputs (Inputs() values
// each). Training uses faster kernels; Predict is the independent implementation that tests
// hold them, and any model.onnx runtime, to.
func Predict(net *Network, inputs []float32) ([]float32, error) {
	in := net.Inputs()
	if len(inputs)%in != 0 {
		return nil, fmt.Errorf("predict: %d input values are not a whole number of %d-value images", len(inputs), in)
	}
	images := len(inputs) / in
	out := make([]float32, 0, images*net.Classes())
	for i := range images {
		x := inputs[i*in : (i+1)*in]
		for li, l := range net.Layers {
			y := make([]float32, l.Out)
			for j := range y {
				s := float64(l.B[j])
				for k, w := range l.W[j*l.In : (j+1)*l.In] {
					s += float64(w) * float64(x[k])
				}
				if li < len(net.Layers)-1 && s < 0 {
					s = 0
				}
				y[j] = float32(s)
			}
			x = y
		}
		out = append(out, x...)
	}
	return out, nil
}

// blas runs the float32 dot products and AXPYs of training: gonum's assembly kernels are about
// four times faster than the same loop in Go, which does not vectorise.
type blas = gonum.Implementation

// parallel runs fn over [0, n) split into one contiguous range per worker and waits. Every
// kernel below gives each output element to exactly one worker and computes it in a fixed
// order, so results are bit-for-bit the same for any number of workers.
func parallel(workers, n int, fn func(lo, hi int)) {
	if workers <= 1 || n < 2*workers {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

// forward computes out = act(in·Wᵀ + B) for rows images: in is rows×l.In, out rows×l.Out.
// Rows are split across workers.
func forward(l *Layer, in, out []float32, rows, workers int, relu bool) {
	parallel(workers, rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x := in[r*l.In : (r+1)*l.In]
			y := out[r*l.Out : (r+1)*l.Out]
			for j := range y {
				s := blas{}.Sdot(l.In, l.W[j*l.In:(j+1)*l.In], 1, x, 1) + l.B[j]
				if relu && s < 0 {
					s = 0
				}
				y[j] = s
			}
		}
	})
}

// backward accumulates a layer's gradients from delta (rows×l.Out, ∂loss/∂output): gw = deltaᵀ·in
// and gb = Σ rows of delta, split across workers by output unit. When prev is not nil it also
// computes prev = (delta·W) ⊙ [in > 0], the delta of the layer below through its ReLU, split by
// row. Zero deltas (units the ReLU switched off) are skipped, which halves the work.
func backward(l *Layer, in, delta, gw, gb, prev []float32, rows, workers int) {
	parallel(workers, l.Out, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			g := gw[j*l.In : (j+1)*l.In]
			clear(g)
			var sb float32
			for r := range rows {
				d := delta[r*l.Out+j]
				if d == 0 {
					continue
				}
				sb += d
				blas{}.Saxpy(l.In, d, in[r*l.In:(r+1)*l.In], 1, g, 1)
			}
			gb[j] = sb
		}
	})
	if prev == nil {
		return
	}
	parallel(workers, rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p := prev[r*l.In : (r+1)*l.In]
			clear(p)
			for j, d := range delta[r*l.Out : (r+1)*l.Out] {
				if d != 0 {
					blas{}.Saxpy(l.In, d, l.W[j*l.In:(j+1)*l.In], 1, p, 1)
				}
			}
			for k, x := range in[r*l.In : (r+1)*l.In] {
				if x <= 0 {
					p[k] = 0
				}
			}
		}
	})
}

// softmaxRow writes softmax(logits) into p (numerically stable: the max is subtracted first)
// and returns −ln p[label] computed from the logits in float64.
func softmaxRow(logits, p []float32, label int) float64 {
	m := slices.Max(logits)
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v - m))
		p[i] = float32(e)
		sum += e
	}
	for i := range p {
		p[i] = float32(float64(p[i]) / sum)
	}
	return math.Log(sum) - float64(logits[label]-m)
}

// argmax returns the index of the largest value, the first one on a tie (as numpy.argmax).
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// adam is the Adam optimiser's state for one parameter tensor.
type adam struct {
	m, v []float32
}

// Adam's usual constants (Kingma & Ba 2015).
const (
	adamBeta1 = 0.9
	adamBeta2 = 0.999
	adamEps   = 1e-8
)

// step applies one update to params from grads, split across workers by element. lr is the
// step's learning rate with the bias corrections of step t folded in.
func (a *adam) step(params, grads []float32, lr float64, workers int) {
	parallel(workers, len(params), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := grads[i]
			m := adamBeta1*a.m[i] + (1-adamBeta1)*g
			v := adamBeta2*a.v[i] + (1-adamBeta2)*g*g
			a.m[i], a.v[i] = m, v
			params[i] -= float32(lr * float64(m) / (math.Sqrt(float64(v)) + adamEps))
		}
	})
}
