package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// seqs returns the records' sequence numbers.
func seqs(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds, for conditions that a background goroutine brings
// about. The bound is generous: it catches a hang, not slowness.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAppendPeekAck(t *testing.T) {
	clk := newClock()
	s := mustOpen(t, t.TempDir(), testConfig(), Options{Now: clk.Now})
	if recs, err := s.Peek(10, 0); err != nil || recs != nil {
		t.Fatalf("Peek of an empty spool = %v, %v; want nil, nil", recs, err)
	}
	var data [][]byte
	for i := range 5 {
		d := payload(uint64(i), 100*(i+1))
		data = append(data, d)
		if seq := mustAppend(t, s, d); seq != uint64(i+1) {
			t.Fatalf("Append %d numbered %d", i, seq)
		}
		clk.Advance(time.Second)
	}

	tests := []struct {
		max      int
		maxBytes int64
		want     []uint64
	}{
		{max: 2, want: []uint64{1, 2}},
		{max: 10, want: []uint64{1, 2, 3, 4, 5}},
		{max: 10, maxBytes: 300, want: []uint64{1, 2}}, // 100 + 200
		{max: 10, maxBytes: 299, want: []uint64{1}},    // 200 more would pass it
		{max: 10, maxBytes: 1, want: []uint64{1}},      // at least one, even above maxBytes
		{max: 1, maxBytes: 1 << 20, want: []uint64{1}}, // max wins
		{max: 10, maxBytes: 1 << 20, want: []uint64{1, 2, 3, 4, 5}},
	}
	for _, tt := range tests {
		recs, err := s.Peek(tt.max, tt.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !equalSeqs(seqs(recs), tt.want) {
			t.Errorf("Peek(%d, %d) = %v, want %v", tt.max, tt.maxBytes, seqs(recs), tt.want)
		}
	}

	recs, _ := s.Peek(10, 0)
	for i, r := range recs {
		if !bytes.Equal(r.Data, data[i]) {
			t.Fatalf("record %d's data differs", r.Seq)
		}
		if want := newClock().t.Add(time.Duration(i) * time.Second); !r.Time.Equal(want) {
			t.Fatalf("record %d's time = %v, want %v", r.Seq, r.Time, want)
		}
	}
	// Returned data is the caller's: scribbling on it or appending more changes nothing.
	recs[0].Data[0] ^= 0xff
	recs[1].Data = append(recs[1].Data, 1, 2, 3)
	mustAppend(t, s, payload(99, 300))
	again, _ := s.Peek(3, 0)
	if !bytes.Equal(again[0].Data, data[0]) || !bytes.Equal(again[1].Data, data[1]) || !bytes.Equal(again[2].Data, data[2]) {
		t.Fatal("changing a peeked record's data changed the stored record")
	}

	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	for _, through := range []uint64{0, 1, 2} {
		if err := s.Ack(through); err != nil {
			t.Fatalf("Ack(%d) of acked records = %v, want a no-op", through, err)
		}
	}
	if err := s.Ack(7); err == nil || !strings.Contains(err.Error(), "beyond the newest record") {
		t.Fatalf("Ack(7) with 6 records = %v, want an error", err)
	}
	recs, _ = s.Peek(10, 0)
	if !equalSeqs(seqs(recs), []uint64{3, 4, 5, 6}) {
		t.Fatalf("after Ack(2): %v", seqs(recs))
	}
	st := s.Stats()
	wantBytes := frameSize(300) + frameSize(400) + frameSize(500) + frameSize(300)
	if st.Records != 4 || st.Bytes != wantBytes || !st.OldestTime.Equal(newClock().t.Add(2*time.Second)) {
		t.Fatalf("Stats = %+v; want 4 records, %d bytes, oldest at +2s", st, wantBytes)
	}
	if err := s.Ack(6); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 || !st.OldestTime.IsZero() {
		t.Fatalf("Stats after acking everything = %+v", st)
	}
}

func TestPeekArguments(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testConfig(), Options{})
	if _, err := s.Peek(0, 0); err == nil {
		t.Fatal("Peek(0, 0) succeeded")
	}
}

func TestAppendTooLarge(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecordBytes = 1000
	s := mustOpen(t, t.TempDir(), cfg, Options{})
	if _, err := s.Append(context.Background(), make([]byte, 1001)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of 1001 bytes = %v, want ErrTooLarge", err)
	}
	mustAppend(t, s, make([]byte, 1000))
	mustAppend(t, s, nil) // an empty record is a record
	recs := peekAll(t, s)
	if len(recs) != 2 || len(recs[0].Data) != 1000 || len(recs[1].Data) != 0 {
		t.Fatalf("stored %d records", len(recs))
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = minSegmentBytes // several segments
	s, err := Open(dir, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		mustAppend(t, s, payload(uint64(i), 900))
	}
	if err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}

	s = mustOpen(t, dir, cfg, Options{})
	recs := peekAll(t, s)
	if len(recs) != 15 || recs[0].Seq != 6 || recs[14].Seq != 20 {
		t.Fatalf("after restart: %v", seqs(recs))
	}
	for _, r := range recs {
		if !bytes.Equal(r.Data, payload(r.Seq-1, 900)) {
			t.Fatalf("record %d's data changed", r.Seq)
		}
	}
	if seq := mustAppend(t, s, []byte("after")); seq != 21 {
		t.Fatalf("first append after restart numbered %d, want 21", seq)
	}
	if st := s.Stats(); st.Corrupt != 0 {
		t.Fatalf("a clean restart counted %d corrupt records", st.Corrupt)
	}
	// Acking everything deletes every segment but the one being written, and the numbers
	// still go on after a restart with no record left.
	if err := s.Ack(21); err != nil {
		t.Fatal(err)
	}
	if files := segmentFiles(t, dir); len(files) != 1 {
		t.Fatalf("%d segment files after acking everything, want 1: %v", len(files), files)
	}
	s.Close()
	s = mustOpen(t, dir, cfg, Options{})
	if st := s.Stats(); st.Records != 0 {
		t.Fatalf("%d records after acking everything", st.Records)
	}
	if seq := mustAppend(t, s, []byte("x")); seq <= 21 {
		t.Fatalf("numbering restarted at %d", seq)
	}
}

func TestFullPolicies(t *testing.T) {
	const n = 1000
	tests := []struct {
		policy      string
		wantErr     error
		wantSeqs    []uint64
		wantDropped map[string]uint64
	}{
		{PolicyDropOldest, nil, []uint64{3, 4, 5}, map[string]uint64{ReasonFull: 2, ReasonFullNewest: 0, ReasonAge: 0}},
		{PolicyDropNewest, ErrFull, []uint64{1, 2, 3}, map[string]uint64{ReasonFull: 0, ReasonFullNewest: 2, ReasonAge: 0}},
		{PolicyBlock, context.DeadlineExceeded, []uint64{1, 2, 3}, map[string]uint64{ReasonFull: 0, ReasonFullNewest: 0, ReasonAge: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxBytes = 3 * frameSize(n) // room for three
			cfg.MaxRecordBytes = n
			cfg.FullPolicy = tt.policy
			s := mustOpen(t, t.TempDir(), cfg, Options{})
			for i := range 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				_, err := s.Append(ctx, payload(uint64(i), n))
				cancel()
				if i < 3 || tt.wantErr == nil {
					if err != nil {
						t.Fatalf("Append %d: %v", i, err)
					}
				} else if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Append %d = %v, want %v", i, err, tt.wantErr)
				}
			}
			recs := peekAll(t, s)
			if !equalSeqs(seqs(recs), tt.wantSeqs) {
				t.Fatalf("stored %v, want %v", seqs(recs), tt.wantSeqs)
			}
			st := s.Stats()
			if fmt.Sprint(st.Dropped) != fmt.Sprint(tt.wantDropped) {
				t.Fatalf("dropped %v, want %v", st.Dropped, tt.wantDropped)
			}
			if st.Bytes != cfg.MaxBytes {
				t.Fatalf("holding %d bytes, want %d", st.Bytes, cfg.MaxBytes)
			}
		})
	}
}

func TestBlockWaitsForAck(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBytes = 2 * frameSize(100)
	cfg.MaxRecordBytes = 100
	cfg.FullPolicy = PolicyBlock
	s := mustOpen(t, t.TempDir(), cfg, Options{})
	mustAppend(t, s, make([]byte, 100))
	mustAppend(t, s, make([]byte, 100))
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), make([]byte, 100))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Append into a full spool returned %v without waiting", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("blocked Append after Ack = %v", err)
	}
	// Close wakes a blocked appender.
	go func() {
		_, err := s.Append(context.Background(), make([]byte, 100))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Append after Close = %v, want ErrClosed", err)
	}
}

func TestMaxAge(t *testing.T) {
	clk := newClock()
	cfg := testConfig()
	cfg.MaxAge = 3 * time.Hour
	dir := t.TempDir()
	s := mustOpen(t, dir, cfg, Options{Now: clk.Now})
	mustAppend(t, s, []byte("old"))
	clk.Advance(2 * time.Hour)
	mustAppend(t, s, []byte("newer"))
	clk.Advance(2 * time.Hour) // "old" is 4h old, "newer" 2h
	recs := peekAll(t, s)
	if len(recs) != 1 || string(recs[0].Data) != "newer" {
		t.Fatalf("after 4h: %v", seqs(recs))
	}
	if got := s.Stats().Dropped[ReasonAge]; got != 1 {
		t.Fatalf("dropped for age: %d, want 1", got)
	}
	// Open applies the bound too.
	s.Close()
	clk.Advance(2 * time.Hour)
	s = mustOpen(t, dir, cfg, Options{Now: clk.Now})
	if st := s.Stats(); st.Records != 0 || st.Dropped[ReasonAge] != 1 {
		t.Fatalf("after reopening 6h later: %+v", st)
	}
	// Append applies it before checking for room.
	mustAppend(t, s, []byte("a"))
	clk.Advance(4 * time.Hour)
	mustAppend(t, s, []byte("b"))
	if st := s.Stats(); st.Records != 1 || st.Dropped[ReasonAge] != 2 {
		t.Fatalf("after Append: %+v", st)
	}
}

func TestWait(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testConfig(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an empty spool with a canceled context = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Wait on an empty spool returned %v", err)
	case <-time.After(10 * time.Millisecond):
	}
	mustAppend(t, s, []byte("x"))
	if err := <-done; err != nil {
		t.Fatalf("Wait after Append = %v", err)
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("Wait with a record stored = %v, want nil even with a canceled context", err)
	}
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Wait(context.Background()) }()
	time.Sleep(5 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close = %v, want ErrClosed", err)
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testConfig(), Options{})
	mustAppend(t, s, []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), []byte("y")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append = %v", err)
	}
	if _, err := s.Peek(1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Peek = %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack = %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync = %v", err)
	}
	if err := s.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestGroupCommit(t *testing.T) {
	t.Run("sync_records", func(t *testing.T) {
		cfg := testConfig()
		cfg.SyncRecords = 3
		s := mustOpen(t, t.TempDir(), cfg, Options{})
		mustAppend(t, s, []byte("1"))
		mustAppend(t, s, []byte("2"))
		if got := s.Stats().Unsynced; got != 2 {
			t.Fatalf("unsynced = %d, want 2 (the interval is an hour)", got)
		}
		mustAppend(t, s, []byte("3"))
		eventually(t, "the third record starts a commit", func() bool { return s.Stats().Unsynced == 0 })
	})
	t.Run("sync_interval", func(t *testing.T) {
		cfg := testConfig()
		cfg.SyncInterval = time.Millisecond
		s := mustOpen(t, t.TempDir(), cfg, Options{})
		mustAppend(t, s, []byte("1"))
		eventually(t, "the interval passes", func() bool { return s.Stats().Unsynced == 0 })
	})
	t.Run("Sync", func(t *testing.T) {
		s := mustOpen(t, t.TempDir(), testConfig(), Options{})
		mustAppend(t, s, []byte("1"))
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := s.Stats().Unsynced; got != 0 {
			t.Fatalf("unsynced after Sync = %d", got)
		}
	})
	t.Run("SyncEachAppend", func(t *testing.T) {
		s := mustOpen(t, t.TempDir(), testConfig(), Options{SyncEachAppend: true})
		for i := range 3 {
			mustAppend(t, s, []byte("x"))
			if got := s.Stats().Unsynced; got != 0 {
				t.Fatalf("unsynced after Append %d = %d", i, got)
			}
		}
	})
}

// TestConcurrent runs appenders and a sender at once (under -race, the point) and checks that
// the sender receives every record once, in order.
func TestConcurrent(t *testing.T) {
	const appenders, each = 8, 150
	cfg := testConfig()
	cfg.SegmentBytes = minSegmentBytes
	cfg.SyncRecords = 16
	cfg.SyncInterval = time.Millisecond
	// Hundreds of acks: real fsyncs would make the test's time the disk's.
	s := mustOpen(t, t.TempDir(), cfg, Options{FS: fastDisk{}})
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Append(context.Background(), []byte(fmt.Sprintf("%d/%d", a, i))); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	var last uint64
	for len(seen) < appenders*each {
		if err := s.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs, err := s.Peek(1+len(seen)%7, 512)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Seq <= last {
				t.Fatalf("record %d after %d", r.Seq, last)
			}
			last = r.Seq
			if seen[string(r.Data)] {
				t.Fatalf("record %q received twice", r.Data)
			}
			seen[string(r.Data)] = true
		}
		if err := s.Ack(last); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if st := s.Stats(); st.Records != 0 || st.Segments > 2 {
		t.Fatalf("after sending everything: %+v", st)
	}
}

func TestMetrics(t *testing.T) {
	clk := newClock()
	reg := prometheus.NewPedanticRegistry()
	cfg := testConfig()
	cfg.MaxBytes = 3 * frameSize(10)
	cfg.MaxRecordBytes = 10
	s := mustOpen(t, t.TempDir(), cfg, Options{Registerer: reg, Now: clk.Now})
	for range 4 {
		mustAppend(t, s, make([]byte, 10))
		clk.Advance(time.Second)
	}
	clk.Advance(6 * time.Second) // the oldest kept record, the second, is 8s old
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, make([]byte, 5)) // drops another; unsynced
	want := `
# HELP edgeloop_spool_bytes Bytes of the unacked records in the spool, framing included (what max_bytes bounds).
# TYPE edgeloop_spool_bytes gauge
edgeloop_spool_bytes 109
# HELP edgeloop_spool_corrupt_records_total Damaged records skipped: stretches of bad bytes found by recovery, records failing their CRC when read, unreadable files.
# TYPE edgeloop_spool_corrupt_records_total counter
edgeloop_spool_corrupt_records_total 0
# HELP edgeloop_spool_dropped_records_total Records dropped unsent, by reason: full (oldest dropped for room), full_newest (refused when full), age (older than max_age).
# TYPE edgeloop_spool_dropped_records_total counter
edgeloop_spool_dropped_records_total{reason="age"} 0
edgeloop_spool_dropped_records_total{reason="full"} 2
edgeloop_spool_dropped_records_total{reason="full_newest"} 0
# HELP edgeloop_spool_oldest_record_age_seconds Age of the oldest unacked record; 0 when the spool is empty.
# TYPE edgeloop_spool_oldest_record_age_seconds gauge
edgeloop_spool_oldest_record_age_seconds 8
# HELP edgeloop_spool_paused 1 while appends fail on disk errors (a full disk, I/O errors), else 0.
# TYPE edgeloop_spool_paused gauge
edgeloop_spool_paused 0
# HELP edgeloop_spool_records Unacked records in the spool.
# TYPE edgeloop_spool_records gauge
edgeloop_spool_records 3
# HELP edgeloop_spool_segments Segment files the spool holds.
# TYPE edgeloop_spool_segments gauge
edgeloop_spool_segments 1
# HELP edgeloop_spool_unsynced_records Records written but not yet fsynced: what a power cut would lose now.
# TYPE edgeloop_spool_unsynced_records gauge
edgeloop_spool_unsynced_records 1
`
	names := []string{"edgeloop_spool_bytes", "edgeloop_spool_corrupt_records_total", "edgeloop_spool_dropped_records_total",
		"edgeloop_spool_oldest_record_age_seconds", "edgeloop_spool_paused", "edgeloop_spool_records", "edgeloop_spool_segments",
		"edgeloop_spool_unsynced_records"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "edgeloop_spool_fsync_duration_seconds"); err != nil || n != 1 {
		t.Fatalf("fsync histogram: %d series, %v", n, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	// Close unregisters, so the spool can be opened again on the same registry.
	dir := s.dir
	s.Close()
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Fatalf("%d series left after Close", n)
	}
	s2 := mustOpen(t, dir, cfg, Options{Registerer: reg, Now: clk.Now})
	if _, err := Open(t.TempDir(), cfg, Options{Registerer: reg}); err == nil {
		t.Fatal("a second spool registered the same metrics")
	}
	s2.Close()
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "spool")} {
		if s, err := Open(dir, testConfig(), Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dir)
		}
	}
	dir := filepath.Join(t.TempDir(), "new", "spool")
	s := mustOpen(t, dir, testConfig(), Options{})
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("created %v, %v; want mode 0700", info, err)
	}
	s.Close()
}

// TestPeekAfter reads on from a sequence number while the records before it stay unacked, as
// the collector's shard builder does.
func TestPeekAfter(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testConfig(), Options{})
	for i := range 10 {
		if _, err := s.Append(context.Background(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		after     uint64
		max       int
		wantFirst uint64
		wantN     int
	}{{0, 100, 1, 10}, {3, 2, 4, 2}, {9, 100, 10, 1}, {10, 100, 0, 0}, {500, 1, 0, 0}} {
		recs, err := s.PeekAfter(tc.after, tc.max, 0)
		if err != nil || len(recs) != tc.wantN || (tc.wantN > 0 && recs[0].Seq != tc.wantFirst) {
			t.Fatalf("PeekAfter(%d, %d): %d records %v, want %d from %d", tc.after, tc.max, len(recs), err, tc.wantN, tc.wantFirst)
		}
	}
	if err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.PeekAfter(2, 100, 0); len(recs) != 5 || recs[0].Seq != 6 {
		t.Fatalf("after an ack: %d records from %d", len(recs), recs[0].Seq)
	}
}
