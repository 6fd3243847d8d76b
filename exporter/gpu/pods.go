package gpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/edgeloop/edgeloop/internal/config"
)

// Kubernetes pod attribution (docs/gpu.md, "Kubernetes pod attribution"): the kubelet's
// pod-resources API says which container holds which device; every per-device series then
// carries the pod, namespace and container holding it. The API is read every refresh_interval
// and the answer kept between scrapes, so a scrape never waits on the kubelet.

// DefaultPodResourcesSocket is where the kubelet serves its pod-resources API.
const DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// podLabelNames are added after the device labels when pod attribution is on. DCGM-Exporter
// uses the same names, so they are the same in both naming modes.
var podLabelNames = []string{"pod", "namespace", "container"}

// Resource names the NVIDIA device plugin advertises: whole GPUs, and MIG devices under the
// "mixed" strategy (nvidia.com/mig-1g.10gb, ...). Other names are read only when listed in
// gpu.kubernetes.resource_names.
const (
	resourceGPU       = "nvidia.com/gpu"
	resourceMIGPrefix = "nvidia.com/mig-"
)

// KubernetesConfig is the gpu.kubernetes section.
type KubernetesConfig struct {
	// PodAttribution labels every per-device series with the pod, namespace and container
	// holding the device, read from the kubelet's pod-resources API. Default false.
	PodAttribution bool `yaml:"pod_attribution"`
	// Socket is the kubelet's pod-resources socket: a path, or unix:// and a path.
	Socket string `yaml:"socket"`
	// RefreshInterval is how often the kubelet is asked which container holds which device.
	// Default 10s.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// Timeout bounds one call to the kubelet, connecting included. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// ResourceNames are extra resource names whose devices are NVIDIA GPUs or MIG devices, such
	// as a renamed time-sliced resource ("nvidia.com/gpu.shared"). nvidia.com/gpu and
	// nvidia.com/mig-* are always read.
	ResourceNames []string `yaml:"resource_names"`
}

// DefaultKubernetesConfig returns gpu.kubernetes' defaults: attribution off, the kubelet's
// socket, a refresh every 10s, calls bounded by 5s.
func DefaultKubernetesConfig() KubernetesConfig {
	return KubernetesConfig{
		Socket:          DefaultPodResourcesSocket,
		RefreshInterval: 10 * time.Second,
		Timeout:         5 * time.Second,
	}
}

// minPodRefreshInterval keeps the kubelet from being polled in a tight loop.
const minPodRefreshInterval = time.Second

// Validate checks the section, naming fields relative to it.
func (k KubernetesConfig) Validate() error {
	var errs []error
	if p := socketPath(k.Socket); p == "" || !filepath.IsAbs(p) {
		errs = append(errs, config.Errorf("socket", "must be an absolute path to the kubelet's pod-resources socket (or unix:// and one), got %q", k.Socket))
	}
	if k.RefreshInterval < minPodRefreshInterval {
		errs = append(errs, config.Errorf("refresh_interval", "must be at least %s, got %s", minPodRefreshInterval, k.RefreshInterval))
	}
	if k.Timeout <= 0 {
		errs = append(errs, config.Errorf("timeout", "must be positive, got %s", k.Timeout))
	} else if k.RefreshInterval >= minPodRefreshInterval && k.Timeout > k.RefreshInterval {
		errs = append(errs, config.Errorf("timeout", "must not exceed refresh_interval (%s), got %s", k.RefreshInterval, k.Timeout))
	}
	for i, n := range k.ResourceNames {
		if n == "" || strings.ContainsAny(n, " \t\n") {
			errs = append(errs, config.Errorf("resource_names["+strconv.Itoa(i)+"]", "must be a resource name such as nvidia.com/gpu.shared, got %q", n))
		}
	}
	return errors.Join(errs...)
}

// socketPath strips an optional unix:// from s.
func socketPath(s string) string { return strings.TrimPrefix(s, "unix://") }

// holder is the container holding a device. The zero holder is "no pod".
type holder struct{ pod, namespace, container string }

// heldDevice is one device ID the kubelet reports as allocated to a container.
type heldDevice struct {
	id string
	holder
}

// podState is what the last refresh found; Collector.mu guards it.
type podState struct {
	// up: the last List call succeeded.
	up bool
	// held are the NVIDIA device IDs allocated to containers, sorted by namespace, pod,
	// container and ID, so that a device shared by several containers goes to the first.
	held []heldDevice
	// attributed and unmatched count, against the current inventory, the devices that carry a
	// pod and the held IDs that name no device NVML reports.
	attributed, unmatched int
	// unmatchedIDs is the last logged list of unmatched IDs, so it is logged when it changes.
	unmatchedIDs string
	failures     float64
}

// podDescs are the pod attribution's own series.
type podDescs struct {
	up, devices, unmatched, failures *prometheus.Desc
}

func newPodDescs() podDescs {
	return podDescs{
		up: prometheus.NewDesc("edgeloop_gpu_pod_attribution_up",
			"Whether the last call to the kubelet's pod-resources API succeeded (1) or not (0: no socket, kubelet down, or still starting); while 0, GPU series carry empty pod labels.",
			[]string{"node"}, nil),
		devices: prometheus.NewDesc("edgeloop_gpu_pod_attribution_devices",
			"GPUs and MIG devices currently allocated to a container, as the kubelet last reported.",
			[]string{"node"}, nil),
		unmatched: prometheus.NewDesc("edgeloop_gpu_pod_attribution_unmatched_device_ids",
			"NVIDIA device IDs the kubelet reports as allocated that match no GPU or MIG device NVML reports (a device plugin naming devices in a way not understood, or a stale inventory).",
			[]string{"node"}, nil),
		failures: prometheus.NewDesc("edgeloop_gpu_pod_attribution_failures_total",
			"Calls to the kubelet's pod-resources API that failed.",
			[]string{"node"}, nil),
	}
}

// collectPods sends the pod attribution's series; withDevices adds the two that depend on the
// GPU inventory. The caller holds c.mu.
func (c *Collector) collectPods(ch chan<- prometheus.Metric, withDevices bool) {
	if !c.cfg.Kubernetes.PodAttribution {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.podDescs.up, prometheus.GaugeValue, boolValue(c.pods.up), c.node)
	ch <- prometheus.MustNewConstMetric(c.podDescs.failures, prometheus.CounterValue, c.pods.failures, c.node)
	if withDevices {
		ch <- prometheus.MustNewConstMetric(c.podDescs.devices, prometheus.GaugeValue, float64(c.pods.attributed), c.node)
		ch <- prometheus.MustNewConstMetric(c.podDescs.unmatched, prometheus.GaugeValue, float64(c.pods.unmatched), c.node)
	}
}

// runPods asks the kubelet which container holds which device every refresh_interval until
// ctx ends. A failing kubelet is logged once at WARN, then retried quietly (like NVML).
func (c *Collector) runPods(ctx context.Context) {
	k := c.cfg.Kubernetes
	// One connection for the exporter's life; gRPC reconnects after a kubelet restart. Its
	// reconnect backoff is capped at the refresh interval so a kubelet that comes back is seen
	// by the next refresh, not up to two minutes later (gRPC's default cap).
	bc := backoff.DefaultConfig
	bc.BaseDelay = min(bc.BaseDelay, k.RefreshInterval)
	bc.MaxDelay = k.RefreshInterval
	conn, err := grpc.NewClient("unix://"+socketPath(k.Socket),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: k.Timeout}))
	if err != nil { // only a target gRPC cannot parse; Validate has checked the path
		c.logger.Error("pod attribution is off: cannot use the kubelet's pod-resources socket", "socket", k.Socket, "err", err)
		return
	}
	defer conn.Close()
	client := podresourcesv1.NewPodResourcesListerClient(conn)
	failing, answered := false, false
	for {
		held, err := listHeld(ctx, client, k)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if err != nil {
			c.pods.up = false
			c.pods.failures++
			c.pods.held = nil
		} else {
			c.pods.up = true
			c.pods.held = held
		}
		if c.inv != nil {
			c.attribute(c.inv)
		}
		c.mu.Unlock()
		switch {
		case err != nil && !failing:
			c.logger.Warn("pod attribution: the kubelet's pod-resources API cannot be read; GPU metrics go on with empty pod labels and edgeloop_gpu_pod_attribution_up 0; retrying quietly. Is /var/lib/kubelet/pod-resources mounted into the exporter?",
				"socket", k.Socket, "err", err, "retry_every", k.RefreshInterval.String())
		case err != nil:
			c.logger.Debug("pod attribution: pod-resources API still failing", "err", err)
		case failing:
			c.logger.Info("pod attribution: the kubelet's pod-resources API answers again", "socket", k.Socket, "devices_held", len(held))
		case !answered:
			c.logger.Info("pod attribution on: GPU series carry the pod holding each device", "socket", k.Socket,
				"devices_held", len(held), "refresh_every", k.RefreshInterval.String())
		}
		failing = err != nil
		answered = answered || err == nil
		wait(ctx, k.RefreshInterval)
		if ctx.Err() != nil {
			return
		}
	}
}

// listHeld calls List and returns the NVIDIA device IDs held by containers, sorted.
func listHeld(ctx context.Context, client podresourcesv1.PodResourcesListerClient, k KubernetesConfig) ([]heldDevice, error) {
	ctx, cancel := context.WithTimeout(ctx, k.Timeout)
	defer cancel()
	resp, err := client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("pod-resources list: %w", err)
	}
	var held []heldDevice
	for _, p := range resp.GetPodResources() {
		for _, ctr := range p.GetContainers() {
			h := holder{pod: p.GetName(), namespace: p.GetNamespace(), container: ctr.GetName()}
			for _, d := range ctr.GetDevices() {
				if !nvidiaResource(d.GetResourceName(), k.ResourceNames) {
					continue
				}
				for _, id := range d.GetDeviceIds() {
					held = append(held, heldDevice{id: id, holder: h})
				}
			}
		}
	}
	slices.SortFunc(held, func(a, b heldDevice) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pod, b.pod),
			cmp.Compare(a.container, b.container), cmp.Compare(a.id, b.id))
	})
	return held, nil
}

// nvidiaResource tells whether a resource name's devices are NVIDIA GPUs or MIG devices.
func nvidiaResource(name string, extra []string) bool {
	return name == resourceGPU || strings.HasPrefix(name, resourceMIGPrefix) || slices.Contains(extra, name)
}

// resolve finds the device a kubelet device ID names in inv, or nil. The NVIDIA device plugin
// names devices by UUID: GPU-… for a GPU, MIG-… for a MIG device (also under the "single" MIG
// strategy, where the resource is nvidia.com/gpu). Time-slicing replicas add "::<n>". GKE's
// plugin names them nvidia<index>, nvidia<index>/gi<GPU instance> and nvidia<index>/vgpu<n>.
func resolve(inv *inventory, id string) *device {
	id, _, _ = strings.Cut(id, "::")
	if d := inv.byUUID[id]; d != nil {
		return d
	}
	rest, ok := strings.CutPrefix(id, "nvidia")
	if !ok {
		return nil
	}
	index, sub, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(index)
	if err != nil || n < 0 {
		return nil
	}
	var gpu *device
	for _, g := range inv.gpus {
		if g.index == n {
			gpu = g
			break
		}
	}
	switch {
	case gpu == nil:
		return nil
	case sub == "" || strings.HasPrefix(sub, "vgpu"):
		return gpu
	}
	gi, ok := strings.CutPrefix(sub, "gi")
	if !ok {
		return nil
	}
	giID, err := strconv.Atoi(strings.SplitN(gi, "/", 2)[0])
	if err != nil {
		return nil
	}
	for _, m := range gpu.migs {
		if m.giID == giID && !m.dcgmDuplicate {
			return m
		}
	}
	return nil
}

// attribute writes the holders of c.pods.held into the pod labels of every device of inv, and
// counts attributed devices and unmatched IDs. The caller holds c.mu for writing: the label
// slices are rewritten in place, and scrapes read them under the read lock.
func (c *Collector) attribute(inv *inventory) {
	holders := make(map[*device]holder, len(c.pods.held))
	var unmatched []string
	for _, h := range c.pods.held {
		d := resolve(inv, h.id)
		if d == nil {
			unmatched = append(unmatched, h.id)
			continue
		}
		if c.cfg.Naming == NamingDCGM && d.dcgmDuplicate {
			// DCGM naming reports a GPU instance once, as its first compute instance.
			d = firstOfInstance(d)
		}
		if _, taken := holders[d]; !taken { // shared (time-sliced) device: the first holder
			holders[d] = h.holder
		}
	}
	for _, d := range inv.all {
		h := holders[d]
		setPodLabels(d.labels, len(d.labels), h)
		setPodLabels(d.infoLabels, len(d.labels), h)
		for _, r := range d.reasons {
			setPodLabels(r.labels, len(d.labels), h)
		}
	}
	c.pods.attributed = len(holders)
	c.pods.unmatched = len(unmatched)
	if ids := strings.Join(unmatched, ","); ids != c.pods.unmatchedIDs {
		if ids != "" {
			c.logger.Warn("pod attribution: the kubelet reports NVIDIA devices NVML does not know; their pods are not attributed",
				"device_ids", ids)
		}
		c.pods.unmatchedIDs = ids
	}
}

// firstOfInstance returns the first MIG device of d's GPU instance: the one DCGM naming reports.
func firstOfInstance(d *device) *device {
	for _, m := range d.parent.migs {
		if m.giID == d.giID && !m.dcgmDuplicate {
			return m
		}
	}
	return d
}

// setPodLabels writes h into the three pod label values that end the first n values of
// labels, where the device labels end. labels may be nil (a device without info labels).
func setPodLabels(labels []string, n int, h holder) {
	if n < len(podLabelNames) || len(labels) < n {
		return
	}
	labels[n-3], labels[n-2], labels[n-1] = h.pod, h.namespace, h.container
}
