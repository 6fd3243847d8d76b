package shard

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeloop/edgeloop/internal/fsutil"
)

// journal lists the shards uploaded whose records are not all acked in the write-ahead log
// yet: after a crash, the builder skips their records instead of putting them in a second
// shard under another name. One line per shard: its name's first sequence number, then its
// records' sequence numbers as runs "a-b" or single numbers. It is rewritten whole (atomically)
// after each upload; it stays small because acks prune it.
type journal struct {
	fs     fsutil.FS
	path   string
	shards map[uint64][]uint64 // first seq → the shard's seqs, ascending
}

func loadJournal(fsys fsutil.FS, path string) (*journal, error) {
	j := &journal{fs: fsys, path: path, shards: map[uint64][]uint64{}}
	data, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shard: journal: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			return nil, fmt.Errorf("shard: journal %s: line %d: want a first sequence number and runs", path, n)
		}
		first, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("shard: journal %s: line %d: %w", path, n, err)
		}
		var seqs []uint64
		for _, run := range fields[1:] {
			a, b, isRun := strings.Cut(run, "-")
			lo, err1 := strconv.ParseUint(a, 10, 64)
			hi := lo
			var err2 error
			if isRun {
				hi, err2 = strconv.ParseUint(b, 10, 64)
			}
			if err1 != nil || err2 != nil || hi < lo || hi-lo > 1<<24 {
				return nil, fmt.Errorf("shard: journal %s: line %d: bad run %q", path, n, run)
			}
			for s := lo; s <= hi; s++ {
				seqs = append(seqs, s)
			}
		}
		j.shards[first] = seqs
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("shard: journal %s: %w", path, err)
	}
	return j, nil
}

// skipSet returns every sequence number the journal holds.
func (j *journal) skipSet() map[uint64]bool {
	set := map[uint64]bool{}
	for _, seqs := range j.shards {
		for _, s := range seqs {
			set[s] = true
		}
	}
	return set
}

// add records an uploaded shard and prunes the shards wholly at or below acked, then writes
// the journal durably.
func (j *journal) add(first uint64, seqs []uint64, acked uint64) error {
	if len(seqs) > 0 {
		j.shards[first] = seqs
	}
	return j.prune(acked)
}

// prune forgets the shards wholly at or below acked and rewrites the file.
func (j *journal) prune(acked uint64) error {
	for first, seqs := range j.shards {
		if len(seqs) == 0 || seqs[len(seqs)-1] <= acked {
			delete(j.shards, first)
		}
	}
	firsts := make([]uint64, 0, len(j.shards))
	for f := range j.shards {
		firsts = append(firsts, f)
	}
	slices.Sort(firsts)
	var b bytes.Buffer
	for _, f := range firsts {
		b.WriteString(strconv.FormatUint(f, 10))
		seqs := j.shards[f]
		for i := 0; i < len(seqs); {
			k := i
			for k+1 < len(seqs) && seqs[k+1] == seqs[k]+1 {
				k++
			}
			b.WriteByte(' ')
			b.WriteString(strconv.FormatUint(seqs[i], 10))
			if k > i {
				b.WriteByte('-')
				b.WriteString(strconv.FormatUint(seqs[k], 10))
			}
			i = k + 1
		}
		b.WriteByte('\n')
	}
	if err := j.fs.WriteFileAtomic(j.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("shard: journal: %w", err)
	}
	return nil
}
