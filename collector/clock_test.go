package collector

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/internal/spool"
)

// steppingClock is a wall clock a test moves, backwards too.
type steppingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *steppingClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// TestWALClockNeverGoesBack: after the wall clock steps back, the log's stamps (and the
// builder's clock) stay at the latest time seen, so a record appended after the builder cut a
// shard by the clock is stamped no earlier than the cut, and a replay cuts before it too. At
// start the clock begins no earlier than the newest stamp in the log.
func TestWALClockNeverGoesBack(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	wall := &steppingClock{t: t0}
	clock := &walClock{now: wall.Now}
	dir := filepath.Join(t.TempDir(), "records")
	wal, err := spool.Open(dir, spool.DefaultConfig(), spool.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	ctx := context.Background()
	wal.Append(ctx, []byte("a"))
	wall.set(t0.Add(10 * time.Minute))
	cut := clock.Now()           // the builder finds nothing newer and cuts a shard due by now
	wall.set(t0.Add(-time.Hour)) // the wall clock steps back
	wal.Append(ctx, []byte("b"))
	recs, err := wal.Peek(10, 0)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Peek = %d records, %v", len(recs), err)
	}
	if recs[1].Time.Before(cut) {
		t.Fatalf("record appended after a cut at %s stamped %s: a replay would put it in the cut shard", cut, recs[1].Time)
	}
	wall.set(t0.Add(20 * time.Minute))
	if got := clock.Now(); !got.Equal(t0.Add(20 * time.Minute)) {
		t.Fatalf("clock = %s once the wall clock passed the last time, want it", got)
	}
	// A restart: the floor is the newest stamp in the log.
	restarted := &walClock{now: wall.Now}
	wall.set(t0.Add(-2 * time.Hour))
	restarted.floor(recs[1].Time)
	if got := restarted.Now(); got.Before(recs[1].Time) {
		t.Fatalf("restarted clock = %s, before the newest stamp %s", got, recs[1].Time)
	}
}
