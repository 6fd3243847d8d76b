package gpu

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/scrape"
)

// update accumulates one subcollector run: the metrics it sent and the NVML failures it met.
// Every subcollector walks all devices and keeps going past a failing call, so one broken GPU
// costs only its own series.
type update struct {
	ch   chan<- prometheus.Metric
	errs []error
	sent int
}

func (c *Collector) newUpdate(ch chan<- prometheus.Metric) *update { return &update{ch: ch} }

// ok reports whether ret carries a value. ERROR_NOT_SUPPORTED (and FUNCTION_NOT_FOUND, the
// driver predating the call) mean "no data": the series stays absent and nothing failed. Any
// other error is recorded against the device and operation.
func (u *update) ok(d *device, op string, ret nvml.Return) bool {
	switch ret {
	case nvml.SUCCESS:
		return true
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		return false
	default:
		u.errs = append(u.errs, fmt.Errorf("%s: %s: %w", d.ref, op, ret))
		return false
	}
}

// emit sends m's value v (in NVML's unit) with the device labels, m's constant extra label
// values and then dyn. A nil m is a family the naming mode does not export.
func (u *update) emit(m *metric, v float64, labels []string, dyn ...string) {
	if m == nil {
		return
	}
	if len(m.extra)+len(dyn) > 0 {
		// Clip so the appends copy rather than write into the cached label slice.
		labels = append(append(slices.Clip(labels), m.extra...), dyn...)
	}
	cm, err := prometheus.NewConstMetric(m.desc, m.typ, m.value(v), labels...)
	if err != nil { // a label value that is not valid UTF-8, say: lose the series, not the scrape
		u.errs = append(u.errs, err)
		return
	}
	u.ch <- cm
	u.sent++
}

// err is the subcollector's result: the joined failures, or scrape.ErrNoData when nothing was
// sent and nothing failed (no device supports the reading, or there are no devices).
func (u *update) err() error {
	if len(u.errs) > 0 {
		return errors.Join(u.errs...)
	}
	if u.sent == 0 {
		return scrape.ErrNoData
	}
	return nil
}

// reported tells whether d has its own series in the active naming mode.
func (c *Collector) reported(d *device) bool {
	return !(c.cfg.Naming == NamingDCGM && d.dcgmDuplicate)
}

// updateUtilization exports GPU, memory, encoder and decoder utilization of every device. NVML
// does not support utilization on MIG devices (nor on a GPU in MIG mode): those are absent.
func (c *Collector) updateUtilization(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.all {
		if !c.reported(d) {
			continue
		}
		if ut, ret := d.handle.GetUtilizationRates(); u.ok(d, "utilization", ret) {
			u.emit(c.m.utilization, float64(ut.Gpu), d.labels)
			u.emit(c.m.memoryUtilization, float64(ut.Memory), d.labels)
		}
		if v, _, ret := d.handle.GetEncoderUtilization(); u.ok(d, "encoder utilization", ret) {
			u.emit(c.m.encoderUtilization, float64(v), d.labels)
		}
		if v, _, ret := d.handle.GetDecoderUtilization(); u.ok(d, "decoder utilization", ret) {
			u.emit(c.m.decoderUtilization, float64(v), d.labels)
		}
	}
	return u.err()
}

// updateMemory exports framebuffer used, free and total of every GPU and MIG device.
func (c *Collector) updateMemory(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.all {
		if !c.reported(d) {
			continue
		}
		if mem, ret := d.handle.GetMemoryInfo(); u.ok(d, "memory info", ret) {
			u.emit(c.m.memoryUsed, float64(mem.Used), d.labels)
			u.emit(c.m.memoryFree, float64(mem.Free), d.labels)
			u.emit(c.m.memoryTotal, float64(mem.Total), d.labels)
		}
	}
	return u.err()
}

// updateTemperature exports die and memory temperature. They, like power, clocks and error
// counters, are physical readings of the whole GPU: MIG devices do not repeat them.
func (c *Collector) updateTemperature(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		if v, ret := d.handle.GetTemperature(nvml.TEMPERATURE_GPU); u.ok(d, "temperature", ret) {
			u.emit(c.m.temperature, float64(v), d.labels)
		}
		// Memory temperature has no dedicated call; it is a field value (as DCGM reads it).
		fv := []nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}
		if ret := d.handle.GetFieldValues(fv); u.ok(d, "memory temperature", ret) &&
			u.ok(d, "memory temperature", nvml.Return(fv[0].NvmlReturn)) {
			if v, ok := fieldValue(fv[0]); ok {
				u.emit(c.m.memoryTemperature, v, d.labels)
			}
		}
	}
	return u.err()
}

// fieldValue decodes an NVML field value's C union by its declared type.
func fieldValue(f nvml.FieldValue) (float64, bool) {
	b := f.Value[:]
	switch nvml.ValueType(f.ValueType) {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.NativeEndian.Uint64(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(binary.NativeEndian.Uint32(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.NativeEndian.Uint64(b)), true
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.NativeEndian.Uint64(b))), true
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.NativeEndian.Uint32(b))), true
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return float64(binary.NativeEndian.Uint16(b)), true
	}
	return 0, false
}

// updatePower exports power draw, the enforced power limit and the energy counter.
func (c *Collector) updatePower(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		if v, ret := d.handle.GetPowerUsage(); u.ok(d, "power usage", ret) {
			u.emit(c.m.power, float64(v), d.labels)
		}
		if c.m.powerLimit != nil {
			if v, ret := d.handle.GetEnforcedPowerLimit(); u.ok(d, "power limit", ret) {
				u.emit(c.m.powerLimit, float64(v), d.labels)
			}
		}
		if v, ret := d.handle.GetTotalEnergyConsumption(); u.ok(d, "energy", ret) {
			u.emit(c.m.energy, float64(v), d.labels)
		}
	}
	return u.err()
}

// updateClocks exports SM and memory clocks and which clock event reasons are active.
func (c *Collector) updateClocks(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		if v, ret := d.handle.GetClockInfo(nvml.CLOCK_SM); u.ok(d, "sm clock", ret) {
			u.emit(c.m.smClock, float64(v), d.labels)
		}
		if v, ret := d.handle.GetClockInfo(nvml.CLOCK_MEM); u.ok(d, "memory clock", ret) {
			u.emit(c.m.memoryClock, float64(v), d.labels)
		}
		if c.m.clockEventReason == nil || len(d.reasons) == 0 {
			continue
		}
		var active uint64
		var ret nvml.Return
		if d.throttleAPI {
			active, ret = d.handle.GetCurrentClocksThrottleReasons()
		} else {
			active, ret = d.handle.GetCurrentClocksEventReasons()
		}
		if u.ok(d, "clock event reasons", ret) {
			for _, r := range d.reasons {
				v := 0.0
				if active&r.bit != 0 {
					v = 1
				}
				// r.labels already ends with the reason: emit without extras.
				u.emit(c.m.clockEventReason, v, r.labels)
			}
		}
	}
	return u.err()
}

// updatePCIe exports the PCIe replay counter.
func (c *Collector) updatePCIe(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		if v, ret := d.handle.GetPcieReplayCounter(); u.ok(d, "pcie replay counter", ret) {
			u.emit(c.m.pcieReplays, float64(v), d.labels)
		}
	}
	return u.err()
}

// updateECC exports the volatile ECC error totals. A GPU without ECC, or with it disabled,
// answers NOT_SUPPORTED: absent.
func (c *Collector) updateECC(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		if v, ret := d.handle.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC); u.ok(d, "corrected ecc errors", ret) {
			u.emit(c.m.eccCorrected, float64(v), d.labels)
		}
		if v, ret := d.handle.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); u.ok(d, "uncorrected ecc errors", ret) {
			u.emit(c.m.eccUncorrected, float64(v), d.labels)
		}
	}
	return u.err()
}

// updateRemappedRows exports row remapping (Ampere and later data center GPUs).
func (c *Collector) updateRemappedRows(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.gpus {
		corr, unc, pending, failed, ret := d.handle.GetRemappedRows()
		if !u.ok(d, "remapped rows", ret) {
			continue
		}
		u.emit(c.m.remappedCorrectable, float64(corr), d.labels)
		u.emit(c.m.remappedUncorrectable, float64(unc), d.labels)
		u.emit(c.m.remapPending, boolValue(pending), d.labels)
		u.emit(c.m.remapFailure, boolValue(failed), d.labels)
	}
	return u.err()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// updateInfo exports edgeloop_gpu_info for every GPU and MIG device.
func (c *Collector) updateInfo(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	for _, d := range c.inv.all {
		u.emit(c.m.info, 1, d.infoLabels)
	}
	return u.err()
}

// valueNotAvailable is NVML's "unknown" for a process's memory (no permission, or Windows WDDM).
const valueNotAvailable = math.MaxUint64

// updateProcesses exports the GPU memory of every compute and graphics process. A GPU in MIG
// mode is read through its MIG devices: each reports its own instance's processes.
func (c *Collector) updateProcesses(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	var procs []nvml.ProcessInfo
	for _, d := range c.inv.all {
		if d.migEnabled {
			continue
		}
		procs = procs[:0]
		if p, ret := d.handle.GetComputeRunningProcesses(); u.ok(d, "compute processes", ret) {
			procs = append(procs, p...)
		}
		if p, ret := d.handle.GetGraphicsRunningProcesses(); u.ok(d, "graphics processes", ret) {
			procs = append(procs, p...)
		}
		for _, p := range mergeProcesses(procs) {
			if p.UsedGpuMemory == valueNotAvailable {
				continue
			}
			pid := strconv.FormatUint(uint64(p.Pid), 10)
			u.emit(c.m.processMemory, float64(p.UsedGpuMemory), d.labels, pid, c.processName(p.Pid))
		}
	}
	return u.err()
}

// mergeProcesses sorts procs by PID and keeps one entry per PID: a process using the GPU for
// both compute and graphics is in both lists, and two series with the same labels would fail
// the whole scrape.
func mergeProcesses(procs []nvml.ProcessInfo) []nvml.ProcessInfo {
	slices.SortFunc(procs, func(a, b nvml.ProcessInfo) int {
		return cmp.Or(cmp.Compare(a.Pid, b.Pid), cmp.Compare(b.UsedGpuMemory, a.UsedGpuMemory))
	})
	return slices.CompactFunc(procs, func(a, b nvml.ProcessInfo) bool { return a.Pid == b.Pid })
}

// processName asks NVML for a process's name, falling back to /proc/<pid>/comm; "" if neither
// knows it (a process in another PID namespace, or one that just exited).
func (c *Collector) processName(pid uint32) string {
	name, ret := c.lib.SystemGetProcessName(int(pid))
	if ret != nvml.SUCCESS || name == "" {
		b, err := fs.ReadFile(c.procFS, strconv.FormatUint(uint64(pid), 10)+"/comm")
		if err != nil {
			return ""
		}
		name = strings.TrimSpace(string(b))
	}
	return strings.ToValidUTF8(name, "\uFFFD")
}
