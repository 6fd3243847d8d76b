package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file renders the demo's report: one self-contained HTML file (inline CSS, server-side
// SVG charts, no scripts to run) and the plain-text summary printed at the end of a run.

// WriteReport writes the demo's HTML report for tl and s to w. s may be nil (no summary yet).
func WriteReport(w io.Writer, tl *Timeline, s *Summary) error {
	if tl == nil {
		return errors.New("demo report: no timeline")
	}
	raw, err := MarshalTimeline(tl)
	if err != nil {
		return fmt.Errorf("demo report: %w", err)
	}
	v := reportView{
		Started:  tl.Started.Format("2006-01-02 15:04:05 MST"),
		Summary:  s,
		Rows:     summaryRows(s),
		Timeline: template.JS(raw), // json.Marshal escapes <, > and &: safe inside <script>
	}
	if tl.Started.IsZero() {
		v.Started = "unknown"
	}
	lay := newReportLayout(tl)
	v.Charts = []reportChart{
		lay.chart("accuracy", "Accuracy over time", "accuracy", func(p Point) float64 { return p.Accuracy }, 0, 1, 0),
		lay.chart("confidence", "Mean confidence over time", "mean top-1 probability", func(p Point) float64 { return p.Confidence }, 0, 1, 0),
		lay.psiChart(),
	}
	v.Keys = reportEventKeys()
	for _, e := range lay.events {
		v.Events = append(v.Events, reportEventRow{
			Time: repSeconds(e.T), Kind: e.Kind, Node: e.Node, Text: e.Text, Color: repEventStyle(e.Kind).color,
		})
	}
	for i, n := range tl.Nodes {
		row := reportNodeRow{Node: n.Node, Drifted: n.Drifted, Color: repNodeColor(i), Points: len(n.Points)}
		if k := len(n.Points); k > 0 {
			last := n.Points[k-1]
			row.Version, row.Captured, row.Spool = last.Version, last.Captured, last.Spool
		}
		for _, p := range n.Points {
			row.Requests += p.Requests
		}
		v.Nodes = append(v.Nodes, row)
	}
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, v); err != nil {
		return fmt.Errorf("demo report: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// SummaryText is s as aligned plain-text lines for the terminal, ending in a newline.
func SummaryText(s *Summary) string {
	if s == nil {
		return "edgeloop demo: no summary\n"
	}
	var b strings.Builder
	if s.OK {
		fmt.Fprintf(&b, "edgeloop demo: recovered in %s (drift onset → version %s serving on the drifted nodes)\n",
			repDuration(s.TimeToRecover), repOr(s.NewVersion, "?"))
	} else {
		fmt.Fprintf(&b, "edgeloop demo: FAILED: %s\n", repOr(s.Reason, "unknown reason"))
	}
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-26s%s\n", label, fmt.Sprintf(format, args...))
	}
	line("accuracy, drifted nodes", "before drift %s   under drift %s   after retrain %s (images not trained on)",
		repAcc(s.AccuracyBefore), repAcc(s.AccuracyDrift), repAcc(s.AccuracyAfter))
	if s.FreshImages > 0 {
		line("", "after retrain: %d classifications of the probe images (1 in %d, never labelled); the old model scored %s on them under drift", s.FreshImages, ProbeEvery, repAcc(s.AccuracyDriftFresh))
	}
	line("accuracy, clean nodes", "after retrain %s (images not trained on)", repAcc(s.AccuracyClean))
	if !s.OK && s.TimeToRecover > 0 {
		line("time to recover", "%s (drift onset → new version serving)", repDuration(s.TimeToRecover))
	}
	if s.Model != "" {
		line("model", "%s: version %s → %s", s.Model, repOr(s.BaseVersion, "?"), repOr(s.NewVersion, "none"))
	} else {
		line("model", "version %s → %s", repOr(s.BaseVersion, "?"), repOr(s.NewVersion, "none"))
	}
	line("gate", "%s", repOr(s.Gate, "no decision"))
	line("base model training", "%s", repBaseTraining(s.BaseTraining))
	if s.RetrainJob > 0 {
		line("retrain job", "%s (training, gate and publication of the promoted version)", repDuration(s.RetrainJob))
	}
	if s.Withheld > 0 {
		line("traffic", "%d requests, %d samples captured, %d labelled, %d left unlabelled (probe images)", s.Requests, s.Captured, s.Labelled, s.Withheld)
	} else {
		line("traffic", "%d requests, %d samples captured, %d labelled", s.Requests, s.Captured, s.Labelled)
	}
	line("bytes", "%s sent by the nodes, %s uploaded as shards", repBytes(s.UplinkBytes), repBytes(s.ShardBytes))
	line("duration", "%s", repDuration(s.Duration))
	return b.String()
}

// MarshalTimeline is tl as JSON. Unlike json.Marshal (which refuses NaN), it writes
// non-finite numbers (no data) as null; UnmarshalTimeline reads them back as NaN.
func MarshalTimeline(tl *Timeline) ([]byte, error) {
	out := timelineJSON{Started: tl.Started, Nodes: make([]nodeSeriesJSON, len(tl.Nodes)), Events: tl.Events}
	for i, n := range tl.Nodes {
		out.Nodes[i] = nodeSeriesJSON{Node: n.Node, Drifted: n.Drifted, Points: make([]pointJSON, len(n.Points))}
		for j, p := range n.Points {
			out.Nodes[i].Points[j] = pointJSON{
				pointAlias: pointAlias(p),
				Accuracy:   repFinite(p.Accuracy), Confidence: repFinite(p.Confidence), PSI: repFinite(p.PSI),
			}
		}
	}
	if out.Events == nil {
		out.Events = []Event{}
	}
	return json.Marshal(out)
}

// UnmarshalTimeline reads what MarshalTimeline wrote (null numbers become NaN).
func UnmarshalTimeline(data []byte) (*Timeline, error) {
	var in timelineJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	tl := &Timeline{Started: in.Started, Events: in.Events}
	for _, n := range in.Nodes {
		ns := NodeSeries{Node: n.Node, Drifted: n.Drifted, Points: make([]Point, len(n.Points))}
		for j, p := range n.Points {
			q := Point(p.pointAlias)
			q.Accuracy, q.Confidence, q.PSI = repNaN(p.Accuracy), repNaN(p.Confidence), repNaN(p.PSI)
			ns.Points[j] = q
		}
		tl.Nodes = append(tl.Nodes, ns)
	}
	return tl, nil
}

type timelineJSON struct {
	Started time.Time        `json:"started"`
	Nodes   []nodeSeriesJSON `json:"nodes"`
	Events  []Event          `json:"events"`
}

type nodeSeriesJSON struct {
	Node    string      `json:"node"`
	Drifted bool        `json:"drifted"`
	Points  []pointJSON `json:"points"`
}

// pointAlias has Point's fields without its methods; pointJSON's own (shallower) fields
// replace its float ones in JSON.
type pointAlias Point

type pointJSON struct {
	pointAlias
	Accuracy   *float64 `json:"accuracy"`
	Confidence *float64 `json:"confidence"`
	PSI        *float64 `json:"psi"`
}

func repFinite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func repNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}

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

// --- styles and formatting ----------------------------------------------------------------

type repStyle struct{ color, width, opacity, label string }

func repEventStyle(kind string) repStyle {
	switch kind {
	case EventDrift:
		return repStyle{"#d62728", "2", "1", "drift onset"}
	case EventJob:
		return repStyle{"#ff7f0e", "2", "1", "retrain job started"}
	case EventGate:
		return repStyle{"#9467bd", "2", "1", "gate decision"}
	case EventPublished:
		return repStyle{"#2ca02c", "2", "1", "version published"}
	case EventServing:
		return repStyle{"#2ca02c", "1", "0.45", "node serving new version"}
	case EventEnd:
		return repStyle{"#7f7f7f", "2", "1", "end of the demo"}
	}
	return repStyle{"#444444", "1", "0.8", kind}
}

func reportEventKeys() []reportKey {
	var ks []reportKey
	for _, k := range []string{EventDrift, EventJob, EventGate, EventPublished, EventServing, EventEnd} {
		st := repEventStyle(k)
		ks = append(ks, reportKey{Kind: k, Label: st.label, Color: st.color})
	}
	return ks
}

func repEventLabel(e Event) string {
	switch e.Kind {
	case EventDrift:
		return "drift"
	case EventJob:
		return "job"
	case EventGate:
		return "gate"
	case EventPublished:
		return "published"
	case EventServing:
		if e.Node != "" {
			return e.Node
		}
		return "serving"
	case EventEnd:
		return "end"
	}
	return e.Kind
}

func repEventTooltip(e Event) string {
	s := repSeconds(e.T) + " " + e.Kind
	if e.Node != "" {
		s += " " + e.Node
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

var repPalette = []string{
	"#1f77b4", "#e377c2", "#17becf", "#8c564b", "#bcbd22",
	"#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd",
}

// repNodeColor is node i's colour: a fixed palette (kept clear of the event markers'
// colours), then hues spread by the golden angle.
func repNodeColor(i int) string {
	if i < len(repPalette) {
		return repPalette[i]
	}
	return repHSL(float64((i*137)%360), 0.6, 0.4)
}

// repHSL is an HSL colour as #rrggbb (hex keeps it usable in style attributes).
func repHSL(h, s, l float64) string {
	c := (1 - math.Abs(2*l-1)) * s
	hp := h / 60
	x := c * (1 - math.Abs(math.Mod(hp, 2)-1))
	var r, g, b float64
	switch {
	case hp < 1:
		r, g = c, x
	case hp < 2:
		r, g = x, c
	case hp < 3:
		g, b = c, x
	case hp < 4:
		g, b = x, c
	case hp < 5:
		r, b = x, c
	default:
		r, b = c, x
	}
	m := l - c/2
	to := func(v float64) int { return int(math.Round((v + m) * 255)) }
	return fmt.Sprintf("#%02x%02x%02x", to(r), to(g), to(b))
}

func repDash(drifted bool) string {
	if drifted {
		return "none"
	}
	return "6 4"
}

// repF formats an SVG coordinate; it never writes NaN or Inf.
func repF(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// repNiceStep is the 1, 2 or 5 × 10^k at or above raw.
func repNiceStep(raw float64) float64 {
	if !(raw > 0) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func repTickLabel(v, step float64) string {
	d := 0
	if step < 1 {
		d = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

func repSeconds(t time.Duration) string {
	return strconv.FormatFloat(t.Seconds(), 'f', 1, 64) + "s"
}

// repDuration rounds d for people: 1m12s, 4.3s, 250ms.
func repDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func repBaseTraining(d time.Duration) string {
	if d <= 0 {
		return "none (the base model existed)"
	}
	return repDuration(d)
}

func repAcc(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// repBytes is n in binary units: 512 B, 1.5 KiB, 12.3 MiB.
func repBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, units := float64(n), []string{"KiB", "MiB", "GiB", "TiB"}
	u := -1
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[u]
}

func repOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func summaryRows(s *Summary) []reportRow {
	if s == nil {
		return nil
	}
	rows := []reportRow{
		{"accuracy before drift (drifted nodes)", repAcc(s.AccuracyBefore)},
		{"accuracy under drift (drifted nodes, old model)", repAcc(s.AccuracyDrift)},
		{"accuracy after retrain (drifted nodes, images not trained on)", repAcc(s.AccuracyAfter)},
		{"accuracy after retrain (clean nodes)", repAcc(s.AccuracyClean)},
		{"drift onset → recovered model serving", "n/a"},
		{"base model training", repBaseTraining(s.BaseTraining)},
		{"requests", strconv.Itoa(s.Requests)},
		{"samples captured at the edge", strconv.Itoa(s.Captured)},
		{"samples labelled", strconv.Itoa(s.Labelled)},
		{"uplink (nodes → collector)", repBytes(s.UplinkBytes)},
		{"shards uploaded", repBytes(s.ShardBytes)},
		{"model versions", repOr(s.BaseVersion, "?") + " → " + repOr(s.NewVersion, "none")},
		{"gate", repOr(s.Gate, "no decision")},
		{"total duration", repDuration(s.Duration)},
	}
	if s.TimeToRecover > 0 {
		rows[4].Value = repDuration(s.TimeToRecover)
	}
	return rows
}

// --- template -------------------------------------------------------------------------------

var reportTmpl = template.Must(template.New("report").Parse(reportHTML))

const reportHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edgeloop demo report</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; padding: 0 12px; }
h1 { margin-bottom: 4px; }
h2 { margin-top: 32px; font-size: 1.2em; }
.started { color: #666; margin-top: 0; }
.status { font-size: 1.4em; font-weight: bold; padding: 10px 14px; border-radius: 6px; display: inline-block; }
.ok { background: #e3f4e1; color: #1b6e1b; border: 1px solid #7bc47b; }
.failed { background: #fbe3e3; color: #a11; border: 1px solid #e08080; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
table.summary th { background: none; font-weight: normal; color: #555; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }
.keys { font-size: 0.9em; color: #444; }
.keys .key { margin-right: 16px; white-space: nowrap; }
svg.chart { display: block; width: 100%; height: auto; background: #fff; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 10px; fill: #333; }
svg.chart .grid { stroke: #ececec; stroke-width: 1; }
svg.chart .axis { stroke: #888; stroke-width: 1; }
</style>
</head>
<body>
<h1>edgeloop demo</h1>
<p class="started">started {{.Started}}</p>
{{with .Summary}}{{if .OK}}<div class="status ok">OK: the drifted nodes recovered</div>
{{else}}<div class="status failed">FAILED: {{if .Reason}}{{.Reason}}{{else}}unknown reason{{end}}</div>
{{end}}{{else}}<div class="status failed">no summary</div>
{{end}}
{{- if .Rows}}
<h2>Summary</h2>
<table class="summary">
{{range .Rows}}<tr><th>{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</table>
{{end}}
<p class="keys">Markers: {{range .Keys}}<span class="key"><span class="swatch" style="background: {{.Color}}"></span>{{.Label}}</span> {{end}}</p>
<p class="keys">Solid lines are drifted nodes, dashed lines clean ones; gaps are intervals without data. Hover a marker for its event.</p>
{{range .Charts}}{{$c := .}}
<h2 id="{{.ID}}">{{.Title}}</h2>
<svg class="chart" id="chart-{{.ID}}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-label="{{.Title}}">
<title>{{.Title}}</title>
<g class="yticks">{{range .YTicks}}<line class="grid" x1="{{$c.Left}}" x2="{{$c.Right}}" y1="{{.Pos}}" y2="{{.Pos}}"/><text x="{{$c.TickX}}" y="{{.Pos}}" dy="3" text-anchor="end">{{.Label}}</text>{{end}}</g>
<g class="xticks">{{range .XTicks}}<line class="grid" x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$c.Top}}" y2="{{$c.Bottom}}"/><text x="{{.Pos}}" y="{{$c.XTickY}}" text-anchor="middle">{{.Label}}</text>{{end}}</g>
<line class="axis" x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}"/>
<line class="axis" x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}"/>
<text x="{{.XLabelX}}" y="{{.XLabelY}}" text-anchor="middle">seconds since start</text>
<text x="{{.YLabelX}}" y="{{.YLabelY}}" text-anchor="middle" transform="rotate(-90 {{.YLabelX}} {{.YLabelY}})">{{.YLabel}}</text>
{{with .Threshold}}<g class="threshold"><line x1="{{.X1}}" x2="{{.X2}}" y1="{{.Y}}" y2="{{.Y}}" stroke="#d62728" stroke-width="1.2" stroke-dasharray="5 4"/><text x="{{.LabelX}}" y="{{.LabelY}}" text-anchor="end" style="fill: #d62728">{{.Label}}</text></g>
{{end}}
{{- range .Series}}{{$s := .}}<g class="series" data-node="{{.Node}}" data-drifted="{{.Drifted}}"><title>{{.Node}}{{if .Drifted}} (drifted){{else}} (clean){{end}}</title>
{{- range .Lines}}<polyline points="{{.}}" fill="none" stroke="{{$s.Color}}" stroke-width="1.8" stroke-dasharray="{{$s.Dash}}" stroke-linejoin="round"/>{{end}}
{{- range .Dots}}<circle cx="{{index . 0}}" cy="{{index . 1}}" r="2" fill="{{$s.Color}}"/>{{end}}</g>
{{end}}
{{- range .Markers}}<g class="event event-{{.Kind}}"><title>{{.Text}}</title><line x1="{{.X}}" x2="{{.X}}" y1="{{.Y1}}" y2="{{.Y2}}" stroke="{{.Color}}" stroke-width="{{.Width}}" stroke-opacity="{{.Opacity}}"/><line x1="{{.X}}" x2="{{.X}}" y1="{{.Y1}}" y2="{{.Y2}}" stroke="transparent" stroke-width="8"/>
{{- if .HasLabel}}<text x="{{.LabelX}}" y="{{.LabelY}}" text-anchor="{{.Anchor}}" fill-opacity="{{.Opacity}}" style="fill: {{.Color}}">{{.Label}}</text>{{end}}</g>
{{end}}
{{- range .Legend}}<g class="legend" data-node="{{.Node}}"><line x1="{{.X1}}" x2="{{.X2}}" y1="{{.LineY}}" y2="{{.LineY}}" stroke="{{.Color}}" stroke-width="2.5" stroke-dasharray="{{.Dash}}"/><text x="{{.TextX}}" y="{{.TextY}}">{{.Node}} {{if .Drifted}}(drifted){{else}}(clean){{end}}</text></g>
{{end}}</svg>
{{end}}
<h2>Events</h2>
<table class="events">
<tr><th>time</th><th>kind</th><th>node</th><th>text</th></tr>
{{range .Events}}<tr><td class="num">{{.Time}}</td><td><span class="swatch" style="background: {{.Color}}"></span>{{.Kind}}</td><td>{{.Node}}</td><td>{{.Text}}</td></tr>
{{else}}<tr><td colspan="4">no events</td></tr>
{{end}}</table>
<h2>Nodes</h2>
<table class="nodes">
<tr><th>node</th><th>stream</th><th>points</th><th>requests</th><th>captured</th><th>spool at end</th><th>last version</th></tr>
{{range .Nodes}}<tr><td><span class="swatch" style="background: {{.Color}}"></span>{{.Node}}</td><td>{{if .Drifted}}drifted{{else}}clean{{end}}</td><td class="num">{{.Points}}</td><td class="num">{{.Requests}}</td><td class="num">{{.Captured}}</td><td class="num">{{.Spool}}</td><td>{{.Version}}</td></tr>
{{end}}</table>
<p class="keys">The raw timeline is embedded below as JSON (element #timeline; times in nanoseconds since the start, null for no data).</p>
<script type="application/json" id="timeline">{{.Timeline}}</script>
</body>
</html>
`
