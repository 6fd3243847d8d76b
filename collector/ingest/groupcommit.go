package ingest

import (
	"sync"
	"time"
)

// groupCommit shares one WAL fsync among the batches that reach it within a short window.
// The log's own Sync shares an fsync only with callers that arrive while one is running; at
// a fleet's small batches (2-3 samples each, a few hundred a second) that is rarely the case,
// and an fsync cost the collector about 125 µs of CPU, as much as decoding a batch. Waiting
// delay before the fsync lets the batches of the next few milliseconds ride on it.
type groupCommit struct {
	delay time.Duration
	sync  func() error

	mu    sync.Mutex
	round *commitRound // the round collecting batches, nil when none is
}

// commitRound is one shared fsync: done closes once err is set.
type commitRound struct {
	done chan struct{}
	err  error
}

// Sync returns once everything appended to the log before the call is durable, or the error
// of the fsync that was to make it so. The first caller of a round waits delay, then syncs
// for every caller that joined it meanwhile: each joined after its own append returned, so
// the fsync, which starts after the round closed, covers its records.
func (g *groupCommit) Sync() error {
	if g.delay <= 0 {
		return g.sync()
	}
	g.mu.Lock()
	if r := g.round; r != nil {
		g.mu.Unlock()
		<-r.done
		return r.err
	}
	r := &commitRound{done: make(chan struct{})}
	g.round = r
	g.mu.Unlock()
	time.Sleep(g.delay)
	g.mu.Lock()
	g.round = nil // later callers start the next round: their records may miss this fsync
	g.mu.Unlock()
	r.err = g.sync()
	close(r.done)
	return r.err
}
