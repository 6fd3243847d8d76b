package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

// TestEvaluate runs `edgeloop evaluate` on a request the job evaluator writes and checks the
// report answers it: same digest, one row of scores per sample.
func TestEvaluate(t *testing.T) {
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 9, 1, 1)
	set, err := gate.NewSet(spec, "t", in, labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gatetest.WriteModel(t, filepath.Join(dir, "cand"), spec, protos, gatetest.ModelOptions{})
	m, err := gate.NewModel(gate.RoleCandidate, filepath.Join(dir, "cand"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := gate.WriteEvalRequest(dir, set, []gate.Model{m}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out")
	if code := run([]string{"evaluate", "--request", filepath.Join(dir, gate.EvalRequestFile), "--out", out}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	r, err := gate.ReadEvalReport(filepath.Join(out, gate.EvalReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(set, []gate.Model{m}); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"evaluate"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("without a request: exit %d, want %d", code, exitUsage)
	}
}
