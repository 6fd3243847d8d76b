// Command runtime measures the built-in ONNX runtime on model files, for bench/runtime/compare.py,
// which puts the numbers beside PyTorch's on the same models and thread count.
//
//	go run ./bench/runtime -dir DIR -models mlp,small_cnn,mobilenet -threads 1
//
// For each DIR/<model>.onnx it prints one JSON line: the p50 latency of single-row requests
// (batch 1) and the throughput in rows per second at batch 32, with random inputs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/edgeloop/edgeloop/internal/runtime/builtin"
)

type result struct {
	Model      string  `json:"model"`
	Threads    int     `json:"threads"`
	P50Micros  float64 `json:"p50_us_batch1"`
	RowsPerSec float64 `json:"rows_per_s_batch32"`
}

func main() {
	dir := flag.String("dir", ".", "directory of the <model>.onnx files")
	models := flag.String("models", "mlp,small_cnn,mobilenet", "comma-separated model names")
	threads := flag.Int("threads", 1, "GOMAXPROCS: the cores the process may use")
	seconds := flag.Float64("seconds", 3, "measuring time per model and batch size")
	flag.Parse()
	runtime.GOMAXPROCS(*threads)
	enc := json.NewEncoder(os.Stdout)
	for _, name := range strings.Split(*models, ",") {
		r, err := measure(filepath.Join(*dir, name+".onnx"), time.Duration(*seconds*float64(time.Second)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "runtime: %s: %v\n", name, err)
			os.Exit(1)
		}
		r.Model, r.Threads = name, *threads
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func measure(path string, d time.Duration) (result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return result{}, err
	}
	m, err := builtin.Load(data)
	if err != nil {
		return result{}, err
	}
	var r result
	for _, batch := range []int{1, 32} {
		in := m.Inputs()[0]
		shape := slices.Clone(in.Shape)
		shape[0] = int64(batch)
		n := int64(1)
		for _, s := range shape {
			n *= s
		}
		x := make([]float32, n)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		inputs := []builtin.Tensor{{Shape: shape, Data: x}}
		run := func() error {
			res, err := m.Run(context.Background(), inputs)
			if err != nil {
				return err
			}
			res.Release()
			return nil
		}
		for range 10 { // warm the pool
			if err := run(); err != nil {
				return result{}, err
			}
		}
		var lat []time.Duration
		start := time.Now()
		for time.Since(start) < d {
			t := time.Now()
			if err := run(); err != nil {
				return result{}, err
			}
			lat = append(lat, time.Since(t))
		}
		if batch == 1 {
			slices.Sort(lat)
			r.P50Micros = float64(lat[len(lat)/2].Nanoseconds()) / 1e3
		} else {
			var total time.Duration
			for _, l := range lat {
				total += l
			}
			r.RowsPerSec = float64(batch*len(lat)) / total.Seconds()
		}
	}
	return r, nil
}
