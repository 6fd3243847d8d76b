//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgeloop/edgeloop/internal/testenv"
)

// startExporter runs `edgeloop exporter` with the given extra config, on a free loopback port,
// and returns the process and its metrics base URL (scheme given by the caller).
func startExporter(t *testing.T, extra string) (*process, string) {
	t.Helper()
	return startExporterEnv(t, nil, extra)
}

// startExporterEnv is startExporter with variables added to the exporter's environment.
func startExporterEnv(t *testing.T, env []string, extra string) (*process, string) {
	t.Helper()
	cfg := writeFile(t, "exporter.yaml", "node: it-node\nlog:\n  format: json\nmetrics:\n  listen: 127.0.0.1:0\n"+extra)
	p := startEnv(t, env, "exporter", "--config", cfg)
	started := p.waitFor(t, "exporter started", 20*time.Second)
	addr, _ := started["metrics"].(string)
	if addr == "" {
		t.Fatalf("start log line has no metrics address: %v", started)
	}
	return p, addr
}

func get(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func newRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// nvmlPresent says whether this machine has a loadable NVML with a driver, which decides what
// edgeloop_gpu_nvml_up must read.
func nvmlPresent() bool {
	lib := nvml.New()
	if lib.Init() != nvml.SUCCESS {
		return false
	}
	_ = lib.Shutdown()
	return true
}

// TestExporterServesMetrics is the first "done when": the exporter started with no GPU
// serves /metrics with edgeloop_gpu_nvml_up 0, the output passes promtool, and SIGTERM stops it
// cleanly.
func TestExporterServesMetrics(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	p, addr := startExporter(t, "")
	base := "http://" + addr

	resp, body := get(t, newRequest(t, base+"/metrics"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	want := `edgeloop_gpu_nvml_up{node="it-node"} 0`
	if nvmlPresent() {
		want = `edgeloop_gpu_nvml_up{node="it-node"} 1`
	}
	if !strings.Contains(body, want+"\n") {
		t.Fatalf("/metrics lacks %q:\n%s", want, body)
	}
	if !nvmlPresent() && strings.Contains(body, "edgeloop_gpu_memory_used_bytes") {
		t.Fatal("GPU series exported without NVML")
	}
	for _, name := range []string{"edgeloop_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// OpenMetrics is negotiated, so exemplars and native histograms can pass.
	req := newRequest(t, base+"/metrics")
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, body = get(t, req)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics not negotiated: Content-Type %q", ct)
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Error("OpenMetrics body does not end with # EOF")
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, body := get(t, newRequest(t, base+path)); resp.StatusCode != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %s %q", path, resp.Status, body)
		}
	}
	if resp, _ := get(t, newRequest(t, base+"/debug/pprof/")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("pprof served while off: %s", resp.Status)
	}

	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(p.log(), `"msg":"exporter stopped"`) {
		t.Error("no 'exporter stopped' log line")
	}
}

// TestExporterNoNVMLLogsOnce: without NVML the exporter says so in one clear line, over several
// retries: INFO under gpu.enabled: auto (a CPU node, nothing to alert on), WARN under true (a GPU
// was required), as docs/gpu.md's table says.
func TestExporterNoNVMLLogsOnce(t *testing.T) {
	if nvmlPresent() {
		t.Skip("this machine has NVML; the no-NVML path is covered by the gpu package's mock tests")
	}
	for _, tc := range []struct{ enabled, level string }{{"auto", "INFO"}, {"true", "WARN"}} {
		t.Run(tc.enabled, func(t *testing.T) {
			p, _ := startExporter(t, "gpu:\n  enabled: "+tc.enabled+"\n  init_retry_interval: 1s\n")
			time.Sleep(3500 * time.Millisecond) // three retries at the shortest interval allowed
			p.stop(t)
			var about []string // the levels of the gpu component's lines saying its metrics are off
			for _, l := range p.lines {
				msg, _ := l["msg"].(string)
				if l["component"] == "gpu" && l["level"] != "DEBUG" && strings.Contains(msg, "GPU metrics are off") {
					about = append(about, fmt.Sprint(l["level"]))
				}
			}
			if len(about) != 1 || about[0] != tc.level {
				t.Fatalf("gpu.enabled %s: want exactly one %s line about the missing driver over several retries, got levels %v:\n%s",
					tc.enabled, tc.level, about, p.log())
			}
		})
	}
}

// TestExporterBasicAuth: the exporter-toolkit web config protects the metrics port.
func TestExporterBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := writeFile(t, "web.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	_, addr := startExporter(t, "  web_config_file: "+webCfg+"\n")
	url := "http://" + addr + "/metrics"
	if resp, _ := get(t, newRequest(t, url)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: %s, want 401", resp.Status)
	}
	req := newRequest(t, url)
	req.SetBasicAuth("prometheus", "wrong")
	if resp, _ := get(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s, want 401", resp.Status)
	}
	req = newRequest(t, url)
	req.SetBasicAuth("prometheus", "s3cret")
	if resp, body := get(t, req); resp.StatusCode != http.StatusOK || !strings.Contains(body, "edgeloop_gpu_nvml_up") {
		t.Fatalf("right password: %s", resp.Status)
	}
}

// TestConfigCheck is the second "done when": --config.check exits 2 naming the bad field,
// and 0 on a good file.
func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name, yaml string
		code       int
		output     string
	}{
		{"valid", "node: edge-1\n", 0, "is valid"},
		{"bad field", "gpu:\n  naming: nvidia\n", 2, "gpu.naming"},
		{"unknown key", "metrics:\n  listn: :1\n", 2, "metrics.listn: unknown field (line 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, "exporter", "--config", writeFile(t, "c.yaml", tt.yaml), "--config.check")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tt.code, out)
			}
			if !strings.Contains(string(out), tt.output) {
				t.Fatalf("output lacks %q:\n%s", tt.output, out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "edgeloop ") {
		t.Fatalf("version: %v %q", err, out)
	}
	cmd := exec.Command(binary, "no-such-command")
	if _, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("unknown command: exit %d (%v), want 2", cmd.ProcessState.ExitCode(), err)
	}
}
