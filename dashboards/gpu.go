//lint:file-ignore SA1019 The classic dashboard schema is deprecated in the SDK in favour of dashboardv2, which only Grafana 12 with its new dashboard API imports; the classic JSON imports everywhere.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// ng selects the GPU dashboard's node and gpu variables. A MIG device carries its parent's gpu
// index, so selecting a GPU selects its MIG devices too.
const ng = `node=~"$node", gpu=~"$gpu"`

// gsel is metric{ng}.
func gsel(metric string) string { return metric + "{" + ng + "}" }

// Legends: a physical GPU, and a device that may be a MIG instance (profile and instance id
// are empty on a full GPU).
const (
	gpuLegend = "{{node}} GPU {{gpu}}"
	migLegend = "{{node}} GPU {{gpu}} {{gpu_instance_profile}} {{gpu_instance_id}}"
)

// needsGPU ends every GPU panel's description.
const needsGPU = " Needs an NVIDIA GPU and its driver (NVML) on the node with gpu.enabled and the default gpu.naming: edgeloop; CPU-only nodes and Jetson have no GPU series."

// gpu is the GPU dashboard: per node and GPU, MIG instances included, from the exporter's NVML
// collectors (docs/gpu.md).
func gpu() *dashboard.DashboardBuilder {
	b := newBoard("edgeloop-gpu", "edgeloop / GPU",
		"NVIDIA GPUs of the edge nodes, read through NVML by the exporter: utilization, memory, temperature, power, clocks, XID and ECC errors, remapped rows, per-process memory. MIG aware: a MIG device is labelled with its parent's gpu index, gpu_instance_id and gpu_instance_profile. Every panel needs an NVIDIA GPU; see docs/gpu.md.")
	b.WithVariable(queryVar("node", "Node", `edgeloop_gpu_nvml_up`))
	b.WithVariable(queryVar("gpu", "GPU", `edgeloop_gpu_info{node=~"$node"}`))

	tempThresholds := thresholds(base("green"), at(80, "yellow"), at(90, "red"))

	b.row("Devices")
	b.add(
		singleStat("Nodes without NVML",
			"Exporters running without NVML (edgeloop_gpu_nvml_up == 0): no driver or libnvidia-ml.so, or a container started without the NVIDIA runtime. Expected on CPU-only nodes and Jetson."+needsGPU,
			units.Short, okIfZero(),
			instant(`count(edgeloop_gpu_nvml_up{node=~"$node"} == 0) or vector(0)`, "")),
		singleStat("GPUs",
			"GPUs NVML reports (edgeloop_gpu_devices), MIG devices not counted."+needsGPU,
			units.Short, neutral(),
			instant(`sum(edgeloop_gpu_devices{node=~"$node"})`, "")),
		singleStat("MIG devices",
			"MIG devices (one per compute instance) on the selected GPUs (edgeloop_gpu_info with a gpu_instance_id)."+needsGPU,
			units.Short, neutral(),
			instant(`count(edgeloop_gpu_info{`+ng+`, gpu_instance_id!=""}) or vector(0)`, "")),
		singleStat("Failing GPU collectors",
			"GPU sub-collectors that failed on their last scrape (edgeloop_exporter_scrape_collector_success == 0 for collector gpu_*): an NVML error other than NOT_SUPPORTED, logged by the exporter."+needsGPU,
			units.Short, okIfZero(),
			instant(`count(edgeloop_exporter_scrape_collector_success{node=~"$node", collector=~"gpu_.*"} == 0) or vector(0)`, "")),
		singleStat("Row remaps pending a reset",
			"GPUs with a memory row remapping waiting for a GPU reset (edgeloop_gpu_remapped_rows_pending)."+needsGPU,
			units.Short, thresholds(base("green"), at(1, "yellow")),
			instant(`sum(`+gsel("edgeloop_gpu_remapped_rows_pending")+`) or vector(0)`, "")),
		singleStat("Row remap failures",
			"GPUs where a memory row remapping failed (edgeloop_gpu_remapped_rows_failure): the GPU needs service."+needsGPU,
			units.Short, okIfZero(),
			instant(`sum(`+gsel("edgeloop_gpu_remapped_rows_failure")+`) or vector(0)`, "")),
	)
	b.add(
		tablePanel("GPU and MIG inventory",
			"Every GPU and MIG device with its model, UUID, MIG profile and instance, driver and CUDA driver version (edgeloop_gpu_info)."+needsGPU,
			[]string{"Time", "Value", "__name__", "job", "instance"},
			tableQuery(`edgeloop_gpu_info{`+ng+`}`)).
			Span(full).
			Height(7),
	)

	b.row("Utilization and memory")
	b.add(
		timeSeries("GPU utilization",
			"Share of the last sample period a kernel ran (edgeloop_gpu_utilization_ratio). NVML does not report it for MIG devices, nor for their parent GPU in MIG mode: those series are absent."+needsGPU,
			units.PercentUnit,
			target(gsel("edgeloop_gpu_utilization_ratio"), migLegend)).
			Min(0).Max(1),
		timeSeries("Memory bandwidth utilization",
			"Share of the last sample period device memory was read or written (edgeloop_gpu_memory_utilization_ratio)."+needsGPU,
			units.PercentUnit,
			target(gsel("edgeloop_gpu_memory_utilization_ratio"), migLegend)).
			Min(0).Max(1),
		thresholdLines(timeSeries("Framebuffer memory used, share",
			"Framebuffer memory used over memory installed, per GPU and per MIG instance (edgeloop_gpu_memory_used_bytes / edgeloop_gpu_memory_total_bytes)."+needsGPU,
			units.PercentUnit,
			target(gsel("edgeloop_gpu_memory_used_bytes")+` / `+gsel("edgeloop_gpu_memory_total_bytes"), migLegend)),
			thresholds(base("green"), at(0.9, "yellow"), at(0.97, "red"))).
			Min(0).Max(1),
		timeSeries("Framebuffer memory used and total",
			"Framebuffer memory used and installed (or assigned to the MIG instance) (edgeloop_gpu_memory_used_bytes, edgeloop_gpu_memory_total_bytes)."+needsGPU,
			units.BytesIEC,
			target(gsel("edgeloop_gpu_memory_used_bytes"), migLegend+" used"),
			target(gsel("edgeloop_gpu_memory_total_bytes"), migLegend+" total")).
			OverrideByRegexp(".* total$", []dashboard.DynamicConfigValue{
				{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
				{Id: "custom.fillOpacity", Value: 0},
			}).
			Min(0),
		timeSeries("Video encoder and decoder utilization",
			"NVENC and NVDEC utilization (edgeloop_gpu_encoder_utilization_ratio, edgeloop_gpu_decoder_utilization_ratio); absent on GPUs without them (A100 has no NVENC)."+needsGPU,
			units.PercentUnit,
			target(gsel("edgeloop_gpu_encoder_utilization_ratio"), gpuLegend+" encoder"),
			target(gsel("edgeloop_gpu_decoder_utilization_ratio"), gpuLegend+" decoder")).
			Min(0).Max(1),
		timeSeries("Energy used per interval",
			"Energy the GPU consumed in each interval (increase of edgeloop_gpu_energy_joules_total); absent before Volta."+needsGPU,
			units.Joule,
			target(`increase(`+gsel("edgeloop_gpu_energy_joules_total")+`[$__rate_interval])`, gpuLegend)),
	)

	b.row("Temperature, power and clocks")
	b.add(
		thresholdLines(timeSeries("Temperature",
			"GPU die and memory (HBM) temperature (edgeloop_gpu_temperature_celsius, edgeloop_gpu_memory_temperature_celsius); memory temperature is absent on boards without HBM."+needsGPU,
			units.Celsius,
			target(gsel("edgeloop_gpu_temperature_celsius"), gpuLegend+" die"),
			target(gsel("edgeloop_gpu_memory_temperature_celsius"), gpuLegend+" memory")),
			tempThresholds),
		timeSeries("Power draw and limit",
			"Power drawn by the GPU and its memory, and the limit the GPU enforces (edgeloop_gpu_power_watts, edgeloop_gpu_power_limit_watts)."+needsGPU,
			units.Watt,
			target(gsel("edgeloop_gpu_power_watts"), gpuLegend+" draw"),
			target(gsel("edgeloop_gpu_power_limit_watts"), gpuLegend+" limit")).
			OverrideByRegexp(".* limit$", []dashboard.DynamicConfigValue{
				{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
				{Id: "custom.fillOpacity", Value: 0},
			}).
			Min(0),
		timeSeries("Clocks",
			"Current SM and memory clocks (edgeloop_gpu_sm_clock_hertz, edgeloop_gpu_memory_clock_hertz)."+needsGPU,
			units.Hertz,
			target(gsel("edgeloop_gpu_sm_clock_hertz"), gpuLegend+" SM"),
			target(gsel("edgeloop_gpu_memory_clock_hertz"), gpuLegend+" memory")),
		bars(timeSeries("Clock throttle reasons",
			"Reasons holding the clocks down now, idle left out (edgeloop_gpu_clock_event_reason == 1): thermal and power slowdowns cost inference latency."+needsGPU,
			units.Short,
			target(`count by (node, gpu, reason) (edgeloop_gpu_clock_event_reason{`+ng+`, reason!="gpu_idle"} == 1)`, gpuLegend+" {{reason}}"))),
	)

	b.row("Errors")
	b.add(
		bars(timeSeries("XID errors",
			"XID errors per interval by code (increase of edgeloop_gpu_xid_errors_total), on the MIG instance when the event names one. Counting starts with the exporter, and the first XID of a code creates its series. Codes 48, 63, 64, 74, 79, 94 and 95 deserve attention."+needsGPU,
			units.Short,
			target(`sum by (node, gpu, gpu_instance_id, xid) (increase(`+gsel("edgeloop_gpu_xid_errors_total")+`[$__rate_interval])) > 0`, gpuLegend+" {{gpu_instance_id}} XID {{xid}}"))),
		bars(timeSeries("ECC errors",
			"Volatile ECC errors per interval, corrected and uncorrected (increase of edgeloop_gpu_ecc_errors_total); absent with ECC off."+needsGPU,
			units.Short,
			target(`sum by (node, gpu, error_type) (increase(`+gsel("edgeloop_gpu_ecc_errors_total")+`[$__rate_interval])) > 0`, gpuLegend+" {{error_type}}"))),
		timeSeries("Remapped rows",
			"Memory rows remapped, by cause (edgeloop_gpu_remapped_rows_total); absent before Ampere. Uncorrectable remaps growing means the memory is failing."+needsGPU,
			units.Short,
			target(gsel("edgeloop_gpu_remapped_rows_total"), gpuLegend+" {{cause}}")),
		bars(timeSeries("PCIe replays",
			"PCIe packets replayed after link errors, per second (rate of edgeloop_gpu_pcie_replays_total)."+needsGPU,
			units.OpsPerSecond,
			target(`rate(`+gsel("edgeloop_gpu_pcie_replays_total")+`[$__rate_interval]) > 0`, gpuLegend))),
	)

	b.row("Processes")
	b.add(
		barGauge("GPU memory by process",
			"The 20 processes using the most GPU memory now, with their GPU or MIG instance (edgeloop_gpu_process_memory_used_bytes). process_name is empty when the exporter cannot see the host's PIDs."+needsGPU,
			units.BytesIEC, neutral(),
			instant(`topk(20, `+gsel("edgeloop_gpu_process_memory_used_bytes")+`)`, migLegend+" {{process_name}} ({{pid}})")),
		timeSeries("GPU memory by process over time",
			"GPU memory per process name and device over time (edgeloop_gpu_process_memory_used_bytes)."+needsGPU,
			units.BytesIEC,
			target(`sum by (node, gpu, gpu_instance_profile, gpu_instance_id, process_name) (`+gsel("edgeloop_gpu_process_memory_used_bytes")+`)`, migLegend+" {{process_name}}")).
			Min(0),
	)
	return b.DashboardBuilder
}
