// Package localjob is the local job backend: each job is a process on the controller's
// machine, in its own process group and directory, that outlives the controller so that a
// restarted one re-attaches to it (docs/job-backends.md, "local"). It implements the contract
// of package jobs and passes jobstest's conformance suite.
package localjob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/edgeloop/edgeloop/internal/config"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// Config is the local backend's part of the retrain configuration (the `backend.local:`
// section): a process on the controller's machine per job.
type Config struct {
	// Command is the job's program and arguments. Each element is a text/template over the
	// job: {{.ID}}, {{.Model}}, {{.BaseVersion}}, {{.DatasetManifest}}, {{.Output}}, and
	// {{.Edgeloop}}, the path of the running edgeloop binary. The default runs `edgeloop
	// train`, the contract's reference trainer. No shell is involved: write
	// ["/bin/sh", "-c", "..."] for one. Leave it at the default to run `edgeloop train` with
	// Trainer's options; set it only for another program (setting both is an error).
	Command []string `yaml:"command"`
	// Trainer holds `edgeloop train`'s common options, added as flags to the default command,
	// so that one option does not mean rewriting the whole command.
	Trainer TrainerOptions `yaml:"trainer"`
	// Env adds environment variables to the job's, which is the controller's environment plus
	// the contract's EDGELOOP_* variables (those cannot be overridden here).
	Env map[string]string `yaml:"env"`
	// Dir is where the per-job directories (<dir>/<job id>/: job.log, exit.json, job.json)
	// live; each job runs with its directory as working directory. Empty means a directory
	// the controller chooses under its state directory.
	Dir string `yaml:"dir"`
	// KillGrace is how long Cancel waits after SIGTERM before it sends SIGKILL to the job's
	// process group. Default 10s.
	KillGrace time.Duration `yaml:"kill_grace"`
	// LogTailBytes is how much of the end of job.log a final status carries (Status.LogTail),
	// at most LogTailBytes (8 KiB, the default); 0 carries none.
	LogTailBytes int `yaml:"log_tail_bytes"`
}

// TrainerOptions are the reference trainer's common flags (docs/trainer.md) as configuration
// keys (`backend.local.trainer:`). A zero or unset option adds no flag: the trainer's own
// default applies.
type TrainerOptions struct {
	// Epochs is --epochs: passes over the training data (trainer default 15).
	Epochs int `yaml:"epochs"`
	// SamplesRepeat is --samples-repeat: how many times each labelled collected sample joins
	// the training data (trainer default 1); more weighs a shifted distribution more.
	SamplesRepeat int `yaml:"samples_repeat"`
	// Data is --data: the base dataset, a directory of IDX files; "" trains on the collected
	// shards alone. Unset (null): the trainer's default, Fashion-MNIST from Debian's package.
	Data *string `yaml:"data"`
	// Classes is --classes: class names in label order, required with shards alone and with
	// IDX data other than 28x28 images labelled 0-9.
	Classes []string `yaml:"classes"`
	// EvalSplit is --eval-split: "test", or a held-out fraction of the training data such as
	// "0.1" (trainer default "test").
	EvalSplit string `yaml:"eval_split"`
}

// IsZero reports whether no option is set.
func (t TrainerOptions) IsZero() bool {
	return t.Epochs == 0 && t.SamplesRepeat == 0 && t.Data == nil && len(t.Classes) == 0 && t.EvalSplit == ""
}

// Validate checks the options, naming fields relative to the section.
func (t TrainerOptions) Validate() error {
	var errs []error
	if t.Epochs < 0 {
		errs = append(errs, config.Errorf("epochs", "must not be negative (0: the trainer's default), got %d", t.Epochs))
	}
	if t.SamplesRepeat < 0 || t.SamplesRepeat > 100 {
		errs = append(errs, config.Errorf("samples_repeat", "must be between 1 and 100 (0: the trainer's default), got %d", t.SamplesRepeat))
	}
	for i, c := range t.Classes {
		if strings.TrimSpace(c) == "" || strings.ContainsAny(c, ",\x00") {
			errs = append(errs, config.Errorf(fmt.Sprintf("classes[%d]", i), "must be a non-empty name without ',' (the flag's separator), got %q", c))
		}
	}
	if t.EvalSplit != "" && t.EvalSplit != "test" {
		if f, err := strconv.ParseFloat(t.EvalSplit, 64); err != nil || f <= 0 || f >= 1 {
			errs = append(errs, config.Errorf("eval_split", `must be "test" or a fraction between 0 and 1 such as "0.1", got %q`, t.EvalSplit))
		}
	}
	return errors.Join(errs...)
}

// args are the flags the options add to the default command, each a template that renders
// to the value as written (a value containing "{{" is quoted rather than parsed).
func (t TrainerOptions) args() []string {
	var out []string
	if t.Epochs > 0 {
		out = append(out, "--epochs", strconv.Itoa(t.Epochs))
	}
	if t.SamplesRepeat > 0 {
		out = append(out, "--samples-repeat", strconv.Itoa(t.SamplesRepeat))
	}
	if t.Data != nil {
		out = append(out, "--data="+templateLiteral(*t.Data)) // one element: "" must stay a value
	}
	if len(t.Classes) > 0 {
		out = append(out, "--classes", templateLiteral(strings.Join(t.Classes, ",")))
	}
	if t.EvalSplit != "" {
		out = append(out, "--eval-split", t.EvalSplit)
	}
	return out
}

// templateLiteral returns a template that renders to s.
func templateLiteral(s string) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	return "{{" + strconv.Quote(s) + "}}"
}

// EffectiveCommand is the command a job runs: Command, plus Trainer's flags when Command is
// the default one (Validate refuses Trainer with any other).
func (c Config) EffectiveCommand() []string {
	if c.Trainer.IsZero() {
		return c.Command
	}
	return append(slices.Clone(c.Command), c.Trainer.args()...)
}

// DefaultKillGrace is the default of kill_grace: long enough for a trainer to write a
// checkpoint or flush its log, short enough that a cancelled job frees its GPU promptly.
const DefaultKillGrace = 10 * time.Second

// DefaultConfig returns the local backend's defaults: `edgeloop train` with the contract's
// values as flags, a 10s kill grace, and an 8 KiB log tail.
func DefaultConfig() Config {
	return Config{
		// The binary is a template rather than os.Executable's result so that the default
		// configuration prints the same on every machine (and in docs).
		Command: []string{
			"{{.Edgeloop}}", "train",
			"--out", "{{.Output}}",
			"--dataset-manifest", "{{.DatasetManifest}}",
			"--model", "{{.Model}}",
			"--base-version", "{{.BaseVersion}}",
		},
		KillGrace:    DefaultKillGrace,
		LogTailBytes: jobs.LogTailBytes,
	}
}

// Validate reports every invalid setting, naming it by its YAML key. It parses and trial-renders
// the command's templates, so a misspelt field shows at --config.check rather than at the first
// job.
func (c Config) Validate() error {
	var errs []error
	if !c.Trainer.IsZero() && !slices.Equal(c.Command, DefaultConfig().Command) {
		errs = append(errs, config.Errorf("trainer", "cannot be set together with command: trainer's options are flags of the default command (edgeloop train); with another command, put the flags in command and remove trainer"))
	} else if _, err := parseCommand(c.EffectiveCommand()); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, config.Nest("trainer", c.Trainer.Validate()))
	contract := jobs.ContractEnv()
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			errs = append(errs, config.Errorf("env", "variable name %q must be non-empty without '=' or NUL", k))
		case strings.ContainsRune(c.Env[k], 0):
			errs = append(errs, config.Errorf("env."+k, "must not contain NUL"))
		default:
			if _, ok := contract[k]; ok {
				errs = append(errs, config.Errorf("env."+k, "is set by the job contract and cannot be overridden"))
			}
		}
	}
	if c.KillGrace <= 0 {
		errs = append(errs, config.Errorf("kill_grace", "must be positive, got %s", c.KillGrace))
	}
	if c.LogTailBytes < 0 || c.LogTailBytes > jobs.LogTailBytes {
		errs = append(errs, config.Errorf("log_tail_bytes", "must be between 0 and %d, got %d", jobs.LogTailBytes, c.LogTailBytes))
	}
	return errors.Join(errs...)
}

// parseCommand parses each element of command and renders it over a sample job, so that
// a field name that does not exist fails here and not when a job starts.
func parseCommand(command []string) ([]*template.Template, error) {
	if len(command) == 0 {
		return nil, config.Errorf("command", "must name a program")
	}
	var errs []error
	out := make([]*template.Template, len(command))
	sample := templateData{Spec: jobs.TemplateSample(), exe: func() (string, error) { return "/usr/bin/edgeloop", nil }}
	for i, s := range command {
		field := fmt.Sprintf("command[%d]", i)
		t, err := template.New(field).Funcs(jobs.TemplateFuncs()).Option("missingkey=error").Parse(s)
		if err == nil {
			var b strings.Builder
			err = t.Execute(&b, sample)
			if err == nil && i == 0 && b.Len() == 0 {
				err = errors.New("must name a program, renders empty")
			}
		}
		if err != nil {
			errs = append(errs, config.Errorf(field, "%v", err))
			continue
		}
		out[i] = t
	}
	return out, errors.Join(errs...)
}

// templateData is what the command's templates see: the job's Spec and the edgeloop binary.
type templateData struct {
	jobs.Spec
	exe func() (string, error)
}

// Edgeloop is the path of the running binary; a method so that os.Executable is asked only
// when a command uses it, and its error fails the render instead of the backend.
func (d templateData) Edgeloop() (string, error) { return d.exe() }

// The files in a job's directory.
const (
	logFile  = "job.log"   // the job's stdout and stderr, appended
	exitFile = "exit.json" // the final Status, written when the job ends
	jobFile  = "job.json"  // the Spec and Ref, written at start
)

// Backend runs each job as a process on this machine, in its own process group, with its output
// in <dir>/<job id>/job.log. The process outlives the controller (that is what re-attach is
// for); see Wait for what a restarted controller can and cannot know about it.
type Backend struct {
	cfg     Config
	dir     string
	command []*template.Template
	logger  *slog.Logger
	exe     func() (string, error)

	// pollInterval is how often Wait checks a process it did not start; goneGrace how long
	// such a process must stay gone before Wait decides without exit.json (in case a reaper
	// in this process is still writing it). Fields so that tests can shorten them.
	pollInterval time.Duration
	goneGrace    time.Duration

	mu       sync.Mutex
	children map[int]*childProc // processes this Backend started, by PID
}

var _ jobs.Backend = (*Backend)(nil)

// childProc is a process this Backend started and reaps.
type childProc struct {
	start  string        // its start time, as in the Ref
	done   chan struct{} // closed once status is set
	status jobs.Status
}

// New returns a local backend. The per-job directories live in cfg.Dir, or in stateDir
// when cfg.Dir is empty (the controller passes a directory under its state directory); one of
// them must be set. The directory is created if missing.
func New(cfg Config, stateDir string, logger *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	command, err := parseCommand(cfg.EffectiveCommand())
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	dir := cfg.Dir
	if dir == "" {
		dir = stateDir
	}
	if dir == "" {
		return nil, errors.New("local: no job directory: set dir, or the controller must pass its state directory")
	}
	// Absolute, because jobs run in their own directories and Refs outlive the working
	// directory of the process that made them.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("local: job directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local: job directory: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		cfg:          cfg,
		dir:          dir,
		command:      command,
		logger:       logger,
		exe:          os.Executable,
		pollInterval: time.Second,
		goneGrace:    2 * time.Second,
		children:     map[int]*childProc{},
	}, nil
}

// Name returns "local".
func (l *Backend) Name() string { return "local" }

// Dir returns the directory the per-job directories live in.
func (l *Backend) Dir() string { return l.dir }

// Start starts the job's process and returns once it runs. The spec's Output (and its
// DatasetManifest, unless it is a URL) are made absolute and Output is created, since the job
// runs in its own directory.
//
// Start is idempotent per job ID: when <dir>/<id>/ already holds a job started with the same
// spec, its Ref is returned and nothing is started, so a controller that died between Start
// and saving the Ref gets its job back instead of a second one. A different spec under the
// same ID is an error.
func (l *Backend) Start(ctx context.Context, spec jobs.Spec) (jobs.Ref, error) {
	if err := ctx.Err(); err != nil {
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	if err := spec.Validate(); err != nil {
		return jobs.Ref{}, fmt.Errorf("local: start: invalid spec: %w", err)
	}
	spec, err := absSpec(spec)
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	jobDir := filepath.Join(l.dir, spec.ID)
	if ref, ok, err := l.existing(jobDir, spec); err != nil || ok {
		return ref, err
	}
	args, err := l.render(spec)
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	for _, d := range []string{jobDir, spec.Output} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
		}
	}
	// Left over by an attempt that died before writing job.json, it would end the new job at
	// once.
	if err := os.Remove(filepath.Join(jobDir, exitFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	logf, err := os.OpenFile(filepath.Join(jobDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	// The child gets its own descriptor of the log, so it keeps writing after this process
	// exits; ours is not needed once it has started.
	defer logf.Close()
	fmt.Fprintf(logf, "edgeloop: %s: starting job %s: %q\n", time.Now().UTC().Format(time.RFC3339), spec.ID, args)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = jobDir
	cmd.Env = l.env(spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own, so that Cancel reaches the trainer's children too (a shell's
	// pipeline, data loader workers), and a signal to the controller's group (Ctrl-C) does
	// not end a job the controller means to re-attach to.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logf, "edgeloop: start failed: %v\n", err)
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	pid := cmd.Process.Pid
	// Unreaped, the child's /proc entry exists even if it has already exited.
	start, err := procStartTime(pid)
	ref := jobs.Ref{Backend: "local", ID: strconv.Itoa(pid), Data: map[string]string{
		"start": start, "dir": jobDir, "output": spec.Output,
	}}
	if err == nil {
		err = writeJSON(filepath.Join(jobDir, jobFile), record{Spec: spec, Ref: ref})
	}
	if err != nil {
		// Without its start time or its record the job could not be found again: undo it,
		// since an error must mean no job was started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return jobs.Ref{}, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	child := &childProc{start: start, done: make(chan struct{})}
	l.mu.Lock()
	l.children[pid] = child
	l.mu.Unlock()
	go l.reap(cmd, child, jobDir, spec.ID)
	l.logger.Info("local job started", "job", spec.ID, "pid", pid, "dir", jobDir)
	return ref, nil
}

// record is job.json: what Start needs to recognise a job it already started.
type record struct {
	Spec jobs.Spec `json:"spec"`
	Ref  jobs.Ref  `json:"ref"`
}

// existing returns the Ref of the job already started in jobDir with spec, if there is one.
func (l *Backend) existing(jobDir string, spec jobs.Spec) (jobs.Ref, bool, error) {
	data, err := os.ReadFile(filepath.Join(jobDir, jobFile))
	if errors.Is(err, fs.ErrNotExist) {
		return jobs.Ref{}, false, nil
	}
	if err != nil {
		return jobs.Ref{}, false, fmt.Errorf("local: start %s: %w", spec.ID, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return jobs.Ref{}, false, fmt.Errorf("local: start %s: %s: %w", spec.ID, jobFile, err)
	}
	if rec.Spec != spec {
		return jobs.Ref{}, false, fmt.Errorf("local: start %s: %s holds a job with another spec (%+v)", spec.ID, jobDir, rec.Spec)
	}
	l.logger.Info("local job already started; returning its ref", "job", spec.ID, "pid", rec.Ref.ID)
	return rec.Ref, true, nil
}

// absSpec makes the spec's local paths absolute: the job runs in its own directory, and Wait
// may run in a process with another working directory.
func absSpec(spec jobs.Spec) (jobs.Spec, error) {
	if strings.Contains(spec.Output, "://") {
		return spec, fmt.Errorf("output %q: the local backend writes to a local directory, not a URL", spec.Output)
	}
	var err error
	if spec.Output, err = filepath.Abs(spec.Output); err != nil {
		return spec, err
	}
	if !strings.Contains(spec.DatasetManifest, "://") {
		if spec.DatasetManifest, err = filepath.Abs(spec.DatasetManifest); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// render renders the command for spec.
func (l *Backend) render(spec jobs.Spec) ([]string, error) {
	data := templateData{Spec: spec, exe: l.exe}
	args := make([]string, len(l.command))
	for i, t := range l.command {
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return nil, err
		}
		args[i] = b.String()
	}
	if args[0] == "" {
		return nil, errors.New("command[0] renders empty")
	}
	// exec resolves a relative path with a slash against the job's directory (cmd.Dir); the
	// operator meant the controller's.
	if strings.ContainsRune(args[0], '/') && !filepath.IsAbs(args[0]) {
		abs, err := filepath.Abs(args[0])
		if err != nil {
			return nil, err
		}
		args[0] = abs
	}
	return args, nil
}

// env is the job's environment: the controller's, then the configured variables, then the
// contract's, later ones winning (exec keeps the last of duplicate keys).
func (l *Backend) env(spec jobs.Spec) []string {
	env := os.Environ()
	for _, k := range slices.Sorted(maps.Keys(l.cfg.Env)) {
		env = append(env, k+"="+l.cfg.Env[k])
	}
	contract := spec.Env()
	for _, k := range slices.Sorted(maps.Keys(contract)) {
		env = append(env, k+"="+contract[k])
	}
	return env
}

// reap waits for a child, records its end in exit.json, and releases Waits.
func (l *Backend) reap(cmd *exec.Cmd, c *childProc, jobDir, id string) {
	err := cmd.Wait()
	st := exitStatus(cmd.ProcessState, err)
	st.Finished = time.Now().UTC()
	if werr := writeJSON(filepath.Join(jobDir, exitFile), st); werr != nil {
		// The Waits of this process still get the status from the entry, which stays; only
		// a restarted controller will have to judge the job by its outputs.
		l.logger.Error("local job: cannot record exit status", "job", id, "err", werr)
	} else {
		// exit.json answers every later Wait; a Wait already holding c is released below.
		l.mu.Lock()
		if l.children[cmd.Process.Pid] == c {
			delete(l.children, cmd.Process.Pid)
		}
		l.mu.Unlock()
	}
	l.logger.Info("local job ended", "job", id, "pid", cmd.Process.Pid, "state", st.State, "message", st.Message)
	c.status = st
	close(c.done)
}

// exitStatus turns a reaped process's state into a Status.
func exitStatus(ps *os.ProcessState, err error) jobs.Status {
	if ps == nil {
		return jobs.Status{State: jobs.Failed, Message: fmt.Sprintf("wait: %v", err)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return jobs.Status{State: jobs.Failed, Message: fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())}
	}
	code := ps.ExitCode()
	if code == 0 {
		return jobs.Status{State: jobs.Succeeded, ExitCode: &code}
	}
	return jobs.Status{State: jobs.Failed, Message: fmt.Sprintf("exit status %d", code), ExitCode: &code}
}

// handle is a parsed Ref.
type handle struct {
	pid      int
	start    string
	dir      string
	output   string
	id       string // the job's ID, for logs: its directory's name
	exitPath string
	logPath  string
}

func parseRef(ref jobs.Ref) (handle, error) {
	if ref.Backend != "local" {
		return handle{}, fmt.Errorf("local: ref is for backend %q", ref.Backend)
	}
	pid, err := strconv.Atoi(ref.ID)
	if err != nil || pid <= 1 {
		return handle{}, fmt.Errorf("local: ref id %q is not a job's process id", ref.ID)
	}
	h := handle{pid: pid, start: ref.Data["start"], dir: ref.Data["dir"], output: ref.Data["output"]}
	for k, v := range map[string]string{"start": h.start, "dir": h.dir, "output": h.output} {
		if v == "" {
			return handle{}, fmt.Errorf("local: ref %s lacks data %q", ref.ID, k)
		}
	}
	h.id = filepath.Base(h.dir)
	h.exitPath = filepath.Join(h.dir, exitFile)
	h.logPath = filepath.Join(h.dir, logFile)
	return h, nil
}

// Wait blocks until the job ends and returns its status, with the end of job.log.
//
// A job that has ended has an exit.json in its directory, written by the controller process
// that started (and reaped) it, and Wait returns what it says. A job this process started is
// waited for directly. A job started by an earlier controller process is watched through
// /proc/<pid> every second, checking the start time so that a reused PID is not taken for the
// job. When that process is gone without an exit.json, its exit status is lost: it was the
// child of the controller that died, and only a parent can learn a child's exit status. The
// job is then judged by the contract's outputs: Succeeded when model.onnx and metrics.json are
// in its output directory, Failed otherwise, with a Message saying the exit status is unknown.
func (l *Backend) Wait(ctx context.Context, ref jobs.Ref) (jobs.Status, error) {
	h, err := parseRef(ref)
	if err != nil {
		return jobs.Status{}, err
	}
	if st, ok, err := l.readExit(h); err != nil || ok {
		return st, err
	}
	l.mu.Lock()
	c := l.children[h.pid]
	l.mu.Unlock()
	if c != nil && c.start == h.start {
		select {
		case <-c.done:
			return l.withTail(c.status, h), nil
		case <-ctx.Done():
			return jobs.Status{}, ctx.Err()
		}
	}
	return l.watch(ctx, h)
}

// watch polls a process this Backend did not start until it is gone.
func (l *Backend) watch(ctx context.Context, h handle) (jobs.Status, error) {
	l.logger.Info("local job: watching a process started by an earlier controller", "job", h.id, "pid", h.pid)
	tick := time.NewTicker(l.pollInterval)
	defer tick.Stop()
	var goneSince time.Time
	for {
		if st, ok, err := l.readExit(h); err != nil || ok {
			return st, err
		}
		switch {
		case l.running(h):
			goneSince = time.Time{}
		case goneSince.IsZero():
			goneSince = time.Now()
		case time.Since(goneSince) >= l.goneGrace:
			return l.judgeByOutputs(h), nil
		}
		select {
		case <-ctx.Done():
			return jobs.Status{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// judgeByOutputs decides a job whose exit status was lost, and records the decision in
// exit.json so that every later Wait agrees with it.
func (l *Backend) judgeByOutputs(h handle) jobs.Status {
	const unknown = "exit status unknown (the controller restarted while the job ran); "
	var missing []string
	for _, name := range []string{"model.onnx", "metrics.json"} {
		if fi, err := os.Stat(filepath.Join(h.output, name)); err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, name)
		}
	}
	st := jobs.Status{State: jobs.Succeeded, Message: unknown + "outputs present", Finished: time.Now().UTC()}
	if len(missing) > 0 {
		st = jobs.Status{State: jobs.Failed, Message: unknown + "outputs missing: " + strings.Join(missing, ", "), Finished: st.Finished}
	}
	if err := writeJSON(h.exitPath, st); err != nil {
		l.logger.Warn("local job: cannot record status", "job", h.id, "err", err)
	}
	l.logger.Warn("local job ended while no controller was its parent", "job", h.id, "pid", h.pid, "state", st.State, "message", st.Message)
	return l.withTail(st, h)
}

// readExit returns the status recorded in exit.json, if there is one.
func (l *Backend) readExit(h handle) (jobs.Status, bool, error) {
	data, err := os.ReadFile(h.exitPath)
	if errors.Is(err, fs.ErrNotExist) {
		return jobs.Status{}, false, nil
	}
	if err != nil {
		return jobs.Status{}, false, fmt.Errorf("local: wait %s: %w", h.id, err)
	}
	var st jobs.Status
	if err := json.Unmarshal(data, &st); err != nil || !st.State.Done() {
		// Written atomically, so this is damage from outside; asking again will not help.
		st = jobs.Status{State: jobs.Failed, Message: fmt.Sprintf("%s is unreadable (%v)", h.exitPath, err)}
	}
	return l.withTail(st, h), true, nil
}

// withTail adds the end of job.log to st.
func (l *Backend) withTail(st jobs.Status, h handle) jobs.Status {
	st.LogTail = readTail(h.logPath, l.cfg.LogTailBytes)
	return st
}

// readTail returns at most n bytes of the end of the file at path, starting at a line boundary
// when one is near; "" when it cannot be read.
func readTail(path string, n int) string {
	if n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-int64(n))
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	buf = buf[:k]
	if off > 0 {
		if i := bytes.IndexByte(buf[:min(len(buf), 256)], '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return jobs.Tail(string(buf))
}

// running reports whether the job's process still runs: its PID exists with the Ref's start
// time, and it is not a zombie (which has ended; its parent is about to reap it, or, if that
// parent never does, Wait must not hang on it).
func (l *Backend) running(h handle) bool {
	state, start, err := procStat(h.pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false
	}
	if err != nil {
		// Not knowing is not "gone": that would decide the job by its outputs for good.
		l.logger.Debug("local job: cannot read process status", "pid", h.pid, "err", err)
		return true
	}
	return start == h.start && state != 'Z' && state != 'X'
}

// Cancel stops the job: SIGTERM to its process group, then SIGKILL once kill_grace has passed
// (or ctx is done) while any process of the group remains. It returns when the group is gone or
// has been sent SIGKILL. A finished job, or a PID that now belongs to another process (its
// start time differs), is left alone and is not an error.
func (l *Backend) Cancel(ctx context.Context, ref jobs.Ref) error {
	h, err := parseRef(ref)
	if err != nil {
		return err
	}
	if _, err := os.Stat(h.exitPath); err == nil {
		return nil // ended and reaped
	}
	if !l.groupIsOurs(h) {
		l.logger.Info("local job: not cancelled, its process is gone and its PID reused", "job", h.id, "pid", h.pid)
		return nil
	}
	if err := syscall.Kill(-h.pid, syscall.SIGTERM); errors.Is(err, syscall.ESRCH) {
		return nil
	} else if err != nil {
		return fmt.Errorf("local: cancel %s: %w", h.id, err)
	}
	l.logger.Info("local job cancelled: sent SIGTERM to its process group", "job", h.id, "pid", h.pid, "kill_grace", l.cfg.KillGrace)
	grace := time.NewTimer(l.cfg.KillGrace)
	defer grace.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(-h.pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		select {
		case <-tick.C:
			continue
		case <-grace.C:
		case <-ctx.Done(): // the caller has no more time to wait: the job must still stop
		}
		if !l.groupIsOurs(h) {
			return nil
		}
		l.logger.Warn("local job outlived its kill grace: sending SIGKILL", "job", h.id, "pid", h.pid)
		if err := syscall.Kill(-h.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("local: cancel %s: %w", h.id, err)
		}
		return nil
	}
}

// groupIsOurs reports whether signals to process group h.pid reach the job: its leader still
// has the Ref's start time (a zombie included), or no process has its PID. In the latter case
// the group, if any process of it remains, is the job's: Linux does not hand out a PID that
// is still in use as a process group ID, so no later process can have made a group of that
// number while one of the job's remained.
func (l *Backend) groupIsOurs(h handle) bool {
	_, start, err := procStat(h.pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return true
	}
	return err == nil && start == h.start
}

// procStartTime returns the start time of process pid: field 22 of /proc/<pid>/stat, in clock
// ticks since boot, kept as a string since it is only compared.
func procStartTime(pid int) (string, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat returns the state (field 3) and start time (field 22) of process pid.
func procStat(pid int) (state byte, start string, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	// Field 2, the command name in parentheses, may itself contain spaces and parentheses:
	// the fields after it start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:])) // fields[0] is field 3
	if len(fields) < 20 {
		return 0, "", fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 20", pid, len(fields))
	}
	return fields[0][0], fields[19], nil
}

// writeJSON writes v as JSON to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o644)
}
