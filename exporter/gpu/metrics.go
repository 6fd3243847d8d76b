package gpu

import (
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Label names of every per-device series, in the order device.labels holds their values. They
// are read-only tables, never modified.
var (
	edgeloopLabels = []string{"node", "gpu", "uuid", "gpu_model", "pci_bus_id", "gpu_instance_id", "gpu_instance_profile"}
	// dcgmLabels are DCGM-Exporter's: its template writes gpu, UUID, pci_bus_id, device,
	// modelName, then GPU_I_PROFILE and GPU_I_ID for MIG instances, then Hostname.
	dcgmLabels = []string{"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "GPU_I_PROFILE", "GPU_I_ID"}
)

// metric is one exported series family in the active naming mode, with the conversion from
// NVML's unit to the exported one. A nil *metric means "not exported in this mode".
type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	unit unit
	// floor truncates after scaling: DCGM reports framebuffer sizes as whole MiB.
	floor bool
	// extra are constant values of the labels the desc has beyond the device labels; they let
	// one edgeloop family (ecc_errors_total{error_type}) stand where DCGM has two.
	extra []string
}

// value converts v from NVML's unit to the exported one.
func (m *metric) value(v float64) float64 {
	v = m.unit.convert(v)
	if m.floor {
		v = math.Floor(v)
	}
	return v
}

// metrics holds every per-device family of one naming mode.
type metrics struct {
	utilization, memoryUtilization, encoderUtilization, decoderUtilization *metric
	memoryUsed, memoryFree, memoryTotal                                    *metric
	temperature, memoryTemperature                                         *metric
	power, powerLimit, energy                                              *metric
	smClock, memoryClock, clockEventReason                                 *metric
	pcieReplays                                                            *metric
	eccCorrected, eccUncorrected                                           *metric
	remappedCorrectable, remappedUncorrectable                             *metric
	remapPending, remapFailure                                             *metric
	xidTotal, xidLast                                                      *metric
	processMemory                                                          *metric
	info                                                                   *metric
}

// unit is a conversion from the unit NVML reports in.
type unit int

const (
	same    unit = iota
	percent      // percent to ratio
	milli        // mW to W, mJ to J
	mega         // MHz to Hz
	mebi         // bytes to MiB
)

// convert applies u to v. It divides rather than multiplying by 0.01 or 0.001, which keeps
// 35 % at 0.35 instead of 0.35000000000000003.
func (u unit) convert(v float64) float64 {
	switch u {
	case percent:
		return v / 100
	case milli:
		return v / 1000
	case mega:
		return v * 1e6
	case mebi:
		return v / (1 << 20)
	}
	return v
}

// newMetric builds a family whose labels are base followed by extraNames.
func newMetric(name, help string, typ prometheus.ValueType, u unit, base []string, extraNames ...string) *metric {
	labels := append(append([]string(nil), base...), extraNames...)
	return &metric{desc: prometheus.NewDesc(name, help, labels, nil), typ: typ, unit: u}
}

// withExtra returns a copy of m that fills its extra labels with values.
func (m *metric) withExtra(values ...string) *metric {
	c := *m
	c.extra = values
	return &c
}

// edgeloopMetrics are the default families: Prometheus naming, base units, ratios 0-1. Their
// device labels are edgeloopLabels followed by pod (the pod attribution's labels, or none).
func edgeloopMetrics(pod ...string) metrics {
	g, c, l := prometheus.GaugeValue, prometheus.CounterValue, append(slices.Clip(edgeloopLabels), pod...)
	ecc := newMetric("edgeloop_gpu_ecc_errors_total",
		"ECC memory errors since the driver loaded (NVML volatile counters), by error_type corrected or uncorrected.", c, same, l, "error_type")
	remapped := newMetric("edgeloop_gpu_remapped_rows_total",
		"Memory rows remapped, by the cause: correctable or uncorrectable errors.", c, same, l, "cause")
	return metrics{
		utilization: newMetric("edgeloop_gpu_utilization_ratio",
			"Fraction of the last sample period during which one or more kernels ran on the GPU.", g, percent, l),
		memoryUtilization: newMetric("edgeloop_gpu_memory_utilization_ratio",
			"Fraction of the last sample period during which device memory was read or written.", g, percent, l),
		encoderUtilization: newMetric("edgeloop_gpu_encoder_utilization_ratio",
			"Video encoder utilization, 0 to 1.", g, percent, l),
		decoderUtilization: newMetric("edgeloop_gpu_decoder_utilization_ratio",
			"Video decoder utilization, 0 to 1.", g, percent, l),
		memoryUsed: newMetric("edgeloop_gpu_memory_used_bytes",
			"Framebuffer memory used.", g, same, l),
		memoryFree: newMetric("edgeloop_gpu_memory_free_bytes",
			"Framebuffer memory free.", g, same, l),
		memoryTotal: newMetric("edgeloop_gpu_memory_total_bytes",
			"Framebuffer memory installed (or assigned to the MIG instance).", g, same, l),
		temperature: newMetric("edgeloop_gpu_temperature_celsius",
			"GPU die temperature.", g, same, l),
		memoryTemperature: newMetric("edgeloop_gpu_memory_temperature_celsius",
			"GPU memory (HBM) temperature.", g, same, l),
		power: newMetric("edgeloop_gpu_power_watts",
			"Power drawn by the GPU and its memory.", g, milli, l),
		powerLimit: newMetric("edgeloop_gpu_power_limit_watts",
			"Power limit the GPU enforces.", g, milli, l),
		energy: newMetric("edgeloop_gpu_energy_joules_total",
			"Energy consumed since the driver loaded.", c, milli, l),
		smClock: newMetric("edgeloop_gpu_sm_clock_hertz",
			"Current streaming multiprocessor clock.", g, mega, l),
		memoryClock: newMetric("edgeloop_gpu_memory_clock_hertz",
			"Current memory clock.", g, mega, l),
		clockEventReason: newMetric("edgeloop_gpu_clock_event_reason",
			"Whether this reason is currently holding the GPU clocks down (1) or not (0); only reasons the GPU reports are exported.", g, same, l, "reason"),
		pcieReplays: newMetric("edgeloop_gpu_pcie_replays_total",
			"PCIe packets the GPU had to replay (retransmit) after link errors.", c, same, l),
		eccCorrected:          ecc.withExtra("corrected"),
		eccUncorrected:        ecc.withExtra("uncorrected"),
		remappedCorrectable:   remapped.withExtra("correctable"),
		remappedUncorrectable: remapped.withExtra("uncorrectable"),
		remapPending: newMetric("edgeloop_gpu_remapped_rows_pending",
			"Whether a row remapping is pending and needs a GPU reset to take effect (1) or not (0).", g, same, l),
		remapFailure: newMetric("edgeloop_gpu_remapped_rows_failure",
			"Whether a row remapping has failed (1) or not (0); a failure means the GPU needs service.", g, same, l),
		xidTotal: newMetric("edgeloop_gpu_xid_errors_total",
			"XID errors the driver reported since the exporter started, by XID code.", c, same, l, "xid"),
		processMemory: newMetric("edgeloop_gpu_process_memory_used_bytes",
			"GPU memory used by one process (compute or graphics).", g, same, l, "pid", "process_name"),
		info: newMetric("edgeloop_gpu_info",
			"A metric with a constant '1' value describing each GPU and MIG device and the driver.", g, same, l, "driver_version", "cuda_driver_version"),
	}
}

// dcgmMetrics are DCGM-Exporter's default counters (etc/default-counters.csv) with DCGM's own
// units: percent, MiB, MHz, W, mJ. Families DCGM-Exporter does not export by default are nil,
// except the volatile ECC totals and the pending row remap flag, which are DCGM fields too.
// Their device labels are dcgmLabels followed by pod, as edgeloopMetrics'.
func dcgmMetrics(pod ...string) metrics {
	g, c, l := prometheus.GaugeValue, prometheus.CounterValue, append(slices.Clip(dcgmLabels), pod...)
	fb := func(name, help string) *metric {
		m := newMetric(name, help, g, mebi, l)
		m.floor = true
		return m
	}
	return metrics{
		utilization:           newMetric("DCGM_FI_DEV_GPU_UTIL", "Percent of the last sample period with a kernel running.", g, same, l),
		memoryUtilization:     newMetric("DCGM_FI_DEV_MEM_COPY_UTIL", "Percent of the last sample period with device memory being read or written.", g, same, l),
		encoderUtilization:    newMetric("DCGM_FI_DEV_ENC_UTIL", "Video encoder utilization in percent.", g, same, l),
		decoderUtilization:    newMetric("DCGM_FI_DEV_DEC_UTIL", "Video decoder utilization in percent.", g, same, l),
		memoryUsed:            fb("DCGM_FI_DEV_FB_USED", "Framebuffer memory used, in MiB."),
		memoryFree:            fb("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free, in MiB."),
		temperature:           newMetric("DCGM_FI_DEV_GPU_TEMP", "GPU die temperature in degrees Celsius.", g, same, l),
		memoryTemperature:     newMetric("DCGM_FI_DEV_MEMORY_TEMP", "GPU memory temperature in degrees Celsius.", g, same, l),
		power:                 newMetric("DCGM_FI_DEV_POWER_USAGE", "Power drawn by the GPU, in watts.", g, milli, l),
		energy:                newMetric("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Energy consumed since the driver loaded, in millijoules.", c, same, l),
		smClock:               newMetric("DCGM_FI_DEV_SM_CLOCK", "Current SM clock in MHz.", g, same, l),
		memoryClock:           newMetric("DCGM_FI_DEV_MEM_CLOCK", "Current memory clock in MHz.", g, same, l),
		pcieReplays:           newMetric("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "PCIe packet replays since the driver loaded.", c, same, l),
		eccCorrected:          newMetric("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Corrected (single-bit) ECC errors since the driver loaded.", c, same, l),
		eccUncorrected:        newMetric("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Uncorrected (double-bit) ECC errors since the driver loaded.", c, same, l),
		remappedCorrectable:   newMetric("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Memory rows remapped because of correctable errors.", c, same, l),
		remappedUncorrectable: newMetric("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Memory rows remapped because of uncorrectable errors.", c, same, l),
		remapFailure:          newMetric("DCGM_FI_DEV_ROW_REMAP_FAILURE", "1 if a row remapping has failed, else 0.", g, same, l),
		remapPending:          newMetric("DCGM_FI_DEV_ROW_REMAP_PENDING", "1 if a row remapping waits for a GPU reset, else 0.", g, same, l),
		// DCGM-Exporter adds err_code (and a text err_msg) to this gauge; err_code is kept so
		// alerts keyed on it port over.
		xidLast: newMetric("DCGM_FI_DEV_XID_ERRORS", "Code of the most recent XID error (0: none since the exporter started).", g, same, l, "err_code"),
	}
}
