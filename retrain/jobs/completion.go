package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// DecodeCompletion decodes and checks the body of a job's completion callback, the
// controller's POST /v1/jobs/{id}/complete (docs/job-backends.md), which it hands to the
// backend's Completer:
//
//	{"state": "succeeded"|"failed", "message": "...", "exit_code": N, "log_tail": "..."}
//
// state is required; unknown fields are errors, so a typo does not pass silently; log_tail is
// cut to its last LogTailBytes. The caller bounds the body's size. The errors keep the prefix
// "http backend: completion:" they had when this lived with that backend, since the job that
// called back reads them in the 400 answer.
func DecodeCompletion(r io.Reader) (Status, error) {
	var body completionBody
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return Status{}, fmt.Errorf("http backend: completion: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Status{}, errors.New("http backend: completion: data after the JSON object")
	}
	if !body.State.Done() {
		return Status{}, fmt.Errorf("http backend: completion: state must be %q or %q, got %q", Succeeded, Failed, body.State)
	}
	if body.State == Succeeded && body.ExitCode != nil && *body.ExitCode != 0 {
		return Status{}, fmt.Errorf("http backend: completion: state succeeded contradicts exit_code %d", *body.ExitCode)
	}
	return Status{State: body.State, Message: body.Message, ExitCode: body.ExitCode, LogTail: Tail(body.LogTail)}, nil
}

// completionBody is the body of a completion callback.
type completionBody struct {
	State    State  `json:"state"`
	Message  string `json:"message"`
	ExitCode *int   `json:"exit_code"`
	LogTail  string `json:"log_tail"`
}
