package builtin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/edgeloop/edgeloop/internal/onnx"
	"github.com/edgeloop/edgeloop/internal/runtime/builtin/builtintest"
)

// cnnBenchModels are the CNN exports of testdata/make_cnn.py (BatchNormalization folded, as
// torch exports an eval-mode model) with their input shapes.
var cnnBenchModels = []struct {
	name  string
	shape []int64 // one image
}{
	{"small_cnn", []int64{1, 28, 28}},
	{"mobilenet", []int64{3, 32, 32}},
}

func loadTestModel(tb testing.TB, file string) (*onnx.Model, []byte) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := onnx.Decode(data)
	if err != nil {
		tb.Fatal(err)
	}
	return m, data
}

func cnnInput(shape []int64, batch int) Tensor {
	full := append([]int64{int64(batch)}, shape...)
	return Tensor{Shape: full, Data: builtintest.Input(7, batch, int(numel(shape)))}
}

// cnnBuiltin returns one Model.Run of a CNN export on a batch.
func cnnBuiltin(tb testing.TB, file string, in Tensor) func() {
	_, data := loadTestModel(tb, file)
	m, err := Load(data)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	return func() {
		res, err := m.Run(ctx, []Tensor{in})
		if err != nil {
			tb.Fatal(err)
		}
		res.Release()
	}
}

// cnnFloor returns the floor the runtime is held to on a CNN: the export's layers written out
// by hand, convolutions as im2col plus gonum's Sgemm per image and group, every buffer
// preallocated, no graph walk, no shape checks, no pool. It understands the operators of the
// folded exports only (Conv, Relu, Clip, MaxPool, GlobalAveragePool, Flatten, Gemm).
func cnnFloor(tb testing.TB, file string, in Tensor) func() {
	var out []float32
	return cnnFloorWithOutput(tb, file, in, &out)
}

// cnnFloorWithOutput is cnnFloor that also points out at the logits after each call.
func cnnFloorWithOutput(tb testing.TB, file string, in Tensor, out *[]float32) func() {
	m, _ := loadTestModel(tb, file)
	weights := map[string]*onnx.Tensor{}
	for i := range m.Graph.Initializers {
		weights[m.Graph.Initializers[i].Name] = &m.Graph.Initializers[i]
	}
	consts := map[string]float32{}
	impl := gonum.Implementation{}
	shape := slices.Clone(in.Shape)
	src := &in.Data
	var layers []func()
	for _, n := range m.Graph.Nodes {
		x := src
		xs := slices.Clone(shape)
		batch := int(xs[0])
		switch n.OpType {
		case "Constant":
			consts[n.Outputs[0]] = n.Attrs["value"].Tensor.Float32[0]
			continue
		case "Conv":
			w := weights[n.Inputs[1]]
			var bias []float32
			if len(n.Inputs) > 2 {
				bias = weights[n.Inputs[2]].Float32
			}
			win, err := parseWindow(&n, 2, false)
			if err != nil {
				tb.Fatal(err)
			}
			g, err := win.apply(spatial(xs), spatial(w.Dims))
			if err != nil {
				tb.Fatal(err)
			}
			groups := int(n.AttrInt("group", 1))
			c, mo := int(xs[1]), int(w.Dims[0])
			cg, mg := c/groups, mo/groups
			hw, p := int(xs[2]*xs[3]), int(g.out[0]*g.out[1])
			kk := cg * int(g.k[0]*g.k[1])
			col := make([]float32, kk*p)
			y := make([]float32, batch*mo*p)
			layers = append(layers, func() {
				for b := range batch {
					for gr := range groups {
						im2col(col, (*x)[(b*c+gr*cg)*hw:(b*c+(gr+1)*cg)*hw], cg, &g)
						yg := y[(b*mo+gr*mg)*p : (b*mo+(gr+1)*mg)*p]
						for o := range mg {
							row := yg[o*p : (o+1)*p]
							v := float32(0)
							if bias != nil {
								v = bias[gr*mg+o]
							}
							for i := range row {
								row[i] = v
							}
						}
						impl.Sgemm(blas.NoTrans, blas.NoTrans, mg, p, kk, 1, w.Float32[gr*mg*kk:(gr+1)*mg*kk], kk, col, p, 1, yg, p)
					}
				}
			})
			src, shape = &y, []int64{int64(batch), int64(mo), g.out[0], g.out[1]}
		case "Relu", "Clip":
			lo, hi := float32(0), float32(3.4e38)
			if n.OpType == "Clip" {
				lo, hi = consts[n.Inputs[1]], consts[n.Inputs[2]]
			}
			y := make([]float32, numel(xs))
			layers = append(layers, func() {
				for i, v := range *x {
					y[i] = min(max(v, lo), hi)
				}
			})
			src = &y
		case "MaxPool":
			win, err := parseWindow(&n, 2, true)
			if err != nil {
				tb.Fatal(err)
			}
			pl := &pool{w: win, max: true}
			out, err := pl.shape(nil, [][]int64{xs})
			if err != nil {
				tb.Fatal(err)
			}
			yv := &value{shape: out, data: make([]float32, numel(out))}
			xv := &value{shape: xs}
			layers = append(layers, func() {
				xv.data = *x
				pl.run(yv, []*value{xv})
			})
			src, shape = &yv.data, out
		case "GlobalAveragePool":
			c, hw := int(xs[0]*xs[1]), int(xs[2]*xs[3])
			y := make([]float32, c)
			layers = append(layers, func() {
				for i := range y {
					var s float32
					for _, v := range (*x)[i*hw : (i+1)*hw] {
						s += v
					}
					y[i] = s / float32(hw)
				}
			})
			src, shape = &y, []int64{xs[0], xs[1], 1, 1}
		case "Flatten":
			shape = []int64{xs[0], numel(xs[1:])}
		case "Gemm":
			w, bias := weights[n.Inputs[1]], weights[n.Inputs[2]].Float32
			k, no := int(w.Dims[1]), int(w.Dims[0])
			y := make([]float32, batch*no)
			layers = append(layers, func() {
				for r := range batch {
					copy(y[r*no:(r+1)*no], bias)
				}
				impl.Sgemm(blas.NoTrans, blas.Trans, batch, no, k, 1, *x, k, w.Float32, k, 1, y, no)
			})
			src, shape = &y, []int64{int64(batch), int64(no)}
		default:
			tb.Fatalf("the floor has no %s", n.OpType)
		}
	}
	return func() {
		for _, l := range layers {
			l()
		}
		*out = *src
	}
}

// BenchmarkCNNVsFloor runs the built-in runtime and the hand-written floor (cnnFloor) on the
// small CNN and the MobileNet-style network alternately, one call each per iteration, and
// reports both sides and their ratio: p50 latency at batch 1, rows per second at batch 32. The
// target is a ratio of at most 1.5.
//
//	go test -run '^$' -bench CNNVsFloor -count 6 ./internal/runtime/builtin/
func BenchmarkCNNVsFloor(b *testing.B) {
	for _, cm := range cnnBenchModels {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", cm.name, batch), func(b *testing.B) {
				in := cnnInput(cm.shape, batch)
				sides := []func(){cnnBuiltin(b, cm.name+".onnx", in), cnnFloor(b, cm.name+".onnx", in)}
				compareSides(b, batch, sides)
			})
		}
	}
}

// compareSides times the built-in side and the floor side alternately and reports both and
// their ratio (built-in cost over floor cost).
func compareSides(b *testing.B, batch int, sides []func()) {
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
	}
	b.ReportMetric(float64(p50[0])/float64(p50[1]), "ratio")
}

// TestCNNFloorAgrees checks that the floor computes what the runtime does, so that the
// benchmark compares equal work.
func TestCNNFloorAgrees(t *testing.T) {
	for _, cm := range cnnBenchModels {
		in := cnnInput(cm.shape, 2)
		_, data := loadTestModel(t, cm.name+".onnx")
		model, err := Load(data)
		if err != nil {
			t.Fatal(err)
		}
		res, err := model.Run(context.Background(), []Tensor{in})
		if err != nil {
			t.Fatal(err)
		}
		floor := cnnFloorOutput(t, cm.name+".onnx", in)
		if !near(res.Outputs[0].Data, floor, 1e-4) {
			t.Errorf("%s: runtime %v, floor %v", cm.name, res.Outputs[0].Data[:10], floor[:10])
		}
		res.Release()
	}
}

// cnnFloorOutput runs the floor once and returns its logits.
func cnnFloorOutput(t *testing.T, file string, in Tensor) []float32 {
	var out []float32
	f := cnnFloorWithOutput(t, file, in, &out)
	f()
	return out
}

// TestCNNSteadyStateAllocs checks that a warm model runs the CNNs without allocating: the
// im2col matrices and every intermediate come from the model's pool.
func TestCNNSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under -race sync.Pool drops items on purpose")
	}
	for _, file := range []string{"small_cnn.onnx", "small_cnn_bn.onnx", "mobilenet.onnx", "mobilenet_bn.onnx"} {
		for _, batch := range []int{1, 8} {
			shape := cnnBenchModels[0].shape
			if file[0] == 'm' {
				shape = cnnBenchModels[1].shape
			}
			f := cnnBuiltin(t, file, cnnInput(shape, batch))
			f() // warm the pool
			if n := testing.AllocsPerRun(20, f); n > 1 {
				// One allocation is the Result itself (see Model.Run).
				t.Errorf("%s batch %d: %.1f allocations per run, want at most 1 (the Result)", file, batch, n)
			}
		}
	}
}
