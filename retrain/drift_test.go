package retrain

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/edgeloop/edgeloop/retrain/jobs"
	"time"
)

// TestDriftWatcher: an exporter whose PSI stays above the threshold for drift.for starts one
// job (source drift, the node named by its target when the series has no node label); PSI
// below the threshold, an unreadable target and a model the controller does not retrain start
// nothing, and the ongoing episode records no decision per tick.
func TestDriftWatcher(t *testing.T) {
	var psi atomic.Value
	psi.Store(0.05)
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE edgeloop_confidence_psi gauge\n"+
			"edgeloop_confidence_psi{model=\"fashion\",version=\"3\"} %v\n"+
			"edgeloop_confidence_psi{model=\"other\",version=\"1\"} 0.9\n", psi.Load())
	}))
	defer exporter.Close()
	down := httptest.NewServer(http.NotFoundHandler()) // a target that cannot be read is skipped
	defer down.Close()
	cfg, _ := testConfig(t)
	cfg.Drift = DriftConfig{Targets: []string{exporter.URL + "/metrics", down.URL + "/metrics"}, PSIThreshold: 0.25,
		For: 300 * time.Millisecond, Interval: 100 * time.Millisecond}
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	b := newFakeBackend()
	// The controller's clock drives drift.for: move it with the ticks.
	stopClock := make(chan struct{})
	defer close(stopClock)
	go func() {
		for {
			select {
			case <-stopClock:
				return
			case <-time.After(50 * time.Millisecond):
				clk.Add(50 * time.Millisecond)
			}
		}
	}()
	e := start(t, cfg, b, clk)
	time.Sleep(time.Second) // PSI below the threshold: nothing may start
	if started, _, _ := b.counts(); started != 0 {
		t.Fatalf("%d jobs started below the threshold", started)
	}
	psi.Store(0.6)
	s := waitStarted(t, b)
	if s.Model != "fashion" {
		t.Fatalf("started %+v", s)
	}
	j := e.c.Jobs()[0]
	if j.Trigger.Source != SourceDrift || j.Trigger.Version != "3" || j.Trigger.By != exporter.URL+"/metrics" {
		t.Fatalf("trigger %+v", j.Trigger)
	}
	// The episode goes on while the job runs: no second job, and no decision per tick.
	time.Sleep(time.Second)
	if started, _, _ := b.counts(); started != 1 {
		t.Fatalf("%d jobs started in one episode", started)
	}
	if n := len(e.c.Decisions()); n != 1 {
		t.Fatalf("%d decisions recorded, want 1 (the start)", n)
	}
}

// TestPolicyLoop: the schedule starts a job when none ran for policy.schedule, and
// every_new_labels starts one when that many labels arrived since the last training.
func TestPolicyLoop(t *testing.T) {
	t.Run("schedule", func(t *testing.T) {
		cfg, _ := testConfig(t)
		cfg.Models = cfg.Models[:1]
		cfg.Policy.Schedule, cfg.Policy.CheckInterval, cfg.Policy.Cooldown = 24*time.Hour, 100*time.Millisecond, 0
		clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
		b := newFakeBackend()
		e := start(t, cfg, b, clk)
		s := waitStarted(t, b) // never trained: due at once
		b.finish(s.ID, jobs.Status{State: jobs.Failed})
		waitEnded(t, e)
		time.Sleep(500 * time.Millisecond)
		if started, _, _ := b.counts(); started != 1 {
			t.Fatalf("%d jobs within the schedule's day", started)
		}
		clk.Add(24 * time.Hour)
		waitStarted(t, b)
		if j := e.c.Jobs(); j[len(j)-1].Trigger.Source != SourceSchedule {
			t.Fatalf("trigger %+v", j[len(j)-1].Trigger)
		}
	})
	t.Run("labels", func(t *testing.T) {
		cfg, fc := testConfig(t)
		cfg.Models = cfg.Models[:1]
		cfg.Policy.EveryNewLabels, cfg.Policy.CheckInterval = 5, 100*time.Millisecond
		clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
		b := newFakeBackend()
		e := start(t, cfg, b, clk)
		fc.addLabels(t, "fashion", 3)
		time.Sleep(500 * time.Millisecond)
		if started, _, _ := b.counts(); started != 0 {
			t.Fatalf("a job started with 3 of 5 labels")
		}
		fc.addLabels(t, "fashion", 3)
		waitStarted(t, b)
		if j := e.c.Jobs(); j[0].Trigger.Source != SourceLabels || j[0].Dataset.NewLabels != 6 {
			t.Fatalf("job %+v", j[0])
		}
	})
}
