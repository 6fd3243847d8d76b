//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// rm selects the retrain controller's series: they carry only the model.
const rm = `model=~"$model"`

// publishedChanged is true where retrain published a new version of a model in the last 5
// minutes.
const publishedChanged = `changes(edgeloop_retrain_published_version{model=~"$model"}[5m]) > 0`

// retrain is the retraining dashboard: what woke the controller, how its jobs ended, what the
// gate decided, and which version it published and the fleet serves.
func retrain() *dashboard.DashboardBuilder {
	b := newBoard("edgeloop-retrain", "edgeloop / Retraining",
		"The retrain controller: triggers (Alertmanager or policy) and why some were skipped, training jobs and how they ended, the evaluation gate's decisions, and the versions published and served. Annotations mark published versions and versions reaching the fleet.")
	b.withModelVars()
	b.withPluginVar()
	b.Annotation(promAnnotation("Published versions", "green", publishedChanged,
		"{{model}} published", "retrain published a new version of {{model}}", "model"))
	b.Annotation(versionAnnotation())
	// Every model's versions: the plugin's model field takes one name, and the dashboard's model
	// variable is a multi-select regular expression.
	b.Annotation(pluginAnnotation("Model versions (edgeloop)", "blue", pluginQuery{queryType: "versionAnnotations"}))

	failedThresholds := okIfZero()

	b.row("Summary")
	b.add(
		singleStat("Active jobs",
			"Training jobs running now (edgeloop_retrain_active_jobs).",
			units.Short, neutral(),
			instant(`sum(edgeloop_retrain_active_jobs{`+rm+`})`, "")),
		singleStat("Promoted",
			"Jobs whose candidate the gate promoted and retrain published, in the dashboard's time range (edgeloop_retrain_jobs_total{result=\"promoted\"}).",
			units.Short, thresholds(base("blue")),
			instant(`sum(increase(edgeloop_retrain_jobs_total{`+rm+`, result="promoted"}[$__range])) or vector(0)`, "")),
		singleStat("Rejected by the gate",
			"Jobs whose candidate the gate refused, in the dashboard's time range (edgeloop_retrain_jobs_total{result=\"rejected\"}).",
			units.Short, thresholds(base("green"), at(1, "yellow")),
			instant(`sum(increase(edgeloop_retrain_jobs_total{`+rm+`, result="rejected"}[$__range])) or vector(0)`, "")),
		singleStat("Failed",
			"Jobs that failed, timed out or hit an error, in the dashboard's time range (edgeloop_retrain_jobs_total{result=~\"failed|timed_out|error\"}).",
			units.Short, failedThresholds,
			instant(`sum(increase(edgeloop_retrain_jobs_total{`+rm+`, result=~"failed|timed_out|error"}[$__range])) or vector(0)`, "")),
		singleStat("Since last promotion",
			"Time since the last job that ended with a published version, the most stale model (edgeloop_retrain_last_success_timestamp_seconds).",
			units.Seconds, thresholds(base("green"), at(7*86400, "yellow"), at(30*86400, "red")),
			instant(`max(time() - edgeloop_retrain_last_success_timestamp_seconds{`+rm+`})`, "")),
		singleStat("Mean job duration",
			"Mean duration of the jobs that ended in the dashboard's time range (edgeloop_retrain_job_duration_seconds).",
			units.Seconds, neutral(),
			instant(`sum(increase(edgeloop_retrain_job_duration_seconds_sum{`+rm+`}[$__range])) / sum(increase(edgeloop_retrain_job_duration_seconds_count{`+rm+`}[$__range]))`, "")),
	)

	b.row("Jobs")
	b.add(
		bars(timeSeries("Jobs by result",
			"Jobs ended per interval, by model and result (increase of edgeloop_retrain_jobs_total): promoted, rejected by the gate, failed, timed_out, cancelled, error.",
			units.Short,
			target(`sum by (model, result) (increase(edgeloop_retrain_jobs_total{`+rm+`}[$__rate_interval])) > 0`, "{{model}} {{result}}"))).
			OverrideByRegexp(".* (failed|timed_out|error)$", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			OverrideByRegexp(".* promoted$", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "green"}},
			}),
		barGauge("Jobs by result in range",
			"Jobs ended in the dashboard's time range, by result (increase of edgeloop_retrain_jobs_total).",
			units.Short, neutral(),
			instant(`sort_desc(sum by (result) (increase(edgeloop_retrain_jobs_total{`+rm+`}[$__range])))`, "{{result}}")).
			NamePlacement(common.BarGaugeNamePlacementLeft),
		timeSeries("Job duration",
			"Median and 90th percentile duration of the jobs that ended in the last day, by model (edgeloop_retrain_job_duration_seconds). Jobs are rare, so the window is a day, not the graph's interval.",
			units.Seconds,
			target(`histogram_quantile(0.5, sum by (model, le) (increase(edgeloop_retrain_job_duration_seconds_bucket{`+rm+`}[1d])))`, "{{model}} p50"),
			target(`histogram_quantile(0.9, sum by (model, le) (increase(edgeloop_retrain_job_duration_seconds_bucket{`+rm+`}[1d])))`, "{{model}} p90")).
			Min(0),
		timeSeries("Active jobs",
			"Training jobs running, by model (edgeloop_retrain_active_jobs).",
			units.Short,
			target(`sum by (model) (edgeloop_retrain_active_jobs{`+rm+`})`, "{{model}}")).
			LineInterpolation(common.LineInterpolationStepAfter).
			Min(0),
	)

	b.row("Gate and triggers")
	b.add(
		bars(timeSeries("Gate decisions",
			"The evaluation gate's decisions per interval, by model: promote the candidate or refuse it (increase of edgeloop_retrain_gate_decisions_total).",
			units.Short,
			target(`sum by (model, decision) (increase(edgeloop_retrain_gate_decisions_total{`+rm+`}[$__rate_interval])) > 0`, "{{model}} {{decision}}"))).
			OverrideByRegexp(".* refuse$", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "orange"}},
			}).
			OverrideByRegexp(".* promote$", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "green"}},
			}),
		barGauge("Gate decisions in range",
			"The gate's decisions in the dashboard's time range, by model and decision (increase of edgeloop_retrain_gate_decisions_total).",
			units.Short, neutral(),
			instant(`sort_desc(sum by (model, decision) (increase(edgeloop_retrain_gate_decisions_total{`+rm+`}[$__range])))`, "{{model}} {{decision}}")).
			NamePlacement(common.BarGaugeNamePlacementLeft),
		bars(timeSeries("Triggers by source",
			"Retraining triggers accepted per interval, by model and source (increase of edgeloop_retrain_triggers_total): an Alertmanager alert or a policy.",
			units.Short,
			target(`sum by (model, source) (increase(edgeloop_retrain_triggers_total{`+rm+`}[$__rate_interval])) > 0`, "{{model}} {{source}}"))),
		bars(timeSeries("Triggers skipped by reason",
			"Triggers the controller did not act on, by model and reason (increase of edgeloop_retrain_triggers_skipped_total), e.g. a job already running or a cooldown.",
			units.Short,
			target(`sum by (model, reason) (increase(edgeloop_retrain_triggers_skipped_total{`+rm+`}[$__rate_interval])) > 0`, "{{model}} {{reason}}"))),
	)

	b.row("Published and served versions")
	b.add(
		timeSeries("Published version",
			"The version retrain last published, per model (edgeloop_retrain_published_version); each step is a new version, also marked as an annotation.",
			units.Number,
			target(`max by (model) (edgeloop_retrain_published_version{`+rm+`})`, "{{model}}")).
			LineInterpolation(common.LineInterpolationStepAfter).
			Decimals(0),
		stacked(timeSeries("Nodes per served version",
			"Nodes serving each model version, the whole fleet whatever the node variable (edgeloop_model_info, recording rule edgeloop:model_nodes:count): after a publish, the new version's band grows as model sync hot-swaps it in on the nodes.",
			units.Short,
			target(ruleModelNodes+`{model=~"$model", version=~"$version"}`, "{{model}} {{version}}"))),
		tablePanel("Served versions now",
			"Nodes serving each model version now (count by (model, version) (edgeloop_model_info)).",
			[]string{"Time"},
			tableQuery(`count by (model, version) (`+sel("edgeloop_model_info")+`)`)).
			OverrideByName("Value", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "nodes"}}).
			Span(full).
			Height(7),
	)

	b.row("Jobs (edgeloop data source)")
	b.add(
		pluginTable("Retrain jobs",
			"The retrain controller's jobs overlapping the time range, every model, from the edgeloop data source (jobs query): phase, trigger, base and new version, the gate's verdict with the metric of candidate and current and its reason, the error. Needs the edgeloop Grafana app (docs/grafana-plugin.md): without it the panel has no data source. Cancel a job on the app's Jobs page (linked).",
			pluginQuery{queryType: "jobs"}, "started").
			Links([]cog.Builder[dashboard.DashboardLink]{appLink("Jobs in the edgeloop app", "jobs"), appLink("Versions in the edgeloop app", "versions")}).
			SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("created").Desc(true)}),
	)
	return b.DashboardBuilder
}
