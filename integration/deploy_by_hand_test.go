//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain"
)

// guidePath is the guide TestDeployByHand runs.
const guidePath = repoRoot + "/docs/deploy-by-hand.md"

// guideStopHeading starts the guide's last section, whose blocks stop the lab: the test runs
// them after checking the end state the blocks before it promise.
const guideStopHeading = "## 13. Stop the lab"

// guideDeadline bounds the guide's run up to its last section; its `until` loops wait for
// the loop to close and would otherwise wait forever.
const guideDeadline = 8 * time.Minute

// guideBlocks returns the guide's ```sh blocks before the stop heading and after it. A block
// fenced with another shell name (bash, shell) is refused: a reader would take it for one
// the test runs. ```console blocks are prerequisites the test provides (PATH, tools).
func guideBlocks(t *testing.T, path string) (run, stop []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var block *strings.Builder
	inOther, afterStop := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case block != nil && line == "```":
			if afterStop {
				stop = append(stop, block.String())
			} else {
				run = append(run, block.String())
			}
			block = nil
		case block != nil:
			// Under pipefail, grep -q quitting at its first match makes the command before it
			// die of SIGPIPE, and the pipeline fail: an `until` would never end.
			if strings.Contains(line, "| grep -q") || strings.Contains(line, "| grep -Eq") {
				t.Fatalf("%s:%d: `| grep -q` fails under pipefail when grep quits early; use `| grep ... > /dev/null`", path, n)
			}
			block.WriteString(line + "\n")
		case inOther && strings.HasPrefix(line, "```"):
			inOther = false
		case inOther:
		case line == "```sh":
			block = &strings.Builder{}
		case line == "```bash" || line == "```shell":
			t.Fatalf("%s:%d: a %s block: fence commands the test runs with ```sh, others with ```console", path, n, strings.TrimPrefix(line, "```"))
		case strings.HasPrefix(line, "```"):
			inOther = true
		case line == guideStopHeading:
			afterStop = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if block != nil || inOther {
		t.Fatalf("%s: a fenced block is not closed", path)
	}
	if !afterStop || len(stop) == 0 || len(run) == 0 {
		t.Fatalf("%s: want ```sh blocks before and after %q, got %d and %d", path, guideStopHeading, len(run), len(stop))
	}
	return run, stop
}

// shellOutput collects the guide shell's output and tells when a marker line appeared.
type shellOutput struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (o *shellOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *shellOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *shellOutput) has(marker string) bool {
	return strings.Contains(o.String(), "\n"+marker+"\n") || strings.HasPrefix(o.String(), marker+"\n")
}

// TestDeployByHand runs docs/deploy-by-hand.md as written: its ```sh blocks in order, in one
// bash, from the repository root, with the binaries found through PATH (edgeloop) and the
// variables the guide reads (the pinned tools, free ports, a temporary EDGELOOP_HOME). Then it
// checks what the guide promises: version 2 published, signed, from version 1, stable; one
// job, started by Alertmanager's drift alert, promoted; both exporters serving version 2.
func TestDeployByHand(t *testing.T) {
	minio := testenv.Tool(t, "minio")
	prometheus := testenv.Tool(t, "prometheus")
	alertmanager := testenv.Tool(t, "alertmanager")
	data := testenv.FashionMNIST(t, fmnist.DefaultDir)
	for _, p := range []string{"bash", "curl", "openssl", "sha256sum", "awk", "sed", "grep"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Missing(t, p+" not found: the guide uses it")
		}
	}
	if testing.Short() {
		t.Skip("-short: not running the guide")
	}
	runBlocks, stopBlocks := guideBlocks(t, guidePath)
	src, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	scripts := t.TempDir()
	runScript := filepath.Join(scripts, "run.sh")
	stopScript := filepath.Join(scripts, "stop.sh")
	if err := os.WriteFile(runScript, []byte(strings.Join(runBlocks, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stopScript, []byte(strings.Join(stopBlocks, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}

	ports := map[string]string{}
	for _, name := range []string{"MINIO_PORT", "MINIO_CONSOLE_PORT", "COLLECTOR_PORT", "RETRAIN_PORT", "EDGE1_PORT", "EDGE1_METRICS_PORT",
		"EDGE2_PORT", "EDGE2_METRICS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT"} {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		ports[name] = port
	}
	env := append(os.Environ(),
		"PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EDGELOOP_SRC="+src, "EDGELOOP_HOME="+home, "FMNIST="+data,
		"MINIO="+minio, "PROMETHEUS="+prometheus, "ALERTMANAGER="+alertmanager)
	for name, port := range ports {
		env = append(env, name+"="+port)
	}

	// One bash reads the steps from a pipe, so that the servers the guide starts stay its
	// background jobs until the stop step: the checks run in between. Each script is sourced
	// with stdin from /dev/null, so that no command of the guide reads the next ones.
	shell := exec.Command("bash", "--noprofile", "--norc")
	shell.Dir = src
	shell.Env = env
	shell.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out shellOutput
	shell.Stdout, shell.Stderr = &out, &out
	stdin, err := shell.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = shell.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Whatever is left of the lab: the shell and every background job share its group.
		_ = syscall.Kill(-shell.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-shell.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("guide output (last 30 kB):\n%s", tail(out.String(), 30<<10))
			logs, _ := filepath.Glob(filepath.Join(home, "log", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s (last 6 kB):\n%s", filepath.Base(l), tail(string(b), 6<<10))
			}
		}
	})
	const ranMarker, stoppedMarker = "__deploy_by_hand_ran__", "__deploy_by_hand_stopped__"
	send := func(s string) {
		if _, err := io.WriteString(stdin, s); err != nil {
			t.Fatalf("writing to the guide's shell: %v", err)
		}
	}
	waitMarker := func(marker string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for !out.has(marker) {
			select {
			case <-exited:
				if out.has(marker) { // printed just before exiting
					return
				}
				t.Fatalf("the guide's shell exited (%v) before %s: a command failed (set -e)", shell.ProcessState, marker)
			case <-deadline:
				t.Fatalf("the guide did not reach %s within %s", marker, timeout)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	send(fmt.Sprintf("set -euo pipefail\nsource %q < /dev/null\necho %s\n", runScript, ranMarker))
	waitMarker(ranMarker, guideDeadline)
	t.Logf("%s: the guide's %d blocks up to %q ran", since(began), len(runBlocks), guideStopHeading)

	// What the guide promises, checked from outside the shell.
	checkDeployByHand(t, home, ports)

	send(fmt.Sprintf("source %q < /dev/null\necho %s\nexit 0\n", stopScript, stoppedMarker))
	waitMarker(stoppedMarker, time.Minute)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the guide's shell did not exit after the stop step")
	}
	if !shell.ProcessState.Success() {
		t.Fatalf("the guide's shell exited %v", shell.ProcessState)
	}
	// The stop step left nothing of the group running.
	if err := syscall.Kill(-shell.Process.Pid, 0); err == nil {
		t.Errorf("processes of the guide still run after its stop step")
	}
	t.Logf("%s: the guide ran to its end (%d + %d blocks)", since(began), len(runBlocks), len(stopBlocks))
}

// checkDeployByHand checks the end state of the guide's lab while it still runs.
func checkDeployByHand(t *testing.T, home string, ports map[string]string) {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(home, "etc", "minio-root.token"))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := objstore.NewS3(objstore.S3Config{Endpoint: "127.0.0.1:" + ports["MINIO_PORT"], Bucket: "edgeloop",
		AccessKey: "edgeloop", SecretKey: strings.TrimSpace(string(secret)), Insecure: true, PartSize: objstore.DefaultPartSize})
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	ctx := context.Background()
	repo := modelrepo.New(bucket)
	verifier, err := modelrepo.LoadVerifier(filepath.Join(home, "etc", "keys", modelrepo.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	versions, err := repo.Versions(ctx, "fashion")
	if err != nil || len(versions) != 2 || versions[1] != 2 {
		t.Fatalf("versions of fashion: %v (%v), want [1 2]", versions, err)
	}
	m, err := repo.Manifest(ctx, "fashion", 2, verifier)
	if err != nil {
		t.Fatalf("version 2's manifest does not verify with the guide's key: %v", err)
	}
	if m.ParentVersion != 1 {
		t.Errorf("version 2's parent is %d, want 1", m.ParentVersion)
	}
	if stable, err := repo.Resolve(ctx, "fashion", "stable"); err != nil || stable != 2 {
		t.Errorf("stable resolves to %d (%v), want 2", stable, err)
	}

	// One job, from Alertmanager's drift alert on edge-2, promoted to version 2.
	opToken, err := os.ReadFile(filepath.Join(home, "etc", "retrain-operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := retrainJobs("http://127.0.0.1:"+ports["RETRAIN_PORT"], strings.TrimSpace(string(opToken)))
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %d (%v), want 1", len(jobs), err)
	}
	job := jobs[0]
	if job.Phase != retrain.PhasePromoted || job.Version != 2 || job.BaseVersion != 1 {
		t.Errorf("job %s: %s, version %d from %d, want promoted, 2 from 1 (%s)", job.ID, job.Phase, job.Version, job.BaseVersion, job.Error)
	}
	if tr := job.Trigger; tr.Source != retrain.SourceAlertmanager || tr.Alert != "EdgeloopConfidenceDrift" || tr.By != "edge-2" {
		t.Errorf("job %s's trigger: %+v, want Alertmanager's EdgeloopConfidenceDrift from edge-2", job.ID, tr)
	}
	if g := job.Gate; g != nil && g.Current != nil {
		t.Logf("gate: %s (candidate %.4f, serving %.4f on %d samples; %d labels)", g.Reason, g.Candidate.Accuracy, g.Current.Accuracy,
			job.Dataset.EvalSamples, job.Dataset.Labels)
	}

	// Both exporters serve version 2: their metrics say so, and so does an answer.
	for _, node := range []string{"EDGE1", "EDGE2"} {
		resp, err := http.Get("http://127.0.0.1:" + ports[node+"_METRICS_PORT"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var info []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "edgeloop_model_info{") {
				info = append(info, l)
			}
		}
		if len(info) != 1 || !strings.Contains(info[0], `version="2"`) {
			t.Errorf("%s: edgeloop_model_info %q, want one series, version 2", node, info)
		}
		zeros := strings.TrimSuffix(strings.Repeat("0,", fmnist.Pixels), ",")
		resp, err = http.Post("http://127.0.0.1:"+ports[node+"_PORT"]+"/v2/models/fashion/infer", "application/json",
			strings.NewReader(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"data":[`+zeros+`]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		var answer struct {
			Version string `json:"model_version"`
		}
		err = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if err != nil || answer.Version != "2" {
			t.Errorf("%s answered with version %q (%v), want 2", node, answer.Version, err)
		}
	}
	t.Logf("version 2 published (parent 1, signed, stable) by job %s, served by both exporters", job.ID)
}
