package observe

import (
	"errors"
	"fmt"
	"math"

	"github.com/edgeloop/edgeloop/internal/modelrepo"
)

// The drift signals beyond confidence (docs/drift.md): the predicted-class mix and the input
// statistics, each a window compared with the reference the gate stored in the manifest. A
// Model keeps a *classMix and an *inputDrift only when the signal is on and the manifest has
// its reference, so that off costs one nil check on the request path. The Model's mutex
// guards both.

// classMix is the window of predicted classes.
type classMix struct {
	ring   []int32
	next   int
	filled int
	counts []uint32
	ref    []float64 // reference shares, summing to 1
}

func newClassMix(window int, ref []float64) *classMix {
	c := &classMix{ring: make([]int32, window), counts: make([]uint32, len(ref)), ref: make([]float64, len(ref))}
	var sum float64
	for _, v := range ref {
		sum += v
	}
	for i, v := range ref {
		c.ref[i] = v / sum
	}
	return c
}

func (c *classMix) add(class int32) {
	if c.filled == len(c.ring) {
		c.counts[c.ring[c.next]]--
	} else {
		c.filled++
	}
	c.ring[c.next] = class
	if c.next++; c.next == len(c.ring) {
		c.next = 0
	}
	c.counts[class]++
}

// distance is the Jensen-Shannon distance of the window's class shares to the reference's,
// or NaN until the window is full.
func (c *classMix) distance() float64 {
	if c.filled < len(c.ring) {
		return math.NaN()
	}
	return jsDistance(c.counts, c.filled, c.ref)
}

// jsDistance is the Jensen-Shannon distance √JSD, with JSD in bits, of counts (summing to n)
// against shares ref: 0 for equal distributions, 1 for disjoint ones. Unlike the PSI it is
// bounded and needs no floor for empty classes, which a class mix has plenty of.
func jsDistance(counts []uint32, n int, ref []float64) float64 {
	var jsd float64
	for i, c := range counts {
		p, q := float64(c)/float64(n), ref[i]
		m := (p + q) / 2
		if p > 0 {
			jsd += p / 2 * math.Log2(p/m)
		}
		if q > 0 {
			jsd += q / 2 * math.Log2(q/m)
		}
	}
	return math.Sqrt(max(jsd, 0))
}

// maxChannels bounds the per-sample summary kept on the stack; modelrepo allows no more.
const maxChannels = 64

// inputDrift is the window of per-sample input summaries: each channel's mean and mean square,
// and the sketch bin of each random projection.
type inputDrift struct {
	width, channels, per int
	ref                  []modelrepo.ChannelStats

	vecsT  []float32   // width × projections: modelrepo.ProjectionVectors transposed, for one pass
	edges  [][]float64 // per projection, the reference's inner bin edges
	sketch [][]float64 // per projection, the reference's shares per bin
	bins   int

	moments []float32 // window × 2·channels: mean, mean square of each channel
	binRing []uint8   // window × projections
	counts  []uint32  // projections × bins
	next    int
	filled  int
	window  int
}

func newInputDrift(window int, sampleShape []int64, ref *modelrepo.InputReference) (*inputDrift, error) {
	width := 1
	for _, d := range sampleShape {
		if d < 1 {
			return nil, fmt.Errorf("input signals: sample shape %v is not fixed", sampleShape)
		}
		width *= int(d)
	}
	if len(sampleShape) == 0 || width > 1<<24 {
		return nil, fmt.Errorf("input signals: sample shape %v: want 1 to %d values", sampleShape, 1<<24)
	}
	channels := modelrepo.InputChannels(sampleShape)
	if channels != len(ref.Channels) || channels > maxChannels {
		return nil, fmt.Errorf("input signals: the reference has %d channels, the input shape %v has %d", len(ref.Channels), sampleShape, channels)
	}
	d := &inputDrift{
		width: width, channels: channels, per: width / channels, ref: ref.Channels,
		moments: make([]float32, window*2*channels), window: window,
	}
	if p := ref.Projections; p != nil {
		if len(p.Edges) > 255/4 || len(p.Histograms) != len(p.Edges) || len(p.Edges) == 0 {
			return nil, errors.New("input signals: malformed projection reference")
		}
		d.bins = len(p.Histograms[0])
		if d.bins > 255 {
			return nil, errors.New("input signals: too many sketch bins")
		}
		np := len(p.Edges)
		vecs := modelrepo.ProjectionVectors(p.Seed, np, width)
		d.vecsT = make([]float32, width*np)
		for j := range np {
			for i := range width {
				d.vecsT[i*np+j] = vecs[j*width+i]
			}
		}
		d.edges, d.sketch = p.Edges, p.Histograms
		d.binRing = make([]uint8, window*len(p.Edges))
		d.counts = make([]uint32, len(p.Edges)*d.bins)
	}
	return d, nil
}

// inputSummary is one sample's summary, worked out before taking the lock.
type inputSummary struct {
	moments [2 * maxChannels]float32
	bins    [modelrepo.MaxProjections]uint8
}

// summarize measures one sample of width values in one pass over it: the moments of each
// channel and the projections together, so the sample is read once (the 4 projections of the
// gate's references have a loop of their own, unrolled).
func (d *inputDrift) summarize(x []float32, s *inputSummary) {
	x = x[:d.width]
	inv := 1 / float32(d.per)
	np := len(d.edges)
	var proj [modelrepo.MaxProjections]float32
	for c := range d.channels {
		var sum, sq float32
		lo, hi := c*d.per, (c+1)*d.per
		switch np {
		case 0:
			for _, v := range x[lo:hi] {
				sum += v
				sq += v * v
			}
		case 4:
			p0, p1, p2, p3 := proj[0], proj[1], proj[2], proj[3]
			vt := d.vecsT[lo*4 : hi*4]
			for i, v := range x[lo:hi] {
				sum += v
				sq += v * v
				w := vt[i*4 : i*4+4 : i*4+4]
				p0 += w[0] * v
				p1 += w[1] * v
				p2 += w[2] * v
				p3 += w[3] * v
			}
			proj[0], proj[1], proj[2], proj[3] = p0, p1, p2, p3
		default:
			for i, v := range x[lo:hi] {
				sum += v
				sq += v * v
				w := d.vecsT[(lo+i)*np : (lo+i+1)*np]
				for j, wj := range w {
					proj[j] += wj * v
				}
			}
		}
		s.moments[2*c], s.moments[2*c+1] = sum*inv, sq*inv
	}
	for j := range np {
		s.bins[j] = uint8(modelrepo.SketchBin(d.edges[j], float64(proj[j])))
	}
}

// add puts a summary into the window, evicting the oldest when full. The caller holds the lock.
func (d *inputDrift) add(s *inputSummary) {
	p := len(d.edges)
	if d.filled == d.window {
		for j, b := range d.binRing[d.next*p : (d.next+1)*p] {
			d.counts[j*d.bins+int(b)]--
		}
	} else {
		d.filled++
	}
	copy(d.moments[d.next*2*d.channels:(d.next+1)*2*d.channels], s.moments[:2*d.channels])
	for j := range p {
		b := s.bins[j]
		d.binRing[d.next*p+j] = b
		d.counts[j*d.bins+int(b)]++
	}
	if d.next++; d.next == d.window {
		d.next = 0
	}
}

// inputSignals is what the scrape exports of the input window.
type inputSignals struct {
	meanShift, stdRatio []float64 // per channel; NaN where the reference's std is 0
	sketchPSI           []float64 // per projection
}

// signals computes the input signals, or reports false until the window is full. The caller
// holds the lock; the scrape pays for the sums, O(window × channels), so that the request
// path only writes the ring.
func (d *inputDrift) signals() (inputSignals, bool) {
	if d.filled < d.window {
		return inputSignals{}, false
	}
	var out inputSignals
	for c := range d.channels {
		var mean, sq float64
		for i := range d.filled {
			mean += float64(d.moments[i*2*d.channels+2*c])
			sq += float64(d.moments[i*2*d.channels+2*c+1])
		}
		mean /= float64(d.filled)
		sq /= float64(d.filled)
		std := math.Sqrt(max(sq-mean*mean, 0))
		r := d.ref[c]
		shift, ratio := math.NaN(), math.NaN()
		if r.Std > 0 {
			shift, ratio = (mean-r.Mean)/r.Std, std/r.Std
		}
		out.meanShift = append(out.meanShift, shift)
		out.stdRatio = append(out.stdRatio, ratio)
	}
	for j := range d.edges {
		out.sketchPSI = append(out.sketchPSI, psi(d.counts[j*d.bins:(j+1)*d.bins], d.filled, d.sketch[j]))
	}
	return out, true
}

// observeInput summarises each sample of a request's input and adds it to the window. Rows
// that are not whole samples (a model whose first input is not the one the reference
// describes) are ignored.
func (m *Model) observeInput(in []float32) {
	d := m.input
	if len(in) == 0 || len(in)%d.width != 0 {
		return
	}
	var s inputSummary
	for off := 0; off < len(in); off += d.width {
		d.summarize(in[off:off+d.width], &s)
		m.mu.Lock()
		d.add(&s)
		m.mu.Unlock()
	}
}
