package jobs

import (
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeloop/edgeloop/internal/jobenv"
)

func TestSpecEnv(t *testing.T) {
	base := Spec{ID: "job-1", Model: "fashion", BaseVersion: 3, DatasetManifest: "s3://b/jobs/fashion/job-1/dataset.json", Output: "s3://b/jobs/fashion/job-1/output/"}
	want := map[string]string{
		jobenv.Model:           "fashion",
		jobenv.BaseVersion:     "3",
		jobenv.DatasetManifest: "s3://b/jobs/fashion/job-1/dataset.json",
		jobenv.Output:          "s3://b/jobs/fashion/job-1/output/",
		jobenv.JobID:           "job-1",
	}
	for _, tc := range []struct {
		name      string
		baseModel string
		want      map[string]string
	}{
		// Absent, not empty: a job reading "" as a path would look for the base version in
		// its working directory.
		{"no base model", "", want},
		{"base model", "s3://b/models/fashion/3/?endpoint=minio:9000", func() map[string]string {
			w := maps.Clone(want)
			w[jobenv.BaseModel] = "s3://b/models/fashion/3/?endpoint=minio:9000"
			return w
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			s.BaseModel = tc.baseModel
			if got := s.Env(); !maps.Equal(got, tc.want) {
				t.Errorf("Env() = %v\nwant     %v", got, tc.want)
			}
		})
	}
}

// TestContractEnv checks that ContractEnv holds every variable Env can set, the optional
// EDGELOOP_BASE_MODEL included: the backends refuse a configured environment that sets one of
// them (each backend's TestConfiguredEnvCannotSetContract), and a spec without a base model
// would otherwise hand the job the configured value.
func TestContractEnv(t *testing.T) {
	all := slices.Sorted(maps.Keys(Spec{BaseModel: "x"}.Env()))
	if len(all) != 6 {
		t.Fatalf("contract variables %v, want 6: update this test and ContractEnv together", all)
	}
	if got := slices.Sorted(maps.Keys(ContractEnv())); !slices.Equal(got, all) {
		t.Fatalf("ContractEnv() = %v, want %v", got, all)
	}
}

// TestImports checks the job packages' import rules (docs/architecture.md): the contract imports
// no backend and no Kubernetes package, so that what needs only the contract does not link
// client-go; a backend imports no other backend; the conformance suite imports only the contract.
func TestImports(t *testing.T) {
	const jobsPkg = "github.com/edgeloop/edgeloop/retrain/jobs"
	subs := []string{"localjob", "kubejob", "httpjob", "jobstest"}
	var checked int
	for _, dir := range append([]string{"."}, subs...) {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range parsed.Imports {
				path := strings.Trim(imp.Path.Value, `"`)
				checked++
				sub, isSub := strings.CutPrefix(path, jobsPkg+"/")
				switch {
				case dir == "." && (isSub || strings.HasPrefix(path, "k8s.io/")):
					t.Errorf("%s imports %s: the contract must not import a backend or client-go", f, path)
				case dir != "." && isSub:
					t.Errorf("%s imports %s: a job package imports the contract, never another job package (%s)", f, path, sub)
				case dir == "jobstest" && strings.HasPrefix(path, "github.com/edgeloop/") && path != jobsPkg:
					t.Errorf("%s imports %s: the conformance suite imports only the contract", f, path)
				}
			}
		}
	}
	t.Logf("%d imports checked", checked)
	if checked < 40 {
		t.Fatalf("checked %d imports: the walk missed the packages", checked)
	}
}
