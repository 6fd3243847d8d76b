package shard

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/fsutil"
	"github.com/edgeloop/edgeloop/internal/fsutil/fsfault"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// TestJournalDiskFaults runs the journal's life — load a journal a previous run left, record
// uploaded shards, prune acked ones — once per call site, fault kind and occurrence, with one
// fault injected (fsfault.Enumerate). The builder acks the write-ahead log past a shard only
// after add returned nil, so for each run: a failed write returns its error (the builder logs
// it and keeps the log unacked), the file holds either the state of the last write that
// returned nil or that of a later failed one (never a mix, never less), and once the fault
// ends the journal loads and records again.
func TestJournalDiskFaults(t *testing.T) {
	t.Run("persistent", func(t *testing.T) {
		// A disk that keeps failing from a site's first call until the fault ends.
		rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{MaxPerSite: 1, Repeat: fsfault.Persistent}, func(t *testing.T, fsys *fsfault.FS, dir string) {
			journalScenario(t, fsys, dir, true)
		})
		if rep.Runs < 10 || rep.Fired != rep.Runs {
			t.Errorf("%d runs, %d fired: want at least 10, every fault fired", rep.Runs, rep.Fired)
		}
	})
	rep := fsfault.Enumerate(t, fsfault.EnumerateOptions{MaxPerSite: 10}, func(t *testing.T, fsys *fsfault.FS, dir string) {
		journalScenario(t, fsys, dir, false)
	})
	want := []string{
		"readfile uploaded-shards", "atomic.create .tmp-uploaded-shards-N", "atomic.write .tmp-uploaded-shards-N",
		"atomic.fsync .tmp-uploaded-shards-N", "atomic.rename uploaded-shards", "atomic.syncdir .",
	}
	var got []string
	for _, sc := range rep.Sites {
		got = append(got, sc.Site.OpPath())
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("call site %q not reached; reached %q", w, got)
		}
	}
	if rep.Runs < 30 || rep.Fired != rep.Runs {
		t.Errorf("%d runs, %d fired: want at least 30, every fault fired", rep.Runs, rep.Fired)
	}
}

func journalScenario(t *testing.T, fsys *fsfault.FS, dir string, persistent bool) {
	path := filepath.Join(dir, "uploaded-shards")
	seed, err := loadJournal(fsutil.OS{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.add(1, []uint64{1, 2, 3, 4, 5}, 0); err != nil {
		t.Fatal(err)
	}

	var errs []error
	j, err := loadJournal(fsys, path)
	if err != nil {
		errs = append(errs, err)
		if j, err = loadJournal(fsys, path); err != nil && !persistent {
			t.Fatalf("load after the fault: %v", err)
		}
	}
	if j == nil {
		// The disk keeps failing the load: the collector does not start until it heals.
		fsys.Heal()
		if j, err = loadJournal(fsys, path); err != nil {
			t.Fatalf("load after the fault: %v", err)
		}
		if err := j.add(40, []uint64{40}, 0); err != nil {
			t.Fatalf("add after the fault: %v", err)
		}
		back, err := loadJournal(fsutil.OS{}, path)
		if err != nil || journalState(back.shards) != "map[1:[1 2 3 4 5] 40:[40]]" {
			t.Fatalf("after the fault the journal holds %v (%v)", back, err)
		}
		return
	}
	if skip := j.skipSet(); len(skip) != 5 || !skip[1] || !skip[5] {
		t.Fatalf("skip set %v, want 1-5", skip)
	}
	// The states the file may hold at the end: the last written with a nil error, and any
	// attempted after it (a failure after the rename leaves the new one).
	states := []string{journalState(j.shards)}
	write := func(err error) {
		s := journalState(j.shards)
		if err != nil {
			errs = append(errs, err)
			states = append(states, s)
			return
		}
		states = []string{s}
	}
	write(j.add(10, []uint64{10, 11, 12, 14}, 0))
	write(j.add(20, []uint64{20, 21, 22}, 5)) // prunes shard 1
	write(j.prune(14))                        // prunes shard 10
	write(j.add(30, []uint64{30, 31}, 14))

	if fired := fsys.Fired(); len(fired) > 0 && len(errs) == 0 {
		t.Errorf("%s: no error returned", fired[0])
	} else if len(fired) == 0 && len(errs) > 0 {
		t.Errorf("clean run: %v", errs)
	}

	fsys.Heal()
	back, err := loadJournal(fsutil.OS{}, path)
	if err != nil {
		t.Fatalf("load after the fault: %v", err)
	}
	if s := journalState(back.shards); !slices.Contains(states, s) {
		t.Errorf("journal holds %s; want one of %q (errors %v)", s, states, errs)
	}
	// Recovery: the next write records everything in memory, and it loads.
	if err := j.add(40, []uint64{40}, 14); err != nil {
		t.Fatalf("add after the fault: %v", err)
	}
	back, err = loadJournal(fsutil.OS{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := journalState(back.shards), "map[20:[20 21 22] 30:[30 31] 40:[40]]"; got != want {
		t.Errorf("after the fault the journal holds %s, want %s", got, want)
	}
}

func journalState(m map[uint64][]uint64) string {
	return fmt.Sprint(maps.Clone(m)) // fmt prints maps sorted by key
}

// TestJournalWriteFailureRecovers: a journal write that fails after an upload holds the
// log's ack back, and once the disk works again the builder writes it and acks the log,
// without a restart. (It used to hold the ack back until the process restarted, so the log
// grew until max_wal_bytes refused every node's batches.)
func TestJournalWriteFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	wal, err := spool.Open(filepath.Join(dir, "records"), spool.DefaultConfig(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	bucket, err := objstore.NewFS(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	fsys := fsfault.New(dir, fsfault.Options{})
	fsys.Arm(fsfault.Fault{Site: fsfault.Site{Op: "atomic.create", Path: ".tmp-uploaded-shards-N", Caller: "shard.(*journal).prune"}, Kind: fsfault.EIO, N: 1})
	logs := &fsfault.Logs{}
	cfg := DefaultConfig()
	cfg.MaxAge = 50 * time.Millisecond
	cfg.Retry = RetryConfig{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	b, err := New(cfg, Options{Instance: "c1", Bucket: bucket, Log: wal, JournalPath: filepath.Join(dir, "uploaded-shards"), FS: fsys, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 3 {
		rec, err := collectortest.Sample(t, "n1", i, 256).MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wal.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	b.Notify()
	journalPath := filepath.Join(dir, "uploaded-shards")
	pruned := func() bool {
		j, err := loadJournal(fsutil.OS{}, journalPath)
		return err == nil && len(j.shards) == 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for (wal.Stats().Records > 0 || !pruned()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(fsys.Fired()) != 1 || !logs.Injected() {
		t.Fatalf("fault fired %v, logged %v: %q", fsys.Fired(), logs.Injected(), logs.Records())
	}
	if got := testutil.ToFloat64(b.m.journalErrors); got != 1 {
		t.Errorf("edgeloop_collector_shard_journal_errors_total = %v, want 1", got)
	}
	if n := wal.Stats().Records; n > 0 {
		t.Fatalf("%d records still in the log 10 s after the journal write failed once: the ack is held back for good", n)
	}
	if !pruned() {
		t.Errorf("the journal still lists the shard after the log was acked past it")
	}
}
