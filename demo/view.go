package demo

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// viewWindow is how many seconds of points the view's rates and accuracies cover.
const viewWindow = 5

// nodeNow sums a node's last points for the view.
type nodeNow struct {
	rate, acc, conf, psi float64
	captured, spool      int
	version              string
}

func (n *node) now() nodeNow {
	pts := n.series.Points
	if len(pts) == 0 {
		return nodeNow{acc: math.NaN(), conf: math.NaN(), psi: math.NaN()}
	}
	last := pts[len(pts)-1]
	out := nodeNow{psi: last.PSI, captured: last.Captured, spool: last.Spool, version: last.Version}
	var t Tally
	k := max(0, len(pts)-viewWindow)
	for _, p := range pts[k:] {
		if p.Requests > 0 {
			t.add(Tally{N: p.Requests, Correct: int(math.Round(p.Accuracy * float64(p.Requests))), Confidence: p.Confidence * float64(p.Requests)})
		}
	}
	out.rate = float64(t.N) / float64(len(pts)-k)
	out.acc, out.conf = t.Accuracy(), t.MeanConfidence()
	return out
}

func num(v float64, format string) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// render draws the live view, or prints a progress line every five seconds.
func (d *demo) render(now time.Time) {
	t := now.Sub(d.started)
	if !d.cfg.Live {
		if now.Sub(d.lastLine) < 5*time.Second {
			return
		}
		d.lastLine = now
		var parts []string
		for _, n := range d.nodes {
			s := n.now()
			parts = append(parts, fmt.Sprintf("%s v%s acc %s conf %s psi %s cap %d", n.name, s.version,
				num(s.acc, "%.2f"), num(s.conf, "%.2f"), num(s.psi, "%.2f"), s.captured))
		}
		d.say("%7s  %s | labelled %d", fmtDur(t), strings.Join(parts, " | "), d.labels.labelled.Load())
		return
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J") // home, clear screen
	fmt.Fprintf(&b, "edgeloop demo  %s   deadline %s", fmtDur(t), fmtDur(d.cfg.Deadline))
	switch {
	case d.servedAt.IsZero():
		b.WriteString("   waiting for the nodes to serve the base model")
	case d.onset.IsZero():
		fmt.Fprintf(&b, "   drift in %s", fmtDur(d.cfg.DriftAfter-now.Sub(d.servedAt)))
	default:
		fmt.Fprintf(&b, "   drift since %s", fmtDur(d.onset.Sub(d.started)))
	}
	fmt.Fprintf(&b, "\n\n%-8s %-6s %-8s %7s %9s %11s %6s %9s %6s\n", "node", "drift", "version", "img/s", "accuracy", "confidence", "PSI", "captured", "spool")
	for _, n := range d.nodes {
		s := n.now()
		drift := "-"
		if n.drifted {
			drift = "yes"
			if d.onset.IsZero() {
				drift = "soon"
			}
		}
		fmt.Fprintf(&b, "%-8s %-6s %-8s %7.0f %9s %11s %6s %9d %6d\n", n.name, drift, s.version, s.rate,
			num(s.acc, "%.3f"), num(s.conf, "%.3f"), num(s.psi, "%.3f"), s.captured, s.spool)
	}
	fmt.Fprintf(&b, "\nlabelled %d samples   collector shards uploaded %.0f\n", d.labels.labelled.Load(),
		metricSum(d.coll.Registry(), "edgeloop_collector_shard_uploads_total"))
	b.WriteString("\nretrain jobs:\n")
	jobs := d.ctrl.Jobs()
	if len(jobs) == 0 {
		b.WriteString("  none yet\n")
	}
	for _, j := range jobs {
		line := fmt.Sprintf("  %-16s %-11s trigger %s", j.ID, j.Phase, j.Trigger.Source)
		if j.Gate != nil {
			line += fmt.Sprintf("   gate: candidate %.3f", j.Gate.Candidate.Accuracy)
			if j.Gate.Current != nil {
				line += fmt.Sprintf(" vs serving %.3f", j.Gate.Current.Accuracy)
			}
		}
		if j.Version > 0 {
			line += fmt.Sprintf("   published version %d", j.Version)
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\nevents:\n")
	d.mu.Lock()
	ev := d.timeline.Events
	d.mu.Unlock()
	for _, e := range ev[max(0, len(ev)-8):] {
		who := ""
		if e.Node != "" {
			who = e.Node + " "
		}
		fmt.Fprintf(&b, "  %6s  %s%s\n", fmtDur(e.T), who, e.Text)
	}
	d.mu.Lock()
	fmt.Fprint(d.out, b.String())
	d.mu.Unlock()
}
