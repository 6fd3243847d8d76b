package localjob

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/jobs/jobstest"
)

// conformanceScript is the job of the conformance suite: it records its start, then does what
// the outcome at the end of its model name says. A held job waits for the file "release" in
// its output directory.
var conformanceScript = fmt.Sprintf(`echo started >> "$EDGELOOP_OUTPUT/starts"
case "$EDGELOOP_MODEL" in
*-fail) echo "it went wrong" >&2; exit %d ;;
*-hold) while [ ! -e "$EDGELOOP_OUTPUT/release" ]; do sleep 0.02; done ;;
esac
touch "$EDGELOOP_OUTPUT/model.onnx" "$EDGELOOP_OUTPUT/metrics.json"`, jobstest.FailExitCode)

// TestConformance runs the conformance suite on real child processes (sh). Every backend
// shares one job directory, as a restarted controller shares its state directory.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	var backends int
	jobstest.Run(t, jobstest.Harness{
		New: func(t *testing.T) jobs.Backend {
			backends++
			cfg := DefaultConfig()
			cfg.Command = []string{"/bin/sh", "-c", conformanceScript}
			cfg.KillGrace = 5 * time.Second
			b, err := New(cfg, dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			b.pollInterval, b.goneGrace = 20*time.Millisecond, 100*time.Millisecond
			return b
		},
		Spec: func(t *testing.T, id string, o jobstest.Outcome) jobs.Spec {
			tmp := t.TempDir()
			return jobs.Spec{
				ID:              id,
				Model:           "conformance-" + o.String(),
				BaseVersion:     1,
				DatasetManifest: filepath.Join(tmp, "manifest.json"),
				Output:          filepath.Join(tmp, "out"),
			}
		},
		Release: func(t *testing.T, spec jobs.Spec) {
			if err := os.WriteFile(filepath.Join(spec.Output, "release"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		Starts: func(t *testing.T, spec jobs.Spec) int {
			data, err := os.ReadFile(filepath.Join(spec.Output, "starts"))
			if os.IsNotExist(err) {
				return 0
			}
			if err != nil {
				t.Fatal(err)
			}
			return strings.Count(string(data), "started\n")
		},
		Unknown: func(t *testing.T) jobs.Ref {
			// No process can have PID 2^22: Linux's PID_MAX_LIMIT.
			return jobs.Ref{Backend: "local", ID: strconv.Itoa(1 << 22), Data: map[string]string{
				"start": "1", "dir": filepath.Join(dir, "conf-unknown"), "output": filepath.Join(t.TempDir(), "out"),
			}}
		},
		ExitCodes:       true,
		IdempotentStart: true,
	})
	t.Logf("%d backends made", backends)
}
