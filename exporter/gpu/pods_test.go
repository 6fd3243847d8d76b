package gpu

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/testenv"
)

// fakeKubelet serves the kubelet's pod-resources API over gRPC on a unix socket, answering
// List with what the test sets.
type fakeKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	path  string
	lists atomic.Int64

	mu   sync.Mutex
	resp *podresourcesv1.ListPodResourcesResponse
	srv  *grpc.Server
}

func (f *fakeKubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	f.lists.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.Clone(f.resp).(*podresourcesv1.ListPodResourcesResponse), nil
}

// set replaces what List answers.
func (f *fakeKubelet) set(pods ...*podresourcesv1.PodResources) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resp = &podresourcesv1.ListPodResourcesResponse{PodResources: pods}
}

// start serves on f.path until stop or the end of the test.
func (f *fakeKubelet) start(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	t.Cleanup(f.stop)
}

// stop shuts the server down, which removes the socket, as a kubelet restart does.
func (f *fakeKubelet) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// pod is one container of one pod holding ids of resource.
func pod(namespace, name, container, resource string, ids ...string) *podresourcesv1.PodResources {
	return &podresourcesv1.PodResources{Name: name, Namespace: namespace, Containers: []*podresourcesv1.ContainerResources{{
		Name:    container,
		Devices: []*podresourcesv1.ContainerDevices{{ResourceName: resource, DeviceIds: ids}},
	}}}
}

// newPodCollector is newTestCollector with pod attribution on, reading socket every refresh.
func newPodCollector(lib *testServer, naming, socket string, refresh time.Duration) (*Collector, *testenv.Buffer) {
	logs := &testenv.Buffer{}
	cfg := DefaultConfig()
	cfg.Naming = naming
	cfg.InitRetryInterval = 5 * time.Millisecond
	cfg.Kubernetes.PodAttribution = true
	cfg.Kubernetes.Socket = "unix://" + socket
	cfg.Kubernetes.RefreshInterval = refresh
	cfg.Kubernetes.Timeout = time.Second
	c := New(lib, cfg, "edge-01", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c.waitTimeout = 5 * time.Millisecond
	// Rediscover often, so that every check also covers a fresh inventory being labelled.
	c.rediscoverEvery = 10 * time.Millisecond
	c.procFS = fstest.MapFS{}
	return c, logs
}

// gatherOnce gathers c once.
func gatherOnce(t *testing.T, c *Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// gauge is the value of the node-labelled family name, or -1 when it is absent.
func gauge(mfs []*dto.MetricFamily, name string) float64 {
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// devKey names a device series the way its naming mode tells devices apart.
func devKey(naming string, l map[string]string) string {
	if naming == NamingDCGM {
		return l["UUID"] + "/" + l["GPU_I_ID"]
	}
	return l["uuid"]
}

// holders maps every device of the memory-used family to "namespace/pod/container" (or "//").
func holders(t *testing.T, naming string, mfs []*dto.MetricFamily) map[string]string {
	t.Helper()
	name := "edgeloop_gpu_memory_used_bytes"
	if naming == NamingDCGM {
		name = "DCGM_FI_DEV_FB_USED"
	}
	out := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := labelMap(m)
			out[devKey(naming, l)] = l["namespace"] + "/" + l["pod"] + "/" + l["container"]
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s series", name)
	}
	return out
}

// checkAllLabelled checks that every per-device series carries the three pod labels (possibly
// empty) and returns how many series it checked.
func checkAllLabelled(t *testing.T, mfs []*dto.MetricFamily) int {
	t.Helper()
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labelMap(m)
			_, dev := l["uuid"]
			_, dcgmDev := l["UUID"]
			if !dev && !dcgmDev {
				continue
			}
			for _, name := range podLabelNames {
				if _, ok := l[name]; !ok {
					t.Errorf("%s%v has no %s label", mf.GetName(), l, name)
				}
			}
			n++
		}
	}
	return n
}

// TestPodAttribution runs the collector against a pod-resources gRPC server on a unix socket:
// missing at first, then serving GPUs, a MIG device, time-sliced replicas, GKE's device names,
// a foreign resource and an unknown device; then the assignment changes; then the kubelet goes
// away and comes back.
func TestPodAttribution(t *testing.T) {
	for _, naming := range []string{NamingEdgeloop, NamingDCGM} {
		t.Run(naming, func(t *testing.T) {
			s := newH100()
			kubelet := &fakeKubelet{path: filepath.Join(t.TempDir(), "kubelet.sock")}
			c, logs := newPodCollector(s, naming, kubelet.path, 20*time.Millisecond)
			start(t, c)

			up := func() float64 { return gauge(gatherOnce(t, c), "edgeloop_gpu_pod_attribution_up") }
			failures := func() float64 { return gauge(gatherOnce(t, c), "edgeloop_gpu_pod_attribution_failures_total") }
			// 1. No socket yet: metrics without pods, up 0, one WARN however many retries.
			waitFor(t, "five failed refreshes", func() bool { return failures() >= 5 })
			mfs := gatherOnce(t, c)
			if got := gauge(mfs, "edgeloop_gpu_pod_attribution_up"); got != 0 {
				t.Errorf("up without a socket = %v, want 0", got)
			}
			for dev, h := range holders(t, naming, mfs) {
				if h != "//" {
					t.Errorf("without a socket %s is held by %q", dev, h)
				}
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
				t.Errorf("%d WARN lines after repeated failures, want 1:\n%s", n, logs)
			}

			// Identify the devices the test hands out from a snapshot of the inventory; only
			// their identities (uuid, giID, parent), which rediscovery does not change, are read
			// after the lock is released.
			c.mu.RLock()
			snapshot := c.inv
			gpu := func(i int) *device { return snapshot.gpus[i] }
			var mig3g *device // GPU 0's 3g.40gb instance
			for _, m := range gpu(0).migs {
				if m.labels[6] == "3g.40gb" { // the profile, in both naming modes
					mig3g = m
				}
			}
			c.mu.RUnlock()
			if mig3g == nil {
				t.Fatal("no 3g.40gb MIG device on GPU 0")
			}
			key := func(d *device) string {
				if naming == NamingDCGM {
					if d.parent != nil {
						return d.parent.uuid + "/" + strconv.Itoa(d.giID)
					}
					return d.uuid + "/"
				}
				return d.uuid
			}

			// 2. The kubelet answers.
			kubelet.set(
				pod("vision", "detector-0", "triton", resourceGPU, gpu(2).uuid),
				pod("ml", "trainer-7f", "worker", "nvidia.com/mig-3g.40gb", mig3g.uuid),
				pod("batch", "sliced-b", "main", resourceGPU, gpu(3).uuid+"::1"),
				pod("batch", "sliced-a", "main", resourceGPU, gpu(3).uuid+"::0"),
				pod("gke", "g", "c", resourceGPU, "nvidia4"),
				// GPU 1's GI 1 has two compute instances; this is the second, which DCGM
				// naming reports as the GPU instance.
				pod("ml", "split-b", "w", "nvidia.com/mig-1g.10gb", gpu(1).migs[2].uuid),
				pod("other", "nic", "c", "example.com/sriov", gpu(5).uuid),
				pod("ghost", "old", "c", resourceGPU, "GPU-deadbeef"),
			)
			kubelet.start(t)
			waitFor(t, "pod attribution up", func() bool { return up() == 1 })
			mfs = gatherOnce(t, c)
			want := map[string]string{
				key(gpu(2)):         "vision/detector-0/triton",
				key(mig3g):          "ml/trainer-7f/worker",
				key(gpu(3)):         "batch/sliced-a/main", // two replicas: the first in order
				key(gpu(4)):         "gke/g/c",
				key(gpu(5)):         "//", // held under a resource that is not NVIDIA's
				key(gpu(0)):         "//", // the MIG parent: no pod holds the whole GPU
				key(gpu(7)):         "//",
				key(gpu(1).migs[2]): "ml/split-b/w",
			}
			got := holders(t, naming, mfs)
			for dev, w := range want {
				if got[dev] != w {
					t.Errorf("%s held by %q, want %q", dev, got[dev], w)
				}
			}
			attributed := 0
			for _, h := range got {
				if h != "//" {
					attributed++
				}
			}
			if attributed != 5 {
				t.Errorf("%d devices attributed in the scrape, want 5: %v", attributed, got)
			}
			if g := gauge(mfs, "edgeloop_gpu_pod_attribution_devices"); g != 5 {
				t.Errorf("devices gauge = %v, want 5", g)
			}
			if g := gauge(mfs, "edgeloop_gpu_pod_attribution_unmatched_device_ids"); g != 1 {
				t.Errorf("unmatched gauge = %v, want 1", g)
			}
			checked := checkAllLabelled(t, mfs)
			// A rediscovered inventory is published with the same holders.
			c.mu.RLock()
			inv := c.inv
			c.mu.RUnlock()
			waitFor(t, "a rediscovery", func() bool { c.mu.RLock(); defer c.mu.RUnlock(); return c.inv != inv })
			if again := holders(t, naming, gatherOnce(t, c)); !maps.Equal(again, got) {
				t.Errorf("after a rediscovery the holders are %v, want %v", again, got)
			}
			if !strings.Contains(logs.String(), "answers again") || !strings.Contains(logs.String(), "GPU-deadbeef") {
				t.Errorf("recovery or the unmatched ID not logged:\n%s", logs)
			}

			// 3. The assignment changes: the next refresh relabels.
			kubelet.set(pod("vision", "detector-1", "triton", resourceGPU, gpu(2).uuid))
			waitFor(t, "the new holder", func() bool {
				h := holders(t, naming, gatherOnce(t, c))
				return h[key(gpu(2))] == "vision/detector-1/triton" && h[key(mig3g)] == "//"
			})

			// 4. The kubelet goes away: the labels go, the metrics stay, one more WARN.
			series := len(holders(t, naming, gatherOnce(t, c)))
			kubelet.stop()
			before := failures()
			waitFor(t, "up 0 and five failed refreshes", func() bool { return up() == 0 && failures() >= before+5 })
			mfs = gatherOnce(t, c)
			h := holders(t, naming, mfs)
			if len(h) != series {
				t.Errorf("%d device series with the kubelet down, want %d", len(h), series)
			}
			if h[key(gpu(2))] != "//" {
				t.Errorf("with the kubelet down GPU 2 is still held by %q", h[key(gpu(2))])
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 3 { // absent, unmatched ID, down
				t.Errorf("%d WARN lines, want 3:\n%s", n, logs)
			}

			// 5. And comes back.
			kubelet.start(t)
			waitFor(t, "the holder back", func() bool {
				return holders(t, naming, gatherOnce(t, c))[key(gpu(2))] == "vision/detector-1/triton"
			})
			t.Logf("%s: %d List calls, %d device series checked for pod labels, %d devices per scrape",
				naming, kubelet.lists.Load(), checked, series)
		})
	}
}

// TestPodAttributionCached checks that scrapes read the cached answer: one List per refresh
// interval, not one per scrape.
func TestPodAttributionCached(t *testing.T) {
	s := newA100()
	kubelet := &fakeKubelet{path: filepath.Join(t.TempDir(), "kubelet.sock")}
	kubelet.set(pod("vision", "detector-0", "triton", resourceGPU, "GPU-00000000-0000-0000-0000-000000000001"))
	kubelet.start(t)
	c, logs := newPodCollector(s, NamingEdgeloop, kubelet.path, time.Hour)
	start(t, c)
	waitFor(t, "pod attribution up", func() bool { return gauge(gatherOnce(t, c), "edgeloop_gpu_pod_attribution_up") == 1 })
	const scrapes = 25
	for range scrapes {
		if h := holders(t, NamingEdgeloop, gatherOnce(t, c)); h["GPU-00000000-0000-0000-0000-000000000001"] != "vision/detector-0/triton" {
			t.Fatalf("GPU 1 held by %q", h["GPU-00000000-0000-0000-0000-000000000001"])
		}
	}
	if n := kubelet.lists.Load(); n != 1 {
		t.Errorf("%d List calls for %d scrapes within one refresh interval, want 1", n, scrapes)
	}
	if out := logs.String(); !strings.Contains(out, "pod attribution on") || strings.Contains(out, "level=WARN") {
		t.Errorf("want one INFO line saying pod attribution is on and no WARN:\n%s", out)
	}
}

// TestPodAttributionOff checks the default: no pod labels and no attribution series.
func TestPodAttributionOff(t *testing.T) {
	if DefaultConfig().Kubernetes.PodAttribution {
		t.Fatal("pod attribution is on by default")
	}
	c, _ := newTestCollector(newH100(), NamingEdgeloop)
	start(t, c)
	n := 0
	for _, mf := range gatherOnce(t, c) {
		if strings.HasPrefix(mf.GetName(), "edgeloop_gpu_pod_attribution") {
			t.Errorf("%s exported with pod attribution off", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			if _, ok := labelMap(m)["pod"]; ok {
				t.Errorf("%s has a pod label with pod attribution off", mf.GetName())
			}
			n++
		}
	}
	if n < 50 {
		t.Errorf("only %d series scraped", n)
	}
}

// TestResolve maps the device IDs device plugins report onto the H100 mock's inventory.
func TestResolve(t *testing.T) {
	for _, naming := range []string{NamingEdgeloop, NamingDCGM} {
		c, _ := newTestCollector(newH100(), naming)
		start(t, c)
		inv := c.inv
		g0, g1 := inv.gpus[0], inv.gpus[1]
		for _, tc := range []struct {
			id   string
			want *device
		}{
			{inv.gpus[5].uuid, inv.gpus[5]},
			{inv.gpus[5].uuid + "::3", inv.gpus[5]},
			{g0.migs[1].uuid, g0.migs[1]},
			{g0.migs[1].uuid + "::0", g0.migs[1]},
			{"nvidia6", inv.gpus[6]},
			{"nvidia6/vgpu2", inv.gpus[6]},
			{"nvidia0/gi" + strconv.Itoa(g0.migs[2].giID), g0.migs[2]},
			{"nvidia1/gi" + strconv.Itoa(g1.migs[1].giID), g1.migs[1]},
			{"nvidia9", nil},
			{"nvidia-1", nil},
			{"nvidia0/gi99", nil},
			{"nvidia0/x", nil},
			{"GPU-unknown", nil},
			{"", nil},
		} {
			if got := resolve(inv, tc.id); got != tc.want {
				t.Errorf("%s: resolve(%q) = %v, want %v", naming, tc.id, ref(got), ref(tc.want))
			}
		}
	}
}

func ref(d *device) string {
	if d == nil {
		return "nil"
	}
	return d.ref
}

func TestKubernetesConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*KubernetesConfig)
		want   string
	}{
		{"defaults", func(*KubernetesConfig) {}, ""},
		{"on", func(k *KubernetesConfig) { k.PodAttribution = true }, ""},
		{"unix url", func(k *KubernetesConfig) { k.Socket = "unix:///run/kubelet.sock" }, ""},
		{"extra names", func(k *KubernetesConfig) { k.ResourceNames = []string{"nvidia.com/gpu.shared"} }, ""},
		{"relative socket", func(k *KubernetesConfig) { k.Socket = "kubelet.sock" },
			`gpu.kubernetes.socket: must be an absolute path to the kubelet's pod-resources socket (or unix:// and one), got "kubelet.sock"`},
		{"empty socket", func(k *KubernetesConfig) { k.Socket = "" },
			`gpu.kubernetes.socket: must be an absolute path to the kubelet's pod-resources socket (or unix:// and one), got ""`},
		{"fast refresh", func(k *KubernetesConfig) { k.RefreshInterval = 100 * time.Millisecond },
			"gpu.kubernetes.refresh_interval: must be at least 1s, got 100ms"},
		{"no timeout", func(k *KubernetesConfig) { k.Timeout = 0 }, "gpu.kubernetes.timeout: must be positive, got 0s"},
		{"timeout past refresh", func(k *KubernetesConfig) { k.Timeout = time.Minute },
			"gpu.kubernetes.timeout: must not exceed refresh_interval (10s), got 1m0s"},
		{"blank resource name", func(k *KubernetesConfig) { k.ResourceNames = []string{"nvidia.com/gpu", ""} },
			`gpu.kubernetes.resource_names[1]: must be a resource name such as nvidia.com/gpu.shared, got ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.modify(&cfg.Kubernetes)
			err := config.Nest("gpu", cfg.Validate())
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

// TestKubernetesConfigYAML decodes the section strictly, as the exporter's configuration is.
func TestKubernetesConfigYAML(t *testing.T) {
	cfg := DefaultConfig()
	doc := "kubernetes:\n  pod_attribution: true\n  socket: unix:///var/lib/kubelet/pod-resources/kubelet.sock\n  refresh_interval: 30s\n  timeout: 2s\n  resource_names: [nvidia.com/gpu.shared]\n"
	if err := config.Parse([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	k := cfg.Kubernetes
	if !k.PodAttribution || k.RefreshInterval != 30*time.Second || k.Timeout != 2*time.Second ||
		socketPath(k.Socket) != DefaultPodResourcesSocket || len(k.ResourceNames) != 1 {
		t.Errorf("decoded %+v", k)
	}
	cfg = DefaultConfig()
	if err := config.Parse([]byte("kubernetes:\n  pod_atribution: true\n"), &cfg); err == nil {
		t.Error("a misspelt key was accepted")
	}
}
