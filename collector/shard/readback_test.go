package shard

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// hidingLog is a real log that no longer returns one record: what a record damaged on disk
// after the builder first read it looks like (the log skips it as corrupt).
type hidingLog struct {
	*spool.Spool
	hide uint64
}

func (l *hidingLog) PeekAfter(after uint64, max int, maxBytes int64) ([]spool.Record, error) {
	recs, err := l.Spool.PeekAfter(after, max, maxBytes)
	return slices.DeleteFunc(recs, func(r spool.Record) bool { return r.Seq == l.hide }), err
}

// TestShardReadBack: a shard keeps its samples' index entries, not their records, and writes
// its tar from records read back from the log, passing over other shards' records; a record
// that can no longer be read back is left out of the shard (counted, logged), and the rest is
// uploaded.
func TestShardReadBack(t *testing.T) {
	ctx := context.Background()
	log, err := spool.Open(filepath.Join(t.TempDir(), "wal"), spool.DefaultConfig(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	bucket, err := objstore.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hiding := &hidingLog{Spool: log}
	cfg := DefaultConfig()
	cfg.UploadTimeout = 5 * time.Second
	bl, err := New(cfg, Options{Instance: "a-00000001", Bucket: bucket, Log: hiding, JournalPath: filepath.Join(t.TempDir(), "journal")})
	if err != nil {
		t.Fatal(err)
	}
	// Four samples in the log; the shard takes 1, 2 and 4 (3 is another shard's).
	var members []member
	var samples []*sample.Sample
	for i := range 4 {
		s := collectortest.Sample(t, "edge-a", i, 3000)
		rec, err := s.MarshalStored()
		if err != nil {
			t.Fatal(err)
		}
		seq, err := log.Append(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		st, err := sample.ParseStored(rec)
		if err != nil {
			t.Fatal(err)
		}
		line := bytes.Clone(st.IndexLine)
		m := newMember(seq, st)
		clear(rec) // the member must not hold the record's bytes: it outlives them
		if !bytes.Equal(m.indexLine, line) {
			t.Fatalf("member %d holds the record's bytes, cleared since", seq)
		}
		if i != 2 {
			members = append(members, m)
			samples = append(samples, s)
		}
	}
	upload := func(members []member, key string) []*sample.Sample {
		t.Helper()
		sh := &shard{group: groupKey{model: "fashion", version: "3", hour: 493000}, first: members[0].seq, members: members}
		bl.upload(ctx, sh)
		data, _, err := objstore.ReadAll(ctx, bucket, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, rejected, err := sample.ReadTar(bytes.NewReader(data), sample.Limits{})
		if err != nil || len(rejected) != 0 {
			t.Fatalf("the shard's tar: %v, %v", err, rejected)
		}
		if int64(len(data)) != storedTarSize(sh.members) {
			t.Errorf("tar of %d bytes, storedTarSize says %d", len(data), storedTarSize(sh.members))
		}
		return got
	}
	got := upload(slices.Clone(members), bl.key(&shard{group: groupKey{model: "fashion", version: "3", hour: 493000}, first: 1})+".tar")
	if len(got) != 3 || got[0].Meta.Key != samples[0].Meta.Key || got[2].Meta.Key != samples[2].Meta.Key || !bytes.Equal(got[1].Input, samples[1].Input) {
		t.Fatalf("shard of %d samples; want the 3 members, read back whole", len(got))
	}

	// The second member's record can no longer be read: the shard goes without it.
	hiding.hide = members[1].seq
	key := bl.key(&shard{group: groupKey{model: "fashion", version: "3", hour: 493000}, first: members[0].seq}) + ".tar"
	if err := bucket.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	got = upload(slices.Clone(members), key)
	if len(got) != 2 || got[0].Meta.Key != samples[0].Meta.Key || got[1].Meta.Key != samples[2].Meta.Key {
		t.Fatalf("shard of %d samples; want the 2 members still in the log", len(got))
	}
	if n := testutil.ToFloat64(bl.m.lost); n != 1 {
		t.Errorf("lost records %v, want 1", n)
	}
	index, _, err := objstore.ReadAll(ctx, bucket, key[:len(key)-len(".tar")]+".index.jsonl", 0)
	if err != nil || bytes.Count(index, []byte("\n")) != 2 {
		t.Errorf("index %q, %v; want 2 lines", index, err)
	}
	var lost *lostRecordError
	if err := bl.readBack(members, func(*member, []byte, []byte) error { return nil }); !errors.As(err, &lost) || lost.seq != members[1].seq {
		t.Errorf("readBack = %v, want the hidden record lost", err)
	}

	// A shard whose every record is lost uploads nothing, and does not retry for ever.
	only := &shard{group: groupKey{model: "fashion", version: "3", hour: 493000}, first: members[1].seq, members: slices.Clone(members[1:2])}
	bl.upload(ctx, only)
	if ok, _ := bucket.Exists(ctx, bl.key(only)+".tar"); ok {
		t.Error("a shard with no sample left was uploaded")
	}
	if n := testutil.ToFloat64(bl.m.lost); n != 2 {
		t.Errorf("lost records %v, want 2", n)
	}
}
