package demo

import (
	"html/template"
	"math"
	"slices"
	"strings"
	"time"
)

// This file lays the report's SVG charts out: the view model the template reads, and where
// every axis, tick, series, event marker and label goes. report.go turns a run into that view
// and formats its values; report.html draws it.

// --- view model -------------------------------------------------------------------------

type reportView struct {
	Started  string
	Summary  *Summary
	Rows     []reportRow
	Charts   []reportChart
	Keys     []reportKey
	Events   []reportEventRow
	Nodes    []reportNodeRow
	Timeline template.JS
}

type reportRow struct{ Label, Value string }

type reportKey struct{ Kind, Label, Color string }

type reportEventRow struct{ Time, Kind, Node, Text, Color string }

type reportNodeRow struct {
	Node, Color, Version              string
	Drifted                           bool
	Points, Requests, Captured, Spool int
}

type reportChart struct {
	ID, Title, YLabel string
	W, H              int
	// Plot area.
	Left, Right, Top, Bottom string
	TickX, XTickY            string
	XTicks, YTicks           []reportTick
	XLabelX, XLabelY         string
	YLabelX, YLabelY         string
	Series                   []reportSeries
	Markers                  []reportMarker
	Threshold                *reportThreshold
	Legend                   []reportLegend
}

type reportTick struct{ Pos, Label string }

type reportSeries struct {
	Node, Color, Dash string
	Drifted           bool
	Lines             []string    // polyline points attributes, one per run of finite values
	Dots              [][2]string // isolated finite points (a one-point run)
}

type reportMarker struct {
	Kind, Text, Label, Color string
	Width, Opacity           string
	X, Y1, Y2                string
	LabelX, LabelY, Anchor   string
	HasLabel                 bool
}

type reportThreshold struct{ X1, X2, Y, LabelX, LabelY, Label string }

type reportLegend struct {
	Node, Color, Dash           string
	Drifted                     bool
	X1, X2, LineY, TextX, TextY string
}

// --- layout -----------------------------------------------------------------------------

const (
	repWidth      = 960
	repLeft       = 60
	repRight      = 20
	repPlotH      = 240
	repRowH       = 12 // height of one row of event labels
	repMaxRows    = 5  // rows of event labels before labels are dropped (tooltips stay)
	repCharW      = 6  // estimated width of a label character at 10px
	repLegendRowH = 18
)

// reportLayout is what the three charts share: the time axis, the event markers' places and
// the legend.
type reportLayout struct {
	tl        *Timeline
	xmax      float64 // seconds
	events    []Event // in time order
	labels    []repPlacedLabel
	rows      int
	top       float64 // plot area's top
	legend    []reportLegend
	legendTop float64
	height    int
}

type repPlacedLabel struct {
	text   string
	x      float64 // text anchor position
	anchor string
	row    int // -1: no room
}

func newReportLayout(tl *Timeline) *reportLayout {
	l := &reportLayout{tl: tl, xmax: 0}
	for _, n := range tl.Nodes {
		for _, p := range n.Points {
			l.xmax = max(l.xmax, p.T.Seconds())
		}
	}
	l.events = slices.Clone(tl.Events)
	slices.SortStableFunc(l.events, func(a, b Event) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	})
	for _, e := range l.events {
		l.xmax = max(l.xmax, e.T.Seconds())
	}
	if !(l.xmax > 0) || math.IsInf(l.xmax, 0) {
		l.xmax = 1
	}
	l.placeLabels()
	l.top = 16 + float64(max(l.rows, 1))*repRowH
	// The legend goes under the x axis, wrapped to the plot's width.
	l.legendTop = l.top + repPlotH + 44
	x, y := float64(repLeft), l.legendTop
	for i, n := range tl.Nodes {
		wd := 34 + float64(len([]rune(n.Node))+10)*repCharW
		if x > repLeft && x+wd > repWidth-repRight {
			x, y = repLeft, y+repLegendRowH
		}
		l.legend = append(l.legend, reportLegend{
			Node: n.Node, Color: repNodeColor(i), Dash: repDash(n.Drifted), Drifted: n.Drifted,
			X1: repF(x), X2: repF(x + 26), LineY: repF(y), TextX: repF(x + 32), TextY: repF(y + 4),
		})
		x += wd
	}
	l.height = int(math.Ceil(y + repLegendRowH))
	return l
}

func (l *reportLayout) x(t time.Duration) float64 {
	s := min(max(t.Seconds(), 0), l.xmax)
	return repLeft + s/l.xmax*float64(repWidth-repLeft-repRight)
}

// placeLabels gives every event's label a row above the plot, right or left of its marker,
// so that no two labels overlap and, where it can, no other event's line (which rises to its
// own label's row) crosses a label; thin serving lines may cross labels. The important events
// are placed first, where needed with lines crossing their labels; the (possibly many) serving
// events after, and a serving label with no room is left out (the marker keeps its tooltip).
func (l *reportLayout) placeLabels() {
	l.labels = make([]repPlacedLabel, len(l.events))
	type placed struct {
		x, a, b float64 // the marker's x, the label's extent
		row     int
		strong  bool // its line is drawn boldly
	}
	var done []placed
	fits := func(c placed, strict bool) bool {
		if c.a < 2 || c.b > repWidth-2 {
			return false
		}
		for _, p := range done {
			switch {
			case p.row == c.row && c.a < p.b+6 && p.a < c.b+6: // labels overlap
				return false
			case !strict:
			case p.strong && p.row >= c.row && p.x >= c.a-1 && p.x <= c.b+1: // p's line crosses c's label
				return false
			case c.strong && c.row >= p.row && c.x >= p.a-1 && c.x <= p.b+1: // c's line crosses p's label
				return false
			}
		}
		return true
	}
	place := func(i int) {
		e := l.events[i]
		text := repEventLabel(e)
		w := float64(len([]rune(text))) * repCharW
		x := l.x(e.T)
		strong := e.Kind != EventServing
		l.labels[i] = repPlacedLabel{text: text, row: -1}
		modes := []bool{true} // strict; then, for important events, relaxed
		if strong {
			modes = append(modes, false)
		}
		for _, strict := range modes {
			for r := range repMaxRows {
				for _, right := range []bool{true, false} {
					c := placed{x: x, a: x + 3, b: x + 3 + w, row: r, strong: strong}
					pl := repPlacedLabel{text: text, x: x + 3, anchor: "start", row: r}
					if !right {
						c.a, c.b = x-3-w, x-3
						pl.x, pl.anchor = x-3, "end"
					}
					if fits(c, strict) {
						done = append(done, c)
						l.labels[i] = pl
						l.rows = max(l.rows, r+1)
						return
					}
				}
			}
		}
	}
	for i, e := range l.events {
		if e.Kind != EventServing {
			place(i)
		}
	}
	for i, e := range l.events {
		if e.Kind == EventServing {
			place(i)
		}
	}
}

// chart lays one chart out: value picks the plotted number from a point, the y axis runs
// from ymin to ymax, and threshold (when > 0) is drawn as the drift threshold.
func (l *reportLayout) chart(id, title, ylabel string, value func(Point) float64, ymin, ymax, threshold float64) reportChart {
	plotW := float64(repWidth - repLeft - repRight)
	bottom := l.top + repPlotH
	y := func(v float64) float64 {
		v = min(max(v, ymin), ymax)
		return bottom - (v-ymin)/(ymax-ymin)*repPlotH
	}
	c := reportChart{
		ID: id, Title: title, YLabel: ylabel, W: repWidth, H: l.height,
		Left: repF(repLeft), Right: repF(repLeft + plotW), Top: repF(l.top), Bottom: repF(bottom),
		TickX: repF(repLeft - 6), XTickY: repF(bottom + 14),
		XLabelX: repF(repLeft + plotW/2), XLabelY: repF(bottom + 34),
		YLabelX: repF(14), YLabelY: repF(l.top + repPlotH/2),
		Legend: l.legend,
	}
	step := repNiceStep(l.xmax / 8)
	for t := 0.0; t <= l.xmax+step*1e-9; t += step {
		c.XTicks = append(c.XTicks, reportTick{Pos: repF(l.x(time.Duration(t * float64(time.Second)))), Label: repTickLabel(t, step)})
	}
	ystep := repNiceStep((ymax - ymin) / 5)
	for v := ymin; v <= ymax+ystep*1e-9; v += ystep {
		c.YTicks = append(c.YTicks, reportTick{Pos: repF(y(v)), Label: repTickLabel(v, ystep)})
	}
	for i, n := range l.tl.Nodes {
		s := reportSeries{Node: n.Node, Color: repNodeColor(i), Dash: repDash(n.Drifted), Drifted: n.Drifted}
		var run []string
		var first [2]string
		flush := func() {
			switch len(run) {
			case 0:
			case 1:
				s.Dots = append(s.Dots, first)
			default:
				s.Lines = append(s.Lines, strings.Join(run, " "))
			}
			run = run[:0]
		}
		for _, p := range n.Points {
			v := value(p)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				flush()
				continue
			}
			px, py := repF(l.x(p.T)), repF(y(v))
			if len(run) == 0 {
				first = [2]string{px, py}
			}
			run = append(run, px+","+py)
		}
		flush()
		c.Series = append(c.Series, s)
	}
	for i, e := range l.events {
		st := repEventStyle(e.Kind)
		pl := l.labels[i]
		x := repF(l.x(e.T))
		m := reportMarker{
			Kind: e.Kind, Text: repEventTooltip(e), Label: pl.text, Color: st.color,
			Width: st.width, Opacity: st.opacity, X: x, Y1: repF(l.top), Y2: repF(bottom),
		}
		if pl.row >= 0 {
			ly := l.top - 4 - float64(pl.row)*repRowH
			m.HasLabel, m.LabelX, m.LabelY, m.Anchor = true, repF(pl.x), repF(ly), pl.anchor
			m.Y1 = repF(ly - 8)
		}
		c.Markers = append(c.Markers, m)
	}
	if threshold > 0 {
		ty := y(threshold)
		c.Threshold = &reportThreshold{
			X1: repF(repLeft), X2: repF(repLeft + plotW), Y: repF(ty),
			LabelX: repF(repLeft + plotW - 4), LabelY: repF(ty - 4), Label: "drift threshold",
		}
	}
	return c
}

// psiThreshold is the PSI above which the alerts call a node's confidence drifted.
const psiThreshold = 0.25

func (l *reportLayout) psiChart() reportChart {
	top := 0.0
	for _, n := range l.tl.Nodes {
		for _, p := range n.Points {
			if !math.IsNaN(p.PSI) && !math.IsInf(p.PSI, 0) {
				top = max(top, p.PSI)
			}
		}
	}
	top = max(top*1.1, psiThreshold*1.2)
	step := repNiceStep(top / 5)
	top = math.Ceil(top/step-1e-9) * step
	return l.chart("psi", "Confidence drift (PSI) over time", "PSI", func(p Point) float64 { return p.PSI }, 0, top, psiThreshold)
}
