package demo

import (
	"math"
	"sort"
	"time"
)

// DefaultRecoveryShare is the share of the accuracy the drift took from the drifted nodes that
// they must regain for the demo to call the loop closed (Config.RecoveryShare).
const DefaultRecoveryShare = 0.9

// minRecoveryImages is how many classifications of images no retrain trained on (the probes)
// the recovery rule waits for on a new version before it judges it: fewer would be noise.
const minRecoveryImages = 200

// driftSignal is one of the exporter's drift signals and the threshold of the alert on it in
// alerts/rules/edgeloop-alerts.yml (TestDriftSignalThresholds keeps the two equal).
type driftSignal struct {
	name   string // as docs/drift.md names it
	metric string
	// of maps each of the node's series of the metric (one per channel for the input signals)
	// to what the alert compares; the alert takes the largest. nil: the value itself.
	of        func(float64) float64
	threshold float64
}

// driftSignals are the signals the demo watches, in the order docs/drift.md lists them.
func driftSignals() []driftSignal {
	return []driftSignal{
		{"confidence PSI", "edgeloop_confidence_psi", nil, 0.25},
		{"class mix", "edgeloop_class_mix_js_distance", nil, 0.2},
		{"input mean", "edgeloop_input_mean_shift", math.Abs, 0.5},
		{"input spread", "edgeloop_input_std_ratio", absLog, 0.405},
		{"input sketch", "edgeloop_input_sketch_psi", nil, 0.25},
		{"embedding distance", "edgeloop_embedding_mmd", nil, 0.1},
	}
}

// watchSignals records, for each drift signal, its first crossing of the threshold on a
// drifted node after the onset, as an event and in the summary.
func (d *demo) watchSignals(now time.Time) {
	if d.onset.IsZero() {
		return
	}
	for _, sig := range driftSignals() {
		if d.signalSeen(sig.name) {
			continue
		}
		for _, n := range d.nodes {
			if !n.drifted {
				continue
			}
			if v := gaugeMaxOf(n.exp.Registry(), sig.metric, sig.of); v > sig.threshold {
				d.summary.Signals = append(d.summary.Signals, SignalFired{Signal: sig.name, Node: n.name, After: now.Sub(d.onset), Value: v})
				d.event(EventSignal, n.name, sig.name+" crossed its alert's threshold")
				break
			}
		}
	}
}

func (d *demo) signalSeen(name string) bool {
	for _, s := range d.summary.Signals {
		if s.Signal == name {
			return true
		}
	}
	return false
}

// lost is the drifted nodes' accuracy before the drift and under it with the base model, on
// every image.
func (d *demo) lost() (before, drift float64) {
	var b, u Tally
	for _, n := range d.nodes {
		if n.drifted {
			b.add(n.gen.Total(d.summary.BaseVersion, false))
			u.add(n.gen.Total(d.summary.BaseVersion, true))
		}
	}
	return b.Accuracy(), u.Accuracy()
}

// regained is the share of the lost accuracy the drifted nodes have regained on version v,
// counted on the probe images only (never labelled, so never trained on), and how many
// classifications that counts.
func (d *demo) regained(v string) (share float64, images int) {
	before, drift := d.lost()
	var after Tally
	fresh := func(index int) bool { return !d.truth.Withheld(index) }
	for _, n := range d.nodes {
		if n.drifted {
			after.add(n.gen.TotalExcept(v, true, fresh))
		}
	}
	return regainedShare(before, drift, after.Accuracy()), after.N
}

// regainedShare is (after − drift) / (before − drift): 1 when the drifted accuracy is back where
// it was, 0 when a retrain changed nothing. NaN when the drift took nothing away.
func regainedShare(before, drift, after float64) float64 {
	if !(before > drift) || math.IsNaN(after) {
		return math.NaN()
	}
	return (after - drift) / (before - drift)
}

// recovered reports whether the drifted nodes, serving version v, have regained the
// configured share of the accuracy they lost, on enough images to tell.
func (d *demo) recovered(v string) bool {
	share, images := d.regained(v)
	return images >= minRecoveryImages && share >= d.cfg.RecoveryShare
}

// estimates is the mean of the drifted nodes' sampled accuracy estimates in the three phases:
// before the drift, under it with the base model, and on version after.
func (d *demo) estimates(after string) (before, drift, later float64) {
	var b, u, l mean
	onset := time.Duration(math.MaxInt64)
	if !d.onset.IsZero() {
		onset = d.onset.Sub(d.started)
	}
	for _, n := range d.nodes {
		if !n.drifted {
			continue
		}
		for _, p := range n.series.Points {
			switch {
			case p.Version == d.summary.BaseVersion && p.T < onset:
				b.add(p.Estimated)
			case p.Version == d.summary.BaseVersion:
				u.add(p.Estimated)
			case after != "" && p.Version == after:
				l.add(p.Estimated)
			}
		}
	}
	return b.value(), u.value(), l.value()
}

// mean is a running mean that skips NaN (no estimate yet).
type mean struct {
	sum float64
	n   int
}

func (m *mean) add(v float64) {
	if !math.IsNaN(v) {
		m.sum += v
		m.n++
	}
}

func (m mean) value() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return m.sum / float64(m.n)
}

// sortSignals orders fired signals earliest first (ties by the order driftSignals lists them).
func sortSignals(s []SignalFired) {
	order := map[string]int{}
	for i, sig := range driftSignals() {
		order[sig.name] = i
	}
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].After != s[j].After {
			return s[i].After < s[j].After
		}
		return order[s[i].Signal] < order[s[j].Signal]
	})
}

// absLog is |ln v|, a ratio's distance from 1 either way; NaN for v ≤ 0, which has none.
func absLog(v float64) float64 {
	if v <= 0 {
		return math.NaN()
	}
	return math.Abs(math.Log(v))
}
