package spool

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// pausedGauge reads edgeloop_spool_paused from reg.
func pausedGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "edgeloop_spool_paused" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no edgeloop_spool_paused")
	return 0
}

func TestDiskFull(t *testing.T) {
	tests := []struct {
		name string
		// fail sets what fails while the disk is full.
		fail        func(d *faultyDisk)
		segmentSize int64
		// wantCorrupt is what reopening counts: a torn write that could not be cut off
		// stays at the end of its segment until Open cuts it.
		wantCorrupt uint64
		// gaps: a segment retired before its first record took the number in its name.
		gaps bool
	}{
		{name: "write fails, truncation undoes it", fail: func(d *faultyDisk) { d.failWrites = true }},
		{name: "write and truncation fail", fail: func(d *faultyDisk) { d.failWrites, d.failTruncate = true, true }, wantCorrupt: 2, gaps: true},
		{name: "new segment cannot be created", fail: func(d *faultyDisk) { d.failCreate = true }, segmentSize: minSegmentBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := &faultyDisk{}
			reg := prometheus.NewRegistry()
			cfg := testConfig()
			if tt.segmentSize > 0 {
				cfg.SegmentBytes = tt.segmentSize
			}
			s := mustOpen(t, dir, cfg, Options{Registerer: reg, FS: disk})
			var want [][]byte
			var wantSeqs []uint64
			add := func(i int) {
				t.Helper()
				d := payload(uint64(i), 3000) // with 4 KiB segments, one a segment
				seq := mustAppend(t, s, d)
				if n := uint64(len(want) + 1); seq != n && !(tt.gaps && seq > n) {
					t.Fatalf("record %d numbered %d", n, seq)
				}
				want = append(want, d)
				wantSeqs = append(wantSeqs, seq)
			}
			for i := range 3 {
				add(i)
			}

			disk.set(tt.fail)
			for range 2 {
				_, err := s.Append(context.Background(), payload(99, 3000))
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Append on a full disk = %v, want ErrUnavailable wrapping ENOSPC", err)
				}
			}
			if st := s.Stats(); !st.Paused || st.Records != 3 {
				t.Fatalf("Stats on a full disk = %+v, want paused with 3 records", st)
			}
			if g := pausedGauge(t, reg); g != 1 {
				t.Fatalf("edgeloop_spool_paused = %g, want 1", g)
			}
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync with nothing new to write = %v", err)
			}

			disk.set(func(d *faultyDisk) {
				d.failWrites, d.failTruncate, d.failCreate, d.failPosition = false, false, false, false
			})
			for i := 3; i < 6; i++ {
				add(i)
			}
			if st := s.Stats(); st.Paused || st.Records != 6 {
				t.Fatalf("Stats once space returned = %+v, want 6 records, not paused", st)
			}
			if g := pausedGauge(t, reg); g != 0 {
				t.Fatalf("edgeloop_spool_paused = %g, want 0", g)
			}
			check := func(s *Spool) {
				t.Helper()
				recs := peekAll(t, s)
				if len(recs) != len(want) {
					t.Fatalf("%d records, want %d", len(recs), len(want))
				}
				for i, r := range recs {
					if r.Seq != wantSeqs[i] || !bytes.Equal(r.Data, want[i]) {
						t.Fatalf("record %d: seq %d, data equal %v", i+1, r.Seq, bytes.Equal(r.Data, want[i]))
					}
				}
			}
			check(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, cfg, Options{})
			check(s)
			if got := s.Stats().Corrupt; got != tt.wantCorrupt {
				t.Fatalf("reopened: corrupt = %d, want %d", got, tt.wantCorrupt)
			}
		})
	}
}

// TestOpenOnFullDisk: a full disk does not keep the spool from opening; it opens paused.
func TestOpenOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	writeRecords(t, dir, 2)
	disk := &faultyDisk{failCreate: true}
	s := mustOpen(t, dir, testConfig(), Options{FS: disk})
	if st := s.Stats(); !st.Paused || st.Records != 2 {
		t.Fatalf("Stats = %+v, want paused with the 2 records", st)
	}
	if recs := peekAll(t, s); len(recs) != 2 {
		t.Fatalf("Peek while paused: %d records", len(recs))
	}
	if _, err := s.Append(context.Background(), []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append = %v, want ErrUnavailable", err)
	}
	disk.set(func(d *faultyDisk) { d.failCreate = false })
	if seq := mustAppend(t, s, []byte("x")); seq != 3 {
		t.Fatalf("first record after space returned numbered %d", seq)
	}
	if s.Stats().Paused {
		t.Fatal("still paused")
	}
}

// TestAckOnFullDisk: where the position file cannot be replaced for lack of space, an ack
// overwrites it in place, so that acks can still free space; where that fails too, Ack is an
// error, and acking again once space returns persists it.
func TestAckOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	disk := &faultyDisk{}
	cfg := testConfig()
	cfg.SegmentBytes = minSegmentBytes
	s := mustOpen(t, dir, cfg, Options{FS: disk})
	for i := range 9 {
		mustAppend(t, s, payload(uint64(i), 3000)) // a segment each
	}
	disk.set(func(d *faultyDisk) { d.failPosition = true })
	if err := s.Ack(4); err != nil {
		t.Fatalf("Ack on a full disk = %v, want success by overwriting in place", err)
	}
	if files := segmentFiles(t, dir); len(files) != 5 {
		t.Fatalf("%d segments after acking 4 of 9, want 5", len(files))
	}
	disk.set(func(d *faultyDisk) { d.failWrites = true })
	if err := s.Ack(6); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ack where nothing can be written = %v, want ErrUnavailable", err)
	}
	disk.set(func(d *faultyDisk) { d.failPosition, d.failWrites = false, false })
	if err := s.Ack(6); err != nil {
		t.Fatalf("Ack again = %v", err)
	}
	s.Close()
	s = mustOpen(t, dir, cfg, Options{})
	if recs := peekAll(t, s); !equalSeqs(seqs(recs), []uint64{7, 8, 9}) || s.Stats().Corrupt != 0 {
		t.Fatalf("after reopening: %v, corrupt %d; want [7 8 9], 0", seqs(recs), s.Stats().Corrupt)
	}
}
