//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// Selectors of the pipeline dashboard: the sampler's series have a model, the spool's and the
// sender's only the node (the scrape target's label), the collector's per-node ones the node
// that sent, the catalog's a model and version.
const (
	nodeOnly     = `node=~"$node"`
	modelNode    = `model=~"$model", node=~"$node"`
	modelVersion = `model=~"$model", version=~"$version"`
)

// pipeline is the data pipeline dashboard: from a prediction chosen for capture on the edge,
// through the spool and the uplink, to the collector's write-ahead log, shards and catalog.
func pipeline() *dashboard.DashboardBuilder {
	b := newBoard("edgeloop-pipeline", "edgeloop / Data pipeline",
		"Captured samples on their way from the edge to the data center: sampler, spool and sender on the nodes, then the collector's ingest, write-ahead log, shard uploads and catalog.")
	b.withModelVars()
	b.withPluginVar()
	b.WithVariable(sampleModelVar())

	ageThresholds := thresholds(base("green"), at(3600, "yellow"), at(6*3600, "red"))

	b.row("Capture (edge)")
	b.add(
		stacked(timeSeries("Captured samples/s by strategy",
			"Predictions chosen for capture per second, by model and the strategy that chose them (rate of edgeloop_samples_captured_total).",
			units.OpsPerSecond,
			target(`sum by (model, strategy) (rate(edgeloop_samples_captured_total{`+modelNode+`}[$__rate_interval]))`, "{{model}} {{strategy}}"))),
		timeSeries("Capture share",
			"Captured over considered predictions, by model (edgeloop_samples_captured_total / edgeloop_samples_considered_total).",
			units.PercentUnit,
			target(`sum by (model) (rate(edgeloop_samples_captured_total{`+modelNode+`}[$__rate_interval])) / sum by (model) (rate(edgeloop_samples_considered_total{`+modelNode+`}[$__rate_interval]))`, "{{model}}")).
			Min(0),
		bars(timeSeries("Skipped samples by reason",
			"Predictions that matched a strategy but were not captured, by reason (rate of edgeloop_samples_skipped_total): probability, rate_limit and byte_budget are policy; spool_full, spool_unavailable and too_large mean the node is short of disk or uplink.",
			units.OpsPerSecond,
			target(`sum by (reason) (rate(edgeloop_samples_skipped_total{`+modelNode+`}[$__rate_interval])) > 0`, "{{reason}}"))),
		bars(timeSeries("Dropped spool records by reason",
			"Records the spool dropped unsent, by reason (rate of edgeloop_spool_dropped_records_total): full and full_newest when max_bytes is reached, age past max_age. Lost samples.",
			units.OpsPerSecond,
			target(`sum by (reason) (rate(edgeloop_spool_dropped_records_total{`+nodeOnly+`}[$__rate_interval])) > 0`, "{{reason}}"))),
	)

	b.row("Spool backlog (edge)")
	b.add(
		timeSeries("Spool records, largest backlogs",
			"Unacked records in the spool: the ten nodes with the most, and the fleet's total (edgeloop_spool_records).",
			units.Short,
			target(`topk(10, edgeloop_spool_records{`+nodeOnly+`})`, "{{node}}"),
			target(`sum(edgeloop_spool_records{`+nodeOnly+`})`, "total")).
			Span(third),
		timeSeries("Spool bytes, largest backlogs",
			"Bytes of unacked records, what spool max_bytes bounds: the ten nodes with the most (edgeloop_spool_bytes).",
			units.BytesIEC,
			target(`topk(10, edgeloop_spool_bytes{`+nodeOnly+`})`, "{{node}}")).
			Span(third),
		thresholdLines(timeSeries("Oldest unsent record, age",
			"Age of the oldest unacked record, the uplink's backlog in time: the ten nodes furthest behind (edgeloop_spool_oldest_record_age_seconds).",
			units.Seconds,
			target(`topk(10, edgeloop_spool_oldest_record_age_seconds{`+nodeOnly+`})`, "{{node}}")),
			ageThresholds).
			Span(third),
	)
	b.add(
		singleStat("Spools paused",
			"Nodes whose spool refuses appends on disk errors (edgeloop_spool_paused): capture pauses there, inference goes on.",
			units.Short, okIfZero(),
			instant(`count(edgeloop_spool_paused{`+nodeOnly+`} == 1) or vector(0)`, "")),
		singleStat("Corrupt spool records",
			"Damaged spool records skipped in the dashboard's time range (increase of edgeloop_spool_corrupt_records_total).",
			units.Short, okIfZero(),
			instant(`sum(increase(edgeloop_spool_corrupt_records_total{`+nodeOnly+`}[$__range])) or vector(0)`, "")),
		singleStat("Unsynced records",
			"Records written but not yet fsynced, over the selection: what a power cut would take now (edgeloop_spool_unsynced_records).",
			units.Short, neutral(),
			instant(`sum(edgeloop_spool_unsynced_records{`+nodeOnly+`})`, "")),
		singleStat("Dead-letter bytes",
			"Bytes held in the senders' dead-letter directories (edgeloop_sender_dead_letter_bytes).",
			units.BytesIEC, thresholds(base("green"), at(1, "yellow")),
			instant(`sum(edgeloop_sender_dead_letter_bytes{`+nodeOnly+`})`, "")),
		singleStat("Nodes backing off",
			"Senders waiting out a retry backoff now (edgeloop_sender_backoff_seconds > 0).",
			units.Short, thresholds(base("green"), at(1, "yellow")),
			instant(`count(edgeloop_sender_backoff_seconds{`+nodeOnly+`} > 0) or vector(0)`, "")),
		singleStat("Longest without delivery",
			"Time since the sender's last answer 200, the node furthest behind (edgeloop_sender_last_success_timestamp_seconds; nodes that never delivered are left out).",
			units.Seconds, ageThresholds,
			instant(`max(time() - (edgeloop_sender_last_success_timestamp_seconds{`+nodeOnly+`} > 0))`, "")),
	)

	b.row("Uplink (sender)")
	b.add(
		timeSeries("Uplink bytes/s",
			"Compressed request bytes per second that got an answer from the collector (rate of edgeloop_sender_bytes_sent_total).",
			units.BytesPerSecondSI,
			target(`sum(rate(edgeloop_sender_bytes_sent_total{`+nodeOnly+`}[$__rate_interval]))`, "sent")).
			Span(third),
		timeSeries("Samples sent, rejected, dead-lettered",
			"Samples per second the collector took, rejected as invalid, and dead-lettered by reason (edgeloop_sender_samples_sent_total, edgeloop_sender_samples_rejected_total, edgeloop_sender_dead_letter_samples_total).",
			units.OpsPerSecond,
			target(`sum(rate(edgeloop_sender_samples_sent_total{`+nodeOnly+`}[$__rate_interval]))`, "sent"),
			target(`sum(rate(edgeloop_sender_samples_rejected_total{`+nodeOnly+`}[$__rate_interval]))`, "rejected"),
			target(`sum by (reason) (rate(edgeloop_sender_dead_letter_samples_total{`+nodeOnly+`}[$__rate_interval]))`, "dead-lettered {{reason}}")).
			Span(third),
		bars(timeSeries("Sender errors by reason",
			"Sender failures per second, by reason (rate of edgeloop_sender_errors_total): network is no answer at all, http_4xx_auth a bad credential, http_429 and http_503 the collector shedding load.",
			units.OpsPerSecond,
			target(`sum by (reason) (rate(edgeloop_sender_errors_total{`+nodeOnly+`}[$__rate_interval])) > 0`, "{{reason}}"))).
			Span(third),
		timeSeries("Batches by outcome",
			"Batch requests per second, sent (200) or failed (rate of edgeloop_sender_batches_total).",
			units.RequestsPerSecond,
			target(`sum by (outcome) (rate(edgeloop_sender_batches_total{`+nodeOnly+`}[$__rate_interval]))`, "{{outcome}}")).
			Span(third),
		timeSeries("Sender request duration",
			"Duration of the senders' requests, whatever their outcome: median and 99th percentile over the selection (edgeloop_sender_request_duration_seconds).",
			units.Seconds,
			target(`histogram_quantile(0.5, sum by (le) (rate(edgeloop_sender_request_duration_seconds_bucket{`+nodeOnly+`}[$__rate_interval])))`, "p50"),
			target(`histogram_quantile(0.99, sum by (le) (rate(edgeloop_sender_request_duration_seconds_bucket{`+nodeOnly+`}[$__rate_interval])))`, "p99")).
			Span(third),
		timeSeries("Throttled share",
			"Share of time the senders spent waiting for their drain rate limits (rate of edgeloop_sender_throttled_seconds_total), the highest nodes.",
			units.PercentUnit,
			target(`topk(10, rate(edgeloop_sender_throttled_seconds_total{`+nodeOnly+`}[$__rate_interval]))`, "{{node}}")).
			Span(third),
	)

	b.row("Collector ingest")
	b.add(
		timeSeries("Samples received, accepted, duplicate, rejected",
			"Samples per second at the collector: received in decoded batches, accepted into the write-ahead log, already held (duplicates of a resend), and rejected by reason (edgeloop_collector_samples_received_total, _accepted_total, _duplicate_total, _rejected_total). Accepted is the whole fleet's, recorded per collector (edgeloop:collector_samples_accepted:rate5m), and rejections are not per node: the node variable narrows only received and duplicate.",
			units.OpsPerSecond,
			target(`sum(rate(edgeloop_collector_samples_received_total{`+nodeOnly+`}[$__rate_interval]))`, "received"),
			target(`sum(`+ruleAccepted+`)`, "accepted"),
			target(`sum(rate(edgeloop_collector_samples_duplicate_total{`+nodeOnly+`}[$__rate_interval]))`, "duplicate"),
			target(`sum by (reason) (rate(edgeloop_collector_samples_rejected_total[$__rate_interval]))`, "rejected {{reason}}")).
			Span(third),
		stacked(timeSeries("Ingest requests by status",
			"Answers of /v1/samples and /v1/limits per second by HTTP status (rate of edgeloop_collector_requests_total): 401 is a bad node credential, 503 the collector shedding load.",
			units.RequestsPerSecond,
			target(`sum by (code) (rate(edgeloop_collector_requests_total[$__rate_interval]))`, "{{code}}"))).
			Span(third),
		timeSeries("Ingest bytes/s and requests in flight",
			"Request body bytes read per second, as sent (rate of edgeloop_collector_received_bytes_total), and ingest requests in flight (edgeloop_collector_inflight_requests, right axis).",
			units.BytesPerSecondSI,
			target(`sum(rate(edgeloop_collector_received_bytes_total[$__rate_interval]))`, "received"),
			target(`sum(edgeloop_collector_inflight_requests)`, "in flight")).
			OverrideByName("in flight", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: units.Short},
				{Id: "custom.axisPlacement", Value: "right"},
			}).
			Span(third),
	)

	b.row("Write-ahead log and shards (collector)")
	b.add(
		timeSeries("WAL backlog",
			"Records and bytes in the collector's write-ahead log, waiting for a shard upload (edgeloop_collector_wal_records, edgeloop_collector_wal_bytes, right axis); ingest.max_wal_bytes bounds the bytes.",
			units.Short,
			target(`sum(edgeloop_collector_wal_records)`, "records"),
			target(`sum(edgeloop_collector_wal_bytes)`, "bytes")).
			OverrideByName("bytes", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: units.BytesIEC},
				{Id: "custom.axisPlacement", Value: "right"},
			}).
			Span(third),
		thresholdLines(timeSeries("WAL oldest record, age",
			"Age of the oldest record in each collector's write-ahead log: how far shard uploads are behind (edgeloop_collector_wal_oldest_record_age_seconds).",
			units.Seconds,
			target(`edgeloop_collector_wal_oldest_record_age_seconds`, "{{instance}}")),
			ageThresholds).
			Span(third),
		bars(timeSeries("WAL problems",
			"Corrupt, undecodable and lost write-ahead log records (increase of edgeloop_collector_wal_corrupt_records_total, edgeloop_collector_wal_undecodable_records_total, edgeloop_collector_wal_lost_records_total: damaged before a shard could read them back), and collectors whose log is paused on disk errors (edgeloop_collector_wal_paused).",
			units.Short,
			target(`sum(increase(edgeloop_collector_wal_corrupt_records_total[$__rate_interval]))`, "corrupt"),
			target(`sum(increase(edgeloop_collector_wal_undecodable_records_total[$__rate_interval]))`, "undecodable"),
			target(`sum(increase(edgeloop_collector_wal_lost_records_total[$__rate_interval]))`, "lost"),
			target(`sum(edgeloop_collector_wal_paused)`, "paused"))).
			Span(third),
		bars(timeSeries("Shard uploads by outcome",
			"Shard upload attempts per second, success or failure (retried with backoff) (rate of edgeloop_collector_shard_uploads_total), and failed object-store requests (rate of edgeloop_collector_objstore_errors_total).",
			units.OpsPerSecond,
			target(`sum by (outcome) (rate(edgeloop_collector_shard_uploads_total[$__rate_interval]))`, "{{outcome}}"),
			target(`sum(rate(edgeloop_collector_objstore_errors_total[$__rate_interval]))`, "object store errors"))).
			OverrideByRegexp("failure|object store errors", []dashboard.DynamicConfigValue{
				{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			}).
			Span(third),
		timeSeries("Shard upload bytes/s and duration",
			"Bytes of shards and indexes uploaded per second (rate of edgeloop_collector_shard_upload_bytes_total) and the 99th percentile duration of successful uploads (edgeloop_collector_shard_upload_duration_seconds, right axis).",
			units.BytesPerSecondSI,
			target(`sum(rate(edgeloop_collector_shard_upload_bytes_total[$__rate_interval]))`, "uploaded"),
			target(`histogram_quantile(0.99, sum by (le) (rate(edgeloop_collector_shard_upload_duration_seconds_bucket[$__rate_interval])))`, "p99 duration")).
			OverrideByName("p99 duration", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: units.Seconds},
				{Id: "custom.axisPlacement", Value: "right"},
			}).
			Span(third),
		timeSeries("Shards pending",
			"Shards open or waiting for upload (edgeloop_collector_shards_pending).",
			units.Short,
			target(`sum(edgeloop_collector_shards_pending)`, "pending")).
			Span(third),
	)

	b.row("Catalog (object store)")
	b.add(
		barGauge("Catalog samples by model and version",
			"Distinct samples in the object store per model version, as the catalog knows them (edgeloop_collector_catalog_samples). Every collector instance reports the whole catalog, hence max, not sum.",
			units.Short, neutral(),
			instant(`sort_desc(sum by (model, version) (max by (model, version, reason) (edgeloop_collector_catalog_samples{`+modelVersion+`})))`, "{{model}} {{version}}")).
			Span(third),
		barGauge("Catalog bytes by model and version",
			"Bytes of those samples, metadata and input (edgeloop_collector_catalog_bytes).",
			units.BytesIEC, neutral(),
			instant(`sort_desc(max by (model, version) (edgeloop_collector_catalog_bytes{`+modelVersion+`}))`, "{{model}} {{version}}")).
			Span(third),
		stacked(timeSeries("Catalog samples by capture reason",
			"Distinct samples in the object store by capture reason over time (edgeloop_collector_catalog_samples).",
			units.Short,
			target(`sum by (reason) (max by (model, version, reason) (edgeloop_collector_catalog_samples{`+modelVersion+`}))`, "{{reason}}"))).
			Span(third),
	)

	b.row("Captured samples (edgeloop data source)")
	b.add(
		pluginTable("Recent low-confidence samples",
			"The newest samples of the model chosen in \"Samples of\" whose top softmax score is at most 0.6 (the exporter's default low_confidence_threshold), from the edgeloop data source (samples query, 20 rows), with the sample's thumbnail (the plugin's thumbnail resource, loaded by the browser signed in to Grafana), prediction, confidence and label. Needs the edgeloop Grafana app (docs/grafana-plugin.md): without it the panel has no data source. Label them on the app's Sample review page (linked).",
			pluginQuery{queryType: "samples", fields: map[string]any{"model": "${sample_model}", "maxConfidence": lowConfidence, "limit": 20}},
			"model", "key", "request_id", "annotator", "labelled").
			OverrideByName("thumbnail_url", []dashboard.DynamicConfigValue{
				{Id: "custom.cellOptions", Value: map[string]any{"type": "image"}},
				{Id: "displayName", Value: "thumbnail"},
				{Id: "custom.width", Value: 80},
			}).
			CellHeight(common.TableCellHeightLg).
			Height(12).
			Links([]cog.Builder[dashboard.DashboardLink]{appLink("Sample review in the edgeloop app", "review")}),
	)
	return b.DashboardBuilder
}

// lowConfidence is the confidence under which the samples panel shows a sample: the exporter's
// default inference.low_confidence_threshold (docs/configuration.md).
const lowConfidence = 0.6

// sampleModelVar is the one model whose samples the samples panel shows: the plugin's samples
// query needs a model name, and the model variable is a multi-select regular expression.
func sampleModelVar() *dashboard.QueryVariableBuilder {
	q := `label_values(` + modelSel + `, model)`
	return dashboard.NewQueryVariableBuilder("sample_model").
		Label("Samples of").
		Description("The model whose samples the panel of recent low-confidence samples shows (the edgeloop data source's samples query takes one model).").
		Datasource(ds()).
		Query(dashboard.StringOrMap{String: &q}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortNaturalAsc).
		Multi(false).
		IncludeAll(false)
}
