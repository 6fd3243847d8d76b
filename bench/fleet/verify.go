package main

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/edgeloop/edgeloop/internal/objstore"
)

// Conservation is the check that every acknowledged sample is stored exactly once.
type Conservation struct {
	// Method is how shards were read: "tar" (each shard's tar, every record's metadata
	// entry) or "index" (each shard's index.jsonl); "none" skips the check.
	Method string `json:"method"`
	Shards int    `json:"shards"`
	// Acknowledged are distinct samples the senders saw acknowledged.
	Acknowledged int `json:"acknowledged"`
	// Stored are distinct samples found in shards.
	Stored int `json:"stored"`
	// Lost: acknowledged, in no shard. Twice: in more than one shard record.
	Lost  int `json:"lost"`
	Twice int `json:"twice"`
	// StoredUnacked: in a shard, never acknowledged (a batch whose answer was lost; 0 when
	// every sender drained).
	StoredUnacked int  `json:"stored_unacknowledged"`
	Pass          bool `json:"pass"`
}

// verify reads every shard under samples/ and counts each acknowledged key's records.
func verify(ctx context.Context, b objstore.Bucket, method string, acked map[uint64]struct{}) (Conservation, error) {
	c := Conservation{Method: method, Acknowledged: len(acked)}
	if method == "none" {
		return c, nil
	}
	suffix := ".tar"
	if method == "index" {
		suffix = ".index.jsonl"
	}
	seen := make(map[uint64]uint16, len(acked))
	err := b.Iter(ctx, "samples/", true, func(key string) error {
		if !strings.HasSuffix(key, suffix) || (suffix == ".tar" && strings.HasSuffix(key, ".index.jsonl")) {
			return nil
		}
		c.Shards++
		rc, _, err := b.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("fleet: read %s: %w", key, err)
		}
		defer rc.Close()
		add := func(k string) { seen[keyID(k)]++ }
		if method == "index" {
			err = indexKeys(rc, add)
		} else {
			err = tarKeys(rc, add)
		}
		if err != nil {
			return fmt.Errorf("fleet: %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return c, err
	}
	c.Stored = len(seen)
	for k := range acked {
		if seen[k] == 0 {
			c.Lost++
		}
	}
	for k, n := range seen {
		if n > 1 {
			c.Twice++
		}
		if _, ok := acked[k]; !ok {
			c.StoredUnacked++
		}
	}
	c.Pass = c.Lost == 0 && c.Twice == 0
	return c, nil
}

// tarKeys calls add with the key of every sample record in a shard tar: one <key>.json entry
// each (docs/wire-format.md).
func tarKeys(r io.Reader, add func(string)) error {
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if k, ok := strings.CutSuffix(h.Name, ".json"); ok {
			add(k)
		}
	}
}

// indexKeys calls add with the key of every line of a shard's index.jsonl.
func indexKeys(r io.Reader, add func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var line struct {
			Key string `json:"key"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return err
		}
		if line.Key == "" {
			return errors.New("index line without a key")
		}
		add(line.Key)
	}
	return sc.Err()
}
