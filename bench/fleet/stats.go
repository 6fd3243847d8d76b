package main

import (
	"math"
	"sync/atomic"
	"time"
)

// histBuckets covers 1 µs to about 20 minutes in steps of 1 %: bucket i holds durations whose
// ln(µs+1)·100 rounds down to i. Quantiles are then within 1 % of the exact value, and
// recording is one atomic add, which 10,000 nodes' goroutines can do without a lock.
const histBuckets = 2100

// hist is a log-bucketed latency histogram safe for concurrent use.
type hist struct {
	counts [histBuckets]atomic.Int64
	n      atomic.Int64
	max    atomic.Int64 // µs
}

func (h *hist) add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	i := min(int(math.Log(float64(us)+1)*100), histBuckets-1)
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// quantile returns the q-quantile in seconds (the upper edge of its bucket), 0 when empty.
func (h *hist) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			us := math.Exp(float64(i+1)/100) - 1
			return math.Min(us, float64(h.max.Load())) / 1e6
		}
	}
	return float64(h.max.Load()) / 1e6
}

// Latency is a latency distribution in the summary, in seconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func (h *hist) summary() Latency {
	return Latency{Count: h.n.Load(), P50: h.quantile(0.50), P99: h.quantile(0.99), P999: h.quantile(0.999),
		Max: float64(h.max.Load()) / 1e6}
}

// recorder collects what the nodes see. The window histograms count acknowledgements in the
// measured window only (after the ramp, before the arrivals stop); interval ones are swapped
// for each progress line.
type recorder struct {
	offered  atomic.Int64 // samples generated
	acked    atomic.Int64 // samples acknowledged
	shed     atomic.Int64 // samples not queued: the fleet's queues were full
	queued   atomic.Int64 // bytes of records queued in memory
	measured atomic.Bool  // inside the measured window

	// The lite senders' requests (the real senders count theirs in their metrics).
	batches, retries atomic.Int64
	fails            failures

	windowSample, windowBatch atomic.Pointer[hist]
	tickSample, tickBatch     atomic.Pointer[hist]
}

func newRecorder() *recorder {
	r := &recorder{}
	r.windowSample.Store(&hist{})
	r.windowBatch.Store(&hist{})
	r.tickSample.Store(&hist{})
	r.tickBatch.Store(&hist{})
	return r
}

func (r *recorder) sample(d time.Duration) {
	r.tickSample.Load().add(d)
	if r.measured.Load() {
		r.windowSample.Load().add(d)
	}
}

func (r *recorder) batch(d time.Duration) {
	r.tickBatch.Load().add(d)
	if r.measured.Load() {
		r.windowBatch.Load().add(d)
	}
}

// tick returns the interval's histograms and starts new ones.
func (r *recorder) tick() (sample, batch *hist) {
	return r.tickSample.Swap(&hist{}), r.tickBatch.Swap(&hist{})
}
