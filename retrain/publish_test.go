package retrain

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/fmnist"
	"github.com/edgeloop/edgeloop/internal/modelrepo"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/testenv"
	"github.com/edgeloop/edgeloop/retrain/jobs"
	"github.com/edgeloop/edgeloop/retrain/publish"
	"github.com/edgeloop/edgeloop/trainers/go"
)

// trainingBackend is a fakeBackend whose jobs write a real (small) model, as `edgeloop train`
// would, into the spec's output directory when they start.
type trainingBackend struct {
	*fakeBackend
	dataDir string
}

func (b *trainingBackend) Start(ctx context.Context, s jobs.Spec) (jobs.Ref, error) {
	cfg := trainer.DefaultConfig()
	cfg.DataDir, cfg.TrainLimit, cfg.Epochs, cfg.Hidden, cfg.Model = b.dataDir, 3000, 2, []int{32}, s.Model
	if _, err := trainer.Run(ctx, cfg, s.Output, testLogger()); err != nil {
		return jobs.Ref{}, err
	}
	ref, err := b.fakeBackend.Start(ctx, s)
	b.fakeBackend.finish(s.ID, jobs.Status{State: jobs.Succeeded})
	return ref, err
}

// TestFirstModelCanarySoak runs a job to its end with the real gate and publish: a first
// model (no serving version) is judged by first_model_min_accuracy, published as version 1 to
// canary, soaks, and stable follows when the soak is over.
func TestFirstModelCanarySoak(t *testing.T) {
	dataDir := testenv.FashionMNIST(t, fmnist.DefaultDir)
	cfg, _ := testConfig(t)
	cfg.Gate.FashionMNISTDir = dataDir
	cfg.Gate.ReferenceImages, cfg.Gate.MinEvalSamples, cfg.Gate.FirstModelMinAccuracy = 500, 500, 0.5
	cfg.Publish = PublishConfig{Canary: true, Stable: true, Soak: time.Hour}
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := &trainingBackend{fakeBackend: newFakeBackend(), dataDir: dataDir}
	e := start(t, cfg, b, clk)
	if code, body := e.post(t, "/v1/models/fashion/retrain", operatorToken, nil); code != 202 {
		t.Fatalf("manual: %d %s", code, body)
	}
	bucket, err := objstore.Open(context.Background(), cfg.Repository.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	repo := modelrepo.New(bucket)
	// Published to canary, soaking: stable does not exist yet.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if j := e.c.Jobs(); len(j) == 1 && j[0].Phase == PhaseSoaking {
			if j[0].Version != 1 || j[0].Gate == nil || !j[0].Gate.Promote || j[0].Gate.Current != nil {
				t.Fatalf("soaking job: %+v", j[0])
			}
			break
		} else if len(j) == 1 && j[0].Phase.Done() {
			t.Fatalf("job ended %s: %s", j[0].Phase, j[0].Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not soaking: %+v", e.c.Jobs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, err := repo.Alias(context.Background(), "fashion", publish.AliasCanary); err != nil || a.Version != 1 {
		t.Fatalf("canary: %+v %v", a, err)
	}
	if _, err := repo.Alias(context.Background(), "fashion", publish.AliasStable); err == nil {
		t.Fatal("stable moved before the soak ended")
	}
	v, err := modelrepo.LoadVerifier(filepath.Join(filepath.Dir(cfg.Repository.SigningKeyFile), modelrepo.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := repo.Manifest(context.Background(), "fashion", 1, v)
	if err != nil || m.ParentVersion != 0 || len(m.ReferenceHistogram) == 0 {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	clk.Add(time.Hour + time.Second)
	j := waitEnded(t, e)
	if j.Phase != PhasePromoted || j.Error != "" {
		t.Fatalf("after the soak: %+v", j)
	}
	if a, err := repo.Alias(context.Background(), "fashion", publish.AliasStable); err != nil || a.Version != 1 {
		t.Fatalf("stable after the soak: %+v %v", a, err)
	}
	// The dataset copy is gone with the job's end; the gate's report stays.
	if _, err := os.Stat(filepath.Join(e.c.jobDir(j.ID), dataDir)); !os.IsNotExist(err) {
		t.Errorf("data dir still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.c.jobDir(j.ID), "gate.json")); err != nil {
		t.Errorf("gate.json: %v", err)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
