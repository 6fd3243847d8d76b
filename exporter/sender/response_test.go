package sender

import (
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStrictResponse: a 200 whose body does not account for every sample of the batch (a
// proxy's "{}", a wrong service's answer, counts that do not add up, keys the batch does not
// hold) acknowledges nothing: the batch is sent again until the collector answers for it, and
// each bad answer is counted by reason.
func TestStrictResponse(t *testing.T) {
	for _, tt := range []struct {
		name   string
		body   func(keys []string) string
		reason string
	}{
		{"empty object", func([]string) string { return `{}` }, badMissingField},
		{"null", func([]string) string { return `null` }, badMissingField},
		{"another service", func([]string) string { return `{"status":"ok"}` }, badMissingField},
		{"not json", func([]string) string { return `"ok"` }, badNotJSON},
		{"no rejected list", func([]string) string { return `{"accepted":3,"duplicates":0}` }, badMissingField},
		{"rejected null", func([]string) string { return `{"accepted":3,"duplicates":0,"rejected":null}` }, badMissingField},
		{"too few", func([]string) string { return `{"accepted":1,"duplicates":1,"rejected":[]}` }, badCountMismatch},
		{"too many", func([]string) string { return `{"accepted":3,"duplicates":1,"rejected":[]}` }, badCountMismatch},
		{"negative", func([]string) string { return `{"accepted":4,"duplicates":-1,"rejected":[]}` }, badCountMismatch},
		{"unknown key", func([]string) string {
			return `{"accepted":2,"duplicates":0,"rejected":[{"key":"0123456789abcdef0123456789abcdef","error":"x"}]}`
		}, badUnknownKey},
		{"key twice", func(k []string) string {
			return `{"accepted":1,"duplicates":0,"rejected":[{"key":"` + k[0] + `","error":"x"},{"key":"` + k[0] + `","error":"x"}]}`
		}, badUnknownKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			h := newHarness(t, setup{decide: func(r *request) verdict {
				mu.Lock()
				defer mu.Unlock()
				if n++; n <= 3 {
					return verdict{status: http.StatusOK, raw: tt.body(r.keys)}
				}
				return verdict{}
			}})
			samples, last := fill(t, h.q, 0, 3, t0)
			h.start()
			h.q.waitAcked(t, last)
			h.stop()
			reqs := h.col.Requests()
			if len(reqs) != 4 {
				t.Fatalf("%d requests, want 4: three bad answers acknowledged nothing, the fourth everything", len(reqs))
			}
			for i, r := range reqs {
				if len(r.keys) != 3 {
					t.Errorf("request %d held %d samples, want the whole batch again", i, len(r.keys))
				}
			}
			assertStored(t, h.col.Stored(), samples)
			m := h.s.metrics
			if got := testutil.ToFloat64(m.badResponses[tt.reason]); got != 3 {
				t.Errorf("bad responses (%s) = %v, want 3", tt.reason, got)
			}
			if got := testutil.ToFloat64(m.errors[reasonBadResponse]); got != 3 {
				t.Errorf("errors{bad_response} = %v, want 3", got)
			}
			if got := testutil.ToFloat64(m.samplesSent); got != 3 {
				t.Errorf("samples sent = %v, want 3", got)
			}
			if h.countLogs("WARN", "batch not delivered; retrying") != 1 {
				t.Errorf("the bad answer is not logged once at WARN:\n%s", h.logs)
			}
		})
	}
}

// TestDeadLetterFailureKeepsSample: when a refused sample cannot be written to the dead-letter
// directory, it stays in the spool (with everything after it) and is sent again later; once
// the directory works it is dead-lettered and acknowledged.
func TestDeadLetterFailureKeepsSample(t *testing.T) {
	var h *harness
	var mu sync.Mutex
	var bad string
	n := 0
	broken := ""
	h = newHarness(t, setup{decide: func(r *request) verdict {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 1:
			// Break the directory: a file where it was, so that even root cannot write.
			dir := h.cfg.DeadLetterDir
			broken = dir + ".moved"
			if err := os.Rename(dir, broken); err != nil {
				t.Error(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Error(err)
			}
		case 2:
			if err := os.Remove(h.cfg.DeadLetterDir); err != nil {
				t.Error(err)
			}
			if err := os.Rename(broken, h.cfg.DeadLetterDir); err != nil {
				t.Error(err)
			}
		}
		return verdict{status: http.StatusOK, rejected: map[string]string{bad: "label 12 names no class"}}
	}})
	samples, last := fill(t, h.q, 0, 6, t0)
	bad = samples[3].Meta.Key
	h.start()
	h.q.waitAcked(t, last)
	h.stop()

	reqs := h.col.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	var want []string
	for _, s := range samples[3:] {
		want = append(want, s.Meta.Key)
	}
	if !slices.Equal(reqs[1].keys, want) {
		t.Errorf("the second request held %d samples, want the refused one and those after it", len(reqs[1].keys))
	}
	files := h.deadLetterFiles()
	if !slices.Contains(files, bad+".json") || !slices.Contains(files, bad+".input.npy") {
		t.Fatalf("the refused sample is not in the dead-letter directory: %v", files)
	}
	m := h.s.metrics
	if got := testutil.ToFloat64(m.deadLetterFailures[dlRetained]); got != 1 {
		t.Errorf("dead-letter failures kept in the spool = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.errors[reasonDeadLetter]); got != 1 {
		t.Errorf("errors{dead_letter} = %v, want 1", got)
	}
	if h.countLogs("ERROR", "cannot write the dead-letter entry") != 1 {
		t.Errorf("the failure is not logged at ERROR:\n%s", h.logs)
	}
}
