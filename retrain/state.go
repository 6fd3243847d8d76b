package retrain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/jobs"
)

// Phase is where a job of the controller is. The first four are active: a restart resumes
// the job from its phase (re-attaching to the backend's job when it was running).
type Phase string

// The phases of a job, in order. A job ends in one of the last six, which are also the
// `result` label of edgeloop_retrain_jobs_total.
const (
	PhasePreparing  Phase = "preparing"  // fetching the dataset, resolving the serving version
	PhaseRunning    Phase = "running"    // the backend's job runs
	PhaseEvaluating Phase = "evaluating" // the gate evaluates candidate and serving version
	PhasePublishing Phase = "publishing" // a promoted candidate is being published
	PhaseSoaking    Phase = "soaking"    // published to canary, waiting to move stable

	PhasePromoted  Phase = "promoted"  // published as a new version
	PhaseRejected  Phase = "rejected"  // the gate refused the candidate
	PhaseFailed    Phase = "failed"    // the job failed
	PhaseTimedOut  Phase = "timed_out" // the job ran past policy.job_timeout and was cancelled
	PhaseCancelled Phase = "cancelled" // an operator cancelled it
	PhaseError     Phase = "error"     // the controller failed (dataset, gate or publish)
)

// Results are the final phases, in the order the metrics list them.
var Results = []Phase{PhasePromoted, PhaseRejected, PhaseFailed, PhaseTimedOut, PhaseCancelled, PhaseError}

// Done reports whether the phase is final.
func (p Phase) Done() bool { return slices.Contains(Results, p) }

// Trigger is what asked for a job.
type Trigger struct {
	// Source is alertmanager, manual, labels, schedule or drift.
	Source string `json:"source"`
	// Model is the model to retrain; Version the serving version the alert named, if any.
	Model   string `json:"model"`
	Version string `json:"version,omitempty"`
	// Alert is the alert's name; GroupKey and Fingerprint identify it (Alertmanager).
	Alert       string `json:"alert,omitempty"`
	GroupKey    string `json:"group_key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// By is the operator (manual) or the node (drift) behind the trigger.
	By string `json:"by,omitempty"`
	// Reason is a free-text reason (manual) or what the policy saw.
	Reason string `json:"reason,omitempty"`
}

// Job is one job of the controller, as the state file and GET /v1/jobs/{id} hold it.
type Job struct {
	ID      string  `json:"id"`
	Model   string  `json:"model"`
	Phase   Phase   `json:"phase"`
	Trigger Trigger `json:"trigger"`
	// BaseVersion is the serving version the candidate was trained from and compared with (0:
	// none).
	BaseVersion int64 `json:"base_version"`
	// LabelWatermark is the newest label file the job's dataset holds (nanoseconds in its
	// name): the next job's "new labels" are those after it.
	LabelWatermark int64 `json:"label_watermark"`
	// Dataset counts what the job trained on.
	Dataset DatasetSummary `json:"dataset"`
	// Spec is what the backend was given; Ref its handle on the job (nil until started).
	Spec *jobs.Spec `json:"spec,omitempty"`
	Ref  *jobs.Ref  `json:"ref,omitempty"`
	// Status is the backend's final word on the job.
	Status *jobs.Status `json:"status,omitempty"`
	// Gate is the gate's decision, with both scores.
	Gate *gate.Decision `json:"gate,omitempty"`
	// Version is the version published, when promoted.
	Version int64 `json:"version,omitempty"`
	// SoakUntil is when stable follows canary (phase soaking).
	SoakUntil time.Time `json:"soak_until,omitzero"`
	// Error says what went wrong, for the failed phases.
	Error string `json:"error,omitempty"`
	// Created, Started (the backend's job) and Finished are the job's times.
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// DatasetSummary counts a job's dataset.
type DatasetSummary struct {
	Shards      int `json:"shards"`
	LabelFiles  int `json:"label_files"`
	Labels      int `json:"labels"`
	NewLabels   int `json:"new_labels"`
	EvalSamples int `json:"eval_samples,omitempty"`
}

// Decision is one verdict on a trigger: a job started, or skipped with a reason.
type Decision struct {
	Time    time.Time `json:"time"`
	Trigger Trigger   `json:"trigger"`
	// Started is the job's ID when one started; else Skipped names the reason.
	Started string `json:"started,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	// Detail says more, in words.
	Detail string `json:"detail,omitempty"`
}

// ModelState is what the policy remembers per model.
type ModelState struct {
	// LastStart and LastEnd are when the model's last job started and ended.
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	// LastSuccess is when a job last published a new version; Version which.
	LastSuccess time.Time `json:"last_success,omitzero"`
	Version     int64     `json:"version,omitempty"`
	// LabelWatermark is the label watermark of the last job that trained (any result but
	// error): labels after it are new.
	LabelWatermark int64 `json:"label_watermark"`
	// BudgetDay is a UTC date and BudgetUsed the jobs started on it.
	BudgetDay  string `json:"budget_day,omitempty"`
	BudgetUsed int    `json:"budget_used"`
}

// State is the controller's persistent state: the file state.json in state_dir, replaced
// atomically on every change, so that a restart resumes every job and keeps every decision.
type State struct {
	// Jobs are the active jobs and the last keep_jobs finished ones, oldest first.
	Jobs []*Job `json:"jobs"`
	// Decisions are the last maxDecisions decisions, oldest first.
	Decisions []Decision `json:"decisions"`
	// Seen maps webhook dedupe keys (groupKey and fingerprint) to when they were first seen.
	Seen map[string]time.Time `json:"seen"`
	// Models holds the policy's memory per model.
	Models map[string]*ModelState `json:"models"`
	// Seq numbers the jobs.
	Seq int64 `json:"seq"`
}

// maxDecisions bounds State.Decisions: a webhook storm must not grow the file without bound.
const maxDecisions = 1000

// stateFile is the state's file name in state_dir.
const stateFile = "state.json"

// loadState reads dir's state file; a missing file is an empty state.
func loadState(dir string) (*State, error) {
	st := &State{Seen: map[string]time.Time{}, Models: map[string]*ModelState{}}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("state %s: %w (move it aside to start afresh; the jobs it lists are then forgotten)", filepath.Join(dir, stateFile), err)
	}
	if st.Seen == nil {
		st.Seen = map[string]time.Time{}
	}
	if st.Models == nil {
		st.Models = map[string]*ModelState{}
	}
	return st, nil
}

// save writes the state atomically (and durably: a decision the webhook answered for must
// survive a crash, or a resend would start a second job).
func (st *State) save(dir string) error {
	data, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, stateFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// model returns the model's state, creating it.
func (st *State) model(name string) *ModelState {
	m := st.Models[name]
	if m == nil {
		m = &ModelState{}
		st.Models[name] = m
	}
	return m
}

// job returns the job with the ID, or nil.
func (st *State) job(id string) *Job {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

// activeJob returns the model's active job, or nil.
func (st *State) activeJob(model string) *Job {
	for _, j := range st.Jobs {
		if j.Model == model && !j.Phase.Done() {
			return j
		}
	}
	return nil
}

// prune drops the oldest finished jobs beyond keep, decisions beyond maxDecisions and dedupe
// keys older than window, and returns the IDs of the jobs dropped.
func (st *State) prune(keep int, window time.Duration, now time.Time) (dropped []string) {
	finished := 0
	for _, j := range st.Jobs {
		if j.Phase.Done() {
			finished++
		}
	}
	if drop := finished - keep; drop > 0 {
		st.Jobs = slices.DeleteFunc(st.Jobs, func(j *Job) bool {
			if drop > 0 && j.Phase.Done() {
				drop--
				dropped = append(dropped, j.ID)
				return true
			}
			return false
		})
	}
	if n := len(st.Decisions) - maxDecisions; n > 0 {
		st.Decisions = slices.Delete(st.Decisions, 0, n)
	}
	for k, t := range st.Seen {
		if now.Sub(t) > window {
			delete(st.Seen, k)
		}
	}
	return dropped
}
