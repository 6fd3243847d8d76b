package demo

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

const evilNode = `cam<script>alert(1)</script>`

// reportTimeline is 3 nodes × 120 points, one second apart, with gaps, and the demo's events.
func reportTimeline() *Timeline {
	tl := &Timeline{Started: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	names := []string{"edge-a", "edge-b", evilNode}
	for n, name := range names {
		ns := NodeSeries{Node: name, Drifted: n < 2}
		for i := range 120 {
			acc := 0.88
			if ns.Drifted && i >= 30 && i < 80 {
				acc = 0.47
			}
			p := Point{
				T: time.Duration(i+1) * time.Second, Requests: 16, Accuracy: acc, Confidence: acc + 0.05,
				PSI: float64(i) / 100, Version: "1", Captured: i * 2, Spool: i % 7,
			}
			if i >= 80 {
				p.Version = "2"
			}
			switch {
			case i < 5: // no PSI yet
				p.PSI = math.NaN()
			case n == 0 && i >= 40 && i < 45, n == 1 && i == 60, n == 2 && i == 100: // no traffic
				p.Requests, p.Accuracy, p.Confidence = 0, math.NaN(), math.NaN()
			}
			ns.Points = append(ns.Points, p)
		}
		tl.Nodes = append(tl.Nodes, ns)
	}
	tl.Events = []Event{
		{T: 30 * time.Second, Kind: EventDrift, Text: "drift on edge-a, edge-b"},
		{T: 52 * time.Second, Kind: EventJob, Text: "job j-1 started"},
		{T: 75 * time.Second, Kind: EventGate, Text: `passed: 0.85 > 0.47 <script>alert("gate")</script>`},
		{T: 76 * time.Second, Kind: EventPublished, Text: "version 2 published"},
		{T: 78 * time.Second, Kind: EventServing, Node: "edge-a", Text: "serves version 2"},
		{T: 79 * time.Second, Kind: EventServing, Node: "edge-b", Text: "serves version 2"},
		{T: 79 * time.Second, Kind: EventServing, Node: evilNode, Text: "serves version 2"},
		{T: 120 * time.Second, Kind: EventEnd, Text: "recovered"},
	}
	return tl
}

func reportSummary() *Summary {
	return &Summary{
		OK: true, AccuracyBefore: 0.884, AccuracyDrift: 0.473, AccuracyAfter: 0.851, AccuracyClean: 0.88,
		Requests: 5760, Captured: 412, Labelled: 300, UplinkBytes: 3 << 20, ShardBytes: 1536,
		BaseVersion: "1", NewVersion: "2", Gate: "candidate 0.851 beats current 0.473 by 0.378",
		TimeToRecover: 72 * time.Second, BaseTraining: 41 * time.Second, Duration: 2*time.Minute + 3*time.Second,
		RecoveryTarget: 0.9, Regained: (0.851 - 0.473) / (0.884 - 0.473),
	}
}

func renderReport(t *testing.T, tl *Timeline, s *Summary) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteReport(&b, tl, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var svgRe = regexp.MustCompile(`(?s)<svg .*?</svg>`)

func TestWriteReport(t *testing.T) {
	tl := reportTimeline()
	out := renderReport(t, tl, reportSummary())

	for _, want := range []string{
		"<h1>edgeloop demo</h1>", "2026-03-04 05:06:07 UTC", `class="status ok"`,
		"0.884", "0.473", "0.851", "0.880", "1m12s", "41s", "5760", "412", "300", "3.0 MiB", "1.5 KiB",
		"1 → 2", "candidate 0.851 beats current 0.473 by 0.378", "2m3s",
		"edge-a", "edge-b", "drift threshold",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	self := strings.ReplaceAll(out, `xmlns="http://www.w3.org/2000/svg"`, "")
	for _, bad := range []string{"<link", "<img", "src=", "href=", "@import", "url(", "http://", "https://"} {
		if strings.Contains(self, bad) {
			t.Errorf("report refers outside itself (%q)", bad)
		}
	}

	// Escaping: the only <script is the JSON block, and the evil strings are there escaped.
	if n := strings.Count(out, "<script"); n != 1 {
		t.Errorf("%d <script in the report, want 1 (the JSON)", n)
	}
	if strings.Contains(out, "<script>alert") || strings.Contains(out, "</script>alert") {
		t.Error("unescaped user text in the report")
	}
	if !strings.Contains(out, "cam&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the node name is not in the report, escaped")
	}
	if !strings.Contains(out, "&lt;script&gt;alert(&#34;gate&#34;)") {
		t.Error("the gate's event text is not in the report, escaped")
	}

	checkBalanced(t, out)

	svgs := svgRe.FindAllString(out, -1)
	if n := strings.Count(out, "<svg"); n != 3 || len(svgs) != 3 {
		t.Fatalf("%d <svg (%d complete), want 3", n, len(svgs))
	}
	for i, svg := range svgs {
		// Each chart is well-formed XML on its own (usable as an .svg file).
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("chart %d is not well-formed: %v", i, err)
			}
		}
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Errorf("chart %d has a non-finite coordinate", i)
		}
		for _, n := range tl.Nodes {
			name := strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(n.Node)
			series := regexp.MustCompile(`(?s)<g class="series" data-node="` + regexp.QuoteMeta(name) + `".*?</g>`).FindString(svg)
			if series == "" {
				t.Fatalf("chart %d: no series for %q", i, n.Node)
			}
			lines := strings.Count(series, "<polyline")
			// Node a has an accuracy gap of 5 points, b one of 1, c one near the end: two lines
			// each on accuracy and confidence; PSI has no gaps after the first points.
			want := 2
			if i == 2 {
				want = 1
			}
			if lines != want {
				t.Errorf("chart %d: %d polylines for %q, want %d", i, lines, n.Node, want)
			}
			dash := `stroke-dasharray="none"`
			if !n.Drifted {
				dash = `stroke-dasharray="6 4"`
			}
			if !strings.Contains(series, dash) {
				t.Errorf("chart %d: %q is not drawn %s", i, n.Node, dash)
			}
			if !strings.Contains(svg, `<g class="legend" data-node="`+name+`"`) {
				t.Errorf("chart %d: no legend for %q", i, n.Node)
			}
		}
		for kind, n := range map[string]int{EventDrift: 1, EventJob: 1, EventGate: 1, EventPublished: 1, EventServing: 3, EventEnd: 1} {
			if got := strings.Count(svg, `<g class="event event-`+kind+`"`); got != n {
				t.Errorf("chart %d: %d %s markers, want %d", i, got, kind, n)
			}
		}
		if !strings.Contains(svg, `stroke="#d62728"`) {
			t.Errorf("chart %d: no red drift marker", i)
		}
		if got := strings.Count(svg, "drift threshold"); (i == 2) != (got == 1) {
			t.Errorf("chart %d: %d drift threshold lines", i, got)
		}
		if !strings.Contains(svg, "<title>30.0s drift: drift on edge-a, edge-b</title>") {
			t.Errorf("chart %d: no tooltip on the drift marker", i)
		}
	}

	// Labels at the same place are staggered: edge-b's and the evil node's serving markers
	// are at the same time, so their labels are on different rows.
	labelY := regexp.MustCompile(`<text x="([0-9.]+)" y="([0-9.]+)" text-anchor="(?:start|end)" fill-opacity="[0-9.]+" style="fill: #[0-9a-f]+">([^<]*)</text>`)
	seen := map[string]string{}
	for _, m := range labelY.FindAllStringSubmatch(svgs[0], -1) {
		pos := m[1] + "," + m[2]
		if prev, ok := seen[pos]; ok {
			t.Errorf("labels %q and %q at the same place %s", prev, m[3], pos)
		}
		seen[pos] = m[3]
	}
	if len(seen) < 6 {
		t.Errorf("only %d event labels: %v", len(seen), seen)
	}

	// Events table.
	if got := strings.Count(out, `<tr><td class="num">`); got != len(tl.Events) {
		t.Errorf("%d event rows, want %d", got, len(tl.Events))
	}

	// The embedded JSON reads back into the same timeline.
	const open = `<script type="application/json" id="timeline">`
	i := strings.Index(out, open)
	if i < 0 {
		t.Fatal("no timeline JSON")
	}
	rest := out[i+len(open):]
	j := strings.Index(rest, "</script>")
	if j < 0 {
		t.Fatal("timeline JSON not closed")
	}
	back, err := UnmarshalTimeline([]byte(rest[:j]))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTimelines(tl, back); d != "" {
		t.Errorf("timeline JSON does not round-trip: %s", d)
	}
}

func TestWriteReportFailedAndEmpty(t *testing.T) {
	s := &Summary{OK: false, Reason: `no retrain job <b>started</b>`, AccuracyBefore: 0.88, AccuracyDrift: 0.47,
		AccuracyAfter: math.NaN(), AccuracyClean: math.NaN(), BaseVersion: "1"}
	out := renderReport(t, reportTimeline(), s)
	for _, want := range []string{`class="status failed"`, "FAILED: no retrain job &lt;b&gt;started&lt;/b&gt;", "n/a", "1 → none"} {
		if !strings.Contains(out, want) {
			t.Errorf("failed report lacks %q", want)
		}
	}
	if strings.Contains(out, "<b>") {
		t.Error("the reason is not escaped")
	}

	// Nothing recorded at all, and no summary: still a report, without NaN.
	out = renderReport(t, &Timeline{}, nil)
	if n := strings.Count(out, "<svg"); n != 3 {
		t.Errorf("%d <svg in an empty report, want 3", n)
	}
	if strings.Contains(out, "NaN") {
		t.Error("NaN in an empty report")
	}
	checkBalanced(t, out)
	back, err := UnmarshalTimeline([]byte(between(out, `id="timeline">`, "</script>")))
	if err != nil || len(back.Nodes) != 0 || len(back.Events) != 0 {
		t.Errorf("empty timeline read back as %+v, %v", back, err)
	}

	// All points NaN: no polylines, no NaN.
	tl := &Timeline{Nodes: []NodeSeries{{Node: "n", Points: []Point{
		{T: time.Second, Accuracy: math.NaN(), Confidence: math.NaN(), PSI: math.NaN()},
		{T: 2 * time.Second, Accuracy: math.NaN(), Confidence: math.NaN(), PSI: math.Inf(1)},
	}}}}
	out = renderReport(t, tl, nil)
	if strings.Contains(out, "<polyline") || strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
		t.Error("non-finite points were drawn")
	}
	if err := WriteReport(io.Discard, nil, nil); err == nil {
		t.Error("no error for a nil timeline")
	}
}

func TestReportManyNodes(t *testing.T) {
	// Many nodes and many serving events at once: distinct colours, labels never overlap.
	tl := &Timeline{}
	colors := map[string]bool{}
	for i := range 40 {
		name := "node-" + string(rune('A'+i%26)) + strings.Repeat("x", i/26)
		tl.Nodes = append(tl.Nodes, NodeSeries{Node: name, Drifted: i%2 == 0, Points: []Point{
			{T: time.Second, Accuracy: 0.5, Confidence: 0.5, PSI: 3},
			{T: 100 * time.Second, Accuracy: 0.6, Confidence: 0.6, PSI: 0.1},
		}})
		tl.Events = append(tl.Events, Event{T: 50 * time.Second, Kind: EventServing, Node: name, Text: "serves version 2"})
		c := repNodeColor(i)
		if colors[c] {
			t.Errorf("colour %s used twice", c)
		}
		colors[c] = true
	}
	out := renderReport(t, tl, nil)
	svgs := svgRe.FindAllString(out, -1)
	if len(svgs) != 3 {
		t.Fatalf("%d charts", len(svgs))
	}
	if got := strings.Count(svgs[0], `<g class="event event-serving"`); got != 40 {
		t.Errorf("%d serving markers, want 40", got)
	}
	if got := strings.Count(svgs[0], `<g class="legend"`); got != 40 {
		t.Errorf("%d legend entries, want 40", got)
	}
	// The PSI axis stretches to the largest PSI (3, with headroom: 0 to 4).
	if !strings.Contains(svgs[2], ">4</text>") {
		t.Error("the PSI axis does not reach 4")
	}
}

func TestSummaryText(t *testing.T) {
	got := SummaryText(reportSummary())
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "edgeloop demo: recovered: the drifted nodes regained 92% of the accuracy they lost (target 90%) on version 2, serving 1m12s after the drift onset") {
		t.Errorf("first line %q", lines[0])
	}
	for _, want := range []string{
		"before drift 0.884", "under drift 0.473", "after retrain 0.851", "after retrain 0.880",
		"version 1 → 2", "candidate 0.851 beats current 0.473", "41s", "5760 requests", "412 samples captured",
		"300 labelled", "3.0 MiB", "1.5 KiB", "2m3s",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	// The values start in the same column on every line.
	const col = 2 + 26
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "  ") || len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("line %q: value not at column %d", l, col)
		}
	}

	failed := SummaryText(&Summary{Reason: "timed out waiting for a retrain job", AccuracyBefore: 0.881,
		AccuracyDrift: 0.47, AccuracyAfter: math.NaN(), AccuracyClean: math.NaN(), BaseVersion: "1", Requests: 99})
	if !strings.HasPrefix(failed, "edgeloop demo: FAILED: timed out waiting for a retrain job\n") {
		t.Errorf("failed summary starts %q", failed)
	}
	for _, want := range []string{"before drift 0.881", "under drift 0.470", "after retrain n/a", "99 requests", "version 1 → none", "none (the base model existed)"} {
		if !strings.Contains(failed, want) {
			t.Errorf("failed summary lacks %q:\n%s", want, failed)
		}
	}
	if strings.Contains(failed, "NaN") {
		t.Errorf("NaN in %q", failed)
	}
}

func TestReportFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := repBytes(n); got != want {
			t.Errorf("repBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 72*time.Second + 300*time.Millisecond: "1m12s", 4321 * time.Millisecond: "4.3s", 250 * time.Millisecond: "250ms"} {
		if got := repDuration(d); got != want {
			t.Errorf("repDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for raw, want := range map[float64]float64{0.07: 0.1, 0.3: 0.5, 12: 20, 15: 20, 1: 1, 0: 1} {
		if got := repNiceStep(raw); math.Abs(got-want) > 1e-12 {
			t.Errorf("repNiceStep(%v) = %v, want %v", raw, got, want)
		}
	}
}

// checkBalanced checks that every non-void element of doc is closed in order (skipping the
// contents of raw-text elements), a rough stand-in for an HTML parser.
func checkBalanced(t *testing.T, doc string) {
	t.Helper()
	void := map[string]bool{"meta": true, "br": true, "img": true, "link": true, "hr": true, "input": true}
	tag := regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>`)
	var stack []string
	for rest := doc; ; {
		m := tag.FindStringSubmatchIndex(rest)
		if m == nil {
			break
		}
		closing, name, self := rest[m[2]:m[3]] == "/", strings.ToLower(rest[m[4]:m[5]]), rest[m[6]:m[7]] == "/"
		rest = rest[m[1]:]
		switch {
		case closing:
			if len(stack) == 0 || stack[len(stack)-1] != name {
				t.Fatalf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
		case self || void[name]:
		case name == "script" || name == "style":
			end := strings.Index(rest, "</"+name+">")
			if end < 0 {
				t.Fatalf("<%s> not closed", name)
			}
			rest = rest[end+len(name)+3:]
		default:
			stack = append(stack, name)
		}
	}
	if len(stack) != 0 {
		t.Fatalf("unclosed elements %v", stack)
	}
}

func between(s, a, b string) string {
	_, s, _ = strings.Cut(s, a)
	s, _, _ = strings.Cut(s, b)
	return s
}

// diffTimelines says how a and b differ (NaN equals NaN), "" when they do not.
func diffTimelines(a, b *Timeline) string {
	if !a.Started.Equal(b.Started) {
		return "started"
	}
	if len(a.Nodes) != len(b.Nodes) || len(a.Events) != len(b.Events) {
		return "lengths"
	}
	same := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	for i, n := range a.Nodes {
		m := b.Nodes[i]
		if n.Node != m.Node || n.Drifted != m.Drifted || len(n.Points) != len(m.Points) {
			return "node " + n.Node
		}
		for j, p := range n.Points {
			q := m.Points[j]
			if !same(p.Accuracy, q.Accuracy) || !same(p.Confidence, q.Confidence) || !same(p.PSI, q.PSI) {
				return "numbers of " + n.Node
			}
			p.Accuracy, p.Confidence, p.PSI = 0, 0, 0
			q.Accuracy, q.Confidence, q.PSI = 0, 0, 0
			if p != q {
				return "point of " + n.Node
			}
		}
	}
	for i, e := range a.Events {
		if e != b.Events[i] {
			return "event " + e.Kind
		}
	}
	return ""
}
