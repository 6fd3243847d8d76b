package demo

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file turns a run into the demo's report: one self-contained HTML file (inline CSS, server-side
// SVG charts, no scripts to run) and the plain-text summary printed at the end of a run. Where
// the charts' parts go is report_layout.go's; the page itself is report.html (embedded).

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
		fmt.Fprintf(&b, "edgeloop demo: recovered: the drifted nodes regained %s of the accuracy they lost (target %s) on version %s, serving %s after the drift onset\n",
			repShare(s.Regained), repShare(s.RecoveryTarget), repOr(s.NewVersion, "?"), repDuration(s.TimeToRecover))
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
	line("estimated, drifted nodes", "before drift %s   under drift %s   after retrain %s (label-free, edgeloop_estimated_accuracy)",
		repAcc(s.EstimatedBefore), repAcc(s.EstimatedDrift), repAcc(s.EstimatedAfter))
	line("accuracy, clean nodes", "after retrain %s (images not trained on)", repAcc(s.AccuracyClean))
	line("drift signals", "%s", repSignals(s.Signals))
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
				Estimated: repFinite(p.Estimated),
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
			q.Accuracy, q.Confidence, q.PSI, q.Estimated = repNaN(p.Accuracy), repNaN(p.Confidence), repNaN(p.PSI), repNaN(p.Estimated)
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
	Estimated  *float64 `json:"estimated"`
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
	case EventSignal:
		return repStyle{"#e377c2", "1", "0.8", "drift signal crossed its threshold"}
	case EventEnd:
		return repStyle{"#7f7f7f", "2", "1", "end of the demo"}
	}
	return repStyle{"#444444", "1", "0.8", kind}
}

func reportEventKeys() []reportKey {
	var ks []reportKey
	for _, k := range []string{EventDrift, EventSignal, EventJob, EventGate, EventPublished, EventServing, EventEnd} {
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

// repShare is a share as a whole percentage, "n/a" when unknown.
func repShare(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

// repSignals lists the fired drift signals, earliest first, with their delay after the onset.
func repSignals(sigs []SignalFired) string {
	if len(sigs) == 0 {
		return "none crossed its alert's threshold"
	}
	parts := make([]string, len(sigs))
	for i, s := range sigs {
		parts[i] = fmt.Sprintf("%s +%s (%s)", s.Signal, repDuration(s.After), s.Node)
	}
	return strings.Join(parts, ", ")
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
		{"estimated accuracy, drifted nodes (before → under drift → after retrain, label-free)",
			repAcc(s.EstimatedBefore) + " → " + repAcc(s.EstimatedDrift) + " → " + repAcc(s.EstimatedAfter)},
		{"share of the lost accuracy regained (target)", repShare(s.Regained) + " (" + repShare(s.RecoveryTarget) + ")"},
		{"drift signals, first to cross its alert's threshold first", repSignals(s.Signals)},
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
		for i := range rows {
			if rows[i].Label == "drift onset → recovered model serving" {
				rows[i].Value = repDuration(s.TimeToRecover)
			}
		}
	}
	return rows
}

// --- template -------------------------------------------------------------------------------

// reportHTML is the report's page; the view model (report_layout.go) fills it.
//
//go:embed report.html
var reportHTML string

var reportTmpl = template.Must(template.New("report").Parse(reportHTML))
