package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// modelRec is one record of the model queue.
type modelRec struct {
	seq     uint64
	data    []byte
	dropped bool // dropped for room: gone, unless a crash brings it back
}

// model is the spool's specification: an in-memory FIFO with the same bounds.
type model struct {
	cfg   Config
	recs  []modelRec // not acked, in order
	acked uint64     // every seq up to it is acked
	last  uint64     // Append's numbers must exceed it
}

func (m *model) live() []modelRec {
	var out []modelRec
	for _, r := range m.recs {
		if !r.dropped {
			out = append(out, r)
		}
	}
	return out
}

func (m *model) bytes() int64 {
	var n int64
	for _, r := range m.live() {
		n += frameSize(len(r.data))
	}
	return n
}

// fits applies the full policy to a record of n bytes: false when Append must refuse it.
func (m *model) fits(n int) bool {
	need := frameSize(n)
	if m.bytes()+need <= m.cfg.MaxBytes {
		return true
	}
	if m.cfg.FullPolicy == PolicyDropNewest {
		return false
	}
	for i := range m.recs {
		if m.bytes()+need <= m.cfg.MaxBytes {
			break
		}
		m.recs[i].dropped = true
	}
	return true
}

func (m *model) ack(through uint64) {
	i := 0
	for i < len(m.recs) && m.recs[i].seq <= through {
		i++
	}
	m.recs = m.recs[i:]
	m.acked = max(m.acked, through)
}

// peek is what Peek(max, maxBytes) must return.
func (m *model) peek(max int, maxBytes int64) []modelRec {
	var out []modelRec
	var total int64
	for _, r := range m.live() {
		if len(out) == max || (len(out) > 0 && maxBytes > 0 && total+int64(len(r.data)) > maxBytes) {
			break
		}
		total += int64(len(r.data))
		out = append(out, r)
	}
	return out
}

// TestModel runs random operations against the spool and the model, crashes included, and
// checks after each that they agree. A failing run names its seed: rerun it alone with
// -run 'TestModel/seed=N$'.
func TestModel(t *testing.T) {
	runs, ops := 200, 200
	if testing.Short() {
		runs = 30
	}
	base := uint64(1)
	if v := os.Getenv("SPOOL_MODEL_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		base, runs = n, 1
	}
	for i := range uint64(runs) {
		seed := base + i
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, ops)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := testConfig()
	cfg.MaxBytes = int64(8+rng.IntN(56)) << 10
	cfg.SegmentBytes = minSegmentBytes << rng.IntN(3)
	cfg.SyncRecords = 1 + rng.IntN(40) // the background commit runs when it likes; crashCopy sees what it did
	cfg.MaxRecordBytes = 3000
	if rng.IntN(3) == 0 {
		cfg.FullPolicy = PolicyDropNewest
	}
	opts := Options{FS: fastDisk{}}
	root := t.TempDir()
	gen := 0
	dir := filepath.Join(root, "0")
	s, err := Open(dir, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	m := &model{cfg: cfg}
	var log []string // the operations so far, printed on failure
	damaged := false // a torn crash left damage that later Opens count again
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, after %v: %s", seed, log, fmt.Sprintf(format, args...))
	}
	// reopen replaces s with a spool opened on dir and checks what came back.
	reopen := func(kind string, crash crashKind, next string) {
		t.Helper()
		var synced uint64
		if kind == "close" {
			if err := s.Close(); err != nil {
				fail("Close: %v", err)
			}
			next = dir
		} else {
			synced = crashCopy(t, s, next, crash, rng)
			s.Close()
		}
		dir = next
		if s, err = Open(dir, cfg, opts); err != nil {
			fail("Open after %s: %v", kind, err)
		}
		got := peekAll(t, s)
		st := s.Stats()
		switch {
		case kind == "crash" && crash == powerCutTorn:
			// A byte damaged between two whole records stays until acks delete its
			// segment, and is counted again at each Open.
			damaged = damaged || st.Corrupt > 0
		case st.Corrupt != 0 && !damaged:
			fail("%s: %d corrupt records, want 0", kind, st.Corrupt)
		}
		// Every surviving record must be one the model holds, in order, once.
		j := 0
		for _, g := range got {
			for j < len(m.recs) && m.recs[j].seq < g.Seq {
				r := m.recs[j]
				switch {
				case r.dropped:
				case kind == "close" || crash == killed:
					fail("%s lost record %d", kind, r.seq)
				case r.seq <= synced:
					fail("%s lost record %d, synced through %d", kind, r.seq, synced)
				}
				j++
			}
			if j == len(m.recs) || m.recs[j].seq != g.Seq {
				fail("%s brought back record %d, which the model does not hold (acked through %d)", kind, g.Seq, m.acked)
			}
			if !bytes.Equal(m.recs[j].data, g.Data) {
				fail("%s: record %d's data changed", kind, g.Seq)
			}
			if m.recs[j].dropped && kind == "close" {
				fail("close brought back the dropped record %d", g.Seq)
			}
			j++
		}
		for _, r := range m.recs[j:] {
			if !r.dropped && (kind == "close" || crash == killed || r.seq <= synced) {
				fail("%s lost record %d (synced through %d)", kind, r.seq, synced)
			}
		}
		// The survivors are the model now: lost ones are gone, dropped ones may be back.
		m.recs = m.recs[:0]
		if kind == "crash" && crash != killed {
			// Numbers of records lost with the power may be given out again; numbers of
			// records that survived or were acked never are.
			m.last = m.acked
		}
		for _, g := range got {
			m.recs = append(m.recs, modelRec{seq: g.Seq, data: g.Data})
			m.last = max(m.last, g.Seq)
		}
	}

	for op := range ops {
		switch p := rng.IntN(100); {
		case p < 10:
			// A batch: stored in order until the first record that does not fit.
			k := 1 + rng.IntN(6)
			batch := make([][]byte, k)
			want := 0
			fits := true
			probe := *m
			probe.recs = append([]modelRec(nil), m.recs...)
			for i := range batch {
				n := rng.IntN(int(cfg.MaxRecordBytes)/2 + 1)
				batch[i] = payload(seed<<20|uint64(op)<<4|uint64(i), n)
				if fits && probe.fits(n) {
					probe.recs = append(probe.recs, modelRec{data: batch[i]})
					want++
				} else {
					fits = false
				}
			}
			log = append(log, fmt.Sprintf("appendBatch(%d)", k))
			seqs, err := s.AppendBatch(context.Background(), batch)
			if len(seqs) != want || (want < k) != errors.Is(err, ErrFull) || (want == k && err != nil) {
				fail("AppendBatch(%d) = %d stored, %v; want %d stored", k, len(seqs), err, want)
			}
			for i, seq := range seqs {
				m.fits(len(batch[i])) // drops, under drop_oldest, what the spool dropped for it
				if seq <= m.last {
					fail("AppendBatch numbered %d, not above %d", seq, m.last)
				}
				m.last = seq
				m.recs = append(m.recs, modelRec{seq: seq, data: batch[i]})
			}
		case p < 45:
			n := rng.IntN(int(cfg.MaxRecordBytes) + 1)
			if rng.IntN(10) == 0 {
				n = rng.IntN(16)
			}
			data := payload(seed<<20|uint64(op), n)
			log = append(log, fmt.Sprintf("append(%d)", n))
			want := m.fits(n)
			seq, err := s.Append(context.Background(), data)
			if !want {
				if !errors.Is(err, ErrFull) {
					fail("Append = %d, %v; want ErrFull", seq, err)
				}
				break
			}
			if err != nil {
				fail("Append: %v", err)
			}
			if seq <= m.last {
				fail("Append numbered %d, not above %d", seq, m.last)
			}
			m.last = seq
			m.recs = append(m.recs, modelRec{seq: seq, data: data})
		case p < 65:
			n, maxBytes := 1+rng.IntN(8), int64(rng.IntN(9000))
			log = append(log, fmt.Sprintf("peek(%d,%d)", n, maxBytes))
			got, err := s.Peek(n, maxBytes)
			if err != nil {
				fail("Peek: %v", err)
			}
			want := m.peek(n, maxBytes)
			if len(got) != len(want) {
				fail("Peek returned %d records, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].Seq != want[i].seq || !bytes.Equal(got[i].Data, want[i].data) {
					fail("Peek[%d] = seq %d (%d bytes), want %d (%d bytes)", i, got[i].Seq, len(got[i].Data), want[i].seq, len(want[i].data))
				}
			}
		case p < 82:
			live := m.live()
			var through uint64
			wantErr := false
			switch q := rng.IntN(10); {
			case q == 0:
				s.mu.Lock()
				through, wantErr = s.nextSeq+uint64(rng.IntN(5)), true
				s.mu.Unlock()
			case q == 1 || len(live) == 0:
				through = uint64(rng.Int64N(int64(m.acked) + 1)) // already acked: a no-op
			default:
				through = live[rng.IntN(min(len(live), 6))].seq
			}
			log = append(log, fmt.Sprintf("ack(%d)", through))
			err := s.Ack(through)
			if wantErr {
				if err == nil {
					fail("Ack(%d) beyond the newest record succeeded", through)
				}
				break
			}
			if err != nil {
				fail("Ack(%d): %v", through, err)
			}
			m.ack(through)
		case p < 90:
			log = append(log, "sync")
			if err := s.Sync(); err != nil {
				fail("Sync: %v", err)
			}
		case p < 94:
			log = append(log, "close+open")
			reopen("close", 0, "")
		default:
			crash := crashKind(rng.IntN(3))
			log = append(log, fmt.Sprintf("crash(%d)", crash))
			gen++
			reopen("crash", crash, filepath.Join(root, strconv.Itoa(gen)))
		}
		st := s.Stats()
		if st.Records != len(m.live()) || st.Bytes != m.bytes() {
			fail("Stats: %d records, %d bytes; model: %d, %d", st.Records, st.Bytes, len(m.live()), m.bytes())
		}
		if st.Bytes > cfg.MaxBytes {
			fail("holding %d bytes, above max_bytes %d", st.Bytes, cfg.MaxBytes)
		}
	}
	// Acking everything leaves at most the segment being written, plus any emptied one a
	// concurrent background commit has not yet deleted.
	if err := s.Ack(m.last); err != nil && m.last > 0 {
		t.Fatalf("seed %d: final Ack(%d): %v", seed, m.last, err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if files := segmentFiles(t, dir); len(files) > 2 {
		t.Fatalf("seed %d: %d segment files left after acking everything: %v", seed, len(files), files)
	}
}
