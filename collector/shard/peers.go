package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Dedup across collectors (docs/collector.md, "Dedup across collectors"). Instances behind one
// load balancer share the bucket, and a batch resent to another instance after a failure can
// sit in both instances' logs. Before a shard's index is written (the index is what makes a
// shard exist for readers), the builder takes the hour's lock in the bucket, reads the indexes
// other instances stored in that hour since it last looked (Peers.Refresh), leaves out the
// samples another shard already holds, writes the index, and lets the lock go. A sample's key
// fixes its model, version and hour, so the one hour is the only place a duplicate can be.

// Peers is the builder's view of the shards stored in the bucket: the catalog.
type Peers interface {
	// Refresh reads the shard indexes under prefix (one hour of one version) not known yet.
	Refresh(ctx context.Context, prefix string) error
	// Owner returns the shard (".tar" key) that holds the sample with key.
	Owner(key string) (string, bool)
	// AddShard records a shard this builder published (the catalog's AddShard).
	AddShard(ctx context.Context, key string, entries []sample.IndexEntry)
}

// conditionalBucket is a bucket with S3 conditional writes (objstore's S3 backend): the lock
// needs them. Without them, publishing is serialized within the instance only.
type conditionalBucket interface {
	PutIf(ctx context.Context, key string, data []byte, ifNoneMatch bool, ifMatch string) (string, error)
}

// LockPrefix is where the hour locks live: locks/samples/<model>/<version>/dt=D/hour=H.
const LockPrefix = "locks/"

// lockMargin is how long a lock outlives the critical section it guards (Config.UploadTimeout):
// room for the clock skew between instances, since a lock's expiry is its holder's clock.
const lockMargin = 30 * time.Second

// maxLastSeq bounds the hours whose lock sequence the builder remembers; forgetting one costs
// a listing of that hour at its next publish.
const maxLastSeq = 1024

// lockBody is the content of a lock object. The object stays: a holder frees it by writing
// it back without an instance and with Seq one higher, so Seq counts the publishes (tried) of
// the hour under the lock. An instance that finds the Seq it wrote last knows that nobody published in
// the hour since, and need not list it.
type lockBody struct {
	// Instance holds the lock; "" when free.
	Instance string `json:"instance,omitempty"`
	// Shard is the holder's shard, or the last one published when free.
	Shard string `json:"shard,omitempty"`
	// Expires is when a held lock may be taken over.
	Expires time.Time `json:"expires,omitzero"`
	Seq     uint64    `json:"seq"`
}

// hourPrefix is the prefix of every shard of the hour key (a shard key without extension)
// belongs to: "samples/<model>/<version>/dt=D/hour=H/".
func hourPrefix(key string) string {
	return key[:strings.LastIndexByte(key, '/')+1]
}

// publish writes the shard's index, leaving out the samples another shard holds; the tar was
// uploaded with all of them and is written again without them when any is left out. It returns
// the samples the shard keeps.
func (b *Builder) publish(ctx context.Context, key string, samples []member) ([]member, error) {
	if b.opts.Peers == nil {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.UploadTimeout)
		defer cancel()
		return samples, b.putIndex(ctx, key, samples)
	}
	// Within the instance the mutex serializes publishing; across instances the lock does.
	// Holding the mutex also means that a lock this instance finds under its own name is left
	// from before a crash.
	ctx, span := b.opts.Tracer.Start(ctx, "collector.shard.publish")
	defer span.End()
	start := time.Now()
	b.publishMu.Lock()
	defer b.publishMu.Unlock()
	prefix := hourPrefix(key)
	lk, err := b.lock(ctx, LockPrefix+strings.TrimSuffix(prefix, "/"), key)
	if err != nil {
		span.RecordError(err)
		return nil, err
	}
	wait := time.Since(start)
	b.m.lockWait.Observe(wait.Seconds())
	span.SetAttributes(attribute.Float64("edgeloop.shard.lock_wait_seconds", wait.Seconds()), attribute.Bool("edgeloop.shard.listed", lk.refresh))
	kept, err := b.publishLocked(ctx, key, samples, prefix, lk.refresh, span)
	lk.release(ctx, err != nil)
	if err != nil {
		return nil, err
	}
	if len(kept) > 0 {
		// Before the next publish of this instance: it must see this shard's keys.
		entries := make([]sample.IndexEntry, len(kept))
		for i, m := range kept {
			entries[i] = m.entry
		}
		b.opts.Peers.AddShard(ctx, key+".tar", entries)
	}
	return kept, nil
}

// publishLocked is publish under the hour's lock: refresh the view of the hour when another
// instance may have published in it, leave out what another shard holds, write the index.
func (b *Builder) publishLocked(ctx context.Context, key string, samples []member, prefix string, refresh bool, span trace.Span) ([]member, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.UploadTimeout)
	defer cancel()
	if refresh {
		if err := b.opts.Peers.Refresh(ctx, prefix); err != nil {
			return nil, fmt.Errorf("shard: read the hour's shards: %w", err)
		}
	}
	self := key + ".tar"
	kept := make([]member, 0, len(samples))
	for _, m := range samples {
		if owner, ok := b.opts.Peers.Owner(m.entry.Key); ok && owner != self {
			continue
		}
		kept = append(kept, m)
	}
	span.SetAttributes(attribute.Int("edgeloop.shard.duplicates_dropped", len(samples)-len(kept)))
	if dropped := len(samples) - len(kept); dropped > 0 {
		b.m.dropped.Add(float64(dropped))
		b.logger.Info("shard: samples already in another shard left out", "shard", self, "dropped", dropped, "kept", len(kept))
		if len(kept) == 0 {
			if err := b.opts.Bucket.Delete(ctx, self); err != nil {
				return nil, fmt.Errorf("shard: delete the tar of an empty shard: %w", err)
			}
			return nil, nil
		}
		if err := b.putTar(ctx, key, kept, storedTarSize(kept)); err != nil {
			return nil, err
		}
	}
	return kept, b.putIndex(ctx, key, kept)
}

// heldLock is an hour lock this builder holds.
type heldLock struct {
	b       *Builder
	cb      conditionalBucket // nil: no lock (a bucket without conditional writes)
	key     string
	etag    string
	body    lockBody
	refresh bool // another instance may have published in the hour since this one last did
}

// lock takes the lock at lockKey for shard key, waiting while another instance holds it. A
// lock past its expiry (its holder died or stalled), or one this instance left in a crash, is
// taken over. Every write is conditional on the ETag read (or on no object), so of two
// instances racing for it one wins.
func (b *Builder) lock(ctx context.Context, lockKey, key string) (*heldLock, error) {
	cb, ok := b.opts.Bucket.(conditionalBucket)
	if !ok {
		return &heldLock{b: b, refresh: true}, nil
	}
	ttl := b.cfg.UploadTimeout + lockMargin
	// Short polls: under contention the holder keeps the lock for a PUT or three (tens of
	// milliseconds), and a poll is one GET.
	wait := 10 * time.Millisecond
	for {
		data, attrs, err := objstore.ReadAll(ctx, b.opts.Bucket, lockKey, 4<<10)
		var cur lockBody
		exists := err == nil
		switch {
		case objstore.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("shard: read lock %s: %w", lockKey, err)
		default:
			if jerr := json.Unmarshal(data, &cur); jerr != nil {
				b.logger.Warn("shard: lock object does not parse; taking it over", "lock", lockKey, "err", jerr)
				cur = lockBody{Instance: b.opts.Instance}
			}
		}
		now := b.opts.Now()
		free := cur.Instance == ""
		takeover := !free && (cur.Instance == b.opts.Instance || !now.Before(cur.Expires))
		if exists && !free && !takeover {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("shard: wait for lock %s: %w", lockKey, ctx.Err())
			case <-time.After(wait):
			}
			wait = min(2*wait, 200*time.Millisecond)
			continue
		}
		body := lockBody{Instance: b.opts.Instance, Shard: key, Expires: now.Add(ttl), Seq: cur.Seq}
		enc, _ := json.Marshal(body)
		etag, err := cb.PutIf(ctx, lockKey, enc, !exists, attrs.ETag)
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			continue // another instance wrote it between the read and the write
		}
		if err != nil {
			return nil, fmt.Errorf("shard: lock %s: %w", lockKey, err)
		}
		if takeover {
			b.m.lockTakeovers.Inc()
			b.logger.Info("shard: took over a lock left by a stopped holder", "lock", lockKey, "holder", cur.Instance, "holder_shard", cur.Shard)
		}
		b.mu.Lock()
		last, seen := b.lastSeq[lockKey]
		b.mu.Unlock()
		// A holder that stopped may have published without counting it: list after a takeover.
		refresh := !exists || takeover || !seen || last != cur.Seq
		return &heldLock{b: b, cb: cb, key: lockKey, etag: etag, body: body, refresh: refresh}, nil
	}
}

// release frees the lock and counts the publish. It counts one that failed too: an index
// PUT whose answer was lost may have been stored, and a count too many costs another instance
// only a listing. A lock held past its expiry may be another instance's by now: the
// conditional write then fails, and the lock is left to its new holder. After a failed
// publish (failed) it tries once, briefly: the store is likely unreachable, and three long
// attempts (minio-go retrying within each) held the upload's retry, and the readiness it
// reports, for over 20 s; the lock expires by itself.
func (l *heldLock) release(ctx context.Context, failed bool) {
	if l.cb == nil {
		return
	}
	b := l.b
	free := lockBody{Shard: l.body.Shard, Seq: l.body.Seq + 1}
	enc, _ := json.Marshal(free)
	ctx = context.WithoutCancel(ctx)
	attempts, timeout := 3, 10*time.Second
	if failed {
		attempts, timeout = 1, 2*time.Second
	}
	var err error
	for attempt := range attempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = l.cb.PutIf(rctx, l.key, enc, false, l.etag)
		cancel()
		if err == nil {
			b.mu.Lock()
			if len(b.lastSeq) >= maxLastSeq {
				clear(b.lastSeq)
			}
			b.lastSeq[l.key] = free.Seq
			b.mu.Unlock()
			return
		}
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			break
		}
	}
	b.logger.Warn("shard: cannot release the hour's lock; it expires by itself", "lock", l.key, "err", err)
}

// putIndex writes the shard's index: one line per sample, in the tar's order.
func (b *Builder) putIndex(ctx context.Context, key string, samples []member) error {
	var index bytes.Buffer
	for _, m := range samples {
		index.Write(m.indexLine)
		index.WriteByte('\n')
	}
	if err := b.opts.Bucket.Put(ctx, key+".index.jsonl", bytes.NewReader(index.Bytes()), int64(index.Len())); err != nil {
		return fmt.Errorf("shard: upload index: %w", err)
	}
	return nil
}

// MaxLinks bounds the links from a shard's span to the capture traces of its samples: the
// first MaxLinks samples (in the shard's order) that carry a trace id, among the first
// maxLinkScan. A trace backend keeps a span's links in memory with the span.
const MaxLinks = 16

// maxLinkScan bounds the samples searched for trace ids, so that a shard of samples without
// them costs little to trace.
const maxLinkScan = 1024

// linkSamples links span to the capture traces of the first samples that carry a trace id
// (the metadata's trace_id). The sample keeps the trace id only, not the span id of the
// capture, so a link names the capture's trace (its span id is zero) and the sample's key.
func linkSamples(span trace.Span, samples []member) {
	n := 0
	for i, m := range samples {
		if n == MaxLinks || i == maxLinkScan {
			break
		}
		if !m.traceID.IsValid() {
			continue
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: m.traceID, TraceFlags: trace.FlagsSampled, Remote: true})
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("edgeloop.sample.key", m.entry.Key)}})
		n++
	}
	span.SetAttributes(attribute.Int("edgeloop.shard.links", n))
}

// metaTraceID finds the trace id in a sample's metadata JSON without decoding it: the
// "trace_id" member is 32 lowercase hex digits (the sample format checked it at ingest).
func metaTraceID(meta []byte) (trace.TraceID, bool) {
	const name = `"trace_id"`
	i := bytes.Index(meta, []byte(name))
	if i < 0 {
		return trace.TraceID{}, false
	}
	rest := bytes.TrimLeft(meta[i+len(name):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return trace.TraceID{}, false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) < 34 || rest[0] != '"' || rest[33] != '"' {
		return trace.TraceID{}, false
	}
	tid, err := trace.TraceIDFromHex(string(rest[1:33]))
	return tid, err == nil
}
