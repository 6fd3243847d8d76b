package gate_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/retrain/gate"
	"github.com/edgeloop/edgeloop/retrain/gate/gatetest"
)

// envEvalJob makes the test binary act as the evaluation job (`edgeloop evaluate`): the job
// evaluator's tests run it through the real local backend. "wrong-digest" makes it answer
// with a report of another set.
const envEvalJob = "GATE_TEST_EVAL_JOB"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envEvalJob); mode != "" {
		os.Exit(evalJobMain(mode))
	}
	os.Exit(m.Run())
}

func evalJobMain(mode string) int {
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	req := fs.String("request", os.Getenv("EDGELOOP_DATASET_MANIFEST"), "")
	out := fs.String("out", os.Getenv("EDGELOOP_OUTPUT"), "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if err := gate.RunEvalJob(context.Background(), *req, *out, discard()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "wrong-digest" {
		path := filepath.Join(*out, gate.EvalReportFile)
		data, _ := os.ReadFile(path)
		r, _ := gate.ReadEvalReport(path)
		os.WriteFile(path, []byte(strings.Replace(string(data), r.EvalDigest, strings.Repeat("0", 64), 1)), 0o644)
	}
	return 0
}

func jobEvaluator(t *testing.T, mode string) gate.Evaluator {
	cfg := gate.DefaultJobConfig()
	cfg.Local.Command = []string{os.Args[0], "--request", "{{.DatasetManifest}}", "--out", "{{.Output}}"}
	cfg.Local.Env = map[string]string{envEvalJob: mode}
	cfg.Timeout = time.Minute
	ev, err := gate.NewJobEvaluator(cfg, nil, nil, "job-shapes-1", "shapes", t.TempDir(), discard())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestJobConformance runs the conformance suite against the job evaluator: each Score runs
// the reference evaluation job (gate.RunEvalJob, what `edgeloop evaluate` runs) as a process
// of the local backend, on the request and set files of the documented contract.
func TestJobConformance(t *testing.T) {
	gatetest.Run(t, func(t *testing.T) gate.Evaluator { return jobEvaluator(t, "ok") })
}

func TestJobReportOfAnotherSetRefused(t *testing.T) {
	spec := gatetest.Spec()
	protos := gatetest.Prototypes(spec, 1)
	in, labels := gatetest.Samples(spec, protos, 12, 1, 1)
	set, err := gate.NewSet(spec, "t", in, labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gatetest.WriteModel(t, dir, spec, protos, gatetest.ModelOptions{})
	m, err := gate.NewModel(gate.RoleCandidate, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = jobEvaluator(t, "wrong-digest").Score(context.Background(), set, []gate.Model{m})
	if err == nil || !strings.Contains(err.Error(), "made on the set with digest") {
		t.Fatalf("a report of another set: %v, want it refused", err)
	}
}
