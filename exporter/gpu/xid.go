package gpu

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// noInstance is the GPU/compute instance ID of an event that is not tied to a MIG instance.
const noInstance = 0xFFFFFFFF

// xidCounts holds the XID errors seen since the exporter started. Run writes it, scrapes read
// it; counts live here rather than in NVML because NVML only delivers events, it keeps no tally.
type xidCounts struct {
	mu sync.Mutex
	// counts is device UUID (GPU or MIG device) → XID code → events.
	counts map[string]map[uint64]float64
	// last is GPU UUID → code of its most recent XID, for DCGM's DCGM_FI_DEV_XID_ERRORS.
	last map[string]uint64
	// active is set once at least one GPU is registered for XID events: without it a DCGM
	// "last XID 0" would claim a health it cannot see.
	active atomic.Bool
}

// add records one XID on device d (a GPU or MIG device) whose GPU is gpu.
func (x *xidCounts) add(d, gpu *device, code uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	byCode := x.counts[d.uuid]
	if byCode == nil {
		byCode = map[uint64]float64{}
		x.counts[d.uuid] = byCode
	}
	byCode[code]++
	x.last[gpu.uuid] = code
}

// registerXID creates an event set and registers every GPU that supports XID events on it. It
// returns nil when no GPU could be registered; XID counting is then off and said so once.
func (c *Collector) registerXID(inv *inventory) nvml.EventSet {
	set, ret := c.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		c.logger.Warn("XID errors will not be counted: cannot create an NVML event set", "err", ret.Error())
		return nil
	}
	registered := 0
	for _, d := range inv.gpus {
		ret := d.handle.RegisterEvents(nvml.EventTypeXidCriticalError, set)
		switch ret {
		case nvml.SUCCESS:
			registered++
		case nvml.ERROR_NOT_SUPPORTED:
			c.logger.Debug("GPU does not report XID events", "gpu", d.ref)
		default:
			c.logger.Warn("XID errors of this GPU will not be counted: event registration failed", "gpu", d.ref, "err", ret.Error())
		}
	}
	if registered == 0 {
		set.Free()
		if len(inv.gpus) > 0 {
			c.logger.Warn("XID errors will not be counted: no GPU accepts XID event registration")
		}
		return nil
	}
	c.xid.active.Store(true)
	return set
}

// waitXID waits up to waitTimeout for one event and records it. A wait error other than a
// timeout is logged when it starts, and the loop backs off so a broken event set cannot spin.
func (c *Collector) waitXID(ctx context.Context, set nvml.EventSet, failing *bool) {
	data, ret := set.Wait(uint32(c.waitTimeout.Milliseconds()))
	switch ret {
	case nvml.SUCCESS:
		*failing = false
		c.recordXID(data)
	case nvml.ERROR_TIMEOUT:
		*failing = false
	default:
		if !*failing {
			c.logger.Warn("waiting for NVML XID events failed; retrying", "err", ret.Error())
		}
		*failing = true
		wait(ctx, c.waitTimeout)
	}
}

// recordXID counts one event against the device it names: the MIG device when the event
// carries a GPU instance that is known, else the GPU.
func (c *Collector) recordXID(e nvml.EventData) {
	if e.EventType != nvml.EventTypeXidCriticalError || e.Device == nil {
		return
	}
	// Match by UUID rather than by comparing handles: an nvml.Device's dynamic type need not be
	// comparable, and an XID is rare enough for one extra NVML call.
	uuid, ret := e.Device.GetUUID()
	if ret != nvml.SUCCESS {
		c.logger.Warn("XID error on a GPU that cannot be identified", "xid", e.EventData, "err", ret.Error())
		return
	}
	c.mu.RLock()
	gpu := c.inv.byUUID[uuid]
	c.mu.RUnlock()
	if gpu == nil {
		c.logger.Warn("XID error on a GPU not in the inventory", "xid", e.EventData, "uuid", uuid)
		return
	}
	d := gpu
	if e.GpuInstanceId != noInstance {
		for _, m := range gpu.migs {
			if m.giID == int(e.GpuInstanceId) && !m.dcgmDuplicate {
				d = m
				break
			}
		}
	}
	c.logger.Warn("GPU XID error", "gpu", d.ref, "uuid", d.uuid, "xid", e.EventData)
	c.xid.add(d, gpu, e.EventData)
}

// updateXID exports the XID counts (edgeloop naming) or each GPU's last XID (DCGM naming).
func (c *Collector) updateXID(ch chan<- prometheus.Metric) error {
	u := c.newUpdate(ch)
	if !c.xid.active.Load() {
		return u.err()
	}
	c.xid.mu.Lock()
	defer c.xid.mu.Unlock()
	for _, d := range c.inv.all {
		if c.m.xidTotal != nil {
			for code, n := range c.xid.counts[d.uuid] {
				u.emit(c.m.xidTotal, n, d.labels, strconv.FormatUint(code, 10))
			}
		}
		if c.m.xidLast != nil && d.parent == nil {
			last := c.xid.last[d.uuid]
			u.emit(c.m.xidLast, float64(last), d.labels, strconv.FormatUint(last, 10))
		}
	}
	return u.err()
}
