//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// inference is the inference quality dashboard: latency, confidence and drift by model, version
// and node.
func inference() *dashboard.DashboardBuilder {
	b := newBoard("edgeloop-inference", "edgeloop / Inference quality",
		"Latency, errors, confidence and drift of the models the exporters serve, by model, version and node. Quantiles and ratios come from alerts/rules/edgeloop-recording.yml, which must be loaded in Prometheus.")
	b.withModelVars()
	b.Annotation(versionAnnotation())

	errorThresholds := thresholds(base("green"), at(0.01, "yellow"), at(0.05, "red"))
	latencyThresholds := thresholds(base("green"), at(0.1, "yellow"), at(0.5, "red"))
	psiThresholds := thresholds(base("green"), at(0.1, "yellow"), at(0.25, "red"))
	accuracyThresholds := thresholds(base("red"), at(0.7, "yellow"), at(0.85, "green"))
	lowConfThresholds := thresholds(base("green"), at(0.2, "yellow"), at(0.4, "red"))

	b.row("Summary")
	b.add(
		singleStat("Requests/s",
			"Inference requests per second over the selection (edgeloop:inference_requests:rate5m).",
			units.RequestsPerSecond, neutral(),
			instant(`sum(`+sel(ruleRequests)+`)`, "")),
		singleStat("Error ratio",
			"Share of requests that failed (invalid_request, runtime_error, upstream_error; canceled does not count), weighted by traffic (edgeloop:inference_error_ratio:rate5m).",
			units.PercentUnit, errorThresholds,
			instant(weighted(ruleErrorRatio, ruleRequests, ""), "")),
		singleStat("p99 latency, slowest node",
			"The highest per-node 99th percentile of inference latency over the last 5 minutes (edgeloop:inference_duration_seconds:p99_5m).",
			units.Seconds, latencyThresholds,
			instant(`max(`+sel(ruleP99)+`)`, "")),
		singleStat("Low-confidence share",
			"Share of predictions below inference.low_confidence_threshold, weighted by predictions (edgeloop:inference_low_confidence_ratio:rate5m, edgeloop:inference_predictions:rate5m).",
			units.PercentUnit, lowConfThresholds,
			instant(weighted(ruleLowConfRatio, rulePredictions, ""), "")),
		singleStat("Estimated accuracy, lowest node",
			"Mean top-1 probability over the sliding window, the lowest node (edgeloop_estimated_accuracy): a label-free accuracy estimate; absent until the window is full.",
			units.PercentUnit, accuracyThresholds,
			instant(`min(`+sel("edgeloop_estimated_accuracy")+`)`, "")),
		singleStat("Confidence PSI, highest node",
			"Population stability index of the confidence distribution against the model's reference, the highest node (edgeloop_confidence_psi). Below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one.",
			units.Number, psiThresholds,
			instant(`max(`+sel("edgeloop_confidence_psi")+`)`, "")).
			Decimals(3),
	)

	b.row("Latency and errors")
	b.add(
		histogramHeatmap("Latency distribution",
			"Inference latency of every request in the selection, whatever its outcome, as a heatmap of the classic histogram's buckets (rate of edgeloop_inference_duration_seconds_bucket).",
			units.Seconds,
			heatmapQuery(`sum by (le) (rate(`+sel("edgeloop_inference_duration_seconds_bucket")+`[$__rate_interval]))`)),
		thresholdLines(timeSeries("Latency p50 and p99",
			"Per model and version: the median node's p50 and the slowest node's p99 (edgeloop:inference_duration_seconds:p50_5m, :p99_5m).",
			units.Seconds,
			target(`quantile by (model, version) (0.5, `+sel(ruleP50)+`)`, "{{model}} {{version}} p50"),
			target(`max by (model, version) (`+sel(ruleP99)+`)`, "{{model}} {{version}} p99")),
			latencyThresholds).
			Min(0),
		timeSeries("Slowest nodes, p99",
			"The ten model version and node pairs with the highest 99th percentile latency (edgeloop:inference_duration_seconds:p99_5m).",
			units.Seconds,
			target(`topk(10, `+sel(ruleP99)+`)`, "{{model}} {{version}} {{node}}")).
			Min(0),
		stacked(timeSeries("Requests/s by model and version",
			"Inference requests per second (edgeloop:inference_requests:rate5m).",
			units.RequestsPerSecond,
			target(`sum by (model, version) (`+sel(ruleRequests)+`)`, "{{model}} {{version}}"))),
		thresholdLines(timeSeries("Error ratio by model and version",
			"Share of requests that failed (invalid_request, runtime_error, upstream_error; canceled does not count), weighted by traffic (edgeloop:inference_error_ratio:rate5m).",
			units.PercentUnit,
			target(weighted(ruleErrorRatio, ruleRequests, "by (model, version)"), "{{model}} {{version}}")),
			errorThresholds).
			Min(0),
		bars(timeSeries("Failed requests by outcome",
			"Requests per second that did not succeed, by outcome: invalid_request (the client's fault), runtime_error, upstream_error, canceled (rate of edgeloop_inference_requests_total).",
			units.RequestsPerSecond,
			target(`sum by (model, outcome) (rate(edgeloop_inference_requests_total{`+mvn+`, outcome!="success"}[$__rate_interval])) > 0`, "{{model}} {{outcome}}"))),
	)

	b.row("Confidence and drift")
	b.add(
		histogramHeatmap("Confidence distribution",
			"Confidence of each prediction by the configured scorer, 0 to 1, as a heatmap of the classic histogram's buckets (rate of edgeloop_inference_confidence_bucket). Mass moving down is the model growing unsure.",
			units.PercentUnit,
			heatmapQuery(`sum by (le) (rate(`+sel("edgeloop_inference_confidence_bucket")+`[$__rate_interval]))`)),
		thresholdLines(timeSeries("Low-confidence share",
			"Share of predictions below inference.low_confidence_threshold, by model and version, weighted by predictions (edgeloop:inference_low_confidence_ratio:rate5m, edgeloop:inference_predictions:rate5m).",
			units.PercentUnit,
			target(weighted(ruleLowConfRatio, rulePredictions, "by (model, version)"), "{{model}} {{version}}")),
			lowConfThresholds).
			Min(0),
		thresholdLines(timeSeries("Confidence PSI",
			"Population stability index of the confidence distribution against the model's reference (edgeloop_confidence_psi): the highest node per model and version, and the five highest nodes. Below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one.",
			units.Number,
			target(`max by (model, version) (`+sel("edgeloop_confidence_psi")+`)`, "{{model}} {{version}} max"),
			target(`topk(5, `+sel("edgeloop_confidence_psi")+`)`, "{{model}} {{version}} {{node}}")),
			psiThresholds).
			Min(0).
			Decimals(3),
		thresholdLines(timeSeries("Estimated accuracy",
			"Mean top-1 probability over the sliding window (edgeloop_estimated_accuracy), a label-free accuracy estimate, calibrated with the temperature the gate fitted when the manifest has one: the mean over nodes per model and version, and the five lowest nodes.",
			units.PercentUnit,
			target(`avg by (model, version) (`+sel("edgeloop_estimated_accuracy")+`)`, "{{model}} {{version}} mean"),
			target(`bottomk(5, `+sel("edgeloop_estimated_accuracy")+`)`, "{{model}} {{version}} {{node}}")),
			accuracyThresholds).
			Max(1),
		stacked(timeSeries("Predictions by class, share",
			"Share of predictions by top-1 class (rate of edgeloop_inference_predictions_total): a changing class mix is drift in the input.",
			units.PercentUnit,
			target(`sum by (class) (rate(`+sel("edgeloop_inference_predictions_total")+`[$__rate_interval])) / scalar(sum(rate(`+sel("edgeloop_inference_predictions_total")+`[$__rate_interval])))`, "{{class}}"))).
			Min(0).Max(1),
		barGauge("Predictions by class",
			"Predictions in the dashboard's time range by top-1 class (increase of edgeloop_inference_predictions_total).",
			units.Short, neutral(),
			instant(`sort_desc(sum by (class) (increase(`+sel("edgeloop_inference_predictions_total")+`[$__range])))`, "{{class}}")).
			NamePlacement(common.BarGaugeNamePlacementLeft),
		bars(timeSeries("Unscorable outputs",
			"Outputs or rows the scorer could not score, by reason (rate of edgeloop_confidence_errors_total): shape_mismatch, not_normalized or nan mean the model's output is not what the scorer expects.",
			units.OpsPerSecond,
			target(`sum by (model, reason) (rate(`+sel("edgeloop_confidence_errors_total")+`[$__rate_interval])) > 0`, "{{model}} {{reason}}"))),
	)

	// The signals beyond confidence exist only where the exporter turns them on and the
	// version's manifest has a drift reference (docs/drift.md); elsewhere the panels are empty.
	b.row("Input, class-mix and embedding drift")
	b.add(
		thresholdLines(timeSeries("Class-mix distance",
			"Jensen-Shannon distance (0 to 1) of the predicted-class mix in the window to the evaluation set's (edgeloop_class_mix_js_distance): the highest node per model and version, and the five highest nodes. Sampling alone reads about 0.05; EdgeloopClassMixDrift fires above 0.2. Empty unless inference.drift.signals.class_mix is on.",
			units.Number,
			target(`max by (model, version) (`+sel("edgeloop_class_mix_js_distance")+`)`, "{{model}} {{version}} max"),
			target(`topk(5, `+sel("edgeloop_class_mix_js_distance")+`)`, "{{model}} {{version}} {{node}}")),
			thresholds(base("green"), at(0.1, "yellow"), at(0.2, "red"))).
			Min(0).
			Decimals(3),
		thresholdLines(timeSeries("Input mean shift",
			"Mean of each input channel over the window minus the evaluation set's, in its standard deviations (edgeloop_input_mean_shift): the five nodes and channels furthest from 0. EdgeloopInputMeanShift fires beyond ±0.5. Empty unless inference.drift.signals.input is on.",
			units.Number,
			target(sel("edgeloop_input_mean_shift")+` and on (node, model, version, channel) topk(5, abs(`+sel("edgeloop_input_mean_shift")+`))`, "{{model}} {{version}} {{node}} ch {{channel}}")),
			thresholds(base("red"), at(-0.5, "green"), at(0.5, "red"))).
			Decimals(2),
		thresholdLines(timeSeries("Input spread ratio",
			"Standard deviation of each input channel over the window divided by the evaluation set's (edgeloop_input_std_ratio): the five nodes and channels furthest from 1. EdgeloopInputSpreadChange fires above 1.5 or below 1/1.5.",
			units.Number,
			target(sel("edgeloop_input_std_ratio")+` and on (node, model, version, channel) topk(5, abs(ln(`+sel("edgeloop_input_std_ratio")+`)))`, "{{model}} {{version}} {{node}} ch {{channel}}")),
			thresholds(base("red"), at(0.667, "green"), at(1.5, "red"))).
			Min(0).
			Decimals(2),
		thresholdLines(timeSeries("Input sketch PSI",
			"PSI of the histogram of fixed random projections of the input against the evaluation set's (edgeloop_input_sketch_psi): the highest projection per model and version, and the five highest nodes. It sees changes that keep channel means and spreads, such as occlusion. EdgeloopInputSketchDrift fires above 0.25.",
			units.Number,
			target(`max by (model, version) (`+sel("edgeloop_input_sketch_psi")+`)`, "{{model}} {{version}} max"),
			target(`topk(5, max by (model, version, node) (`+sel("edgeloop_input_sketch_psi")+`))`, "{{model}} {{version}} {{node}}")),
			psiThresholds).
			Min(0).
			Decimals(3),
		thresholdLines(timeSeries("Embedding distance",
			"Maximum mean discrepancy between the model's embeddings in the window and the evaluation set's (edgeloop_embedding_mmd): the highest node per model and version, and the five highest nodes. It sees what changes the features the model classifies. Sampling alone reads below 0.05 with the default window of 256; EdgeloopEmbeddingDrift fires above 0.1. Empty unless inference.drift.signals.embedding is on and the model has an embedding output.",
			units.Number,
			target(`max by (model, version) (`+sel("edgeloop_embedding_mmd")+`)`, "{{model}} {{version}} max"),
			target(`topk(5, `+sel("edgeloop_embedding_mmd")+`)`, "{{model}} {{version}} {{node}}")),
			thresholds(base("green"), at(0.05, "yellow"), at(0.1, "red"))).
			Min(0).
			Decimals(3),
	)
	return b.DashboardBuilder
}
