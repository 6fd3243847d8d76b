//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// lastSeen is each node's last batch answered 200, the newest over all collector instances (a
// node may have talked to several), recorded so that 10,000 nodes are not re-aggregated at
// every refresh.
const lastSeen = ruleLastSeen + `{node=~"$node"}`

// fleet is the fleet overview: is every node up and reporting, what runs where, what is firing.
func fleet() *dashboard.DashboardBuilder {
	b := newBoard("edgeloop-fleet", "edgeloop / Fleet overview",
		"Is every edge node up and sending, which model versions run where, what is firing. Needs alerts/rules/edgeloop-recording.yml loaded in Prometheus.")
	b.withModelVars()
	b.Annotation(versionAnnotation())

	errorThresholds := thresholds(base("green"), at(0.01, "yellow"), at(0.05, "red"))
	silentThresholds := thresholds(base("green"), at(900, "yellow"), at(3600, "red"))

	b.row("Fleet")
	b.add(
		singleStat("Exporters up",
			"Exporters Prometheus scraped successfully (up of job edgeloop-exporter).",
			units.Short, thresholds(base("red"), at(1, "green")),
			instant(`sum(up{job="edgeloop-exporter", node=~"$node"})`, "")),
		singleStat("Exporters down",
			"Exporter targets whose last scrape failed: the node, its network or the exporter is down.",
			units.Short, okIfZero(),
			instant(`count(up{job="edgeloop-exporter", node=~"$node"} == 0) or vector(0)`, "")),
		singleStat("Nodes silent > 1 h",
			"Nodes whose last batch the collector accepted is more than an hour old (edgeloop_collector_node_last_seen_timestamp_seconds, newest over the collector instances: recording rule edgeloop:collector_node_last_seen_timestamp_seconds:max): their uplink, sender or capture is stuck.",
			units.Short, okIfZero(),
			instant(`count(time() - `+lastSeen+` > 3600) or vector(0)`, "")),
		singleStat("Firing alerts",
			"Alerts firing now in Prometheus (ALERTS).",
			units.Short, okIfZero(),
			instant(`count(ALERTS{alertstate="firing"}) or vector(0)`, "")),
		singleStat("Requests/s",
			"Inference requests per second over the selection (recording rule edgeloop:inference_requests:rate5m).",
			units.RequestsPerSecond, neutral(),
			instant(`sum(`+sel(ruleRequests)+`)`, "")),
		singleStat("Error ratio",
			"Share of inference requests that failed (invalid_request, runtime_error, upstream_error; canceled does not count), weighted by traffic (recording rules edgeloop:inference_error_ratio:rate5m and edgeloop:inference_requests:rate5m).",
			units.PercentUnit, errorThresholds,
			instant(weighted(ruleErrorRatio, ruleRequests, ""), "")),
	)

	b.row("Models and versions")
	b.add(
		tablePanel("Versions deployed",
			"Nodes serving each model version now: count by (model, version) (edgeloop_model_info). More than one version per model means a rollout is in progress or stuck.",
			[]string{"Time"},
			tableQuery(`count by (model, version) (`+sel("edgeloop_model_info")+`)`)).
			OverrideByName("Value", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "nodes"}}),
		stacked(timeSeries("Nodes per model version",
			"Nodes serving each model version over time, the whole fleet whatever the node variable (edgeloop_model_info, recording rule edgeloop:model_nodes:count): a rollout shows as one band replacing another.",
			units.Short,
			target(ruleModelNodes+`{model=~"$model", version=~"$version"}`, "{{model}} {{version}}"))),
	)

	b.row("Traffic")
	b.add(
		stacked(timeSeries("Requests/s by model",
			"Inference requests per second by model (recording rule edgeloop:inference_requests:rate5m).",
			units.RequestsPerSecond,
			target(`sum by (model) (`+sel(ruleRequests)+`)`, "{{model}}"))),
		thresholdLines(timeSeries("Error ratio by model",
			"Share of requests that failed (invalid_request, runtime_error, upstream_error; canceled does not count), by model, weighted by traffic (edgeloop:inference_error_ratio:rate5m).",
			units.PercentUnit,
			target(weighted(ruleErrorRatio, ruleRequests, "by (model)"), "{{model}}")), errorThresholds).
			Min(0),
		timeSeries("p99 latency, slowest node",
			"The highest per-node 99th percentile of inference latency, by model (edgeloop:inference_duration_seconds:p99_5m).",
			units.Seconds,
			target(`max by (model) (`+sel(ruleP99)+`)`, "{{model}}")),
		timeSeries("Low-confidence share by model",
			"Share of predictions below the low-confidence threshold, by model, weighted by predictions (edgeloop:inference_low_confidence_ratio:rate5m, edgeloop:inference_predictions:rate5m).",
			units.PercentUnit,
			target(weighted(ruleLowConfRatio, rulePredictions, "by (model)"), "{{model}}")).
			Min(0),
	)

	b.row("Alerts and silent nodes")
	b.add(
		tablePanel("Alerts firing now",
			"Every alert firing now (ALERTS{alertstate=\"firing\"}), one row per alert with its labels.",
			[]string{"Time", "Value", "__name__", "alertstate"},
			tableQuery(`ALERTS{alertstate="firing"}`)),
		tablePanel("Longest-silent nodes",
			"The 20 nodes whose last accepted batch is oldest (time() - edgeloop_collector_node_last_seen_timestamp_seconds, via edgeloop:collector_node_last_seen_timestamp_seconds:max). Over an hour is the node-silent alert's threshold.",
			[]string{"Time"},
			tableQuery(`topk(20, time() - `+lastSeen+`)`)).
			Unit(units.Seconds).
			Thresholds(silentThresholds).
			OverrideByName("Value", []dashboard.DynamicConfigValue{
				{Id: "displayName", Value: "silent for"},
				{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}},
			}),
		bars(timeSeries("Silent nodes over time",
			"Nodes whose last accepted batch is more than an hour old, over time (edgeloop_collector_node_last_seen_timestamp_seconds).",
			units.Short,
			target(`count(time() - `+lastSeen+` > 3600) or vector(0)`, "silent nodes"))),
		timeSeries("Exporters up and down",
			"Exporter targets up and down over time (up of job edgeloop-exporter).",
			units.Short,
			target(`sum(up{job="edgeloop-exporter", node=~"$node"})`, "up"),
			target(`count(up{job="edgeloop-exporter", node=~"$node"} == 0) or vector(0)`, "down")).
			OverrideByName("down", []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}}}),
	)

	b.row("Model sync")
	b.add(
		timeSeries("Model sync staleness, worst node",
			"Time since model sync last reached the repository and kept the selected version serving (edgeloop_model_sync_last_success_timestamp_seconds), the most stale node per model.",
			units.Seconds,
			target(`max by (model) (time() - edgeloop_model_sync_last_success_timestamp_seconds{model=~"$model", node=~"$node"})`, "{{model}}")),
		bars(timeSeries("Model sync failures by reason",
			"Sync attempts that failed, by model and reason (edgeloop_model_sync_failures_total); the serving version stays. bad_signature, digest_mismatch and unknown_key are refused versions.",
			units.Short,
			target(`sum by (model, reason) (increase(edgeloop_model_sync_failures_total{model=~"$model", node=~"$node"}[$__rate_interval])) > 0`, "{{model}} {{reason}}"))),
	)
	return b.DashboardBuilder
}
