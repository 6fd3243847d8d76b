// Package jobstest is the conformance suite every job backend passes: the promises of the
// jobs.Backend contract (docs/job-backends.md) checked the same way on a local process, a
// Kubernetes Job and a run on an HTTP job platform, as objstoretest does for buckets. A
// backend's own tests keep what is particular to it (its configuration, its requests, its
// error messages); what every backend must do is checked here once.
package jobstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// Outcome is what a job that the suite starts does.
type Outcome int

// The outcomes a harness must be able to give a job.
const (
	// Succeed: the job writes its outputs and exits 0.
	Succeed Outcome = iota
	// Fail: the job fails with exit code FailExitCode, saying why.
	Fail
	// Hold: the job runs until Harness.Release is called for it, then succeeds; or until it
	// is cancelled.
	Hold
)

// String returns "succeed", "fail" or "hold": a harness may put it in the spec's Model, which
// reaches the job through the contract whatever the backend.
func (o Outcome) String() string {
	switch o {
	case Succeed:
		return "succeed"
	case Fail:
		return "fail"
	case Hold:
		return "hold"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// FailExitCode is the exit code of a job that fails (Fail). A backend that reports exit
// codes must report this one.
const FailExitCode = 3

// Harness is one backend under test together with the system that runs its jobs (a directory
// of processes, a fake cluster with a kubelet, an HTTP platform). The suite shares it between
// its subtests and gives each job an ID of its own.
type Harness struct {
	// New returns a backend. Every backend it returns reaches the same jobs: a second one
	// stands for a controller that restarted and has only the Refs the first one returned.
	New func(t *testing.T) jobs.Backend
	// Spec returns a valid spec with ID id for a job that does what o says, its paths
	// (DatasetManifest, Output) suited to the backend.
	Spec func(t *testing.T, id string, o Outcome) jobs.Spec
	// Release makes the running Hold job of spec succeed.
	Release func(t *testing.T, spec jobs.Spec)
	// Starts returns how many times the job of spec has been started on the system that runs
	// it. The suite asks once the job has ended, or when it should never have started.
	Starts func(t *testing.T, spec jobs.Spec) int
	// Unknown returns a well-formed Ref of this backend for a job that does not exist.
	Unknown func(t *testing.T) jobs.Ref

	// ExitCodes says the backend reports the job's exit code (Status.ExitCode). A backend
	// that reports one must report the right one either way.
	ExitCodes bool
	// IdempotentStart says Start of a spec whose ID was already started returns the first
	// job's Ref and starts nothing, as the local and kubernetes backends promise so that a
	// controller that died between Start and saving the Ref does not start a second job.
	IdempotentStart bool
	// CallbackOnly says the backend learns a job's end only from the job's own report (the
	// http backend in callback mode without status_url): it cannot look a job up, so Wait on
	// an unknown job waits for its context instead of answering Failed, and a backend made
	// after a job ended does not learn that it did.
	CallbackOnly bool
}

// waitLimit bounds every Wait the suite expects to return: a backend that never answers fails
// the subtest instead of hanging the test binary.
const waitLimit = 30 * time.Second

// stillRunning is how long the suite watches a Wait on a running job to check that it does
// not return.
const stillRunning = 200 * time.Millisecond

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Spec == nil || h.Release == nil || h.Starts == nil || h.Unknown == nil {
		t.Fatal("jobstest: the harness lacks New, Spec, Release, Starts or Unknown")
	}
	cases := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"Succeeds", testSucceeds},
		{"Fails", testFails},
		{"Cancel", testCancel},
		{"CancelFinished", testCancelFinished},
		{"Unknown", testUnknown},
		{"Reattach", testReattach},
		{"StartTwice", testStartTwice},
		{"WaitContext", testWaitContext},
		{"InvalidSpec", testInvalidSpec},
		{"ForeignRef", testForeignRef},
		{"Several", testSeveral},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

// start starts spec on b. A Hold job is cancelled when the test ends, so that a failed check
// does not leave it running.
func start(t *testing.T, b jobs.Backend, spec jobs.Spec, o Outcome) jobs.Ref {
	t.Helper()
	ref, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	if ref.Backend != b.Name() || ref.ID == "" {
		t.Fatalf("Start(%s) = %+v: want Backend %q and an ID", spec.ID, ref, b.Name())
	}
	if o == Hold {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			_ = b.Cancel(ctx, ref)
		})
	}
	return ref
}

// show formats a status for a failure message, with the exit code's value rather than its
// pointer.
func show(st jobs.Status) string {
	code := "none"
	if st.ExitCode != nil {
		code = fmt.Sprint(*st.ExitCode)
	}
	return fmt.Sprintf("{state %s, message %q, exit code %s, %d bytes of log}", st.State, st.Message, code, len(st.LogTail))
}

type result struct {
	st  jobs.Status
	err error
}

// waitAsync runs Wait in the background, bounded by waitLimit.
func waitAsync(t *testing.T, b jobs.Backend, ref jobs.Ref) <-chan result {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	ch := make(chan result, 1)
	go func() {
		defer cancel()
		st, err := b.Wait(ctx, ref)
		ch <- result{st, err}
	}()
	return ch
}

// wait waits for ref's job and fails the test on an error.
func wait(t *testing.T, b jobs.Backend, ref jobs.Ref) jobs.Status {
	t.Helper()
	r := <-waitAsync(t, b, ref)
	if r.err != nil {
		t.Fatalf("Wait(%s): %v", ref.ID, r.err)
	}
	return r.st
}

// notYet checks that a Wait on a running job has not returned.
func notYet(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Wait returned %s, %v while the job runs", show(r.st), r.err)
	case <-time.After(stillRunning):
	}
}

// checkSucceeded checks a successful job's final status.
func checkSucceeded(t *testing.T, h Harness, st jobs.Status) {
	t.Helper()
	if st.State != jobs.Succeeded {
		t.Fatalf("status = %s, want succeeded", show(st))
	}
	if h.ExitCodes && st.ExitCode == nil {
		t.Errorf("status = %s: no exit code", show(st))
	}
	if st.ExitCode != nil && *st.ExitCode != 0 {
		t.Errorf("succeeded with exit code %d", *st.ExitCode)
	}
	checkStatus(t, st)
}

// checkStatus checks what every final status must satisfy.
func checkStatus(t *testing.T, st jobs.Status) {
	t.Helper()
	if !st.State.Done() {
		t.Errorf("state %q is not final", st.State)
	}
	if len(st.LogTail) > jobs.LogTailBytes {
		t.Errorf("log tail of %d bytes, more than %d", len(st.LogTail), jobs.LogTailBytes)
	}
	if !st.Finished.IsZero() && st.Finished.After(time.Now().Add(time.Minute)) {
		t.Errorf("finished %v, in the future", st.Finished)
	}
}

func checkStarts(t *testing.T, h Harness, spec jobs.Spec, want int) {
	t.Helper()
	if n := h.Starts(t, spec); n != want {
		t.Errorf("job %s started %d times, want %d", spec.ID, n, want)
	}
}

// testSucceeds: Start then Wait gives Succeeded, and a second Wait gives it again.
func testSucceeds(t *testing.T, h Harness) {
	b := h.New(t)
	spec := h.Spec(t, "conf-succeeds", Succeed)
	ref := start(t, b, spec, Succeed)
	st := wait(t, b, ref)
	checkSucceeded(t, h, st)
	again := wait(t, b, ref)
	if again.State != jobs.Succeeded {
		t.Errorf("second Wait = %s, want succeeded again", show(again))
	}
	checkStarts(t, h, spec, 1)
}

// testFails: a failing job ends Failed, saying why, with its exit code where the backend
// reports one.
func testFails(t *testing.T, h Harness) {
	b := h.New(t)
	spec := h.Spec(t, "conf-fails", Fail)
	st := wait(t, b, start(t, b, spec, Fail))
	if st.State != jobs.Failed || strings.TrimSpace(st.Message) == "" {
		t.Fatalf("status = %s, want failed with a message", show(st))
	}
	if h.ExitCodes && st.ExitCode == nil {
		t.Errorf("status = %s: no exit code", show(st))
	}
	if st.ExitCode != nil && *st.ExitCode != FailExitCode {
		t.Errorf("exit code %d, want %d", *st.ExitCode, FailExitCode)
	}
	checkStatus(t, st)
}

// testCancel: Cancel stops a running job, and the Wait that was waiting for it returns
// Failed; cancelling it again is not an error.
func testCancel(t *testing.T, h Harness) {
	b := h.New(t)
	spec := h.Spec(t, "conf-cancel", Hold)
	ref := start(t, b, spec, Hold)
	waiting := waitAsync(t, b, ref)
	notYet(t, waiting)
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := b.Cancel(ctx, ref); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	r := <-waiting
	if r.err != nil {
		t.Fatalf("Wait after Cancel: %v", r.err)
	}
	if r.st.State != jobs.Failed || strings.TrimSpace(r.st.Message) == "" {
		t.Fatalf("status after Cancel = %s, want failed with a message", show(r.st))
	}
	if r.st.ExitCode != nil && *r.st.ExitCode == 0 {
		t.Errorf("cancelled job reports exit code 0")
	}
	checkStatus(t, r.st)
	if err := b.Cancel(ctx, ref); err != nil {
		t.Errorf("second Cancel: %v", err)
	}
}

// testCancelFinished: cancelling a job that has ended is not an error.
func testCancelFinished(t *testing.T, h Harness) {
	b := h.New(t)
	spec := h.Spec(t, "conf-cancel-finished", Succeed)
	ref := start(t, b, spec, Succeed)
	checkSucceeded(t, h, wait(t, b, ref))
	if err := b.Cancel(t.Context(), ref); err != nil {
		t.Errorf("Cancel of a finished job: %v", err)
	}
	// A new backend, as after a restart, may be told to cancel it too.
	if err := h.New(t).Cancel(t.Context(), ref); err != nil {
		t.Errorf("Cancel of a finished job from a new backend: %v", err)
	}
}

// testUnknown: cancelling a job the backend cannot find is not an error, and waiting for it
// answers Failed, saying so, rather than an error (a backend that can only be told of a job's
// end waits instead).
func testUnknown(t *testing.T, h Harness) {
	b := h.New(t)
	ref := h.Unknown(t)
	if err := b.Cancel(t.Context(), ref); err != nil {
		t.Errorf("Cancel of an unknown job: %v", err)
	}
	if h.CallbackOnly {
		ctx, cancel := context.WithTimeout(t.Context(), stillRunning)
		defer cancel()
		if st, err := b.Wait(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait on an unknown job = %s, %v; want the context's error", show(st), err)
		}
		return
	}
	st := wait(t, b, ref)
	if st.State != jobs.Failed || strings.TrimSpace(st.Message) == "" {
		t.Errorf("Wait on an unknown job = %s, want failed with a message", show(st))
	}
	checkStatus(t, st)
}

// testReattach: a new backend, standing for a restarted controller, waits for a job an
// earlier one started, from its Ref alone: while it runs, and after it has ended.
func testReattach(t *testing.T, h Harness) {
	first := h.New(t)
	spec := h.Spec(t, "conf-reattach", Hold)
	ref := start(t, first, spec, Hold)
	second := h.New(t)
	waiting := waitAsync(t, second, ref)
	notYet(t, waiting)
	h.Release(t, spec)
	r := <-waiting
	if r.err != nil {
		t.Fatalf("Wait from a new backend: %v", r.err)
	}
	checkSucceeded(t, h, r.st)
	if h.CallbackOnly {
		return // a backend made after the job reported its end has nothing to learn it from
	}
	third := h.New(t)
	checkSucceeded(t, h, wait(t, third, ref))
	checkStarts(t, h, spec, 1)
}

// testStartTwice: starting the same spec again, from a new backend as after a crash between
// Start and saving the Ref, returns the first job's Ref and starts nothing.
func testStartTwice(t *testing.T, h Harness) {
	if !h.IdempotentStart {
		t.Skip("the backend does not promise that Start is idempotent per job ID")
	}
	first := h.New(t)
	spec := h.Spec(t, "conf-start-twice", Hold)
	ref1 := start(t, first, spec, Hold)
	ref2 := start(t, h.New(t), spec, Hold)
	if ref1.Backend != ref2.Backend || ref1.ID != ref2.ID {
		t.Fatalf("second Start gave %+v, the first %+v", ref2, ref1)
	}
	h.Release(t, spec)
	checkSucceeded(t, h, wait(t, first, ref1))
	checkStarts(t, h, spec, 1)
}

// testWaitContext: Wait returns its context's error when the context ends, and giving up
// does not stop or fail the job.
func testWaitContext(t *testing.T, h Harness) {
	b := h.New(t)
	spec := h.Spec(t, "conf-wait-context", Hold)
	ref := start(t, b, spec, Hold)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if st, err := b.Wait(ctx, ref); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a deadline = %s, %v; want context.DeadlineExceeded", show(st), err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if st, err := b.Wait(ctx, ref); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context = %s, %v; want context.Canceled", show(st), err)
	}
	h.Release(t, spec)
	checkSucceeded(t, h, wait(t, b, ref))
}

// testInvalidSpec: Start refuses a spec that fails jobs.Spec.Validate, and starts nothing.
func testInvalidSpec(t *testing.T, h Harness) {
	b := h.New(t)
	for _, tc := range []struct {
		name  string
		tweak func(*jobs.Spec)
	}{
		{"bad id", func(s *jobs.Spec) { s.ID = "Bad_ID" }},
		{"empty id", func(s *jobs.Spec) { s.ID = "" }},
		{"no model", func(s *jobs.Spec) { s.Model = "" }},
		{"negative base version", func(s *jobs.Spec) { s.BaseVersion = -1 }},
		{"no dataset manifest", func(s *jobs.Spec) { s.DatasetManifest = "" }},
		{"no output", func(s *jobs.Spec) { s.Output = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			valid := h.Spec(t, "conf-invalid", Succeed)
			spec := valid
			tc.tweak(&spec)
			if spec.Validate() == nil {
				t.Fatalf("the suite's spec %+v is valid", spec)
			}
			if ref, err := b.Start(t.Context(), spec); err == nil {
				t.Fatalf("Start(%+v) = %+v, want an error", spec, ref)
			}
			// The harness finds a job by its ID and output, which the last two cases keep.
			if spec.ID == valid.ID && spec.Output == valid.Output {
				checkStarts(t, h, spec, 0)
			}
		})
	}
}

// testForeignRef: Wait and Cancel refuse a Ref made by another backend rather than acting on
// whatever its ID happens to name.
func testForeignRef(t *testing.T, h Harness) {
	b := h.New(t)
	ref := jobs.Ref{Backend: "jobstest-other", ID: "1234", Data: map[string]string{"dir": "/nonexistent"}}
	if st, err := b.Wait(t.Context(), ref); err == nil {
		t.Errorf("Wait(%+v) = %s, want an error", ref, show(st))
	}
	if err := b.Cancel(t.Context(), ref); err == nil {
		t.Errorf("Cancel(%+v): no error", ref)
	}
}

// testSeveral: jobs running at once on one backend each end with their own status.
func testSeveral(t *testing.T, h Harness) {
	b := h.New(t)
	outcomes := []Outcome{Succeed, Fail, Hold, Succeed}
	specs := make([]jobs.Spec, len(outcomes))
	waits := make([]<-chan result, len(outcomes))
	for i, o := range outcomes {
		specs[i] = h.Spec(t, fmt.Sprintf("conf-several-%d", i), o)
		waits[i] = waitAsync(t, b, start(t, b, specs[i], o))
	}
	notYet(t, waits[2])
	h.Release(t, specs[2])
	for i, o := range outcomes {
		r := <-waits[i]
		if r.err != nil {
			t.Fatalf("job %d: %v", i, r.err)
		}
		want := jobs.Succeeded
		if o == Fail {
			want = jobs.Failed
		}
		if r.st.State != want {
			t.Errorf("job %d (%s) = %s, want %s", i, o, show(r.st), want)
		}
	}
}
