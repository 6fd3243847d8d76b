package main

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
	"github.com/edgeloop/edgeloop/exporter/sender"
	"github.com/edgeloop/edgeloop/internal/spool"
)

// keyID is a sample key folded to 64 bits (FNV-1a): the conservation check keeps millions of
// acknowledged keys, and a string each would cost more memory than the collector measured.
func keyID(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return h.Sum64()
}

// pending is a sample appended to a node's queue and not acknowledged yet.
type pending struct {
	seq  uint64
	at   time.Time
	key  uint64
	size int    // len of the record
	data []byte // the record, in the in-memory queue only; the spool keeps its own copy
}

// node is one simulated edge node: its queue (in memory or a real spool) seen by the real
// sender through the sender.Queue interface, and the bookkeeping of what the sender
// acknowledged. Peek, Ack and Wait are called by the node's sender goroutine only; Append by
// its arrival goroutine.
type node struct {
	name  string
	rec   *recorder
	limit int64        // -max-queued-bytes: the fleet's queues together
	sp    *spool.Spool // nil: the in-memory queue
	kick  chan struct{}
	mu    sync.Mutex
	queue []pending // unacknowledged, in seq order
	next  uint64

	// Only the sender's goroutine touches these.
	lastPeek time.Time
	acked    []uint64 // keyIDs of acknowledged samples
	made     int      // samples generated (arrival goroutine)
}

func newNode(name string, rec *recorder, sp *spool.Spool, limit int64) *node {
	return &node{name: name, rec: rec, sp: sp, limit: limit, kick: make(chan struct{}, 1)}
}

// arrive appends samples of sampleBytes at Poisson arrivals of rate a second until ctx ends.
func (n *node) arrive(ctx context.Context, rng *rand.Rand, rate float64, sampleBytes int) error {
	t := time.NewTimer(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s, err := collectortest.NewSample(n.name, n.made, sampleBytes)
		if err != nil {
			return err
		}
		data, err := s.MarshalRecord()
		if err != nil {
			return err
		}
		n.made++
		n.rec.offered.Add(1)
		if n.limit > 0 && n.rec.queued.Load() >= n.limit {
			// A collector that cannot keep up would otherwise grow the simulator's memory
			// without bound; an edge node's full spool drops samples as well.
			n.rec.shed.Add(1)
		} else if err := n.append(ctx, data, keyID(s.Meta.Key)); err != nil {
			return err
		}
		t.Reset(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
	}
}

func (n *node) append(ctx context.Context, data []byte, key uint64) error {
	n.mu.Lock()
	p := pending{at: time.Now(), key: key, size: len(data)}
	if n.sp != nil {
		seq, err := n.sp.Append(ctx, data)
		if err != nil {
			n.mu.Unlock()
			return err
		}
		p.seq = seq
	} else {
		n.next++
		p.seq, p.data = n.next, data
	}
	n.queue = append(n.queue, p)
	n.mu.Unlock()
	n.rec.queued.Add(int64(len(data)))
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return nil
}

// Peek implements sender.Queue.
func (n *node) Peek(maxRecords int, maxBytes int64) ([]sender.Record, error) {
	n.lastPeek = time.Now()
	if n.sp != nil {
		recs, err := n.sp.Peek(maxRecords, maxBytes)
		out := make([]sender.Record, len(recs))
		for i, r := range recs {
			out[i] = sender.Record{Seq: r.Seq, Time: r.Time, Data: r.Data}
		}
		return out, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []sender.Record
	var size int64
	for _, p := range n.queue {
		if len(out) == maxRecords || (len(out) > 0 && size+int64(len(p.data)) > maxBytes) {
			break
		}
		out = append(out, sender.Record{Seq: p.seq, Time: p.at, Data: p.data})
		size += int64(len(p.data))
	}
	return out, nil
}

// Ack implements sender.Queue: it records each acknowledged sample's latency (from its
// append) and the batch's (from the sender's last Peek, which is when the batch it sent was
// taken), and keeps the keys for the conservation check.
func (n *node) Ack(through uint64) error {
	if n.sp != nil {
		if err := n.sp.Ack(through); err != nil {
			return err
		}
	}
	now := time.Now()
	n.mu.Lock()
	k := 0
	for k < len(n.queue) && n.queue[k].seq <= through {
		n.rec.sample(now.Sub(n.queue[k].at))
		n.acked = append(n.acked, n.queue[k].key)
		n.rec.queued.Add(-int64(n.queue[k].size))
		k++
	}
	n.queue = n.queue[k:]
	if len(n.queue) == 0 {
		n.queue = nil // let the backing array go: nodes are many
	}
	n.mu.Unlock()
	if k > 0 {
		n.rec.batch(now.Sub(n.lastPeek))
		n.rec.acked.Add(int64(k))
	}
	return nil
}

// Wait implements sender.Queue.
func (n *node) Wait(ctx context.Context) error {
	for {
		if n.backlog() > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.kick:
		}
	}
}

// backlog is the number of samples appended and not acknowledged.
func (n *node) backlog() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}
