package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// writeTables prints the result as the Markdown docs/benchmarks.md holds: per condition,
// recovered accuracy against uploads per arm with 95% intervals, then the uploads each arm
// needs to reach random's accuracy at the largest budget.
func writeTables(w io.Writer, r *Result) {
	o := r.Options
	last := len(o.Budgets) - 1
	fmt.Fprintf(w, "%d seeds, budgets %v, stream of %d frames (mean %.1f per item) over %d nodes, %d drifted and %d clean test images per seed; "+
		"fine-tune: %d epoch(s) at lr %g on %d replayed clean images + each upload ×%d; %.0f s on %d cores (load average at the end %s)\n\n",
		o.Seeds, o.Budgets, o.Stream, o.Burst, o.Nodes, o.Test, o.Clean, o.Epochs, o.LR, o.Replay, o.Repeat, r.Seconds, r.Cores, r.LoadAverage)
	for _, c := range r.Conditions {
		fmt.Fprintf(w, "**%s** (%s; class mix %s): base model %.3f on drifted test images [%.3f, %.3f], %.3f clean; stream error %.3f\n\n",
			c.Name, c.Drift, c.Mix, c.BaseDrifted.Mean, c.BaseDrifted.Lo, c.BaseDrifted.Hi, c.BaseClean.Mean, c.StreamError)
		fmt.Fprint(w, "| strategy |")
		for _, b := range o.Budgets {
			fmt.Fprintf(w, " %d uploads |", b)
		}
		fmt.Fprintf(w, " Δ vs random at %d (paired) | clean at %d | base wrong / repeats in uploads at %d | uploads to reach %.3f |\n", o.Budgets[last], o.Budgets[last], o.Budgets[last], c.Target)
		fmt.Fprint(w, "| --- |")
		for range o.Budgets {
			fmt.Fprint(w, " --- |")
		}
		fmt.Fprintln(w, " --- | --- | --- | --- |")
		for _, a := range c.Arms {
			fmt.Fprintf(w, "| %s |", a.Label())
			for _, p := range a.Points {
				fmt.Fprintf(w, " %.3f ± %.3f |", p.Drifted.Mean, p.Drifted.Hi-p.Drifted.Mean)
			}
			p := a.Points[last]
			fmt.Fprintf(w, " %+.3f [%+.3f, %+.3f] | %.3f | %.2f / %.2f | %s |\n", p.VsRandom.Mean, p.VsRandom.Lo, p.VsRandom.Hi, p.Clean.Mean, p.Wrong, p.Repeats, toTarget(a, o.Budgets[last]))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Uploads needed to reach random capture's accuracy at %d uploads, as a share of %d (goal ≤ 0.50; \"—\" never within the budgets):\n\n", o.Budgets[last], o.Budgets[last])
	fmt.Fprint(w, "| strategy |")
	for _, c := range r.Conditions {
		fmt.Fprintf(w, " %s |", c.Name)
	}
	fmt.Fprint(w, "\n| --- |")
	for range r.Conditions {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	if len(r.Conditions) == 0 {
		return
	}
	for ai, a := range r.Conditions[0].Arms {
		fmt.Fprintf(w, "| %s |", a.Label())
		for _, c := range r.Conditions {
			u := c.Arms[ai].UploadsToTarget
			if u == 0 {
				fmt.Fprint(w, " — |")
			} else {
				fmt.Fprintf(w, " %.2f |", u/float64(o.Budgets[last]))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func toTarget(a Arm, largest int) string {
	if a.UploadsToTarget == 0 {
		return fmt.Sprintf("> %d", largest)
	}
	return fmt.Sprintf("%.0f (%.2f×)", a.UploadsToTarget, a.UploadsToTarget/float64(largest))
}

// colours of the strategies, in strategies() order; the dedup arm of a strategy is its
// dashed twin.
var colours = []string{"#444444", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"}

// writePlots writes sampling-CONDITION.svg into dir for every condition: recovered accuracy
// on drifted test images against uploads (log scale), one line per arm with its 95% interval
// as bars, the base model's accuracy and random's accuracy at the largest budget as dotted
// lines.
func writePlots(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range r.Conditions {
		if err := os.WriteFile(filepath.Join(dir, "sampling-"+c.Name+".svg"), []byte(plot(c, r.Options)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func plot(c ConditionResult, o options) string {
	const w, h, left, top, pw, ph = 760, 420, 60, 40, 480, 320
	lo, hi := c.BaseDrifted.Mean, c.Target
	for _, a := range c.Arms {
		for _, p := range a.Points {
			lo, hi = math.Min(lo, p.Drifted.Lo), math.Max(hi, p.Drifted.Hi)
		}
	}
	pad := (hi - lo) * 0.05
	lo, hi = lo-pad, hi+pad
	minB, maxB := math.Log(float64(o.Budgets[0])), math.Log(float64(o.Budgets[len(o.Budgets)-1]))
	x := func(u float64) float64 {
		if maxB == minB {
			return left + pw/2
		}
		return left + 20 + (math.Log(u)-minB)/(maxB-minB)*(pw-40)
	}
	y := func(v float64) float64 { return top + ph - (v-lo)/(hi-lo)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-weight="bold">%s (%s): drifted-test accuracy after one fine-tune, %d seeds, 95%% CI</text>`+"\n", left, c.Name, esc(c.Drift), o.Seeds)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	for i := 0; i <= 5; i++ {
		v := lo + (hi-lo)*float64(i)/5
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.3f</text>`+"\n", left-4, y(v)+4, v)
	}
	for _, bud := range o.Budgets {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(float64(bud)), top+ph+16, bud)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">uploads (log scale)</text>`+"\n", left+pw/2, top+ph+34)
	hline := func(v float64, colour, label string) {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="2 3"/>`+"\n", left, left+pw, y(v), y(v), colour)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" fill="%s">%s</text>`+"\n", left+4, y(v)-3, colour, label)
	}
	hline(c.BaseDrifted.Mean, "#c00", fmt.Sprintf("base model %.3f", c.BaseDrifted.Mean))
	hline(c.Target, "#444", fmt.Sprintf("random at %d: %.3f", o.Budgets[len(o.Budgets)-1], c.Target))
	for ai, a := range c.Arms {
		colour := colours[ai%len(colours)]
		dash := ""
		if a.Dedup {
			dash = ` stroke-dasharray="6 3"`
		}
		off := float64(ai%len(colours)-2)*3 + map[bool]float64{false: 0, true: 1.5}[a.Dedup] // spread the bars
		var pts []string
		for _, p := range a.Points {
			px := x(p.Uploads) + off
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, y(p.Drifted.Mean)))
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", px, px, y(p.Drifted.Lo), y(p.Drifted.Hi), colour)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", px, y(p.Drifted.Mean), colour)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), colour, dash)
		ly := top + 10 + ai*18
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+15, left+pw+45, ly, ly, colour, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+pw+50, ly+4, esc(a.Label()))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
