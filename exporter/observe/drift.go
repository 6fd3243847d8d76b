package observe

import (
	"math"
	"slices"
)

// PSIEpsilon is the floor each bin's proportion is raised to before the PSI is computed, so an
// empty bin contributes a large but finite term instead of an infinite one:
//
//	PSI = Σ_i (w_i − r_i) · ln(w_i / r_i),  w_i = max(W_i/N, ε),  r_i = max(R_i, ε),  ε = 1e-4
//
// where W_i is the window's count in bin i, N the window's size and R_i the reference's
// proportion. Bins empty on both sides contribute 0, and proportions of at least ε are not
// altered (unlike additive smoothing), so the PSI of two populated histograms is exact.
const PSIEpsilon = 1e-4

// A drift entry packs what the window keeps of one prediction into 32 bits: the confidence bin
// (≤ 99, 7 bits) above the top-1 probability in fixed point with 24 fractional bits (25 bits,
// since 1.0 itself is 1<<24). Integer sums of the fixed-point values are exact, so the running
// sum behind the estimated accuracy can add the new and subtract the evicted value forever
// without the drift a float64 running sum would accumulate; rounding costs ≤ 3e-8 a value.
const (
	fixedShift = 24
	fixedOne   = 1 << fixedShift
	binShift   = fixedShift + 1
	fixedMask  = 1<<binShift - 1
)

// Every bin index must fit in the bits above the fixed-point value; this fails to compile if
// maxBins outgrows them.
const _ uint = 1<<(32-binShift) - maxBins

func newEntry(bin int, top1 float64) uint32 {
	return uint32(bin)<<binShift | uint32(top1*fixedOne+0.5)
}

// drift is a model version's window and reference. The Model's mutex guards it.
type drift struct {
	ring   []uint32 // the last len(ring) entries; ring[next] is the oldest once full
	next   int
	filled int      // entries in the ring, up to len(ring)
	counts []uint32 // window histogram: entries per bin
	sum    uint64   // Σ fixed-point top-1 probabilities in the window

	refCounts []uint32  // the reference being learned; nil when it came from the manifest
	refLeft   int       // predictions still to learn; 0 when the reference is ready
	ref       []float64 // reference proportions per bin, written once, when ready
}

func newDrift(cfg DriftConfig, reference []float64) drift {
	d := drift{
		ring:   make([]uint32, cfg.Window),
		counts: make([]uint32, cfg.Bins),
		ref:    make([]float64, cfg.Bins),
	}
	if reference == nil {
		d.refCounts = make([]uint32, cfg.Bins)
		d.refLeft = cfg.ReferenceSamples
		return d
	}
	var sum float64
	for _, v := range reference {
		sum += v
	}
	for i, v := range reference {
		d.ref[i] = v / sum
	}
	return d
}

// add puts one entry into the window, evicting the oldest when full, in O(1).
func (d *drift) add(e uint32) {
	bin := e >> binShift
	if d.filled == len(d.ring) {
		old := d.ring[d.next]
		d.counts[old>>binShift]--
		d.sum -= uint64(old & fixedMask)
	} else {
		d.filled++
	}
	d.ring[d.next] = e
	if d.next++; d.next == len(d.ring) {
		d.next = 0
	}
	d.counts[bin]++
	d.sum += uint64(e & fixedMask)

	if d.refLeft > 0 {
		d.refCounts[bin]++
		if d.refLeft--; d.refLeft == 0 {
			var total float64
			for _, c := range d.refCounts {
				total += float64(c)
			}
			for i, c := range d.refCounts {
				d.ref[i] = float64(c) / total
			}
		}
	}
}

// psi returns the PSI of window counts (summing to n) against reference proportions ref.
func psi(counts []uint32, n int, ref []float64) float64 {
	var s float64
	for i, c := range counts {
		w := max(float64(c)/float64(n), PSIEpsilon)
		r := max(ref[i], PSIEpsilon)
		s += (w - r) * math.Log(w/r)
	}
	return s
}

// DriftState is a snapshot of a model version's drift signals and the histograms behind them.
type DriftState struct {
	// Reference is the reference confidence histogram as proportions per bin (summing to 1),
	// in the form a model manifest stores it; nil while it is still being learned.
	Reference []float64
	// ReferenceRemaining is how many more predictions the learned reference needs (0 when it
	// is ready or came from the manifest).
	ReferenceRemaining int
	// Window is the window's confidence histogram as proportions per bin; nil when empty.
	Window []float64
	// WindowCount is how many predictions the window holds, up to drift.window.
	WindowCount int
	// PSI is the population stability index of Window against Reference, or NaN until the
	// reference is ready and the window is full.
	PSI float64
	// EstimatedAccuracy is the mean top-1 probability over the window (calibrated, when the
	// version has a temperature and drift.calibrated_accuracy is on), or NaN until the window
	// is full.
	EstimatedAccuracy float64
	// Temperature is the temperature EstimatedAccuracy is calibrated with; 1 when raw.
	Temperature float64
	// ClassMixDistance is the Jensen-Shannon distance of the window's class mix to the
	// reference's; NaN when the signal is off, has no reference, or its window is not full.
	ClassMixDistance float64
	// InputMeanShift, InputStdRatio (per channel) and InputSketchPSI (per projection) are
	// the input signals; nil when off, without a reference, or until their window is full.
	InputMeanShift, InputStdRatio, InputSketchPSI []float64
	// EmbeddingMMD is the embedding signal, as edgeloop_embedding_mmd exports it; NaN when
	// off, without a reference, or until its window is full.
	EmbeddingMMD float64
}

// Drift returns a snapshot of the model version's drift state: what the drift gauges export,
// and the reference histogram for writing into a model manifest.
func (m *Model) Drift() DriftState {
	st, emb := m.driftState()
	st.EmbeddingMMD = math.NaN()
	if d := m.embedding; emb != nil {
		// Its own copy of the window, so that it never shares the scrape's scratch.
		pts := emb
		if d.raw {
			pts = make([]float32, len(emb)/d.stride*d.dims)
			d.points(pts, emb)
		}
		st.EmbeddingMMD = d.mmd(pts)
	}
	return st
}

// driftState is Drift's work under the lock, and a copy of the embedding window when full.
func (m *Model) driftState() (DriftState, []float32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var emb []float32
	if d := m.embedding; d != nil && d.full() {
		emb = slices.Clone(d.ring)
	}
	st := DriftState{
		ReferenceRemaining: m.refLeft,
		WindowCount:        m.filled,
	}
	st.PSI, st.EstimatedAccuracy = m.signals()
	st.Temperature, st.ClassMixDistance = 1, math.NaN()
	if m.invT != 0 {
		st.Temperature = 1 / m.invT
	}
	if m.classMix != nil {
		st.ClassMixDistance = m.classMix.distance()
	}
	if m.input != nil {
		if in, ok := m.input.signals(); ok {
			st.InputMeanShift, st.InputStdRatio, st.InputSketchPSI = in.meanShift, in.stdRatio, in.sketchPSI
		}
	}
	if m.refLeft == 0 {
		st.Reference = append([]float64(nil), m.ref...)
	}
	if m.filled > 0 {
		st.Window = make([]float64, len(m.counts))
		for i, c := range m.counts {
			st.Window[i] = float64(c) / float64(m.filled)
		}
	}
	return st, emb
}

// signals computes the PSI and the estimated accuracy, NaN where not ready. Both wait for a
// full window: a partial one right after a load is a handful of requests, whose PSI is
// inflated by sampling noise alone and whose mean would raise false alerts. The caller holds
// the lock; the scrape does this work so the request path never takes a logarithm for drift.
func (d *drift) signals() (psiValue, accuracy float64) {
	if d.filled < len(d.ring) {
		return math.NaN(), math.NaN()
	}
	accuracy = float64(d.sum) / fixedOne / float64(d.filled)
	if d.refLeft > 0 {
		return math.NaN(), accuracy
	}
	return psi(d.counts, d.filled, d.ref), accuracy
}
