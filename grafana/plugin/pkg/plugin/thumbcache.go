package plugin

import (
	"container/list"
	"sync"
)

// thumbCache is a bounded LRU of rendered thumbnails by sample key. Keys are content-derived,
// so an entry never goes stale; the bounds are on entries and on bytes, whichever is reached
// first (a 28×28 grey PNG is under 1 KiB, a 224×224 RGB one up to ~150 KiB).
type thumbCache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	order      *list.List // front: most recently used; values are *thumbEntry
	byKey      map[string]*list.Element
	hits, miss int64
}

type thumbEntry struct {
	key string
	png []byte
}

func newThumbCache(maxEntries, maxBytes int) *thumbCache {
	return &thumbCache{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the thumbnail of key, if cached.
func (c *thumbCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		c.hits++
		return e.Value.(*thumbEntry).png, true
	}
	c.miss++
	return nil, false
}

// put caches png under key, evicting the least recently used entries past either bound. A
// thumbnail larger than the byte bound is not cached.
func (c *thumbCache) put(key string, png []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(png) > c.maxBytes || c.maxEntries == 0 {
		return
	}
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.byKey[key] = c.order.PushFront(&thumbEntry{key: key, png: png})
	c.bytes += len(png)
	for c.order.Len() > c.maxEntries || c.bytes > c.maxBytes {
		e := c.order.Back()
		te := e.Value.(*thumbEntry)
		c.order.Remove(e)
		delete(c.byKey, te.key)
		c.bytes -= len(te.png)
	}
}

// stats returns the entries, bytes, hits and misses.
func (c *thumbCache) stats() (entries, bytes int, hits, misses int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.bytes, c.hits, c.miss
}
