package builtin

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// The reference model of the benchmarks: `edgeloop train`'s MLP shape on Fashion-MNIST.
var benchSizes = []int{784, 256, 128, 10}

// builtinForward returns one Model.Run of the reference MLP on a batch.
func builtinForward(b *testing.B, layers []builtintest.Layer, batch int) func() {
	m := mustCompile(b, builtintest.MLP(layers))
	in := []Tensor{{Shape: []int64{int64(batch), int64(benchSizes[0])}, Data: builtintest.Input(1, batch, benchSizes[0])}}
	ctx := context.Background()
	return func() {
		res, err := m.Run(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		res.Release()
	}
}

// floorForward returns the floor the built-in runtime is held to: the same forward pass
// written by hand on gonum's BLAS (Sgemm, as anyone would write it) with every buffer
// preallocated, no graph, no shape checks, no pool.
func floorForward(layers []builtintest.Layer, batch int) func() {
	x := builtintest.Input(1, batch, benchSizes[0])
	bufs := make([][]float32, len(layers))
	for i, l := range layers {
		bufs[i] = make([]float32, batch*l.Out)
	}
	probs := make([]float32, batch*layers[len(layers)-1].Out)
	impl := gonum.Implementation{}
	return func() {
		in := x
		for i, l := range layers {
			y := bufs[i]
			for r := range batch {
				copy(y[r*l.Out:(r+1)*l.Out], l.B)
			}
			impl.Sgemm(blas.NoTrans, blas.Trans, batch, l.Out, l.In, 1, in, l.In, l.W, l.In, 1, y, l.Out)
			if i < len(layers)-1 {
				for j, v := range y {
					y[j] = max(v, 0)
				}
			}
			in = y
		}
		n := layers[len(layers)-1].Out
		for r := range batch {
			softmaxRow(probs[r*n:(r+1)*n], in[r*n:(r+1)*n])
		}
	}
}

// BenchmarkBuiltin measures Model.Run on the reference MLP (784-256-128-10). Batch 1 reports
// the latency percentiles of single requests; batch 32 the throughput in rows per second.
//
//	go test -run '^$' -bench 'Builtin|GonumFloor' -benchmem -count 6 ./internal/runtime/builtin/
func BenchmarkBuiltin(b *testing.B) {
	layers := builtintest.MLPLayers(42, benchSizes...)
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			measure(b, batch, builtinForward(b, layers, batch))
		})
	}
}

// BenchmarkGonumFloor is floorForward on its own, for benchstat beside BenchmarkBuiltin.
func BenchmarkGonumFloor(b *testing.B) {
	layers := builtintest.MLPLayers(42, benchSizes...)
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			measure(b, batch, floorForward(layers, batch))
		})
	}
}

// BenchmarkBuiltinVsFloor runs the built-in runtime and the floor alternately, one call each
// per iteration, so that the shared machine's noise (which moved the floor's batch-32 time by
// 30% between two runs) hits both alike, and reports both sides and their ratio: the p50
// latency for batch 1, the rows per second for batch 32. The target is a ratio of at most 2.
//
//	go test -run '^$' -bench BuiltinVsFloor -count 6 ./internal/runtime/builtin/
func BenchmarkBuiltinVsFloor(b *testing.B) {
	layers := builtintest.MLPLayers(42, benchSizes...)
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			sides := []func(){builtinForward(b, layers, batch), floorForward(layers, batch)}
			lat := [2][]time.Duration{}
			var total [2]time.Duration
			for b.Loop() {
				for i, f := range sides {
					start := time.Now()
					f()
					d := time.Since(start)
					total[i] += d
					if len(lat[i]) < 1<<16 {
						lat[i] = append(lat[i], d)
					}
				}
			}
			if batch > 1 {
				rows := [2]float64{}
				for i := range sides {
					rows[i] = float64(batch*b.N) / total[i].Seconds()
				}
				b.ReportMetric(rows[0], "builtin-rows/s")
				b.ReportMetric(rows[1], "floor-rows/s")
				b.ReportMetric(rows[1]/rows[0], "ratio")
				return
			}
			p50 := [2]time.Duration{}
			for i := range sides {
				slices.Sort(lat[i])
				p50[i] = lat[i][len(lat[i])/2]
				name := [2]string{"builtin", "floor"}[i]
				b.ReportMetric(float64(p50[i].Nanoseconds()), name+"-p50-ns")
				b.ReportMetric(float64(lat[i][len(lat[i])*99/100].Nanoseconds()), name+"-p99-ns")
			}
			b.ReportMetric(float64(p50[0])/float64(p50[1]), "ratio")
		})
	}
}

func softmaxRow(y, x []float32) {
	mx := slices.Max(x)
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - mx))
		y[i] = float32(e)
		sum += e
	}
	for i := range y {
		y[i] = float32(float64(y[i]) / sum)
	}
}

// measure runs forward b.N times. For batch 1 it times each call and reports the p50 and p99
// latency; for larger batches the throughput in rows per second.
func measure(b *testing.B, batch int, forward func()) {
	b.ReportAllocs()
	if batch > 1 {
		for b.Loop() {
			forward()
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
		return
	}
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		forward()
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkKernel compares, on the first layer's product (x·Wᵀ, 784 → 256), gonum's Sgemm
// with a register-blocked kernel of our own in plain Go. It is the measurement behind using
// gonum in sgemm (docs/inference.md).
func BenchmarkKernel(b *testing.B) {
	const k, n = 784, 256
	w := builtintest.MLPLayers(42, k, n)[0].W
	for _, m := range []int{1, 32} {
		a := builtintest.Input(1, m, k)
		c := make([]float32, m*n)
		b.Run(fmt.Sprintf("gonum/batch=%d", m), func(b *testing.B) {
			for b.Loop() {
				gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, k, w, k, 0, c, n)
			}
		})
		if m == 1 {
			b.Run("gonum-gemv/batch=1", func(b *testing.B) {
				for b.Loop() {
					gonum.Implementation{}.Sgemv(blas.NoTrans, n, k, 1, w, k, a, 1, 0, c, 1)
				}
			})
		}
		b.Run(fmt.Sprintf("own4x4/batch=%d", m), func(b *testing.B) {
			for b.Loop() {
				blockedNT(m, n, k, a, w, c)
			}
		})
	}
}

// TestBlockedNT keeps the benchmark's own kernel honest: it must compute what gonum computes.
func TestBlockedNT(t *testing.T) {
	for _, dims := range [][3]int{{1, 256, 784}, {7, 9, 13}, {32, 10, 5}} {
		m, n, k := dims[0], dims[1], dims[2]
		a, w := builtintest.Input(1, m, k), builtintest.Input(2, n, k)
		got, want := make([]float32, m*n), make([]float32, m*n)
		blockedNT(m, n, k, a, w, got)
		gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, k, w, k, 0, want, n)
		if !near(got, want, 1e-4) {
			t.Fatalf("%v: blockedNT differs from gonum", dims)
		}
	}
}

// blockedNT is C = A·Bᵀ (A m×k, B n×k, row-major) computed four rows of A by four rows of B at
// a time, so each loaded element feeds four multiply-adds held in sixteen registers.
func blockedNT(m, n, k int, a, b, c []float32) {
	i := 0
	for ; i+4 <= m; i += 4 {
		a0, a1, a2, a3 := a[i*k:(i+1)*k], a[(i+1)*k:(i+2)*k], a[(i+2)*k:(i+3)*k], a[(i+3)*k:(i+4)*k]
		j := 0
		for ; j+4 <= n; j += 4 {
			b0, b1, b2, b3 := b[j*k:(j+1)*k], b[(j+1)*k:(j+2)*k], b[(j+2)*k:(j+3)*k], b[(j+3)*k:(j+4)*k]
			var s [16]float32
			for p := range k {
				x0, x1, x2, x3 := a0[p], a1[p], a2[p], a3[p]
				y0, y1, y2, y3 := b0[p], b1[p], b2[p], b3[p]
				s[0] += x0 * y0
				s[1] += x0 * y1
				s[2] += x0 * y2
				s[3] += x0 * y3
				s[4] += x1 * y0
				s[5] += x1 * y1
				s[6] += x1 * y2
				s[7] += x1 * y3
				s[8] += x2 * y0
				s[9] += x2 * y1
				s[10] += x2 * y2
				s[11] += x2 * y3
				s[12] += x3 * y0
				s[13] += x3 * y1
				s[14] += x3 * y2
				s[15] += x3 * y3
			}
			for r := range 4 {
				copy(c[(i+r)*n+j:(i+r)*n+j+4], s[r*4:r*4+4])
			}
		}
		for ; j < n; j++ {
			for r := range 4 {
				c[(i+r)*n+j] = dot(a[(i+r)*k:(i+r+1)*k], b[j*k:(j+1)*k])
			}
		}
	}
	for ; i < m; i++ {
		ar := a[i*k : (i+1)*k]
		j := 0
		for ; j+4 <= n; j += 4 {
			b0, b1, b2, b3 := b[j*k:(j+1)*k], b[(j+1)*k:(j+2)*k], b[(j+2)*k:(j+3)*k], b[(j+3)*k:(j+4)*k]
			var s0, s1, s2, s3 float32
			for p, x := range ar {
				s0 += x * b0[p]
				s1 += x * b1[p]
				s2 += x * b2[p]
				s3 += x * b3[p]
			}
			c[i*n+j], c[i*n+j+1], c[i*n+j+2], c[i*n+j+3] = s0, s1, s2, s3
		}
		for ; j < n; j++ {
			c[i*n+j] = dot(ar, b[j*k:(j+1)*k])
		}
	}
}

func dot(x, y []float32) float32 {
	var s float32
	for i, v := range x {
		s += v * y[i]
	}
	return s
}
