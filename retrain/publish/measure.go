package publish

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/edgeloop/edgeloop/internal/dataset"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/retrain/gate"
)

// MeasureForPublish scores the version in dir on the named evaluation sets of its model in the
// repository's bucket with the built-in runtime, as the retrain gate scores a candidate, and
// writes the report into the manifest (ApplyReport): the metrics, the fitted
// temperature and the reference histogram and drift reference the exporter's drift signals
// compare against. Without them a version published by hand would have only the confidence
// PSI and the uncalibrated estimate (docs/drift.md). It returns the gate record file for the
// version and the report. `edgeloop model publish --eval-set` and the demo's base model use it.
func MeasureForPublish(ctx context.Context, bucket objstore.Bucket, dir string, m *modelrepo.Manifest, names []string, logger *slog.Logger) (modelrepo.File, *gate.Report, error) {
	spec, err := dataset.SpecOf(m)
	if err != nil {
		return modelrepo.File{}, nil, fmt.Errorf("evaluation sets: %w", err)
	}
	set, err := gate.BuildSet(ctx, spec, gate.Sources{Bucket: bucket, Model: m.Model, EvalSets: names}, logger)
	if err != nil {
		return modelrepo.File{}, nil, err
	}
	if set.Len() == 0 {
		var why []string
		for _, r := range set.Refused {
			why = append(why, r.Source+": "+r.Reason)
		}
		return modelrepo.File{}, nil, fmt.Errorf("no evaluation set fits the model (%s)", strings.Join(why, "; "))
	}
	candidate, err := gate.NewModel(gate.RoleCandidate, dir, m)
	if err != nil {
		return modelrepo.File{}, nil, err
	}
	res, err := gate.Run(ctx, gate.Builtin{}, set, candidate, nil, gate.Options{Rules: gate.DefaultRules(), Calibrate: true})
	if err != nil {
		return modelrepo.File{}, nil, err
	}
	ApplyReport(m, res.Candidate)
	f, err := GateRecordFile(res.Candidate, &res.Decision, &res.Set)
	return f, res.Candidate, err
}
