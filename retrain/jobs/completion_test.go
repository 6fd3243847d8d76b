package jobs

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeCompletion(t *testing.T) {
	three := 3
	for _, tc := range []struct {
		name, body string
		want       Status
		err        string
	}{
		{"succeeded", `{"state": "succeeded"}`, Status{State: Succeeded}, ""},
		{"failed with everything", `{"state": "failed", "message": "OOMKilled", "exit_code": 3, "log_tail": "epoch 2\n"}`,
			Status{State: Failed, Message: "OOMKilled", ExitCode: &three, LogTail: "epoch 2\n"}, ""},
		{"no state", `{"message": "done"}`, Status{}, `http backend: completion: state must be "succeeded" or "failed", got ""`},
		{"running", `{"state": "running"}`, Status{}, `http backend: completion: state must be "succeeded" or "failed", got "running"`},
		{"capitalised", `{"state": "Succeeded"}`, Status{}, `http backend: completion: state must be "succeeded" or "failed", got "Succeeded"`},
		{"unknown field", `{"state": "failed", "reason": "x"}`, Status{}, `http backend: completion: json: unknown field "reason"`},
		{"wrong type", `{"state": "failed", "exit_code": "3"}`, Status{}, "http backend: completion: json: cannot unmarshal string into Go struct field completionBody.exit_code of type int"},
		{"not an object", `["succeeded"]`, Status{}, "http backend: completion: json: cannot unmarshal array into Go value of type jobs.completionBody"},
		{"empty", ``, Status{}, "http backend: completion: EOF"},
		{"trailing data", `{"state": "succeeded"} {"state": "failed"}`, Status{}, "http backend: completion: data after the JSON object"},
		{"contradiction", `{"state": "succeeded", "exit_code": 3}`, Status{}, "http backend: completion: state succeeded contradicts exit_code 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := DecodeCompletion(strings.NewReader(tc.body))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n got %v\nwant %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mustJSON(t, st) != mustJSON(t, tc.want) {
				t.Errorf("status = %+v, want %+v", st, tc.want)
			}
		})
	}
	// A log tail is cut to LogTailBytes.
	long := strings.Repeat("a line of the job's log\n", 1000)
	st, err := DecodeCompletion(strings.NewReader(`{"state": "failed", "log_tail": ` + mustJSON(t, long) + `}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LogTail) > LogTailBytes || !strings.HasPrefix(st.LogTail, "a line") || !strings.HasSuffix(long, st.LogTail) {
		t.Errorf("log tail of %d bytes", len(st.LogTail))
	}
}
