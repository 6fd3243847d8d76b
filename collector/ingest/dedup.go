package ingest

import (
	"context"
	"encoding/hex"
	"sync"
)

// keyBytes is a sample key as 16 bytes: half the memory of its hex form in the set.
type keyBytes [16]byte

func parseKey(k string) (keyBytes, bool) {
	var b keyBytes
	if len(k) != 32 {
		return b, false
	}
	_, err := hex.Decode(b[:], []byte(k))
	return b, err == nil
}

// slot is a key's state: stored once its record is in the write-ahead log; while a request
// is appending it, done is open and other requests with the same key wait for the outcome.
type slot struct {
	done   chan struct{}
	stored bool
}

// storedSlot is the state of every stored key: one shared value rather than a slot and a
// closed channel per key, about 100 bytes less for each of the up to ingest.dedup_keys keys.
var storedSlot = func() *slot {
	s := &slot{done: make(chan struct{}), stored: true}
	close(s.done)
	return s
}()

// Dedup remembers the keys stored recently, in the write-ahead log or in an uploaded shard,
// up to a bound: the oldest are forgotten first. It answers "already stored" for a resend of
// a batch whose answer was lost, which is the common duplicate; with SetKnown it also asks
// the catalog, so a resend older than the window, or arriving after a restart, is a duplicate
// once the catalog knows its shard.
// Dedup is safe for concurrent use.
type Dedup struct {
	mu    sync.Mutex
	slots map[keyBytes]*slot
	ring  []keyBytes // stored keys, oldest at next when full
	next  int
	full  bool
	// known, when set, says whether a key is in an uploaded shard (SetKnown).
	known func(key string) (bool, error)
}

// NewDedup returns a set remembering up to size keys (at least 1).
func NewDedup(size int) *Dedup {
	size = max(size, 1)
	return &Dedup{slots: make(map[keyBytes]*slot, min(size, 1<<16)), ring: make([]keyBytes, size)}
}

// Seed records key as stored, as the keys found in the write-ahead log at start.
func (d *Dedup) Seed(key string) {
	k, ok := parseKey(key)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.slots[k]; ok {
		return
	}
	d.insertLocked(k, storedSlot)
}

// SetKnown gives the set a second memory: known reports whether a key is already in an
// uploaded shard (the collector passes its catalog). After a restart the set holds only the
// keys still in the write-ahead log, so without it a resend of a batch whose answer a crash
// or a network fault cut off, arriving once its shard was uploaded, was stored again in a
// second shard (found by the chaos soak, bench/chaos). known returns an error while it
// cannot tell (the catalog has not read the bucket yet since the start): Reserve returns
// it, and the batch is answered 503 and sent again, rather than stored a second time.
func (d *Dedup) SetKnown(known func(key string) (bool, error)) {
	d.mu.Lock()
	d.known = known
	d.mu.Unlock()
}

// Len is the number of keys remembered.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.slots)
}

func (d *Dedup) insertLocked(k keyBytes, s *slot) {
	if d.full {
		old := d.ring[d.next]
		if os, ok := d.slots[old]; ok && os.stored {
			delete(d.slots, old)
		}
	}
	d.slots[k] = s
	d.ring[d.next] = k
	d.next++
	if d.next == len(d.ring) {
		d.next, d.full = 0, true
	}
}

// Claim is a reservation of a key that Reserve made: the caller appends the sample and then
// calls Done with whether it was stored.
type Claim struct {
	d *Dedup
	k keyBytes
	s *slot
}

// Reserve returns a Claim on key when it is not stored yet, or nil when it is (a duplicate).
// When another request is storing the same key right now, Reserve waits for its outcome, so
// that two concurrent resends cannot both store the sample nor both call it a duplicate of a
// write that then fails. The error is ctx's, or SetKnown's function's when it cannot tell.
func (d *Dedup) Reserve(ctx context.Context, key string) (*Claim, error) {
	k, ok := parseKey(key)
	if !ok {
		return &Claim{}, nil // not a key ReadTar returns; nothing to remember
	}
	d.mu.Lock()
	known := d.known
	d.mu.Unlock()
	if known != nil {
		stored, err := known(key)
		if err != nil {
			return nil, err
		}
		if stored {
			return nil, nil
		}
	}
	for {
		d.mu.Lock()
		s, ok := d.slots[k]
		if !ok {
			s = &slot{done: make(chan struct{})}
			d.slots[k] = s // in the ring only once stored
			d.mu.Unlock()
			return &Claim{d: d, k: k, s: s}, nil
		}
		d.mu.Unlock()
		select {
		case <-s.done:
			if s.stored {
				return nil, nil
			}
			// The other request failed and released the key: try again.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Done ends the claim: stored keys are remembered, others released for a later try.
func (c *Claim) Done(stored bool) {
	if c == nil || c.d == nil {
		return
	}
	d := c.d
	d.mu.Lock()
	c.s.stored = stored
	if stored {
		delete(d.slots, c.k) // insertLocked puts it back with its place in the ring
		d.insertLocked(c.k, storedSlot)
	} else if d.slots[c.k] == c.s {
		delete(d.slots, c.k)
	}
	d.mu.Unlock()
	close(c.s.done)
	c.d = nil
}
