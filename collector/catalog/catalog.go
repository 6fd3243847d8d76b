// Package catalog is the collector's index of what the object store holds: per model and
// version, how many samples and bytes by capture reason and by predicted class, which shards
// cover a time range, what is new since a watermark, and which shard holds a sample.
//
// It is derived data, kept in memory: the shard builder tells it of each shard it uploads
// (AddShard, the builder's OnShard hook), and Rebuild reads every shard index under samples/
// in the bucket, at start (the collector's disk may be gone) and periodically (shards uploaded
// by other collector instances). A sample key counts once, in the first shard it was seen in,
// however many shards hold it (a shard re-uploaded after a crash). docs/catalog.md describes
// the API.
package catalog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeloop/edgeloop/internal/objstore"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// Object-key layout of shards (docs/architecture.md): samples/<model>/<version>/dt=D/hour=H/<name>.tar
// beside <name>.index.jsonl.
const (
	SamplesPrefix = "samples/"
	TarSuffix     = ".tar"
	IndexSuffix   = ".index.jsonl"
)

// DefaultSettle is Options.Settle's default.
const DefaultSettle = 2 * time.Minute

// DefaultMaxIndexBytes is Options.MaxIndexBytes' default: a shard index line is a few hundred
// bytes, so this is hundreds of thousands of samples.
const DefaultMaxIndexBytes = 64 << 20

// rebuildWorkers is how many index files Rebuild reads at once: listing is one stream, reads
// are round trips, and a cold start over months of shards should take seconds, not minutes.
const rebuildWorkers = 8

// ErrNotFound is returned (wrapped) for a model, version or shard the catalog does not know.
var ErrNotFound = errors.New("not in the catalog")

// errBadIndex marks an index that was read but does not parse.
var errBadIndex = errors.New("malformed shard index")

// ErrBadWatermark is returned (wrapped) for a watermark the catalog did not hand out.
var ErrBadWatermark = errors.New("invalid watermark")

// Options configure a Catalog.
type Options struct {
	// Bucket is where the shards are; required.
	Bucket objstore.Bucket
	// Settle is how old a shard's upload must be before "new since" answers include it, and
	// so how far behind the watermark trails the clock. It covers what a watermark cannot
	// otherwise see: the clock skew between the collector and the object store (upload times
	// are the store's), and shards uploaded by other instances, which this catalog learns of
	// at its next Rebuild. Keep it above the Rebuild interval. Zero means DefaultSettle.
	Settle time.Duration
	// MaxIndexBytes bounds one index file read from the bucket; zero means DefaultMaxIndexBytes.
	MaxIndexBytes int64
	// Logger receives warnings about unreadable index files; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Counts are a number of samples and their size in bytes (metadata and input, as in the
// shard index).
type Counts struct {
	Samples int64 `json:"samples"`
	Bytes   int64 `json:"bytes"`
}

func (c *Counts) add(o Counts) { c.Samples += o.Samples; c.Bytes += o.Bytes }

// Breakdown is a set of samples counted in total, by capture reason and by predicted class.
type Breakdown struct {
	Counts
	// Shards is the number of shards holding the samples.
	Shards int `json:"shards"`
	// ByReason counts by capture reason (the sampler's strategy).
	ByReason map[string]Counts `json:"by_reason"`
	// ByClass counts by predicted class: its name, or its index when the model's classes are
	// not named.
	ByClass map[string]Counts `json:"by_class"`
}

func newBreakdown() Breakdown {
	return Breakdown{ByReason: map[string]Counts{}, ByClass: map[string]Counts{}}
}

func (b *Breakdown) merge(o *Breakdown) {
	b.Counts.add(o.Counts)
	b.Shards += o.Shards
	for k, v := range o.ByReason {
		c := b.ByReason[k]
		c.add(v)
		b.ByReason[k] = c
	}
	for k, v := range o.ByClass {
		c := b.ByClass[k]
		c.add(v)
		b.ByClass[k] = c
	}
}

// ShardInfo describes one shard.
type ShardInfo struct {
	// Key is the shard's object key (".tar"); Index its index's.
	Key   string `json:"key"`
	Index string `json:"index"`
	// Model and Version are the shard's, from its key.
	Model   string `json:"model"`
	Version string `json:"version"`
	// Uploaded is when its index was stored (the object store's clock, whole seconds).
	Uploaded time.Time `json:"uploaded"`
	// First and Last are the earliest and latest prediction times of its samples.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Samples is the number of samples in the shard; Unique those first seen in it.
	Samples int   `json:"samples"`
	Unique  int64 `json:"unique"`
	// Bytes is the size of all its samples.
	Bytes int64 `json:"bytes"`
}

// shard is what the catalog keeps of one shard: its description and the counts of the samples
// it owns (first seen in it).
type shard struct {
	info  ShardInfo
	owned Breakdown
}

// version is one model version's running totals.
type version struct {
	total       Breakdown
	shards      []*shard
	first, last time.Time
}

// Catalog is the in-memory index. It is safe for concurrent use.
type Catalog struct {
	bucket    objstore.Bucket
	settle    time.Duration
	maxIndex  int64
	logger    *slog.Logger
	now       func() time.Time
	rebuildMu sync.Mutex // one Rebuild at a time

	mu       sync.RWMutex
	synced   bool
	shards   map[string]*shard
	models   map[string]map[string]*version
	owner    map[[16]byte]*shard
	badIndex int

	// byRequest finds samples by request id (FindRequest): it maps the hash of an id to the
	// key of the first sample seen with it, and moreRequest holds the keys of further samples
	// whose ids hash the same (an id reused by several nodes or clients). Hashes rather than
	// ids keep it at about 40 bytes a sample, whatever the ids' length; FindRequest confirms
	// the id in the shard's index, which also drops hash collisions.
	reqSeed     maphash.Seed
	byRequest   map[uint64][16]byte
	moreRequest map[uint64][][16]byte
}

// New returns an empty catalog over opts.Bucket; call Rebuild (or Run) to load what the bucket
// holds.
func New(opts Options) (*Catalog, error) {
	if opts.Bucket == nil {
		return nil, errors.New("catalog: no bucket")
	}
	c := &Catalog{
		bucket: opts.Bucket, settle: opts.Settle, maxIndex: opts.MaxIndexBytes, logger: opts.Logger, now: opts.Now,
		shards: map[string]*shard{}, models: map[string]map[string]*version{}, owner: map[[16]byte]*shard{},
		reqSeed: maphash.MakeSeed(), byRequest: map[uint64][16]byte{}, moreRequest: map[uint64][][16]byte{},
	}
	if c.settle <= 0 {
		c.settle = DefaultSettle
	}
	if c.maxIndex <= 0 {
		c.maxIndex = DefaultMaxIndexBytes
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// parseShardKey splits a shard's key (".tar", or without extension) into model and version,
// and returns the keys of the tar and of the index.
func parseShardKey(key string) (tarKey, indexKey, model, ver string, err error) {
	base := strings.TrimSuffix(key, TarSuffix)
	parts := strings.Split(base, "/")
	if len(parts) != 6 || parts[0] != "samples" || !strings.HasPrefix(parts[3], "dt=") || !strings.HasPrefix(parts[4], "hour=") || parts[5] == "" {
		return "", "", "", "", fmt.Errorf("shard key %q is not samples/<model>/<version>/dt=<date>/hour=<hour>/<name>.tar", key)
	}
	return base + TarSuffix, base + IndexSuffix, parts[1], parts[2], nil
}

// ClassOf is the class name an index entry is counted under.
func ClassOf(e sample.IndexEntry) string {
	if e.PredictedClass != "" {
		return e.PredictedClass
	}
	return strconv.Itoa(e.Prediction)
}

// AddShard records a shard just uploaded, with its index entries: the shard builder's OnShard
// hook. The upload time is the index object's, as Rebuild would read it, so that watermarks do
// not move when the catalog is rebuilt; the local clock stands in when the store cannot say.
// A shard already known is ignored.
func (c *Catalog) AddShard(ctx context.Context, shardKey string, entries []sample.IndexEntry) {
	tarKey, indexKey, _, _, err := parseShardKey(shardKey)
	if err != nil {
		c.logger.Warn("catalog: shard not recorded", "err", err)
		return
	}
	c.mu.RLock()
	_, known := c.shards[tarKey]
	c.mu.RUnlock()
	if known {
		return
	}
	uploaded := c.now()
	if attrs, err := c.bucket.Attributes(ctx, indexKey); err == nil && !attrs.LastModified.IsZero() {
		uploaded = attrs.LastModified
	} else if err != nil {
		c.logger.Warn("catalog: no upload time from the store; using the local clock", "shard", tarKey, "err", err)
	}
	c.add(tarKey, uploaded, entries)
}

// add records a shard; false when it was known already.
func (c *Catalog) add(tarKey string, uploaded time.Time, entries []sample.IndexEntry) bool {
	_, indexKey, model, ver, err := parseShardKey(tarKey)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.shards[tarKey]; ok {
		return false
	}
	sh := &shard{
		info: ShardInfo{Key: tarKey, Index: indexKey, Model: model, Version: ver,
			Uploaded: uploaded.UTC().Truncate(time.Second), Samples: len(entries)},
		owned: newBreakdown(),
	}
	sh.owned.Shards = 1
	for _, e := range entries {
		sh.info.Bytes += e.Bytes
		if sh.info.First.IsZero() || e.Time.Before(sh.info.First) {
			sh.info.First = e.Time.UTC()
		}
		if e.Time.After(sh.info.Last) {
			sh.info.Last = e.Time.UTC()
		}
		var k [16]byte
		if n, err := hex.Decode(k[:], []byte(e.Key)); err != nil || n != 16 || len(e.Key) != 32 {
			continue // not a sample key: nothing to count or find
		}
		if _, dup := c.owner[k]; dup {
			continue
		}
		c.owner[k] = sh
		if e.RequestID != "" {
			h := maphash.String(c.reqSeed, e.RequestID)
			if _, ok := c.byRequest[h]; ok {
				c.moreRequest[h] = append(c.moreRequest[h], k)
			} else {
				c.byRequest[h] = k
			}
		}
		one := Counts{Samples: 1, Bytes: e.Bytes}
		sh.owned.Counts.add(one)
		r := sh.owned.ByReason[e.Reason]
		r.add(one)
		sh.owned.ByReason[e.Reason] = r
		cl := sh.owned.ByClass[ClassOf(e)]
		cl.add(one)
		sh.owned.ByClass[ClassOf(e)] = cl
	}
	sh.info.Unique = sh.owned.Samples
	c.shards[tarKey] = sh
	vers := c.models[model]
	if vers == nil {
		vers = map[string]*version{}
		c.models[model] = vers
	}
	v := vers[ver]
	if v == nil {
		v = &version{total: newBreakdown()}
		vers[ver] = v
	}
	v.total.merge(&sh.owned)
	v.shards = append(v.shards, sh)
	if len(entries) > 0 {
		if v.first.IsZero() || sh.info.First.Before(v.first) {
			v.first = sh.info.First
		}
		if sh.info.Last.After(v.last) {
			v.last = sh.info.Last
		}
	}
	return true
}

// Rebuild reads the index of every shard under samples/ that the catalog does not know yet.
// Called at start it loads the whole bucket; called again it picks up shards other collector
// instances uploaded. An index that cannot be read or parsed is logged and skipped (it is tried
// again next time); only a failed listing is an error.
func (c *Catalog) Rebuild(ctx context.Context) error {
	return c.read(ctx, SamplesPrefix, true)
}

// Refresh reads the shard indexes under prefix (one hour of one model version,
// "samples/<model>/<version>/dt=D/hour=H/") that the catalog does not know yet: the shard
// builder's view of what other instances stored there before it publishes a shard of that
// hour (docs/collector.md, "Dedup across collectors"). One listing of one hour, and a read of
// each index new to the catalog, which its next Rebuild then skips.
func (c *Catalog) Refresh(ctx context.Context, prefix string) error {
	if !strings.HasPrefix(prefix, SamplesPrefix) {
		return fmt.Errorf("catalog: refresh %q: not under %s", prefix, SamplesPrefix)
	}
	return c.read(ctx, prefix, false)
}

// read adds the shards under prefix the catalog does not know; full marks the catalog synced.
func (c *Catalog) read(ctx context.Context, prefix string, full bool) error {
	// A refresh does not wait for a full rebuild (a listing of the whole bucket): it holds
	// the hour's lock meanwhile. Both may read the same index; add keeps the first.
	if full {
		c.rebuildMu.Lock()
		defer c.rebuildMu.Unlock()
	}
	var todo []string
	err := c.bucket.Iter(ctx, prefix, true, func(key string) error {
		if !strings.HasSuffix(key, IndexSuffix) {
			return nil
		}
		tarKey := strings.TrimSuffix(key, IndexSuffix) + TarSuffix
		if _, _, _, _, err := parseShardKey(tarKey); err != nil {
			return nil
		}
		c.mu.RLock()
		_, known := c.shards[tarKey]
		c.mu.RUnlock()
		if !known {
			todo = append(todo, key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: rebuild: %w", err)
	}
	type result struct {
		entries  []sample.IndexEntry
		uploaded time.Time
		err      error
	}
	added, failed, unreachable := 0, 0, 0
	// Batches keep memory bounded and shards added in key order, which makes the owner of
	// a duplicated sample the same from one rebuild to the next.
	for start := 0; start < len(todo); start += 256 {
		batch := todo[start:min(start+256, len(todo))]
		results := make([]result, len(batch))
		var wg sync.WaitGroup
		sem := make(chan struct{}, rebuildWorkers)
		for i, key := range batch {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				entries, attrs, err := c.readIndex(ctx, key)
				results[i] = result{entries, attrs.LastModified, err}
			})
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("catalog: rebuild: %w", err)
		}
		for i, r := range results {
			if r.err != nil {
				failed++
				if !errors.Is(r.err, errBadIndex) {
					unreachable++
				}
				c.logger.Warn("catalog: shard index unreadable; skipped until the next rebuild", "index", batch[i], "err", r.err)
				continue
			}
			if c.add(strings.TrimSuffix(batch[i], IndexSuffix)+TarSuffix, r.uploaded, r.entries) {
				added++
			}
		}
	}
	if !full {
		// An index that does not parse is skipped, as Rebuild skips it: it would hold the
		// builder back for good. One the store did not serve is tried again.
		if unreachable > 0 {
			return fmt.Errorf("catalog: refresh %s: %d shard indexes not read", prefix, unreachable)
		}
		return nil
	}
	c.mu.Lock()
	c.synced = true
	c.badIndex = failed
	c.mu.Unlock()
	if added > 0 || failed > 0 {
		c.logger.Info("catalog: rebuilt from the bucket", "added", added, "unreadable", failed)
	}
	return nil
}

// Run rebuilds the catalog now, retrying until the bucket answers, then again every interval
// to learn of other instances' shards, until ctx ends.
func (c *Catalog) Run(ctx context.Context, interval time.Duration) {
	backoff := time.Second
	for {
		err := c.Rebuild(ctx)
		wait := interval
		if err != nil {
			c.logger.Warn("catalog: rebuild failed; retrying", "err", err, "in", backoff)
			wait, backoff = backoff, min(2*backoff, interval)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Synced reports whether a Rebuild has completed: before that, answers miss what the bucket
// held at start.
func (c *Catalog) Synced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced
}

// Entries reads a shard's index from the bucket: the per-sample detail the catalog does not
// keep in memory.
func (c *Catalog) Entries(ctx context.Context, shardKey string) ([]sample.IndexEntry, error) {
	_, indexKey, _, _, err := parseShardKey(shardKey)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	entries, _, err := c.readIndex(ctx, indexKey)
	if err != nil {
		return nil, fmt.Errorf("catalog: read index: %w", err)
	}
	return entries, nil
}

func (c *Catalog) readIndex(ctx context.Context, key string) ([]sample.IndexEntry, objstore.Attributes, error) {
	data, attrs, err := objstore.ReadAll(ctx, c.bucket, key, c.maxIndex)
	if err != nil {
		return nil, attrs, err
	}
	entries, err := ParseIndex(data)
	if err != nil {
		return nil, attrs, fmt.Errorf("%s: %w: %w", key, errBadIndex, err)
	}
	return entries, attrs, nil
}

// ParseIndex reads a shard index: one sample.IndexEntry per line, blank lines ignored.
func ParseIndex(data []byte) ([]sample.IndexEntry, error) {
	var entries []sample.IndexEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var e sample.IndexEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}

// ModelSummary is one model's line in Models.
type ModelSummary struct {
	Model    string `json:"model"`
	Versions int    `json:"versions"`
	Shards   int    `json:"shards"`
	Counts
}

// Models lists the models with shards, sorted by name, with their totals.
func (c *Catalog) Models() []ModelSummary {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]ModelSummary, 0, len(c.models))
	for name, vers := range c.models {
		s := ModelSummary{Model: name, Versions: len(vers)}
		for _, v := range vers {
			s.Counts.add(v.total.Counts)
			s.Shards += v.total.Shards
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ModelSummary) int { return strings.Compare(a.Model, b.Model) })
	return out
}

// VersionSummary is one version's line in Versions.
type VersionSummary struct {
	Version string `json:"version"`
	Shards  int    `json:"shards"`
	Counts
	// First and Last are the earliest and latest prediction times.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Versions lists a model's versions with their totals, sorted numerically where versions are
// numbers; ErrNotFound for a model without shards.
func (c *Catalog) Versions(model string) ([]VersionSummary, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	vers, ok := c.models[model]
	if !ok {
		return nil, fmt.Errorf("catalog: model %q: %w", model, ErrNotFound)
	}
	out := make([]VersionSummary, 0, len(vers))
	for name, v := range vers {
		out = append(out, VersionSummary{Version: name, Shards: v.total.Shards, Counts: v.total.Counts, First: v.first, Last: v.last})
	}
	slices.SortFunc(out, func(a, b VersionSummary) int { return compareVersions(a.Version, b.Version) })
	return out, nil
}

// compareVersions orders "2" before "10", and names after numbers.
func compareVersions(a, b string) int {
	na, ea := strconv.ParseInt(a, 10, 64)
	nb, eb := strconv.ParseInt(b, 10, 64)
	switch {
	case ea == nil && eb == nil:
		return int(max(-1, min(1, na-nb)))
	case ea == nil:
		return -1
	case eb == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// VersionStats is the answer of Stats.
type VersionStats struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	// Total counts every sample of the version.
	Total Breakdown `json:"total"`
	// Since is the watermark asked about ("" for none); New counts the samples of shards
	// uploaded after it and before Watermark.
	Since string    `json:"since"`
	New   Breakdown `json:"new"`
	// Watermark is the cursor to pass as since next time: "what is new since this answer".
	Watermark string `json:"watermark"`
	// First and Last are the earliest and latest prediction times.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// parseWatermark reads a watermark: "" (the beginning) or what Stats handed out.
func parseWatermark(w string) (int64, error) {
	if w == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(w, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w %q: pass back the watermark of an earlier answer, or nothing", ErrBadWatermark, w)
	}
	return n, nil
}

// Stats returns a version's counts, and those of the shards uploaded since the watermark since
// ("" for all), with the watermark for the next call. The watermark is an upload time that
// trails the clock by Options.Settle, so a shard is reported as new exactly once even when its
// upload was in flight, or made by another instance, at the time of a call.
func (c *Catalog) Stats(model, ver, since string) (VersionStats, error) {
	from, err := parseWatermark(since)
	if err != nil {
		return VersionStats{}, err
	}
	cutoff := c.now().Add(-c.settle).Unix()
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.models[model][ver]
	if !ok {
		return VersionStats{}, fmt.Errorf("catalog: model %q version %q: %w", model, ver, ErrNotFound)
	}
	st := VersionStats{Model: model, Version: ver, Total: newBreakdown(), Since: since, New: newBreakdown(), First: v.first, Last: v.last}
	st.Total.merge(&v.total)
	next := max(from, cutoff)
	st.Watermark = strconv.FormatInt(next, 10)
	for _, sh := range v.shards {
		if u := sh.info.Uploaded.Unix(); u > from && u <= cutoff {
			st.New.merge(&sh.owned)
		}
	}
	return st, nil
}

// Shards returns the shards of model (of version ver, or every version when ver is "") holding
// samples predicted in [from, to]: a zero from or to leaves that end open. They are sorted by
// their first prediction time, then key.
func (c *Catalog) Shards(model, ver string, from, to time.Time) []ShardInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []ShardInfo
	for name, v := range c.models[model] {
		if ver != "" && name != ver {
			continue
		}
		for _, sh := range v.shards {
			if sh.info.Samples == 0 || (!from.IsZero() && sh.info.Last.Before(from)) || (!to.IsZero() && sh.info.First.After(to)) {
				continue
			}
			out = append(out, sh.info)
		}
	}
	slices.SortFunc(out, func(a, b ShardInfo) int {
		if c := a.First.Compare(b.First); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// Locate returns the shard that holds the sample with key (the first one it was seen in).
func (c *Catalog) Locate(key string) (ShardInfo, bool) {
	var k [16]byte
	if len(key) != 32 {
		return ShardInfo{}, false
	}
	if _, err := hex.Decode(k[:], []byte(key)); err != nil {
		return ShardInfo{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	sh, ok := c.owner[k]
	if !ok {
		return ShardInfo{}, false
	}
	return sh.info, true
}

// Owner returns the key (".tar") of the shard that holds the sample with key, the first one it
// was seen in.
func (c *Catalog) Owner(key string) (string, bool) {
	info, ok := c.Locate(key)
	return info.Key, ok
}

// Limits of FindRequest.
const (
	// MaxRequestID bounds a request id asked about: the sample format's limit on it.
	MaxRequestID = 256
	// MaxRequestShards bounds the shard indexes one FindRequest reads: an id that many
	// shards share (a client numbering its requests from 1 on every node) is answered in
	// part, and says so.
	MaxRequestShards = 16
)

// SampleRef is a sample found by its request id: where it is and what made it.
type SampleRef struct {
	Key       string    `json:"key"`
	RequestID string    `json:"request_id"`
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Node      string    `json:"node"`
	Time      time.Time `json:"time"`
	// Shard is the key of the shard (".tar") that holds it.
	Shard string `json:"shard"`
}

// FindRequest returns the samples captured from requests with id id (none when the catalog
// knows of none), sorted by time then key, and whether the answer is partial: the samples
// were in more than MaxRequestShards shards, and only the first of those (by key) were read.
// A batch request's rows are captured with ids "<id>#<row>", each found by its own id.
//
// The catalog keeps only a hash of each id in memory, so each shard that may hold a match
// costs one read of its index from the bucket (Options.MaxIndexBytes at most); an id that no
// sample has costs no read.
func (c *Catalog) FindRequest(ctx context.Context, id string) ([]SampleRef, bool, error) {
	if id == "" {
		return nil, false, nil
	}
	h := maphash.String(c.reqSeed, id)
	c.mu.RLock()
	var keys [][16]byte
	if k, ok := c.byRequest[h]; ok {
		keys = append(append(keys, k), c.moreRequest[h]...)
	}
	byShard := map[string]map[string]bool{}
	for _, k := range keys {
		if sh := c.owner[k]; sh != nil {
			if byShard[sh.info.Key] == nil {
				byShard[sh.info.Key] = map[string]bool{}
			}
			byShard[sh.info.Key][hex.EncodeToString(k[:])] = true
		}
	}
	c.mu.RUnlock()
	shards := make([]string, 0, len(byShard))
	for k := range byShard {
		shards = append(shards, k)
	}
	slices.Sort(shards)
	partial := len(shards) > MaxRequestShards
	if partial {
		shards = shards[:MaxRequestShards]
	}
	var out []SampleRef
	for _, shardKey := range shards {
		entries, err := c.Entries(ctx, shardKey)
		if err != nil {
			return nil, false, fmt.Errorf("catalog: find request %q: %w", id, err)
		}
		want := byShard[shardKey]
		for _, e := range entries {
			if e.RequestID != id || !want[e.Key] {
				continue
			}
			delete(want, e.Key) // once, however often the shard lists it
			out = append(out, SampleRef{Key: e.Key, RequestID: e.RequestID, Model: e.Model, Version: e.Version,
				Node: e.Node, Time: e.Time.UTC(), Shard: shardKey})
		}
	}
	slices.SortFunc(out, func(a, b SampleRef) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, partial, nil
}
