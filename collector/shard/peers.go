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
// other instances stored in that hour (Peers.Refresh), leaves out the samples another shard
// already holds, writes the index, and lets the lock go. A sample's key fixes its model,
// version and hour, so the one hour is the only place a duplicate can be.

// Peers is the builder's view of the shards stored in the bucket: the catalog.
type Peers interface {
	// Refresh reads the shard indexes under prefix (one hour of one version) not known yet.
	Refresh(ctx context.Context, prefix string) error
	// Owner returns the shard (".tar" key) that holds the sample with key.
	Owner(key string) (string, bool)
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

// lockBody is the content of a lock object.
type lockBody struct {
	Instance string    `json:"instance"`
	Shard    string    `json:"shard"`
	Expires  time.Time `json:"expires"`
}

// hourPrefix is the prefix of every shard of the hour key (a shard key without extension)
// belongs to: "samples/<model>/<version>/dt=D/hour=H/".
func hourPrefix(key string) string {
	return key[:strings.LastIndexByte(key, '/')+1]
}

// publish writes the shard's index, leaving out the samples another shard holds; the tar was
// uploaded with all of them and is written again without them when any is left out. It returns
// the samples the shard keeps.
func (b *Builder) publish(ctx context.Context, key string, samples []*sample.Stored) ([]*sample.Stored, error) {
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
	release, err := b.lock(ctx, LockPrefix+strings.TrimSuffix(prefix, "/"), key)
	if err != nil {
		span.RecordError(err)
		return nil, err
	}
	defer release()
	wait := time.Since(start)
	b.m.lockWait.Observe(wait.Seconds())
	span.SetAttributes(attribute.Float64("edgeloop.shard.lock_wait_seconds", wait.Seconds()))
	ctx, cancel := context.WithTimeout(ctx, b.cfg.UploadTimeout)
	defer cancel()
	if err := b.opts.Peers.Refresh(ctx, prefix); err != nil {
		return nil, fmt.Errorf("shard: read the hour's shards: %w", err)
	}
	self := key + ".tar"
	kept := make([]*sample.Stored, 0, len(samples))
	for _, s := range samples {
		if owner, ok := b.opts.Peers.Owner(s.Entry.Key); ok && owner != self {
			continue
		}
		kept = append(kept, s)
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

// lock takes the lock at lockKey for shard key, waiting while another instance holds it, and
// returns its release. A lock past its expiry (its holder died or stalled) is taken over with
// a conditional write on its ETag, so of two instances taking it over one wins.
func (b *Builder) lock(ctx context.Context, lockKey, key string) (func(), error) {
	cb, ok := b.opts.Bucket.(conditionalBucket)
	if !ok {
		return func() {}, nil
	}
	ttl := b.cfg.UploadTimeout + lockMargin
	// Short polls: under contention the holder keeps the lock for a listing and a PUT or two
	// (tens of milliseconds), and a poll costs one PUT that fails and one GET.
	wait := 10 * time.Millisecond
	for {
		expires := b.opts.Now().Add(ttl)
		body, _ := json.Marshal(lockBody{Instance: b.opts.Instance, Shard: key, Expires: expires})
		_, err := cb.PutIf(ctx, lockKey, body, true, "")
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			var taken bool
			taken, err = b.takeOver(ctx, cb, lockKey, body)
			if err == nil && !taken {
				select {
				case <-ctx.Done():
					return nil, fmt.Errorf("shard: wait for lock %s: %w", lockKey, ctx.Err())
				case <-time.After(wait):
				}
				wait = min(2*wait, 200*time.Millisecond)
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("shard: lock %s: %w", lockKey, err)
		}
		return func() {
			// A lock held past its expiry may be another instance's by now: leave it to expire.
			if b.opts.Now().Before(expires.Add(-lockMargin / 2)) {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				if err := b.opts.Bucket.Delete(dctx, lockKey); err != nil {
					b.logger.Warn("shard: cannot release the hour's lock; it expires by itself", "lock", lockKey, "err", err)
				}
			}
		}, nil
	}
}

// takeOver replaces the lock at lockKey with body when it expired or this instance left it
// behind in a crash; false when another instance holds it.
func (b *Builder) takeOver(ctx context.Context, cb conditionalBucket, lockKey string, body []byte) (bool, error) {
	data, attrs, err := objstore.ReadAll(ctx, b.opts.Bucket, lockKey, 4<<10)
	if objstore.IsNotFound(err) {
		return false, nil // released meanwhile: try again at once
	}
	if err != nil {
		return false, err
	}
	var held lockBody
	if err := json.Unmarshal(data, &held); err != nil {
		b.logger.Warn("shard: lock object does not parse; taking it over", "lock", lockKey, "err", err)
	} else if held.Instance != b.opts.Instance && b.opts.Now().Before(held.Expires) {
		return false, nil
	}
	if _, err := cb.PutIf(ctx, lockKey, body, false, attrs.ETag); err != nil {
		if errors.Is(err, objstore.ErrPreconditionFailed) {
			return false, nil
		}
		return false, err
	}
	b.m.lockTakeovers.Inc()
	b.logger.Info("shard: took over a lock left by a stopped holder", "lock", lockKey, "holder", held.Instance, "holder_shard", held.Shard)
	return true, nil
}

// putIndex writes the shard's index: one line per sample, in the tar's order.
func (b *Builder) putIndex(ctx context.Context, key string, samples []*sample.Stored) error {
	var index bytes.Buffer
	for _, s := range samples {
		index.Write(s.IndexLine)
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
func linkSamples(span trace.Span, samples []*sample.Stored) {
	n := 0
	for i, s := range samples {
		if n == MaxLinks || i == maxLinkScan {
			break
		}
		tid, ok := metaTraceID(s.Meta)
		if !ok {
			continue
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, TraceFlags: trace.FlagsSampled, Remote: true})
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("edgeloop.sample.key", s.Entry.Key)}})
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
