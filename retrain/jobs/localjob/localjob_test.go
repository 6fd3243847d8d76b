package localjob

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/jobenv"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// testSpec returns a job whose paths are in a fresh temporary directory.
func testSpec(t *testing.T, id string) jobs.Spec {
	t.Helper()
	dir := t.TempDir()
	return jobs.Spec{
		ID:              id,
		Model:           "fashion",
		BaseVersion:     3,
		DatasetManifest: filepath.Join(dir, "manifest.json"),
		Output:          filepath.Join(dir, "out"),
	}
}

// newShellBackend returns a local backend running script with /bin/sh in dir, checking on
// processes it did not start every 20ms.
func newShellBackend(t *testing.T, dir, script string, tweak func(*Config)) *Backend {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Command = []string{"/bin/sh", "-c", script}
	if tweak != nil {
		tweak(&cfg)
	}
	l, err := New(cfg, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.pollInterval = 20 * time.Millisecond
	return l
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// processGone reports whether pid has ended: no such process, or a zombie (ended, not yet
// reaped by whichever process inherited it).
func processGone(pid int) bool {
	state, _, err := procStat(pid)
	return err != nil || state == 'Z' || state == 'X'
}

// waitFile waits for a file to appear and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(data), "\n") {
			return strings.TrimSpace(string(data))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJobSucceeds(t *testing.T) {
	script := `echo "model=$EDGELOOP_MODEL base=$EDGELOOP_BASE_VERSION manifest=$EDGELOOP_DATASET_MANIFEST"
echo "output=$EDGELOOP_OUTPUT job=$EDGELOOP_JOB_ID extra=$EXTRA args=$1,$2"
echo "cwd=$(pwd)"
echo to-stderr >&2
echo onnx > "$EDGELOOP_OUTPUT/model.onnx"
echo '{"accuracy": 0.9}' > "$EDGELOOP_OUTPUT/metrics.json"`
	dir := t.TempDir()
	l := newShellBackend(t, dir, script, func(c *Config) {
		// Arguments after the script are $1, $2: templates over the spec.
		c.Command = append(c.Command, "sh", "{{.Model}}", "{{json .ID}}")
		c.Env = map[string]string{"EXTRA": "extra-value"}
	})
	spec := testSpec(t, "job-ok")
	ref, err := l.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	jobDir := filepath.Join(dir, spec.ID)
	if ref.Backend != "local" || ref.Data["dir"] != jobDir || ref.Data["output"] != spec.Output || ref.Data["start"] == "" {
		t.Errorf("ref = %+v", ref)
	}
	if pid, err := strconv.Atoi(ref.ID); err != nil || pid <= 1 {
		t.Errorf("ref id %q is not a pid", ref.ID)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Succeeded || st.ExitCode == nil || *st.ExitCode != 0 || st.Message != "" || st.Finished.IsZero() {
		t.Errorf("status = %+v", st)
	}
	for _, want := range []string{
		"model=fashion base=3 manifest=" + spec.DatasetManifest,
		"output=" + spec.Output + " job=job-ok extra=extra-value args=fashion,\"job-ok\"",
		"cwd=" + jobDir,
		"to-stderr",
		"edgeloop: ", // the backend's own line about the start
	} {
		if !strings.Contains(st.LogTail, want) {
			t.Errorf("log tail lacks %q:\n%s", want, st.LogTail)
		}
	}
	for _, f := range []string{filepath.Join(spec.Output, "model.onnx"), filepath.Join(spec.Output, "metrics.json"), filepath.Join(jobDir, "exit.json"), filepath.Join(jobDir, "job.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	// A second Wait, like a later process's, reads exit.json.
	again, err := newShellBackend(t, dir, "true", nil).Wait(t.Context(), ref)
	if err != nil || again.State != jobs.Succeeded || again.ExitCode == nil || *again.ExitCode != 0 || again.LogTail != st.LogTail {
		t.Errorf("second wait = %+v, %v", again, err)
	}
	// Cancelling a finished job is not an error.
	if err := l.Cancel(t.Context(), ref); err != nil {
		t.Errorf("cancel after the end: %v", err)
	}
}

func TestJobFails(t *testing.T) {
	l := newShellBackend(t, t.TempDir(), `echo "it went wrong" >&2; exit 3`, nil)
	ref, err := l.Start(t.Context(), testSpec(t, "job-fail"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || st.ExitCode == nil || *st.ExitCode != 3 || st.Message != "exit status 3" {
		t.Errorf("status = %+v", st)
	}
	if !strings.Contains(st.LogTail, "it went wrong") {
		t.Errorf("log tail = %q", st.LogTail)
	}
}

func TestStartFailsWithoutJob(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Command = []string{filepath.Join(dir, "no-such-program")}
	l, err := New(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start(t.Context(), testSpec(t, "job-missing")); err == nil || !strings.HasPrefix(err.Error(), "local: start job-missing: ") {
		t.Fatalf("err = %v", err)
	}
	// The failure is in the job's log too, for whoever looks there.
	if data, _ := os.ReadFile(filepath.Join(dir, "job-missing", "job.log")); !strings.Contains(string(data), "start failed") {
		t.Errorf("job.log = %q", data)
	}
}

func TestLogTailBounded(t *testing.T) {
	l := newShellBackend(t, t.TempDir(), `i=0; while [ $i -lt 2000 ]; do echo "line $i of the job's output"; i=$((i+1)); done`, func(c *Config) {
		c.LogTailBytes = 100
	})
	ref, err := l.Start(t.Context(), testSpec(t, "job-chatty"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LogTail) > 100 || !strings.HasSuffix(st.LogTail, "line 1999 of the job's output\n") || !strings.HasPrefix(st.LogTail, "line ") {
		t.Errorf("log tail (%d bytes) = %q", len(st.LogTail), st.LogTail)
	}
}

// TestStartOtherSpecSameID: Start is idempotent per job ID (the conformance suite's
// StartTwice), but only for the same spec: another spec under an ID already used is refused
// rather than answered with the first job's Ref.
func TestStartOtherSpecSameID(t *testing.T) {
	dir := t.TempDir()
	l := newShellBackend(t, dir, `sleep 0.2`, nil)
	spec := testSpec(t, "job-once")
	ref, err := l.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	other := spec
	other.Model = "other"
	if _, err := newShellBackend(t, dir, "true", nil).Start(t.Context(), other); err == nil || !strings.Contains(err.Error(), "another spec") {
		t.Errorf("start with another spec under the same ID: %v", err)
	}
	if _, err := l.Wait(testContext(t, 10*time.Second), ref); err != nil {
		t.Fatal(err)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	// The shell's background child is in the job's process group: Cancel must reach it too.
	l := newShellBackend(t, t.TempDir(), `sleep 60 & echo $! > "$EDGELOOP_OUTPUT/child.pid"; wait`, nil)
	spec := testSpec(t, "job-cancel")
	ref, err := l.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(waitFile(t, filepath.Join(spec.Output, "child.pid")))
	if err != nil {
		t.Fatal(err)
	}
	if processGone(child) {
		t.Fatal("the grandchild is not running before the cancel")
	}
	began := time.Now()
	if err := l.Cancel(testContext(t, 10*time.Second), ref); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("cancel took %v although the job obeys SIGTERM", d)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || st.ExitCode != nil || !strings.HasPrefix(st.Message, "killed by signal 15") {
		t.Errorf("status = %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still runs after the cancel", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Cancel(t.Context(), ref); err != nil {
		t.Errorf("second cancel: %v", err)
	}
}

func TestCancelEscalatesToSIGKILL(t *testing.T) {
	// Both the shell and its child ignore SIGTERM (an ignored signal stays ignored across
	// exec), so only the SIGKILL after kill_grace ends them.
	l := newShellBackend(t, t.TempDir(), `trap "" TERM; sleep 60 & echo $! > "$EDGELOOP_OUTPUT/child.pid"; wait`, func(c *Config) {
		c.KillGrace = 300 * time.Millisecond
	})
	spec := testSpec(t, "job-stubborn")
	ref, err := l.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(waitFile(t, filepath.Join(spec.Output, "child.pid")))
	began := time.Now()
	if err := l.Cancel(testContext(t, 10*time.Second), ref); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("cancel returned after %v, before kill_grace", d)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || !strings.HasPrefix(st.Message, "killed by signal 9") {
		t.Errorf("status = %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still runs after SIGKILL", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaitFromAnotherBackend(t *testing.T) {
	// Backend b did not start the job: it watches /proc and then reads the exit.json that a's
	// reaper writes. Exit 4 with outputs present tells the two paths apart: judged by its
	// outputs the job would have succeeded.
	dir := t.TempDir()
	a := newShellBackend(t, dir, `sleep 0.3; touch "$EDGELOOP_OUTPUT/model.onnx" "$EDGELOOP_OUTPUT/metrics.json"; exit 4`, nil)
	ref, err := a.Start(t.Context(), testSpec(t, "job-shared"))
	if err != nil {
		t.Fatal(err)
	}
	b := newShellBackend(t, dir, "true", nil)
	st, err := b.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || st.ExitCode == nil || *st.ExitCode != 4 {
		t.Errorf("status = %+v", st)
	}
}

// The environment variables of the helper controller process of TestReattachAfterRestart.
const (
	helperDirEnv    = "EDGELOOP_JOBS_TEST_CONTROLLER_DIR"
	helperScriptEnv = "EDGELOOP_JOBS_TEST_SCRIPT"
	helperSpecEnv   = "EDGELOOP_JOBS_TEST_SPEC"
	helperRefEnv    = "EDGELOOP_JOBS_TEST_REF"
)

// TestHelperController is not a test: TestReattachAfterRestart runs the test binary
// with it as a controller that starts a job and exits at once, as a controller that crashes
// would, leaving a job that no living process is the parent of.
func TestHelperController(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process of TestReattachAfterRestart")
	}
	var spec jobs.Spec
	if err := json.Unmarshal([]byte(os.Getenv(helperSpecEnv)), &spec); err != nil {
		t.Fatal(err)
	}
	l := newShellBackend(t, dir, os.Getenv(helperScriptEnv), nil)
	ref, err := l.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(os.Getenv(helperRefEnv), ref); err != nil {
		t.Fatal(err)
	}
	// Returning ends the process while the job still runs, before the reaper can record
	// anything.
}

// awaitGo makes a job wait until the file "go" appears in its output directory, so that a test
// decides when it ends.
const awaitGo = `while [ ! -e "$EDGELOOP_OUTPUT/go" ]; do sleep 0.05; done; `

func TestReattachAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		state        jobs.State
		message      string
	}{
		{"outputs present", awaitGo + `touch "$EDGELOOP_OUTPUT/model.onnx" "$EDGELOOP_OUTPUT/metrics.json"`,
			jobs.Succeeded, "exit status unknown (the controller restarted while the job ran); outputs present"},
		{"outputs missing", awaitGo + `touch "$EDGELOOP_OUTPUT/model.onnx"; exit 3`,
			jobs.Failed, "exit status unknown (the controller restarted while the job ran); outputs missing: metrics.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, refPath := t.TempDir(), filepath.Join(t.TempDir(), "ref.json")
			spec := testSpec(t, "job-restart")
			specJSON, _ := json.Marshal(spec)
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperController$")
			cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperScriptEnv+"="+tc.script, helperSpecEnv+"="+string(specJSON), helperRefEnv+"="+refPath)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper controller: %v\n%s", err, out)
			}
			var ref jobs.Ref
			if data, err := os.ReadFile(refPath); err != nil || json.Unmarshal(data, &ref) != nil {
				t.Fatalf("helper wrote no ref: %v", err)
			}
			pid, _ := strconv.Atoi(ref.ID)
			if processGone(pid) {
				t.Fatal("the job ended before the restarted controller looked: the test proves nothing")
			}

			l := newShellBackend(t, dir, "true", nil)
			l.goneGrace = 100 * time.Millisecond
			time.AfterFunc(200*time.Millisecond, func() { _ = os.WriteFile(filepath.Join(spec.Output, "go"), nil, 0o644) })
			st, err := l.Wait(testContext(t, 20*time.Second), ref)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.Message != tc.message || st.ExitCode != nil {
				t.Errorf("status = %+v, want %s %q", st, tc.state, tc.message)
			}
			if !strings.Contains(st.LogTail, "starting job job-restart") {
				t.Errorf("log tail = %q", st.LogTail)
			}
			// The decision is recorded: a later Wait gives the same answer at once.
			again, err := newShellBackend(t, dir, "true", nil).Wait(testContext(t, time.Second), ref)
			if err != nil || again.State != st.State || again.Message != st.Message {
				t.Errorf("second wait = %+v, %v", again, err)
			}
		})
	}
}

func TestReattachCancel(t *testing.T) {
	// A job started by a controller that has gone can still be cancelled through its Ref.
	dir, refPath := t.TempDir(), filepath.Join(t.TempDir(), "ref.json")
	spec := testSpec(t, "job-orphan")
	specJSON, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperController$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperScriptEnv+"=sleep 60", helperSpecEnv+"="+string(specJSON), helperRefEnv+"="+refPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper controller: %v\n%s", err, out)
	}
	var ref jobs.Ref
	if data, err := os.ReadFile(refPath); err != nil || json.Unmarshal(data, &ref) != nil {
		t.Fatalf("helper wrote no ref: %v", err)
	}
	pid, _ := strconv.Atoi(ref.ID)
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	l := newShellBackend(t, dir, "true", nil)
	l.goneGrace = 100 * time.Millisecond
	if err := l.Cancel(testContext(t, 10*time.Second), ref); err != nil {
		t.Fatal(err)
	}
	st, err := l.Wait(testContext(t, 10*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || !strings.HasSuffix(st.Message, "outputs missing: model.onnx, metrics.json") {
		t.Errorf("status = %+v", st)
	}
}

func TestPIDReuseGuard(t *testing.T) {
	// A live process whose start time differs from the Ref's is not the job: Cancel must not
	// signal it, and Wait takes the job as gone.
	other := exec.Command("sleep", "30")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = other.Process.Kill()
		_ = other.Wait()
	})
	start, err := procStartTime(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := strconv.ParseUint(start, 10, 64)
	dir := t.TempDir()
	ref := jobs.Ref{Backend: "local", ID: strconv.Itoa(other.Process.Pid), Data: map[string]string{
		"start":  strconv.FormatUint(wrong+1, 10),
		"dir":    filepath.Join(dir, "job-old"),
		"output": filepath.Join(dir, "out"),
	}}
	l := newShellBackend(t, dir, "true", nil)
	l.goneGrace = 50 * time.Millisecond
	if err := l.Cancel(testContext(t, 5*time.Second), ref); err != nil {
		t.Fatal(err)
	}
	if processGone(other.Process.Pid) {
		t.Fatal("cancel killed a process that only shares the job's PID")
	}
	if err := os.MkdirAll(ref.Data["dir"], 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := l.Wait(testContext(t, 5*time.Second), ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != jobs.Failed || !strings.Contains(st.Message, "outputs missing") {
		t.Errorf("status = %+v", st)
	}
	if processGone(other.Process.Pid) {
		t.Fatal("the other process is gone")
	}
}

func TestBadRefs(t *testing.T) {
	l := newShellBackend(t, t.TempDir(), "true", nil)
	for _, ref := range []jobs.Ref{
		{Backend: "http", ID: "123"},
		{Backend: "local", ID: "abc", Data: map[string]string{"start": "1", "dir": "/x", "output": "/y"}},
		{Backend: "local", ID: "1", Data: map[string]string{"start": "1", "dir": "/x", "output": "/y"}},
		{Backend: "local", ID: "123", Data: map[string]string{"dir": "/x", "output": "/y"}},
	} {
		if _, err := l.Wait(t.Context(), ref); err == nil || !strings.HasPrefix(err.Error(), "local: ") {
			t.Errorf("wait %+v: %v", ref, err)
		}
		if err := l.Cancel(t.Context(), ref); err == nil {
			t.Errorf("cancel %+v: no error", ref)
		}
	}
}

func TestDefaultCommand(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l, err := New(cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, "job-default")
	args, err := l.render(spec)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	want := []string{exe, "train", "--out", spec.Output, "--dataset-manifest", spec.DatasetManifest, "--model", "fashion", "--base-version", "3"}
	if !slices.Equal(args, want) {
		t.Errorf("args = %q, want %q", args, want)
	}
}

// TestTrainerOptions: backend.local.trainer's keys become edgeloop train's flags after
// the default command's, in a fixed order; unset keys add nothing.
func TestTrainerOptions(t *testing.T) {
	exe, _ := os.Executable()
	for _, tc := range []struct {
		name, yaml string
		flags      []string
	}{
		{"none", "trainer: {}\n", nil},
		{"epochs and repeat", "trainer: {epochs: 30, samples_repeat: 4}\n", []string{"--epochs", "30", "--samples-repeat", "4"}},
		{"shards alone", "trainer:\n  data: \"\"\n  classes: [cat, dog]\n  eval_split: \"0.1\"\n",
			[]string{"--data=", "--classes", "cat,dog", "--eval-split", "0.1"}},
		{"data with braces", "trainer: {data: \"/srv/{{x}}\"}\n", []string{"--data=/srv/{{x}}"}},
		{"default command kept", "command: [\"{{.Edgeloop}}\", train, --out, \"{{.Output}}\", --dataset-manifest, \"{{.DatasetManifest}}\", --model, \"{{.Model}}\", --base-version, \"{{.BaseVersion}}\"]\ntrainer: {epochs: 2}\n",
			[]string{"--epochs", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if err := config.Parse([]byte(tc.yaml), &cfg); err != nil {
				t.Fatal(err)
			}
			l, err := New(cfg, t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			spec := testSpec(t, "job-trainer")
			args, err := l.render(spec)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{exe, "train", "--out", spec.Output, "--dataset-manifest", spec.DatasetManifest, "--model", "fashion", "--base-version", "3"}, tc.flags...)
			if !slices.Equal(args, want) {
				t.Errorf("args =\n %q\nwant\n %q", args, want)
			}
		})
	}
}

func TestNewNeedsDir(t *testing.T) {
	if _, err := New(DefaultConfig(), "", nil); err == nil || !strings.HasPrefix(err.Error(), "local: no job directory") {
		t.Errorf("err = %v", err)
	}
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(t.TempDir(), "jobs")
	l, err := New(cfg, "/nonexistent-state-dir", nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dir() != cfg.Dir {
		t.Errorf("dir = %s, want %s", l.Dir(), cfg.Dir)
	}
	if _, err := os.Stat(cfg.Dir); err != nil {
		t.Error(err)
	}
}

func TestConfigParse(t *testing.T) {
	c := DefaultConfig()
	yaml := "command: [python, train.py, \"--out={{.Output}}\"]\nenv: {CUDA_VISIBLE_DEVICES: \"0\"}\ndir: /var/lib/edgeloop/jobs\nkill_grace: 30s\nlog_tail_bytes: 1024\n"
	if err := config.Parse([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Command, []string{"python", "train.py", "--out={{.Output}}"}) || c.Env["CUDA_VISIBLE_DEVICES"] != "0" ||
		c.Dir != "/var/lib/edgeloop/jobs" || c.KillGrace != 30*time.Second || c.LogTailBytes != 1024 {
		t.Errorf("parsed %+v", c)
	}
	if err := config.Parse([]byte("comand: [x]\n"), &c); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"no command", func(c *Config) { c.Command = nil }, "command: must name a program"},
		{"unclosed action", func(c *Config) { c.Command = []string{"{{.Model"} },
			"command[0]: template: command[0]:1: unclosed action"},
		{"unknown field", func(c *Config) { c.Command = []string{"train", "{{.Modle}}"} },
			`command[1]: template: command[1]:1:2: executing "command[1]" at <.Modle>: can't evaluate field Modle in type localjob.templateData`},
		{"unknown function", func(c *Config) { c.Command = []string{"train", "{{quote .Model}}"} },
			`command[1]: template: command[1]:1: function "quote" not defined`},
		{"empty program", func(c *Config) { c.Command = []string{"{{if false}}x{{end}}", "train"} },
			"command[0]: must name a program, renders empty"},
		{"contract variable", func(c *Config) { c.Env = map[string]string{jobenv.Output: "/tmp"} },
			"env.EDGELOOP_OUTPUT: is set by the job contract and cannot be overridden"},
		{"bad variable name", func(c *Config) { c.Env = map[string]string{"A=B": "x"} },
			`env: variable name "A=B" must be non-empty without '=' or NUL`},
		{"kill grace", func(c *Config) { c.KillGrace = 0 }, "kill_grace: must be positive, got 0s"},
		{"log tail", func(c *Config) { c.LogTailBytes = 9000 }, "log_tail_bytes: must be between 0 and 8192, got 9000"},
		{"two at once", func(c *Config) { c.KillGrace = -time.Second; c.LogTailBytes = -1 },
			"kill_grace: must be positive, got -1s\nlog_tail_bytes: must be between 0 and 8192, got -1"},
		{"trainer with a command", func(c *Config) {
			c.Command = []string{"python", "train.py"}
			c.Trainer.Epochs = 3
		}, "trainer: cannot be set together with command: trainer's options are flags of the default command (edgeloop train); with another command, put the flags in command and remove trainer"},
		{"trainer epochs", func(c *Config) { c.Trainer.Epochs = -1 }, "trainer.epochs: must not be negative (0: the trainer's default), got -1"},
		{"trainer samples repeat", func(c *Config) { c.Trainer.SamplesRepeat = -2 }, "trainer.samples_repeat: must be between 1 and 100 (0: the trainer's default), got -2"},
		{"trainer class", func(c *Config) { c.Trainer.Classes = []string{"Bag", "T-shirt,top"} },
			`trainer.classes[1]: must be a non-empty name without ',' (the flag's separator), got "T-shirt,top"`},
		{"trainer eval split", func(c *Config) { c.Trainer.EvalSplit = "train" },
			`trainer.eval_split: must be "test" or a fraction between 0 and 1 such as "0.1", got "train"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.tweak(&c)
			err := c.Validate()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tc.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("%v is not a config.FieldError", err)
			}
			if _, err := New(c, t.TempDir(), nil); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestProcStat(t *testing.T) {
	state, start, err := procStat(os.Getpid())
	if err != nil || state != 'R' && state != 'S' || start == "" {
		t.Fatalf("procStat(self) = %c, %q, %v", state, start, err)
	}
	if _, err := strconv.ParseUint(start, 10, 64); err != nil {
		t.Errorf("start time %q: %v", start, err)
	}
	if _, _, err := procStat(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("procStat of a PID that cannot exist: %v", err)
	}
}

// TestConfiguredEnvCannotSetContract checks that env may set no contract variable, the
// optional EDGELOOP_BASE_MODEL included: a spec without a base model would otherwise hand the
// job the configured value.
func TestConfiguredEnvCannotSetContract(t *testing.T) {
	names := slices.Sorted(maps.Keys(jobs.ContractEnv()))
	if len(names) != 6 {
		t.Fatalf("contract variables %v, want 6", names)
	}
	for _, name := range names {
		c := DefaultConfig()
		c.Env = map[string]string{name: "x"}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "env."+name+": is set by the job contract") {
			t.Errorf("%s: Validate() = %v, want it refused", name, err)
		}
	}
}
