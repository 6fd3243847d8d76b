package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// recSize is the data size of the records the corruption tests write; frames are then
// recFrame bytes apart, so record k (from 1) starts at (k-1)*recFrame.
const (
	recSize  = 200
	recFrame = headerSize + recSize
)

// writeRecords stores n records in a new spool in dir and closes it; they land in one
// segment, whose path it returns.
func writeRecords(t *testing.T, dir string, n int) string {
	t.Helper()
	s, err := Open(dir, testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustAppend(t, s, payload(uint64(i+1), recSize))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d segments, want 1", len(files))
	}
	return files[0]
}

// editFile applies f to the file's bytes.
func editFile(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverDamage(t *testing.T) {
	tests := []struct {
		name        string
		acked       bool // records 1 and 2 were acked: a position file says so
		damage      func(t *testing.T, dir, seg string)
		want        []uint64
		wantCorrupt uint64
		// wantCorruptAgain is what a second Open counts: torn tails are cut off, so
		// they are counted once; damage between records stays.
		wantCorruptAgain uint64
	}{
		{
			name:   "intact",
			damage: func(*testing.T, string, string) {},
			want:   []uint64{1, 2, 3, 4, 5},
		},
		{
			name: "flipped bit in the middle record's data",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { b[2*recFrame+headerSize+50] ^= 0x10; return b })
			},
			want: []uint64{1, 2, 4, 5}, wantCorrupt: 1, wantCorruptAgain: 1,
		},
		{
			name: "flipped bit in the middle record's length",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { b[2*recFrame+5] ^= 0x01; return b })
			},
			want: []uint64{1, 2, 4, 5}, wantCorrupt: 1, wantCorruptAgain: 1,
		},
		{
			name: "flipped bits in two records",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { b[1*recFrame+9] ^= 0x80; b[3*recFrame+100] ^= 1; return b })
			},
			want: []uint64{1, 3, 5}, wantCorrupt: 2, wantCorruptAgain: 2,
		},
		{
			name: "torn last record",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { return b[:4*recFrame+recFrame/2] })
			},
			want: []uint64{1, 2, 3, 4}, wantCorrupt: 1,
		},
		{
			name: "torn inside the last header",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { return b[:4*recFrame+10] })
			},
			want: []uint64{1, 2, 3, 4}, wantCorrupt: 1,
		},
		{
			name: "zeros after the last record",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			},
			want: []uint64{1, 2, 3, 4, 5}, wantCorrupt: 1,
		},
		{
			name: "every record damaged",
			damage: func(t *testing.T, _, seg string) {
				editFile(t, seg, func(b []byte) []byte {
					for k := range 5 {
						b[k*recFrame+headerSize] ^= 1
					}
					return b
				})
			},
			want: nil, wantCorrupt: 1,
		},
		{
			name: "garbage file in the directory",
			damage: func(t *testing.T, dir, _ string) {
				os.WriteFile(filepath.Join(dir, "notes.txt"), payload(7, 1000), 0o600)
			},
			want: []uint64{1, 2, 3, 4, 5},
		},
		{
			name: "garbage named like a segment",
			damage: func(t *testing.T, dir, _ string) {
				os.WriteFile(filepath.Join(dir, segmentName(100)), payload(7, 1000), 0o600)
			},
			want: []uint64{1, 2, 3, 4, 5}, wantCorrupt: 1,
		},
		{
			name: "zero-length segment",
			damage: func(t *testing.T, dir, _ string) {
				os.WriteFile(filepath.Join(dir, segmentName(50)), nil, 0o600)
			},
			want: []uint64{1, 2, 3, 4, 5},
		},
		{
			name: "directory named like a segment",
			damage: func(t *testing.T, dir, _ string) {
				os.Mkdir(filepath.Join(dir, segmentName(60)), 0o700)
			},
			want: []uint64{1, 2, 3, 4, 5}, wantCorrupt: 1,
		},
		{
			name: "truncated position file",
			damage: func(t *testing.T, dir, _ string) {
				editFile(t, filepath.Join(dir, positionName), func(b []byte) []byte { return b[:7] })
			},
			// Records 1 and 2 were acked; with the position lost they come back.
			acked: true,
			want:  []uint64{1, 2, 3, 4, 5}, wantCorrupt: 1,
		},
		{
			name: "flipped bit in the position file",
			damage: func(t *testing.T, dir, _ string) {
				editFile(t, filepath.Join(dir, positionName), func(b []byte) []byte { b[9] ^= 4; return b })
			},
			acked: true,
			want:  []uint64{1, 2, 3, 4, 5}, wantCorrupt: 1,
		},
		{
			name: "leftover temporary position file",
			damage: func(t *testing.T, dir, _ string) {
				os.WriteFile(filepath.Join(dir, ".tmp-position-123"), []byte("half"), 0o600)
			},
			acked: true,
			want:  []uint64{3, 4, 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			seg := writeRecords(t, dir, 5)
			if tt.acked {
				if err := os.WriteFile(filepath.Join(dir, positionName), encodePosition(3), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tt.damage(t, dir, seg)
			for round, wantCorrupt := range []uint64{tt.wantCorrupt, tt.wantCorruptAgain} {
				s, err := Open(dir, testConfig(), Options{})
				if err != nil {
					t.Fatalf("Open #%d: %v", round+1, err)
				}
				recs := peekAll(t, s)
				if got := seqs(recs); !equalSeqs(got, tt.want) {
					t.Errorf("Open #%d: recovered %v, want %v", round+1, got, tt.want)
				}
				for _, r := range recs {
					if !bytes.Equal(r.Data, payload(r.Seq, recSize)) {
						t.Errorf("record %d's data differs", r.Seq)
					}
				}
				if got := s.Stats().Corrupt; got != wantCorrupt {
					t.Errorf("Open #%d: corrupt = %d, want %d", round+1, got, wantCorrupt)
				}
				if round == 1 {
					// New records go on past everything seen.
					seq := mustAppend(t, s, []byte("new"))
					for _, r := range recs {
						if seq <= r.Seq {
							t.Errorf("new record numbered %d, not above %d", seq, r.Seq)
						}
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLeftoverAckedSegment is a crash between persisting the position and deleting the
// segments below it: Open finishes the deletion.
func TestLeftoverAckedSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = minSegmentBytes
	s := mustOpen(t, dir, cfg, Options{})
	for i := range 40 {
		mustAppend(t, s, payload(uint64(i+1), recSize))
	}
	before := map[string][]byte{}
	for _, f := range segmentFiles(t, dir) {
		b, _ := os.ReadFile(f)
		before[f] = b
	}
	if err := s.Ack(30); err != nil {
		t.Fatal(err)
	}
	s.Close()
	deleted := 0
	for f, b := range before {
		if _, err := os.Stat(f); os.IsNotExist(err) {
			deleted++
			os.WriteFile(f, b, 0o600) // the deletion "did not happen"
		}
	}
	if deleted == 0 {
		t.Fatal("acking 30 of 40 records deleted no segment")
	}
	s = mustOpen(t, dir, cfg, Options{})
	recs := peekAll(t, s)
	if len(recs) != 10 || recs[0].Seq != 31 || s.Stats().Corrupt != 0 {
		t.Fatalf("recovered %v, corrupt %d; want 31..40, none corrupt", seqs(recs), s.Stats().Corrupt)
	}
	// A segment holds the numbers up to the next one's first: wholly acked when that is
	// at most 31.
	var firsts []uint64
	for f := range before {
		first, _ := parseSegmentName(filepath.Base(f))
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	for i := 0; i+1 < len(firsts); i++ {
		if _, err := os.Stat(filepath.Join(dir, segmentName(firsts[i]))); firsts[i+1] <= 31 && err == nil {
			t.Errorf("Open left the wholly acked segment %d", firsts[i])
		}
	}
}

// TestPeekDetectsRot damages a record after it was written: Peek skips and counts it.
func TestPeekDetectsRot(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testConfig(), Options{})
	for i := range 3 {
		mustAppend(t, s, payload(uint64(i+1), recSize))
	}
	seg := segmentFiles(t, dir)[0]
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, recFrame+headerSize+3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recs, err := s.Peek(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSeqs(seqs(recs), []uint64{1}) {
		t.Fatalf("Peek(2) = %v, want [1] (2 is damaged)", seqs(recs))
	}
	recs = peekAll(t, s)
	if st := s.Stats(); !equalSeqs(seqs(recs), []uint64{1, 3}) || st.Corrupt != 1 || st.Records != 2 {
		t.Fatalf("then %v, %+v", seqs(recs), st)
	}
	// Only a damaged record left at the front: Peek moves past it.
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.Peek(1, 0); !equalSeqs(seqs(recs), []uint64{3}) {
		t.Fatalf("after Ack(1): %v", seqs(recs))
	}
}
