// Package gpu exports NVIDIA GPU metrics read through NVML (go-nvml): utilization, memory,
// temperatures, power and energy, clocks and what holds them down, PCIe replays, ECC errors,
// remapped rows, XID errors and GPU memory per process, for every GPU and every MIG device.
//
// The NVML library is passed in (nvml.New() in production, go-nvml's mock servers in tests).
// ERROR_NOT_SUPPORTED means "no data": the series is left out rather than reported as 0 or as a
// failure. A machine without NVML keeps the exporter running with edgeloop_gpu_nvml_up 0 and
// says so once. With gpu.kubernetes.pod_attribution every per-device series also carries the
// pod, namespace and container holding the device, read from the kubelet (pods.go). docs/gpu.md
// describes the metrics.
package gpu

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeloop/edgeloop/exporter/scrape"
)

// Collector exports GPU metrics. It is a prometheus.Collector (unchecked: the series depend on
// the GPUs found at run time); register it, then call Run, which initializes NVML and keeps the
// device inventory and the XID event loop going until its context ends.
type Collector struct {
	lib    nvml.Interface
	cfg    Config
	node   string
	logger *slog.Logger
	m      metrics
	set    *scrape.Set

	upDesc       *prometheus.Desc
	devicesDesc  *prometheus.Desc
	expectedDesc *prometheus.Desc

	// procFS is /proc, where a process name is read when NVML cannot give it.
	procFS fs.FS
	// rediscoverEvery is how often the device inventory is refreshed, so that MIG instances
	// created or destroyed at run time are picked up.
	rediscoverEvery time.Duration
	// waitTimeout bounds each wait for an XID event, so Run notices its context ending.
	waitTimeout time.Duration

	// mu guards up, expected and inv. Collect holds it for reading for the whole scrape, so
	// that Run cannot shut NVML down while a scrape is calling it.
	mu  sync.RWMutex
	up  bool
	inv *inventory
	// expected is edgeloop_gpu_expected: gpu.enabled true, or auto and the NVIDIA driver's
	// library was found. Once set it stays set: a driver that goes away is a fault.
	expected bool

	// pods is the Kubernetes pod attribution's state (pods.go), guarded by mu; podDescs are
	// its series.
	pods     podState
	podDescs podDescs

	xid xidCounts
	// discoverErr is the last discovery's error text; only Run's goroutine uses it.
	discoverErr string
}

// New returns a GPU collector reading from lib, labelling every series with node. lib may be
// nil, which behaves like a machine without NVML.
func New(lib nvml.Interface, cfg Config, node string, logger *slog.Logger) *Collector {
	c := &Collector{
		lib:             lib,
		cfg:             cfg,
		node:            node,
		logger:          logger,
		procFS:          os.DirFS("/proc"),
		rediscoverEvery: time.Minute,
		waitTimeout:     time.Second,
		upDesc: prometheus.NewDesc("edgeloop_gpu_nvml_up",
			"Whether NVML is initialized and GPU metrics are being read (1) or not (0): no driver, no library, or still starting.",
			[]string{"node"}, nil),
		devicesDesc: prometheus.NewDesc("edgeloop_gpu_devices",
			"Number of GPUs NVML reports (MIG devices not counted).",
			[]string{"node"}, nil),
		expectedDesc: prometheus.NewDesc("edgeloop_gpu_expected",
			"Whether this node should have working GPU metrics (1: gpu.enabled is true, or auto and the NVIDIA driver is installed) or not (0: auto on a node without the driver). EdgeloopGPUNVMLDown fires only where it is 1.",
			[]string{"node"}, nil),
		expected: cfg.Enabled == EnabledTrue,
	}
	c.xid.counts = map[string]map[uint64]float64{}
	c.xid.last = map[string]uint64{}
	var pod []string
	if cfg.Kubernetes.PodAttribution {
		pod = podLabelNames
		c.podDescs = newPodDescs()
	}
	if cfg.Naming == NamingDCGM {
		c.m = dcgmMetrics(pod...)
	} else {
		c.m = edgeloopMetrics(pod...)
	}
	subs := map[string]scrape.Subcollector{
		"gpu_utilization":   scrape.SubcollectorFunc(c.updateUtilization),
		"gpu_memory":        scrape.SubcollectorFunc(c.updateMemory),
		"gpu_temperature":   scrape.SubcollectorFunc(c.updateTemperature),
		"gpu_power":         scrape.SubcollectorFunc(c.updatePower),
		"gpu_clocks":        scrape.SubcollectorFunc(c.updateClocks),
		"gpu_pcie":          scrape.SubcollectorFunc(c.updatePCIe),
		"gpu_ecc":           scrape.SubcollectorFunc(c.updateECC),
		"gpu_remapped_rows": scrape.SubcollectorFunc(c.updateRemappedRows),
	}
	if cfg.XIDEvents {
		subs["gpu_xid"] = scrape.SubcollectorFunc(c.updateXID)
	}
	if c.m.info != nil {
		subs["gpu_info"] = scrape.SubcollectorFunc(c.updateInfo)
	}
	if cfg.Processes && c.m.processMemory != nil {
		subs["gpu_processes"] = scrape.SubcollectorFunc(c.updateProcesses)
	}
	c.set = scrape.NewSet(logger, subs)
	return c
}

// Describe sends nothing: the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends edgeloop_gpu_nvml_up and edgeloop_gpu_expected and, while NVML is up, every
// GPU series together with the per-subcollector scrape success and duration.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(c.upDesc, prometheus.GaugeValue, boolValue(c.up), c.node)
	ch <- prometheus.MustNewConstMetric(c.expectedDesc, prometheus.GaugeValue, boolValue(c.expected), c.node)
	c.collectPods(ch, c.up)
	if !c.up {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.devicesDesc, prometheus.GaugeValue, float64(len(c.inv.gpus)), c.node)
	c.set.Collect(ch)
}

// Run initializes NVML, retrying every InitRetryInterval while that fails, then keeps the
// device inventory fresh and counts XID events until ctx is done; it then shuts NVML down and
// returns.
func (c *Collector) Run(ctx context.Context) {
	if c.lib == nil {
		if c.cfg.Enabled == EnabledAuto {
			c.logger.Info("GPU metrics are off: no NVML library was given; no GPU expected (gpu.enabled: auto)")
		} else {
			c.logger.Warn("GPU metrics are off: no NVML library was given")
		}
		<-ctx.Done()
		return
	}
	if c.cfg.Kubernetes.PodAttribution {
		// Started before NVML so that a missing socket is reported even while NVML is not up.
		var wg sync.WaitGroup
		wg.Go(func() { c.runPods(ctx) })
		defer wg.Wait()
	}
	inv, ok := c.initNVML(ctx)
	if !ok {
		return
	}
	defer c.shutdown()
	// Register for XID events before publishing up, so the first scrape that sees GPUs also
	// knows whether XIDs are being counted.
	var events nvml.EventSet
	if c.cfg.XIDEvents {
		events = c.registerXID(inv)
	}
	if events != nil {
		defer func() {
			if ret := events.Free(); ret != nvml.SUCCESS {
				c.logger.Debug("free NVML event set", "err", ret.Error())
			}
		}()
	}
	c.mu.Lock()
	c.publish(inv)
	c.up = true
	c.mu.Unlock()
	c.loop(ctx, events)
}

// initNVML calls nvml.Init until it succeeds or ctx ends, logging the failure once: on a node
// without an NVIDIA GPU it fails forever, and a line per retry would only be noise. Under
// gpu.enabled: auto a missing library means a node without the driver, said once at INFO; any
// other failure means a driver that does not work, and a GPU is expected. It then discovers
// the devices.
func (c *Collector) initNVML(ctx context.Context) (*inventory, bool) {
	failures := 0
	logged := "" // the kind of failure last logged: "absent" or "failing"
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case <-timer.C:
		}
		ret := c.lib.Init()
		absent := ret == nvml.ERROR_LIBRARY_NOT_FOUND && c.cfg.Enabled == EnabledAuto
		if !absent {
			c.setExpected()
		}
		if ret == nvml.SUCCESS {
			break
		}
		switch {
		case absent && logged != "absent":
			c.logger.Info("no NVIDIA driver on this node (libnvidia-ml.so not found): GPU metrics are off and no GPU is expected (gpu.enabled: auto, edgeloop_gpu_expected 0); looking again quietly",
				"err", ret.Error(), "retry_every", c.cfg.InitRetryInterval.String())
			logged = "absent"
		case !absent && logged != "failing":
			c.logger.Warn("GPU metrics are off: NVML is not available (no NVIDIA driver, libnvidia-ml.so, or a driver that does not load); retrying quietly. Set gpu.enabled: auto or false on nodes without NVIDIA GPUs",
				"err", ret.Error(), "retry_every", c.cfg.InitRetryInterval.String(), "gpu_enabled", string(c.cfg.Enabled))
			logged = "failing"
		default:
			c.logger.Debug("NVML still not available", "err", ret.Error(), "attempt", failures+1)
		}
		failures++
		timer.Reset(c.cfg.InitRetryInterval)
	}

	inv := c.rediscoverLogged()
	c.logger.Info("NVML initialized; GPU metrics on", "driver_version", inv.driverVersion,
		"cuda_driver_version", inv.cudaVersion, "gpus", len(inv.gpus), "mig_devices", inv.migCount(),
		"naming", c.cfg.Naming, "after_failed_attempts", failures)
	return inv, true
}

// publish makes inv the inventory scrapes read, labelled with the pods last reported to hold
// its devices. The caller holds c.mu for writing.
func (c *Collector) publish(inv *inventory) {
	if c.cfg.Kubernetes.PodAttribution {
		c.attribute(inv)
	}
	c.inv = inv
}

// setExpected marks this node as one that should have GPU metrics.
func (c *Collector) setExpected() {
	c.mu.Lock()
	c.expected = true
	c.mu.Unlock()
}

// shutdown stops scrapes from reaching NVML, then releases it.
func (c *Collector) shutdown() {
	c.mu.Lock()
	c.up = false
	c.mu.Unlock()
	if ret := c.lib.Shutdown(); ret != nvml.SUCCESS {
		c.logger.Warn("NVML shutdown failed", "err", ret.Error())
	}
}

// loop waits for XID events on events (nil: XIDs are not counted) and refreshes the inventory
// periodically, until ctx ends.
func (c *Collector) loop(ctx context.Context, events nvml.EventSet) {
	next := time.Now().Add(c.rediscoverEvery)
	waitFailing := false
	for ctx.Err() == nil {
		if events != nil {
			c.waitXID(ctx, events, &waitFailing)
		} else {
			wait(ctx, time.Until(next))
		}
		if ctx.Err() != nil || time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(c.rediscoverEvery)
		inv := c.rediscoverLogged()
		c.mu.Lock()
		old := c.inv
		c.publish(inv)
		c.mu.Unlock()
		if old.signature() != inv.signature() {
			c.logger.Info("GPU inventory changed", "gpus", len(inv.gpus), "mig_devices", inv.migCount())
		}
	}
}

// rediscoverLogged runs a discovery and logs its error only when it differs from the previous
// discovery's: a GPU that cannot be read would otherwise be reported every minute.
func (c *Collector) rediscoverLogged() *inventory {
	inv, err := c.discover()
	text := ""
	if err != nil {
		text = err.Error()
		if text != c.discoverErr {
			c.logger.Error("GPU discovery incomplete: the devices or details named here are not exported", "err", err)
		}
	}
	c.discoverErr = text
	return inv
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
