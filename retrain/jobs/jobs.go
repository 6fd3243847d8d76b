// Package jobs is the job contract between the retrain controller and the systems that run its
// training and evaluation jobs (docs/architecture.md, docs/job-backends.md): the Spec a job is
// started from, the Status it ends with, the Ref that finds it again, and the Backend interface.
// A Backend starts a job, waits for it, and can re-attach to it from a Ref saved by an earlier
// controller process, so that a restart in the middle of a job does not start a second one.
//
// The backends live in sub-packages, one each: localjob (a process on this machine), kubejob
// (a Kubernetes Job, on client-go) and httpjob (a request to a system that runs the job).
// jobstest is the conformance suite every backend passes. This package imports none of them,
// so that code which needs only the contract does not link client-go.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/edgeloop/edgeloop/internal/jobenv"
)

// Spec is one job: what the contract hands to the training code.
type Spec struct {
	// ID is the controller's job ID: 1-63 characters of a-z, 0-9 and '-', starting with a
	// letter, so it is usable as a Kubernetes name, a file name and a URL path segment.
	ID string `json:"id"`
	// Model is the model to retrain; BaseVersion the version retrained from (0: none).
	Model       string `json:"model"`
	BaseVersion int64  `json:"base_version"`
	// DatasetManifest is where the dataset manifest is: a local path for the local backend, a
	// URL (s3://, https://) readable by the job for the others.
	DatasetManifest string `json:"dataset_manifest"`
	// Output is the output prefix the job writes model.onnx and metrics.json under: a local
	// directory for the local backend, a URL for the others.
	Output string `json:"output"`
	// BaseModel is where the base version's files are (model.onnx, edgeloop.json and any
	// extra file such as checkpoint.pt): a local directory for the local backend, an object
	// URL prefix for the others. Empty when there is no base version or its files are not
	// handed to the job; a job then trains from scratch.
	BaseModel string `json:"base_model,omitempty"`
	// Timeout bounds the job's run time; 0 means none. Backends that can enforce it
	// themselves (Kubernetes' activeDeadlineSeconds) do; the controller cancels the job when
	// it passes in any case.
	Timeout time.Duration `json:"timeout,omitempty"`
}

var idRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate checks the parts of the spec every backend relies on.
func (s Spec) Validate() error {
	var errs []error
	if !idRE.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("job id %q: want 1-63 of a-z, 0-9, '-', starting with a letter", s.ID))
	}
	if s.Model == "" {
		errs = append(errs, errors.New("model is empty"))
	}
	if s.BaseVersion < 0 {
		errs = append(errs, fmt.Errorf("base version %d is negative", s.BaseVersion))
	}
	if s.DatasetManifest == "" {
		errs = append(errs, errors.New("dataset manifest is empty"))
	}
	if s.Output == "" {
		errs = append(errs, errors.New("output is empty"))
	}
	return errors.Join(errs...)
}

// Env returns the contract's environment variables for the spec. jobenv.BaseModel is in it only
// when BaseModel is set: an empty value would read as a path to a job that does not check.
func (s Spec) Env() map[string]string {
	env := map[string]string{
		jobenv.Model:           s.Model,
		jobenv.BaseVersion:     strconv.FormatInt(s.BaseVersion, 10),
		jobenv.DatasetManifest: s.DatasetManifest,
		jobenv.Output:          s.Output,
		jobenv.JobID:           s.ID,
	}
	if s.BaseModel != "" {
		env[jobenv.BaseModel] = s.BaseModel
	}
	return env
}

// ContractEnv returns the set of every contract variable, the optional ones included: what a
// backend's configured environment may not set, since Env leaves jobenv.BaseModel out when
// empty and a configured value would then reach the job in its place.
func ContractEnv() map[string]bool {
	env := map[string]bool{}
	for _, k := range jobenv.All() {
		env[k] = true
	}
	return env
}

// State is where a job is.
type State string

// The states of a job. Succeeded means the job exited 0: it does not mean its model is good
// (that is the gate's call).
const (
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
)

// Done reports whether the state is final.
func (s State) Done() bool { return s == Succeeded || s == Failed }

// Status is what a backend knows of a job.
type Status struct {
	State State `json:"state"`
	// Message says why a job failed (exit status, pod reason, the status endpoint's words).
	Message string `json:"message,omitempty"`
	// ExitCode is the process's or container's exit code, when known.
	ExitCode *int `json:"exit_code,omitempty"`
	// LogTail is the end of the job's log (at most LogTailBytes), when the backend can get it.
	LogTail string `json:"log_tail,omitempty"`
	// Finished is when the job ended, when known.
	Finished time.Time `json:"finished,omitzero"`
}

// LogTailBytes bounds Status.LogTail.
const LogTailBytes = 8 << 10

// Tail returns the last LogTailBytes of s, starting at a line boundary when one is near.
func Tail(s string) string {
	if len(s) <= LogTailBytes {
		return s
	}
	s = s[len(s)-LogTailBytes:]
	for i := 0; i < len(s) && i < 256; i++ {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// Ref is a backend's handle on a started job. The controller stores it with the job, and
// hands it back to Wait and Cancel, possibly in a later process: everything a backend needs to
// find the job again must be in it.
type Ref struct {
	// Backend names the backend that made it ("local", "kubernetes", "http").
	Backend string `json:"backend"`
	// ID is the backend's name for the job: a process ID, namespace/name, a run ID.
	ID string `json:"id"`
	// Data holds anything else the backend needs (a status URL, a start time).
	Data map[string]string `json:"data,omitempty"`
}

// Backend runs jobs.
type Backend interface {
	// Name is the backend's name, as in the configuration and Ref.Backend.
	Name() string
	// Start starts the job and returns its Ref as soon as the job exists; it does not wait
	// for it to finish. An error means no job was started.
	Start(ctx context.Context, spec Spec) (Ref, error)
	// Wait blocks until the job ends and returns its final status, or returns ctx's error.
	// It works on a Ref made by an earlier process (re-attach). A job the backend can no
	// longer find is Failed with a message saying so, not an error: errors are for failures
	// to ask (the API server is down), which the caller retries.
	Wait(ctx context.Context, ref Ref) (Status, error)
	// Cancel stops the job (timeout, operator); cancelling a finished or unknown job is not
	// an error.
	Cancel(ctx context.Context, ref Ref) error
}

// Completer is implemented by backends whose jobs report their end by calling the controller
// (the http backend's callback mode): the controller's POST /v1/jobs/{id}/complete hands the
// reported status to Complete, which releases the matching Wait.
type Completer interface {
	Complete(ref Ref, st Status) error
}
