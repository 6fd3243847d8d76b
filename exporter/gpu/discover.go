package gpu

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// device is one GPU or MIG device as found at discovery, with every label value computed once
// so that a scrape only reads NVML values.
type device struct {
	handle nvml.Device
	// ref names the device in errors and logs: "gpu 0", or "gpu 0 mig 1 (MIG-...)" with the
	// GPU instance ID and, since compute instances may share it, the MIG device's UUID.
	ref   string
	index int // NVML index of the GPU; for a MIG device, its parent's
	uuid  string
	// parent is nil for a full GPU.
	parent *device
	// giID is the GPU instance ID of a MIG device, -1 for a full GPU.
	giID int
	// migEnabled marks a full GPU in MIG mode: its MIG devices carry the per-instance readings
	// (memory per instance, processes), the GPU itself the physical ones (power, clocks, ...).
	migEnabled bool
	migs       []*device
	// labels are the device label values in the active naming mode's order.
	labels []string
	// dcgmDuplicate marks a second compute instance of a GPU instance: DCGM reports per GPU
	// instance, and in DCGM naming two compute instances would give identical label sets.
	dcgmDuplicate bool
	// reasons are the clock event reasons the GPU reports, with their labels precomputed.
	reasons []reasonLabels
	// throttleAPI selects nvmlDeviceGetCurrentClocksThrottleReasons on drivers older than the
	// ClocksEvent rename (R535), which lack the new symbol.
	throttleAPI bool
	// infoLabels are labels plus driver_version and cuda_driver_version.
	infoLabels []string
}

// reasonLabels is one clock event reason a device reports.
type reasonLabels struct {
	bit    uint64
	labels []string
}

// clockEventReasons names NVML's clock event reason bits (nvmlClocksEventReason*).
var clockEventReasons = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksEventReasonGpuIdle, "gpu_idle"},
	{nvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"},
	{nvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksEventReasonSyncBoost, "sync_boost"},
	{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
	{nvml.ClocksEventReasonDisplayClockSetting, "display_clock_setting"},
	{nvml.ClocksEventReasonBoardLimit, "board_limit"},
	{nvml.ClocksEventReasonReliability, "reliability"},
}

// inventory is what one discovery found.
type inventory struct {
	gpus []*device // full GPUs, by index
	all  []*device // every GPU followed by its MIG devices
	// byUUID finds the device an XID event or counter belongs to.
	byUUID        map[string]*device
	driverVersion string
	cudaVersion   string
}

// signature summarises the inventory for "did it change" comparisons across rediscoveries.
func (inv *inventory) signature() string {
	var b strings.Builder
	for _, d := range inv.all {
		b.WriteString(d.uuid)
		b.WriteByte(',')
	}
	return b.String()
}

// migCount is the number of MIG devices in the inventory.
func (inv *inventory) migCount() int { return len(inv.all) - len(inv.gpus) }

// discover enumerates GPUs and their MIG devices. A device that cannot be read is left out and
// reported in the returned error; the others are still returned.
func (c *Collector) discover() (*inventory, error) {
	inv := &inventory{byUUID: map[string]*device{}}
	var errs []error
	if v, ret := c.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.driverVersion = v
	}
	if v, ret := c.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		inv.cudaVersion = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	n, ret := c.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return inv, fmt.Errorf("discover: device count: %w", ret)
	}
	eventAPI := c.hasSymbol("nvmlDeviceGetCurrentClocksEventReasons")
	for i := range n {
		var d *device
		err := safely(func() error {
			var err error
			d, err = c.discoverGPU(i, inv, !eventAPI)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("discover: gpu %d: %w", i, err))
		}
		if d == nil {
			continue
		}
		inv.gpus = append(inv.gpus, d)
		inv.all = append(inv.all, d)
		inv.all = append(inv.all, d.migs...)
		inv.byUUID[d.uuid] = d
		for _, m := range d.migs {
			inv.byUUID[m.uuid] = m
		}
	}
	return inv, errors.Join(errs...)
}

// hasSymbol reports whether the loaded NVML library exports name. Calling a function the
// library lacks would crash the process, so version-dependent calls are chosen with it.
func (c *Collector) hasSymbol(name string) (ok bool) {
	defer func() {
		if recover() != nil { // a test double without the extension: assume a current driver
			ok = true
		}
	}()
	return c.lib.Extensions().LookupSymbol(name) == nil
}

// safely runs f, turning a panic into an error: discovery runs outside any scrape, and a bug
// reading one device must not take the exporter down.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// discoverGPU reads one full GPU's identity, and its MIG devices when MIG is on. Once the GPU's
// identity is read it is returned, with an error naming whatever else could not be read.
func (c *Collector) discoverGPU(i int, inv *inventory, throttleAPI bool) (*device, error) {
	h, ret := c.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("handle: %w", ret)
	}
	uuid, ret := h.GetUUID()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("uuid: %w", ret)
	}
	name, ret := h.GetName()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("name: %w", ret)
	}
	pci, ret := h.GetPciInfo()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("pci info: %w", ret)
	}
	busID := pciBusID(pci)
	d := &device{handle: h, ref: "gpu " + strconv.Itoa(i), index: i, uuid: uuid, giID: -1, throttleAPI: throttleAPI}
	c.setLabels(d, name, busID, "")
	c.setInfoLabels(d, inv)
	// From here on the GPU is kept whatever fails: its identity is known, and its readings
	// are worth exporting even if, say, its MIG layout cannot be read.
	var errs []error
	if err := c.setReasons(d); err != nil {
		errs = append(errs, err)
	}
	mode, _, ret := h.GetMigMode()
	switch {
	case ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_FUNCTION_NOT_FOUND:
	case ret != nvml.SUCCESS:
		errs = append(errs, fmt.Errorf("mig mode: %w", ret))
	case mode == nvml.DEVICE_MIG_ENABLE:
		d.migEnabled = true
		errs = append(errs, c.discoverMIG(d, name, busID, inv))
	}
	return d, errors.Join(errs...)
}

// discoverMIG fills gpu.migs with the GPU's MIG devices.
func (c *Collector) discoverMIG(gpu *device, name, busID string, inv *inventory) error {
	h := gpu.handle
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("memory info: %w", ret)
	}
	slots, ret := h.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("max mig devices: %w", ret)
	}
	var errs []error
	seenGI := map[int]bool{}
	for j := range slots {
		mh, ret := h.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // slots are sparse: only created compute instances have a handle
		}
		if ret != nvml.SUCCESS {
			errs = append(errs, fmt.Errorf("mig device %d: %w", j, ret))
			continue
		}
		m, err := c.discoverMIGDevice(gpu, mh, mem.Total, name, busID, inv)
		if err != nil {
			errs = append(errs, fmt.Errorf("mig device %d: %w", j, err))
			continue
		}
		m.dcgmDuplicate = seenGI[m.giID]
		seenGI[m.giID] = true
		gpu.migs = append(gpu.migs, m)
	}
	return errors.Join(errs...)
}

// discoverMIGDevice reads one MIG device's identity and names its GPU instance profile.
func (c *Collector) discoverMIGDevice(gpu *device, h nvml.Device, totalMem uint64, name, busID string, inv *inventory) (*device, error) {
	uuid, ret := h.GetUUID()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("uuid: %w", ret)
	}
	giID, ret := h.GetGpuInstanceId()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("gpu instance id: %w", ret)
	}
	profile, err := migProfile(gpu.handle, giID, totalMem)
	if err != nil {
		return nil, err
	}
	m := &device{
		handle: h,
		ref:    fmt.Sprintf("gpu %d mig %d (%s)", gpu.index, giID, uuid),
		index:  gpu.index,
		uuid:   uuid,
		parent: gpu,
		giID:   giID,
	}
	c.setLabels(m, name, busID, profile)
	c.setInfoLabels(m, inv)
	return m, nil
}

// migProfile names the profile of GPU instance giID the way nvidia-smi and DCGM do
// ("1g.10gb", "1g.10gb+me").
func migProfile(gpu nvml.Device, giID int, totalMem uint64) (string, error) {
	gi, ret := gpu.GetGpuInstanceById(giID)
	if ret != nvml.SUCCESS {
		return "", fmt.Errorf("gpu instance %d: %w", giID, ret)
	}
	info, ret := gi.GetInfo()
	if ret != nvml.SUCCESS {
		return "", fmt.Errorf("gpu instance %d info: %w", giID, ret)
	}
	// NVML has no lookup from a profile ID to its description on older drivers, so walk the
	// profile indexes and match the ID, as nvidia-smi does.
	for p := range nvml.GPU_INSTANCE_PROFILE_COUNT {
		pi, ret := gpu.GetGpuInstanceProfileInfo(p)
		if ret != nvml.SUCCESS || pi.Id != info.ProfileId {
			continue
		}
		return fmt.Sprintf("%dg.%dgb%s", pi.SliceCount, migMemoryGB(totalMem, pi.MemorySizeMB), profileSuffix(p)), nil
	}
	return "", fmt.Errorf("gpu instance %d: unknown profile id %d", giID, info.ProfileId)
}

// migMemoryGB rounds a MIG profile's memory the way NVIDIA names profiles: as a fraction of the
// GPU's memory rounded up to eighths, times the GPU's memory in whole GB. An A100-40GB 1-slice
// instance has 4864 MiB, which is named "5gb", not "4gb".
func migMemoryGB(totalBytes, profileMiB uint64) uint64 {
	const gib = 1 << 30
	fraction := float64(profileMiB<<20) / float64(totalBytes)
	fraction = math.Ceil(fraction*8) / 8
	totalGB := float64((totalBytes + gib - 1) / gib)
	return uint64(math.Round(fraction * totalGB))
}

// profileSuffix is the media-engine or graphics attribute nvidia-smi appends to a profile name.
func profileSuffix(p int) string {
	switch p {
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1, nvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1:
		return "+me"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_NO_ME, nvml.GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
		return "-me"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME, nvml.GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
		return "+me.all"
	case nvml.GPU_INSTANCE_PROFILE_1_SLICE_GFX, nvml.GPU_INSTANCE_PROFILE_2_SLICE_GFX,
		nvml.GPU_INSTANCE_PROFILE_3_SLICE_GFX, nvml.GPU_INSTANCE_PROFILE_4_SLICE_GFX:
		return "+gfx"
	}
	return ""
}

// pciBusID returns the device's PCI address in NVML's form, "00000000:3B:00.0".
func pciBusID(p nvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	if b.Len() > 0 {
		return b.String()
	}
	return fmt.Sprintf("%08X:%02X:%02X.0", p.Domain, p.Bus, p.Device)
}

// setLabels computes d's label values in the active naming mode. profile is "" for a full GPU.
func (c *Collector) setLabels(d *device, model, busID, profile string) {
	gpu := strconv.Itoa(d.index)
	giID := ""
	if d.giID >= 0 {
		giID = strconv.Itoa(d.giID)
	}
	if c.cfg.Naming == NamingDCGM {
		// DCGM-Exporter labels a GPU instance with its parent's UUID and tells instances
		// apart by GPU_I_ID.
		uuid := d.uuid
		if d.parent != nil {
			uuid = d.parent.uuid
		}
		d.labels = []string{gpu, uuid, busID, "nvidia" + gpu, model, c.node, profile, giID}
	} else {
		d.labels = []string{c.node, gpu, d.uuid, model, busID, giID, profile}
	}
	if c.cfg.Kubernetes.PodAttribution {
		// Empty until attribute fills them with the device's holder (pods.go).
		d.labels = append(d.labels, "", "", "")
	}
}

// setInfoLabels precomputes the labels of edgeloop_gpu_info.
func (c *Collector) setInfoLabels(d *device, inv *inventory) {
	d.infoLabels = append(append([]string(nil), d.labels...), inv.driverVersion, inv.cudaVersion)
}

// setReasons records which clock event reasons the GPU reports, so that a reason it cannot
// report is absent rather than a misleading 0.
func (c *Collector) setReasons(d *device) error {
	if c.m.clockEventReason == nil {
		return nil // DCGM naming has no such family: spare the call
	}
	var supported uint64
	var ret nvml.Return
	if d.throttleAPI {
		supported, ret = d.handle.GetSupportedClocksThrottleReasons()
	} else {
		supported, ret = d.handle.GetSupportedClocksEventReasons()
	}
	var err error
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		return nil
	default:
		// Unknown support: export every reason rather than none.
		supported = math.MaxUint64
		err = fmt.Errorf("supported clock event reasons: %w", ret)
	}
	for _, r := range clockEventReasons {
		if supported&r.bit == 0 {
			continue
		}
		d.reasons = append(d.reasons, reasonLabels{bit: r.bit, labels: append(append([]string(nil), d.labels...), r.name)})
	}
	return err
}
