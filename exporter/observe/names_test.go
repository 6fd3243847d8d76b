package observe

import "testing"

// TestOutcomeAndStageNames: the names are label values, so a change breaks dashboards and
// alerts and must be deliberate. The scorers' reasons are checked in internal/classify.
func TestOutcomeAndStageNames(t *testing.T) {
	wantOutcomes := []string{"success", "invalid_request", "runtime_error", "upstream_error", "canceled"}
	for o := range numOutcomes {
		if o.String() != wantOutcomes[o] {
			t.Errorf("Outcome(%d) = %q, want %q", o, o, wantOutcomes[o])
		}
	}
	wantStages := []string{"queue", "preprocess", "infer", "postprocess"}
	for s := range NumStages {
		if s.String() != wantStages[s] {
			t.Errorf("Stage(%d) = %q, want %q", s, s, wantStages[s])
		}
	}
}
