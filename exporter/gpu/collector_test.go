package gpu

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.yaml.in/yaml/v3"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.prom from the collector's current output")

func newTestCollector(lib nvml.Interface, naming string) (*Collector, *testenv.Buffer) {
	return newTestCollectorEnabled(lib, naming, DefaultConfig().Enabled)
}

// newTestCollectorEnabled is newTestCollector with gpu.enabled set to enabled.
func newTestCollectorEnabled(lib nvml.Interface, naming string, enabled Enabled) (*Collector, *testenv.Buffer) {
	logs := &testenv.Buffer{}
	cfg := DefaultConfig()
	cfg.Naming = naming
	cfg.Enabled = enabled
	cfg.InitRetryInterval = 5 * time.Millisecond
	c := New(lib, cfg, "edge-01", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c.waitTimeout = 5 * time.Millisecond
	c.procFS = fstest.MapFS{}
	return c, logs
}

// start runs c until the test ends and waits until NVML is up.
func start(t *testing.T, c *Collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "NVML up", func() bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return c.up
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatherer gathers c without the scrape durations, which differ on every run.
func gatherer(c *Collector) prometheus.Gatherer {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := reg.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if mf.GetName() != "edgeloop_exporter_scrape_collector_duration_seconds" {
				out = append(out, mf)
			}
		}
		return out, err
	})
}

// text renders what g gathers in the Prometheus text format.
func text(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// checkGolden compares what g gathers with testdata/name (rewritten under -update).
func checkGolden(t *testing.T, g prometheus.Gatherer, name string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, text(t, g), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.GatherAndCompare(g, f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// withProcesses gives A100 GPU 0 a compute+graphics process (listed twice by NVML), a process
// whose name only /proc knows and one whose memory NVML cannot tell.
func withProcesses(s *testServer, c *Collector) {
	s.procNames[4242] = "/usr/bin/python3"
	c.procFS = fstest.MapFS{"4343/comm": {Data: []byte("tritonserver\n")}}
	s.setProcesses(0,
		[]nvml.ProcessInfo{
			{Pid: 4343, UsedGpuMemory: 512 * mib, GpuInstanceId: noInstance, ComputeInstanceId: noInstance},
			{Pid: 4242, UsedGpuMemory: 2048 * mib, GpuInstanceId: noInstance, ComputeInstanceId: noInstance},
			{Pid: 5000, UsedGpuMemory: valueNotAvailable, GpuInstanceId: noInstance, ComputeInstanceId: noInstance},
		},
		[]nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 2048 * mib, GpuInstanceId: noInstance, ComputeInstanceId: noInstance}},
	)
}

func TestGoldenA100(t *testing.T) {
	for _, naming := range []string{NamingEdgeloop, NamingDCGM} {
		t.Run(naming, func(t *testing.T) {
			s := newA100()
			c, _ := newTestCollector(s, naming)
			withProcesses(s, c)
			start(t, c)
			checkGolden(t, gatherer(c), "dgxa100_"+naming+".prom")
		})
	}
}

func TestGoldenH100MIG(t *testing.T) {
	for _, naming := range []string{NamingEdgeloop, NamingDCGM} {
		t.Run(naming, func(t *testing.T) {
			s := newH100()
			s.procNames[7001] = "/opt/app/detector"
			s.migs[0].devs[0].procs = []nvml.ProcessInfo{{Pid: 7001, UsedGpuMemory: 900 * mib, GpuInstanceId: 0, ComputeInstanceId: 0}}
			c, _ := newTestCollector(s, naming)
			start(t, c)
			checkGolden(t, gatherer(c), "dgxh100_mig_"+naming+".prom")
		})
	}
}

// TestPromtoolCheckMetrics lints the edgeloop-named goldens. The DCGM-named ones are not
// checked: DCGM's upper-case names and counters without _total are what DCGM-Exporter exports,
// and promtool rightly complains about them.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, name := range []string{"dgxa100_edgeloop.prom", "dgxh100_mig_edgeloop.prom"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(data)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics %s: %v\n%s", name, err, out)
		}
	}
}

// TestNoNVMLThenDriverAppears: with gpu.enabled: true a node without the library is a fault
// (a GPU is expected), logged once as a warning, and recovers when the driver appears.
func TestNoNVMLThenDriverAppears(t *testing.T) {
	s := newA100()
	var calls atomic.Int32
	var driverLoaded atomic.Bool
	s.InitFunc = func() nvml.Return {
		calls.Add(1)
		if driverLoaded.Load() {
			return nvml.SUCCESS
		}
		return nvml.ERROR_LIBRARY_NOT_FOUND
	}
	c, logs := newTestCollectorEnabled(s, NamingEdgeloop, EnabledTrue)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, "several Init retries", func() bool { return calls.Load() >= 4 })
	if err := testutil.CollectAndCompare(c, strings.NewReader(upAndExpected(0, 1))); err != nil {
		t.Errorf("without NVML: %v", err)
	}
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("without NVML the collector sent %d series, want only nvml_up and expected", n)
	}
	out := logs.String()
	if n := strings.Count(out, "NVML is not available"); n != 1 {
		t.Errorf("logged the missing NVML %d times over %d attempts, want once:\n%s", n, calls.Load(), out)
	}
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, out)
	}

	driverLoaded.Store(true)
	waitFor(t, "NVML up after the driver appears", func() bool {
		return testutil.ToFloat64(upOnly{c}) == 1
	})
	if n := testutil.CollectAndCount(c, "edgeloop_gpu_temperature_celsius"); n != 8 {
		t.Errorf("after recovery: %d temperature series, want 8", n)
	}
	if !strings.Contains(logs.String(), "NVML initialized") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// upAndExpected is the exposition of edgeloop_gpu_nvml_up and edgeloop_gpu_expected alone.
func upAndExpected(up, expected int) string {
	return fmt.Sprintf(`
# HELP edgeloop_gpu_expected Whether this node should have working GPU metrics (1: gpu.enabled is true, or auto and the NVIDIA driver is installed) or not (0: auto on a node without the driver). EdgeloopGPUNVMLDown fires only where it is 1.
# TYPE edgeloop_gpu_expected gauge
edgeloop_gpu_expected{node="edge-01"} %d
# HELP edgeloop_gpu_nvml_up Whether NVML is initialized and GPU metrics are being read (1) or not (0): no driver, no library, or still starting.
# TYPE edgeloop_gpu_nvml_up gauge
edgeloop_gpu_nvml_up{node="edge-01"} %d
`, expected, up)
}

// TestAutoWithoutDriver: under gpu.enabled: auto (the default) a node without libnvidia-ml.so
// exports edgeloop_gpu_expected 0 beside nvml_up 0, says so once at INFO with no warning, and
// still picks up a driver installed later (expected then 1).
func TestAutoWithoutDriver(t *testing.T) {
	s := newA100()
	var calls atomic.Int32
	var driverLoaded atomic.Bool
	s.InitFunc = func() nvml.Return {
		calls.Add(1)
		if driverLoaded.Load() {
			return nvml.SUCCESS
		}
		return nvml.ERROR_LIBRARY_NOT_FOUND
	}
	c, logs := newTestCollector(s, NamingEdgeloop)
	if c.cfg.Enabled != EnabledAuto {
		t.Fatalf("default gpu.enabled = %q, want auto", c.cfg.Enabled)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, "several Init retries", func() bool { return calls.Load() >= 4 })
	if err := testutil.CollectAndCompare(c, strings.NewReader(upAndExpected(0, 0))); err != nil {
		t.Errorf("auto without a driver: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "no NVIDIA driver on this node"); n != 1 {
		t.Errorf("logged the missing driver %d times over %d attempts, want once:\n%s", n, calls.Load(), out)
	}
	if n := strings.Count(out, "level=WARN") + strings.Count(out, "level=ERROR"); n != 0 {
		t.Errorf("%d warnings or errors on a CPU-only node, want none:\n%s", n, out)
	}

	driverLoaded.Store(true)
	waitFor(t, "NVML up after the driver appears", func() bool { return testutil.ToFloat64(upOnly{c}) == 1 })
	c.mu.RLock()
	expected := c.expected
	c.mu.RUnlock()
	if !expected {
		t.Error("edgeloop_gpu_expected stayed 0 after the driver appeared")
	}
}

// TestAutoBrokenDriver: under auto, a library that is there but does not initialize is a
// driver that does not work: a GPU is expected and the failure is a warning.
func TestAutoBrokenDriver(t *testing.T) {
	s := newA100()
	var calls atomic.Int32
	s.InitFunc = func() nvml.Return { calls.Add(1); return nvml.ERROR_DRIVER_NOT_LOADED }
	c, logs := newTestCollector(s, NamingEdgeloop)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "several Init retries", func() bool { return calls.Load() >= 3 })
	if err := testutil.CollectAndCompare(c, strings.NewReader(upAndExpected(0, 1))); err != nil {
		t.Errorf("auto with a broken driver: %v", err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
}

// upOnly exposes only edgeloop_gpu_nvml_up of a collector, for testutil.ToFloat64.
type upOnly struct{ c *Collector }

func (u upOnly) Describe(chan<- *prometheus.Desc) {}
func (u upOnly) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() {
		u.c.Collect(all)
		close(all)
	}()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"edgeloop_gpu_nvml_up"`) {
			ch <- m
		}
	}
}

func TestShutdownOnCancel(t *testing.T) {
	s := newA100()
	var shutdowns, frees atomic.Int32
	s.ShutdownFunc = func() nvml.Return { shutdowns.Add(1); return nvml.SUCCESS }
	s.events.FreeFunc = func() nvml.Return { frees.Add(1); return nvml.SUCCESS }
	c, _ := newTestCollector(s, NamingEdgeloop)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	waitFor(t, "NVML up", func() bool { return testutil.ToFloat64(upOnly{c}) == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if shutdowns.Load() != 1 || frees.Load() != 1 {
		t.Errorf("Shutdown called %d times, event set freed %d times; want 1 and 1", shutdowns.Load(), frees.Load())
	}
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("after shutdown the collector sent %d series, want only nvml_up 0 and expected", n)
	}
}

func TestNilLibrary(t *testing.T) {
	c, logs := newTestCollector(nil, NamingEdgeloop)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx)
	if v := testutil.ToFloat64(upOnly{c}); v != 0 {
		t.Errorf("nvml_up = %v, want 0", v)
	}
	if !strings.Contains(logs.String(), "GPU metrics are off") {
		t.Errorf("not logged:\n%s", logs.String())
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(upAndExpected(0, 0))); err != nil {
		t.Errorf("auto without a library: %v", err)
	}
}

// successes returns edgeloop_exporter_scrape_collector_success by collector.
func successes(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "edgeloop_exporter_scrape_collector_success" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// count returns how many series of family name g gathers.
func count(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestFailingDeviceKeepsOthers(t *testing.T) {
	s := newA100()
	s.device(3).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	c, logs := newTestCollector(s, NamingEdgeloop)
	start(t, c)
	g := gatherer(c)

	if n := count(t, g, "edgeloop_gpu_temperature_celsius"); n != 7 {
		t.Errorf("%d temperature series, want the 7 other GPUs'", n)
	}
	// Memory temperature is read by the same subcollector and GPU 3's is fine.
	if n := count(t, g, "edgeloop_gpu_memory_temperature_celsius"); n != 8 {
		t.Errorf("%d memory temperature series, want 8", n)
	}
	for name, v := range successes(t, g) {
		want := 1.0
		if name == "gpu_temperature" {
			want = 0
		}
		if v != want {
			t.Errorf("success{collector=%q} = %v, want %v", name, v, want)
		}
	}
	if out := logs.String(); !strings.Contains(out, "gpu 3: temperature: ERROR_UNKNOWN") {
		t.Errorf("failure not logged with the device and operation:\n%s", out)
	}
}

func TestPanickingSubcollectorKeepsScrape(t *testing.T) {
	s := newA100()
	// A mock Func left nil panics when called, like a bug in a subcollector would.
	s.device(5).GetPcieReplayCounterFunc = nil
	c, logs := newTestCollector(s, NamingEdgeloop)
	start(t, c)
	g := gatherer(c)
	got := successes(t, g)
	if got["gpu_pcie"] != 0 || got["gpu_power"] != 1 || got["gpu_memory"] != 1 {
		t.Errorf("successes = %v, want gpu_pcie 0 and the others 1", got)
	}
	if n := count(t, g, "edgeloop_gpu_power_watts"); n != 8 {
		t.Errorf("%d power series, want 8", n)
	}
	if !strings.Contains(logs.String(), "collector panicked") {
		t.Errorf("panic not logged:\n%s", logs.String())
	}
}

func TestNotSupportedIsAbsentNotFailure(t *testing.T) {
	s := newA100()
	for i := range s.Devices {
		d := s.device(i)
		d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
		d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, nvml.ERROR_NOT_SUPPORTED }
		d.GetSupportedClocksEventReasonsFunc = func() (uint64, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	}
	c, _ := newTestCollector(s, NamingEdgeloop)
	start(t, c)
	g := gatherer(c)
	for _, name := range []string{"edgeloop_gpu_energy_joules_total", "edgeloop_gpu_remapped_rows_total", "edgeloop_gpu_clock_event_reason", "edgeloop_gpu_encoder_utilization_ratio"} {
		if n := count(t, g, name); n != 0 {
			t.Errorf("%s: %d series for an unsupported reading, want none", name, n)
		}
	}
	got := successes(t, g)
	if got["gpu_remapped_rows"] != 1 || got["gpu_power"] != 1 || got["gpu_clocks"] != 1 {
		t.Errorf("successes = %v: NOT_SUPPORTED must not count as a failure", got)
	}
}

func TestXIDEvents(t *testing.T) {
	t.Run(NamingEdgeloop, func(t *testing.T) {
		s := newH100()
		c, logs := newTestCollector(s, NamingEdgeloop)
		start(t, c)
		send := func(gpu int, xid uint64, gi uint32) {
			s.events.ch <- nvml.EventData{Device: s.Devices[gpu], EventType: nvml.EventTypeXidCriticalError, EventData: xid, GpuInstanceId: gi, ComputeInstanceId: noInstance}
		}
		// A non-XID event on the same set is ignored.
		s.events.ch <- nvml.EventData{Device: s.Devices[4], EventType: nvml.EventTypeSingleBitEccError}
		send(4, 79, noInstance)
		send(4, 79, noInstance)
		send(4, 13, noInstance)
		send(0, 43, 1) // on GPU 0's second MIG instance
		waitFor(t, "XIDs counted", func() bool { return count(t, gatherer(c), "edgeloop_gpu_xid_errors_total") == 3 })
		want := `
# HELP edgeloop_gpu_xid_errors_total XID errors the driver reported since the exporter started, by XID code.
# TYPE edgeloop_gpu_xid_errors_total counter
edgeloop_gpu_xid_errors_total{gpu="0",gpu_instance_id="1",gpu_instance_profile="1g.10gb",gpu_model="NVIDIA H100 80GB HBM3",node="edge-01",pci_bus_id="00000000:07:00.0",uuid="MIG-00000000-0000-0000-0000-000000000000-1-0",xid="43"} 1
edgeloop_gpu_xid_errors_total{gpu="4",gpu_instance_id="",gpu_instance_profile="",gpu_model="NVIDIA H100 80GB HBM3",node="edge-01",pci_bus_id="00000000:47:00.0",uuid="GPU-00000000-0000-0000-0000-000000000004",xid="13"} 1
edgeloop_gpu_xid_errors_total{gpu="4",gpu_instance_id="",gpu_instance_profile="",gpu_model="NVIDIA H100 80GB HBM3",node="edge-01",pci_bus_id="00000000:47:00.0",uuid="GPU-00000000-0000-0000-0000-000000000004",xid="79"} 2
`
		if err := testutil.GatherAndCompare(gatherer(c), strings.NewReader(want), "edgeloop_gpu_xid_errors_total"); err != nil {
			t.Error(err)
		}
		if n := strings.Count(logs.String(), `msg="GPU XID error"`); n != 4 {
			t.Errorf("logged %d XID errors, want 4:\n%s", n, logs.String())
		}
	})
	t.Run(NamingDCGM, func(t *testing.T) {
		s := newA100()
		c, _ := newTestCollector(s, NamingDCGM)
		start(t, c)
		s.events.ch <- nvml.EventData{Device: s.Devices[6], EventType: nvml.EventTypeXidCriticalError, EventData: 48, GpuInstanceId: noInstance}
		s.events.ch <- nvml.EventData{Device: s.Devices[6], EventType: nvml.EventTypeXidCriticalError, EventData: 94, GpuInstanceId: noInstance}
		waitFor(t, "last XID", func() bool {
			c.xid.mu.Lock()
			defer c.xid.mu.Unlock()
			return c.xid.last[s.device(6).UUID] == 94
		})
		want := `
# HELP DCGM_FI_DEV_XID_ERRORS Code of the most recent XID error (0: none since the exporter started).
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{GPU_I_ID="",GPU_I_PROFILE="",Hostname="edge-01",UUID="GPU-00000000-0000-0000-0000-000000000005",device="nvidia5",err_code="0",gpu="5",modelName="Mock NVIDIA A100-SXM4-40GB",pci_bus_id="00000000:57:00.0"} 0
DCGM_FI_DEV_XID_ERRORS{GPU_I_ID="",GPU_I_PROFILE="",Hostname="edge-01",UUID="GPU-00000000-0000-0000-0000-000000000006",device="nvidia6",err_code="94",gpu="6",modelName="Mock NVIDIA A100-SXM4-40GB",pci_bus_id="00000000:67:00.0"} 94
`
		got := text(t, gatherer(c))
		for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
			if !bytes.Contains(got, []byte(line)) {
				t.Errorf("output lacks %s", line)
			}
		}
	})
}

func TestXIDRegistrationUnsupported(t *testing.T) {
	s := newA100()
	for i := range s.Devices {
		s.device(i).RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.ERROR_NOT_SUPPORTED }
	}
	var frees atomic.Int32
	s.events.FreeFunc = func() nvml.Return { frees.Add(1); return nvml.SUCCESS }
	c, logs := newTestCollector(s, NamingDCGM)
	start(t, c)
	// Without registered GPUs, DCGM's "last XID 0" would claim a health nobody watched.
	if n := count(t, gatherer(c), "DCGM_FI_DEV_XID_ERRORS"); n != 0 {
		t.Errorf("%d XID series without XID events, want none", n)
	}
	if frees.Load() != 1 || !strings.Contains(logs.String(), "XID errors will not be counted") {
		t.Errorf("event set freed %d times, log:\n%s", frees.Load(), logs.String())
	}
}

func TestRediscoveryPicksUpMIGChanges(t *testing.T) {
	s := newA100()
	c, logs := newTestCollector(s, NamingEdgeloop)
	c.rediscoverEvery = 10 * time.Millisecond
	start(t, c)
	if n := count(t, gatherer(c), "edgeloop_gpu_info"); n != 8 {
		t.Fatalf("%d info series before MIG, want 8", n)
	}
	s.enableMIG(7, []migSpec{{profile: nvml.GPU_INSTANCE_PROFILE_7_SLICE, cis: 1}})
	waitFor(t, "the MIG device", func() bool { return count(t, gatherer(c), "edgeloop_gpu_info") == 9 })
	want := `edgeloop_gpu_memory_total_bytes{gpu="7",gpu_instance_id="0",gpu_instance_profile="7g.40gb",gpu_model="Mock NVIDIA A100-SXM4-40GB",node="edge-01",pci_bus_id="00000000:77:00.0",uuid="MIG-00000000-0000-0000-0000-000000000007-0-0"} 4.2144366592e+10` // 40192 MiB
	if got := text(t, gatherer(c)); !bytes.Contains(got, []byte(want)) {
		t.Errorf("output lacks %s\n%s", want, got)
	}
	if !strings.Contains(logs.String(), "GPU inventory changed") {
		t.Errorf("change not logged:\n%s", logs.String())
	}
}

func TestDiscoveryErrorKeepsOtherGPUs(t *testing.T) {
	s := newA100()
	s.device(2).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	c, logs := newTestCollector(s, NamingEdgeloop)
	start(t, c)
	if n := count(t, gatherer(c), "edgeloop_gpu_temperature_celsius"); n != 7 {
		t.Errorf("%d GPUs exported, want the 7 readable ones", n)
	}
	if !strings.Contains(logs.String(), "gpu 2: uuid: ERROR_GPU_IS_LOST") {
		t.Errorf("lost GPU not logged:\n%s", logs.String())
	}
}

func TestMIGMemoryGB(t *testing.T) {
	for _, tc := range []struct {
		totalMiB, profileMiB, want uint64
	}{
		{40960, 4864, 5},   // A100-40GB 1g.5gb
		{40960, 9856, 10},  // A100-40GB 2g.10gb
		{40960, 19968, 20}, // A100-40GB 3g.20gb
		{40960, 40192, 40}, // A100-40GB 7g.40gb
		{81920, 9856, 10},  // A100-80GB 1g.10gb
		{81920, 10240, 10}, // H100-80GB 1g.10gb (mock)
		{81559, 9984, 10},  // H100-80GB as a real driver reports it
		{144384, 17152, 18},
	} {
		if got := migMemoryGB(tc.totalMiB*mib, tc.profileMiB); got != tc.want {
			t.Errorf("migMemoryGB(%d MiB, %d MiB) = %d, want %d", tc.totalMiB, tc.profileMiB, got, tc.want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	for _, tc := range []struct {
		typ  nvml.ValueType
		raw  [8]byte
		want float64
	}{
		{nvml.VALUE_TYPE_UNSIGNED_INT, [8]byte{45}, 45},
		{nvml.VALUE_TYPE_UNSIGNED_LONG_LONG, [8]byte{0, 1}, 256},
		{nvml.VALUE_TYPE_SIGNED_INT, [8]byte{0xFF, 0xFF, 0xFF, 0xFF}, -1},
		{nvml.VALUE_TYPE_DOUBLE, [8]byte{0, 0, 0, 0, 0, 0, 0xF0, 0x3F}, 1},
	} {
		got, ok := fieldValue(nvml.FieldValue{ValueType: uint32(tc.typ), Value: tc.raw})
		if !ok || got != tc.want {
			t.Errorf("type %d: got %v, %v; want %v", tc.typ, got, ok, tc.want)
		}
	}
	if _, ok := fieldValue(nvml.FieldValue{ValueType: uint32(nvml.VALUE_TYPE_COUNT)}); ok {
		t.Error("unknown value type decoded")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"dcgm", func(c *Config) { c.Naming = NamingDCGM }, ""},
		{"disabled", func(c *Config) { c.Enabled = EnabledFalse }, ""},
		{"enabled", func(c *Config) { c.Enabled = EnabledTrue }, ""},
		{"bad enabled", func(c *Config) { c.Enabled = "yes" }, `enabled: must be true, false or auto, got "yes"`},
		{"bad naming", func(c *Config) { c.Naming = "DCGM" }, `naming: must be "edgeloop" or "dcgm", got "DCGM"`},
		{"empty naming", func(c *Config) { c.Naming = "" }, `naming: must be "edgeloop" or "dcgm", got ""`},
		{"zero retry", func(c *Config) { c.InitRetryInterval = 0 }, "init_retry_interval: must be at least 1s, got 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.modify(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("Validate() = %T, want a *config.FieldError", err)
			}
		})
	}
}

// TestEnabledYAML decodes gpu.enabled as YAML spells it.
func TestEnabledYAML(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want Enabled
		err  bool
	}{
		{"enabled: true", EnabledTrue, false},
		{"enabled: false", EnabledFalse, false},
		{"enabled: auto", EnabledAuto, false},
		{"enabled: \"true\"", EnabledTrue, false},
		{"naming: dcgm", EnabledAuto, false},
		{"enabled: yes", "yes", true}, // YAML 1.2: a string, refused by Validate
		{"enabled: [true]", "", true},
	} {
		t.Run(tc.doc, func(t *testing.T) {
			cfg := DefaultConfig()
			err := yaml.Unmarshal([]byte(tc.doc), &cfg)
			if err == nil {
				err = cfg.Validate()
			}
			if (err != nil) != tc.err {
				t.Fatalf("%q: err = %v, want error %v", tc.doc, err, tc.err)
			}
			if !tc.err && cfg.Enabled != tc.want {
				t.Errorf("%q: enabled = %q, want %q", tc.doc, cfg.Enabled, tc.want)
			}
		})
	}
}

func TestOldDriverUsesThrottleReasons(t *testing.T) {
	s := newA100()
	// A driver before R535 lacks the ClocksEvent symbols; calling them would crash the process.
	s.LookupSymbolFunc = func(name string) error {
		if strings.Contains(name, "ClocksEventReasons") {
			return errors.New("undefined symbol: " + name)
		}
		return nil
	}
	for i := range s.Devices {
		d := s.device(i)
		d.GetSupportedClocksEventReasonsFunc = nil // would panic if called
		d.GetCurrentClocksEventReasonsFunc = nil
		d.GetSupportedClocksThrottleReasonsFunc = func() (uint64, nvml.Return) {
			return nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonSwThermalSlowdown, nvml.SUCCESS
		}
		d.GetCurrentClocksThrottleReasonsFunc = func() (uint64, nvml.Return) { return nvml.ClocksThrottleReasonHwSlowdown, nvml.SUCCESS }
	}
	c, _ := newTestCollector(s, NamingEdgeloop)
	start(t, c)
	g := gatherer(c)
	if n := count(t, g, "edgeloop_gpu_clock_event_reason"); n != 16 {
		t.Errorf("%d reason series, want the 2 supported reasons of 8 GPUs", n)
	}
	want := `edgeloop_gpu_clock_event_reason{gpu="3",gpu_instance_id="",gpu_instance_profile="",gpu_model="Mock NVIDIA A100-SXM4-40GB",node="edge-01",pci_bus_id="00000000:37:00.0",reason="hw_slowdown",uuid="GPU-00000000-0000-0000-0000-000000000003"} 1`
	if got := text(t, g); !bytes.Contains(got, []byte(want)) {
		t.Errorf("output lacks %s", want)
	}
	if got := successes(t, g); got["gpu_clocks"] != 1 {
		t.Errorf("gpu_clocks success = %v, want 1", got["gpu_clocks"])
	}
}

// BenchmarkCollect measures one scrape of a DGX A100 (mocked NVML calls cost nearly nothing,
// so this is the collector's own overhead).
func BenchmarkCollect(b *testing.B) {
	s := newA100()
	c := New(s, DefaultConfig(), "edge-01", slog.New(slog.DiscardHandler))
	inv, err := c.discover()
	if err != nil {
		b.Fatal(err)
	}
	c.inv, c.up = inv, true
	c.xid.active.Store(true)
	ch := make(chan prometheus.Metric, 1024)
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
	}
	close(ch)
	<-done
}
