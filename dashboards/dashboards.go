//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

// Package dashboards builds edgeloop's Grafana dashboards from Go code with the Grafana
// Foundation SDK. The JSON under dashboards/json is generated from it (`make dashboards`) and
// committed, so that operators can import or provision it without Go; a test fails when the two
// differ.
package dashboards

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Tag is on every edgeloop dashboard; the dashboards link to each other through it.
const Tag = "edgeloop"

// All builds every dashboard and returns its JSON (indented, ending in a newline) by file name,
// e.g. "edgeloop-fleet.json". The output is deterministic: the same code gives the same bytes.
func All() (map[string][]byte, error) {
	builders := []struct {
		uid   string
		build func() *dashboard.DashboardBuilder
	}{
		{"edgeloop-fleet", fleet},
		{"edgeloop-gpu", gpu},
		{"edgeloop-inference", inference},
		{"edgeloop-pipeline", pipeline},
		{"edgeloop-retrain", retrain},
	}
	out := make(map[string][]byte, len(builders))
	for _, b := range builders {
		d, err := b.build().Build()
		if err != nil {
			return nil, fmt.Errorf("build dashboard %s: %w", b.uid, err)
		}
		if d.Uid == nil || *d.Uid != b.uid {
			return nil, fmt.Errorf("build dashboard %s: uid is %v", b.uid, d.Uid)
		}
		// The SDK defaults every annotation toggle and link to Grafana 12's controls menu,
		// which hides them; left unset, Grafana shows them in the dashboard's bar.
		for i := range d.Annotations.List {
			d.Annotations.List[i].Placement = nil
		}
		for i := range d.Links {
			d.Links[i].Placement = nil
		}
		data, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode dashboard %s: %w", b.uid, err)
		}
		out[b.uid+".json"] = append(data, '\n')
	}
	return out, nil
}

// board wraps the SDK's dashboard builder to number panels: Grafana wants ids unique within a
// dashboard, and numbering them in the order they are added keeps the JSON stable.
type board struct {
	*dashboard.DashboardBuilder
	nextID uint32
}

// newBoard starts a dashboard with what every edgeloop dashboard shares: tags, refresh, time
// range, the datasource variable, links to the other dashboards, and Grafana's own annotations.
func newBoard(uid, title, description string) *board {
	b := dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Editable().
		Link(dashboard.NewDashboardLinkBuilder("edgeloop").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Annotations & Alerts").
			Datasource(common.DataSourceRef{Type: ptr("grafana"), Uid: ptr("-- Grafana --")}).
			Type("dashboard").
			BuiltIn(1).
			Enable(true).
			Hide(true).
			IconColor("rgba(0, 211, 255, 1)")).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus"))
	return &board{DashboardBuilder: b}
}

// row adds a (non-collapsed) row header; the panels added after it belong to it.
func (b *board) row(title string) {
	b.nextID++
	b.WithRow(dashboard.NewRowBuilder(title).Id(b.nextID))
}

// add adds panels in order, left to right, wrapping at the grid's 24 columns.
func (b *board) add(panels ...cog.Builder[dashboard.Panel]) {
	for _, p := range panels {
		b.nextID++
		b.WithPanel(numbered{inner: p, id: b.nextID})
	}
}

// numbered sets a panel's id when it is built.
type numbered struct {
	inner cog.Builder[dashboard.Panel]
	id    uint32
}

// Build builds the panel and sets its id.
func (n numbered) Build() (dashboard.Panel, error) {
	p, err := n.inner.Build()
	if err != nil {
		return p, err
	}
	p.Id = &n.id
	return p, nil
}

// ds is the datasource every query uses: the dashboard's `datasource` variable.
func ds() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}
}

func ptr[T any](v T) *T { return &v }

// queryVar is a Prometheus query variable `label_values(selector, label)`: multi-select with
// All, refreshed when the time range changes. With All selected it expands to `.*` so that
// `=~"$var"` matches every series, those missing the label included.
func queryVar(name, label, selector string) *dashboard.QueryVariableBuilder {
	q := fmt.Sprintf("label_values(%s, %s)", selector, name)
	if label == "" {
		label = name
	}
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(ds()).
		Query(dashboard.StringOrMap{String: &q}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortNaturalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: ptr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// The model, version and node variables of the dashboards about models. They come from
// edgeloop_inference_requests_total, which exists for every loaded model version (at 0 until
// it serves), static upstream models included; node is the scrape target's label.
const (
	modelSel   = `edgeloop_inference_requests_total`
	versionSel = `edgeloop_inference_requests_total{model=~"$model"}`
	nodeSel    = `edgeloop_inference_requests_total{model=~"$model", version=~"$version"}`
)

// withModelVars adds the model, version and node variables, in that order (each narrows the next).
func (b *board) withModelVars() {
	b.WithVariable(queryVar("model", "Model", modelSel))
	b.WithVariable(queryVar("version", "Version", versionSel))
	b.WithVariable(queryVar("node", "Node", nodeSel))
}

// refID names a panel's queries A, B, C, ...
func refID(i int) string { return string(rune('A' + i)) }

// target is one range query of a time series panel; legend is Grafana's legend format.
func target(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(ds()).
		Expr(expr).
		LegendFormat(legend).
		Range()
}

// instant is one instant query: stats, tables and bar gauges show the latest value.
func instant(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(ds()).
		Expr(expr).
		LegendFormat(legend).
		Instant()
}

// tableQuery is an instant query returning a table: one row per series, a column per label.
func tableQuery(expr string) *prometheus.DataqueryBuilder {
	return instant(expr, "__auto").Format(prometheus.PromQueryFormatTable)
}

// heatmapQuery turns classic histogram buckets into heatmap rows, one per `le`.
func heatmapQuery(expr string) *prometheus.DataqueryBuilder {
	return target(expr, "{{le}}").Format(prometheus.PromQueryFormatHeatmap)
}

// step is one threshold: from value on the color applies (the first has no value: the base).
type step struct {
	value *float64
	color string
}

func base(color string) step          { return step{color: color} }
func at(v float64, color string) step { return step{value: &v, color: color} }
func thresholds(steps ...step) *dashboard.ThresholdsConfigBuilder {
	ts := make([]dashboard.Threshold, 0, len(steps))
	for _, s := range steps {
		ts = append(ts, dashboard.Threshold{Value: s.value, Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// okIfZero colors any value above zero red: errors, failures, paused spools.
func okIfZero() *dashboard.ThresholdsConfigBuilder { return thresholds(base("green"), at(1, "red")) }

// neutral passes no judgement: one color.
func neutral() *dashboard.ThresholdsConfigBuilder { return thresholds(base("blue")) }

// Panel sizes on Grafana's 24-column grid.
const (
	full  = 24
	half  = 12
	third = 8
	sixth = 4

	statH  = 4
	graphH = 8
	tableH = 9
)

// timeSeries is a line graph of range queries with a table legend (mean, max, last).
func timeSeries(title, description, unit string, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unit).
		Height(graphH).
		Span(half).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: ptr(false)}).
		Thresholds(neutral()).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
	for i, t := range targets {
		p.WithTarget(t.RefId(refID(i)))
	}
	return p
}

// bars turns a time series panel into stacked bars: for counts of rare events (errors, jobs).
func bars(p *timeseries.PanelBuilder) *timeseries.PanelBuilder {
	return p.DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
}

// stacked stacks a time series panel's areas: for parts of a whole (traffic by class).
func stacked(p *timeseries.PanelBuilder) *timeseries.PanelBuilder {
	return p.FillOpacity(40).Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
}

// thresholdLines draws a time series panel's thresholds as dashed lines.
func thresholdLines(p *timeseries.PanelBuilder, t *dashboard.ThresholdsConfigBuilder) *timeseries.PanelBuilder {
	return p.Thresholds(t).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
}

// singleStat is one big number from instant queries, colored by its thresholds.
func singleStat(title, description, unit string, t *dashboard.ThresholdsConfigBuilder, targets ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unit).
		Height(statH).
		Span(sixth).
		Thresholds(t).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeAuto).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
	for i, t := range targets {
		p.WithTarget(t.RefId(refID(i)))
	}
	return p
}

// tablePanel shows instant table queries; hidden names columns to leave out (Time, Value, ...).
func tablePanel(title, description string, hidden []string, targets ...*prometheus.DataqueryBuilder) *table.PanelBuilder {
	exclude := make(map[string]bool, len(hidden))
	for _, h := range hidden {
		exclude[h] = true
	}
	p := table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Height(tableH).
		Span(half).
		Thresholds(neutral()).
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": exclude},
		})
	for i, t := range targets {
		p.WithTarget(t.RefId(refID(i)))
	}
	return p
}

// barGauge shows one horizontal bar per series of instant queries.
func barGauge(title, description, unit string, t *dashboard.ThresholdsConfigBuilder, targets ...*prometheus.DataqueryBuilder) *bargauge.PanelBuilder {
	p := bargauge.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unit).
		Height(tableH).
		Span(half).
		Thresholds(t).
		Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeGradient).
		ShowUnfilled(true).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
	for i, t := range targets {
		p.WithTarget(t.RefId(refID(i)))
	}
	return p
}

// histogramHeatmap shows a classic histogram's bucket rates as a heatmap (Grafana takes the
// buckets as they are, calculate off); unit is the histogram's, for the y axis.
func histogramHeatmap(title, description, unit string, t *prometheus.DataqueryBuilder) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Height(graphH).
		Span(half).
		MaxDataPoints(60).
		Calculate(false).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit(unit)).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).
			Scheme("Spectral").
			Fill("dark-orange").
			Scale(heatmap.HeatmapColorScaleExponential).
			Exponent(0.5).
			Steps(64)).
		CellGap(1).
		ShowValue(common.VisibilityModeNever).
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
		WithTarget(t.RefId("A"))
}

// promAnnotation marks the times an expression returns series, titled per series.
func promAnnotation(name, color, expr, title, text, tagKeys string) *dashboard.AnnotationQueryBuilder {
	return dashboard.NewAnnotationQueryBuilder().
		Name(name).
		Datasource(ds()).
		Enable(true).
		Hide(false).
		IconColor(color).
		Expr(expr).
		Step("60s").
		TitleFormat(title).
		TextFormat(text).
		TagKeys(tagKeys)
}

// versionAppeared is true for the five minutes after a model version starts serving somewhere:
// edgeloop_model_info is 1 for the serving version, so a (model, version) pair that did not
// exist five minutes earlier is a rollout (or a rollback) reaching its first node.
const versionAppeared = `count by (model, version) (edgeloop_model_info{model=~"$model"}) unless count by (model, version) (edgeloop_model_info{model=~"$model"} offset 5m)`

// versionAnnotation marks model versions starting to serve.
func versionAnnotation() *dashboard.AnnotationQueryBuilder {
	return promAnnotation("Model version rollouts", "purple", versionAppeared,
		"{{model}} {{version}} serving", "a node started serving {{model}} version {{version}}", "model,version")
}

// mvn selects the dashboard's model, version and node variables.
const mvn = `model=~"$model", version=~"$version", node=~"$node"`

// Recording rules of alerts/rules/edgeloop-recording.yml. The inference ones are by
// (model, version, node).
const (
	ruleP50          = `edgeloop:inference_duration_seconds:p50_5m`
	ruleP99          = `edgeloop:inference_duration_seconds:p99_5m`
	ruleRequests     = `edgeloop:inference_requests:rate5m`
	rulePredictions  = `edgeloop:inference_predictions:rate5m`
	ruleErrorRatio   = `edgeloop:inference_error_ratio:rate5m`
	ruleLowConfRatio = `edgeloop:inference_low_confidence_ratio:rate5m`
	// By node: the newest last-seen time over the collector instances.
	ruleLastSeen = `edgeloop:collector_node_last_seen_timestamp_seconds:max`
	// By (model, version): nodes serving the version.
	ruleModelNodes = `edgeloop:model_nodes:count`
	// By collector instance: samples accepted per second from the whole fleet.
	ruleAccepted = `edgeloop:collector_samples_accepted:rate5m`
)

// sel is metric{mvn}.
func sel(metric string) string { return metric + "{" + mvn + "}" }

// weighted averages a recorded per-(model, version, node) ratio over the selected series,
// weighting each by the rate of its denominator (requests for the error ratio, predictions for
// the low-confidence ratio), so that a quiet node does not count as much as a busy one; by is a
// grouping clause such as "by (model)", or empty for one number.
func weighted(ratioRule, weightRule, by string) string {
	if by != "" {
		by = " " + by
	}
	r, w := sel(ratioRule), sel(weightRule)
	return fmt.Sprintf("sum%s (%s * on (model, version, node) %s) / sum%s (%s)", by, r, w, by, w)
}

// PluginType is the plugin id of edgeloop's Grafana data source (grafana/plugin, nested in the
// edgeloop app; docs/grafana-plugin.md). The panels and annotations that come from it query
// the `edgeloop` data source variable of this type.
const PluginType = "edgeloop-edgeloop-datasource"

// pluginDS is the data source of the plugin's panels and annotations: the dashboard's
// `edgeloop` variable.
func pluginDS() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr(PluginType), Uid: ptr("${edgeloop}")}
}

// withPluginVar adds the `edgeloop` data source variable. Where the plugin is not installed
// (or no data source of it is configured) the variable has no options: the plugin's panels say
// that their data source is not found, and the rest of the dashboard, on Prometheus, works.
func (b *board) withPluginVar() {
	b.WithVariable(dashboard.NewDatasourceVariableBuilder("edgeloop").
		Label("edgeloop").
		Description("An edgeloop data source (the edgeloop Grafana app, docs/grafana-plugin.md) for the panels of samples, jobs and versions; without the plugin they show no data source and the rest of the dashboard works.").
		Type(PluginType))
}

// pluginQuery is one query of the edgeloop data source: a queryType and that type's fields, with
// the backend's JSON names (docs/grafana-plugin.md, "Queries"). The SDK has no type for the
// plugin's queries, so it is built as the SDK's map of an unknown query type.
type pluginQuery struct {
	refID     string
	queryType string
	fields    map[string]any
}

// Build builds the query with the plugin's data source variable.
func (q pluginQuery) Build() (variants.Dataquery, error) {
	out := variants.UnknownDataquery{"refId": q.refID, "queryType": q.queryType, "datasource": pluginDS()}
	for k, v := range q.fields {
		out[k] = v
	}
	return out, nil
}

// appLink links a panel to a page of the edgeloop app (/a/edgeloop-edgeloop-app/<page>), where
// users whose role allows it can act on what the panel shows.
func appLink(title, page string) cog.Builder[dashboard.DashboardLink] {
	return dashboard.NewDashboardLinkBuilder(title).
		Type(dashboard.DashboardLinkTypeLink).
		Url("/a/edgeloop-edgeloop-app/" + page).
		Tooltip("the edgeloop app's " + page + " page")
}

// pluginTable is a table of one query of the edgeloop data source; hidden names columns to
// leave out.
func pluginTable(title, description string, q pluginQuery, hidden ...string) *table.PanelBuilder {
	exclude := make(map[string]bool, len(hidden))
	for _, h := range hidden {
		exclude[h] = true
	}
	q.refID = "A"
	p := table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(pluginDS()).
		Height(tableH).
		Span(full).
		Thresholds(neutral()).
		WithTarget(q)
	if len(exclude) > 0 {
		p.WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": exclude},
		})
	}
	return p
}

// pluginAnnotation is an annotation query of the edgeloop data source (versionAnnotations,
// jobAnnotations), whose frames carry time, timeEnd, title, text and tags.
func pluginAnnotation(name, color string, q pluginQuery) *dashboard.AnnotationQueryBuilder {
	q.refID = "Anno"
	return dashboard.NewAnnotationQueryBuilder().
		Name(name).
		Datasource(pluginDS()).
		Enable(true).
		Hide(false).
		IconColor(color).
		Target(q)
}
