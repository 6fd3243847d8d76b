package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// plotFiles writes an SVG of two panels from run summaries, one point per run in order of
// nodes: the batch p99 latency (with the 1 s goal) and the collector's peak RSS (with the
// 512 MiB goal).
func plotFiles(out string, files []string) error {
	if len(files) == 0 {
		return fmt.Errorf("fleet: -plot needs JSON summaries as arguments")
	}
	var runs []Summary
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		var s Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("fleet: %s: %w", f, err)
		}
		runs = append(runs, s)
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Nodes < runs[j].Nodes })
	var b strings.Builder
	const w, h = 900, 340
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	lat := make([]float64, len(runs))
	rss := make([]float64, len(runs))
	for i, r := range runs {
		lat[i], rss[i] = r.BatchLatency.P99, r.Collector.RSSPeakMiB
	}
	panel(&b, runs, 20, "batch latency p99 (s, log scale), goal &lt; 1 s", lat, 1, "%.3g", true)
	panel(&b, runs, w/2+10, "collector peak RSS (MiB), goal ≤ 512", rss, 512, "%.0f", false)
	b.WriteString("</svg>\n")
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// panel draws one panel at x0: the values against the runs' node counts (evenly spaced, as
// the steps are), a dashed goal line and the value at each point. logY draws the values on a
// log scale in powers of ten, for latencies that span milliseconds to minutes.
func panel(b *strings.Builder, runs []Summary, x0 int, title string, vals []float64, goal float64, format string, logY bool) {
	const pw, ph, top, left = 400, 240, 40, 50
	top0 := math.Max(goal*1.15, 0)
	for _, v := range vals {
		top0 = math.Max(top0, v*1.15)
	}
	y := func(v float64) float64 { return top + ph - v/top0*ph }
	ticks := []float64{0, top0 / 4, top0 / 2, top0 * 3 / 4, top0}
	if logY {
		lo, hi := goal/10, math.Max(goal, 1) // a decade under the goal, so its line shows
		for _, v := range vals {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		y = func(v float64) float64 {
			v = math.Max(v, lo)
			return top + ph - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*ph
		}
		ticks = ticks[:0]
		for t := lo; t <= hi*1.001; t *= 10 {
			ticks = append(ticks, t)
		}
	}
	x := func(i int) float64 {
		if len(runs) == 1 {
			return float64(x0+left) + pw/2
		}
		return float64(x0+left) + 20 + float64(i)*(pw-40)/float64(len(runs)-1)
	}
	fmt.Fprintf(b, `<text x="%d" y="20" font-weight="bold">%s</text>`+"\n", x0+left, title)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0+left, top, pw, ph)
	for _, v := range ticks {
		label := fmt.Sprintf(format, v)
		if logY {
			label = strconv.FormatFloat(v, 'f', -1, 64) // 0.01 … 1000, not 1e+03
		}
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0+left-4, y(v)+4, label)
	}
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="6 4"/>`+"\n", x0+left, x0+left+pw, y(goal), y(goal))
	var pts []string
	for i, r := range runs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(vals[i])))
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), top+ph+16, r.Nodes)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="#1f77b4"/>`+"\n", x(i), y(vals[i]))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">`+format+`</text>`+"\n", x(i), y(vals[i])-8, vals[i])
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2"/>`+"\n", strings.Join(pts, " "))
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">nodes (one 4 KiB sample/s each)</text>`+"\n", x0+left+pw/2, top+ph+34)
}
