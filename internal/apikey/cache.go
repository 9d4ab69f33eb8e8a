package apikey

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// cacheShards spreads the lock: every gateway call reads the cache, and one RWMutex would
// bounce between cores.
const cacheShards = 64

// entry is what the cache remembers of one hash: a row, or that there is none, and the
// claims of the key, which passed Parse before the entry was made. Entries are shared by
// every caller of the key: nothing in one is ever modified after put.
type entry struct {
	rec     Record
	found   bool
	claims  Claims
	expires time.Time
}

// claimsCurrent reports whether the cached claims are still within their JWT validity at
// now (exp, and nbf when present; Parse checks nothing else that changes with time). It
// ignores the keyring's leeway, so it is never more lenient than Parse: when it says no,
// Parse decides.
func (e *entry) claimsCurrent(now time.Time) bool {
	c := &e.claims
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Time) {
		return false
	}
	return c.NotBefore == nil || !now.Before(c.NotBefore.Time)
}

// cloneClaims is a copy of c that shares nothing with it: what the cache holds and what
// callers get are never the same memory, so a caller changing its claims cannot change what
// the next caller (or claimsCurrent) sees.
func cloneClaims(c Claims) Claims {
	c.Scopes = slices.Clone(c.Scopes)
	c.Audience = slices.Clone(c.Audience)
	c.ExpiresAt = cloneDate(c.ExpiresAt)
	c.NotBefore = cloneDate(c.NotBefore)
	c.IssuedAt = cloneDate(c.IssuedAt)
	return c
}

func cloneDate(d *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

type shard struct {
	mu      sync.RWMutex
	entries map[string]entry
	// gen counts invalidations in this shard. A fill that started before an invalidation is
	// dropped, so a revocation racing a lookup cannot be undone by the lookup's stale row.
	gen uint64
}

// cache maps key hashes to rows with a TTL and a size bound. It caches rows, not decisions:
// liveness is checked against the clock on every Verify, so a rotation's grace period ends on
// time even while the row is cached.
type cache struct {
	seed     maphash.Seed
	shards   [cacheShards]shard
	perShard int
	ttl      time.Duration
	negTTL   time.Duration
}

func newCache(maxEntries int, ttl, negTTL time.Duration) *cache {
	c := &cache{
		seed:     maphash.MakeSeed(),
		perShard: max(1, (maxEntries+cacheShards-1)/cacheShards),
		ttl:      ttl,
		negTTL:   negTTL,
	}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]entry)
	}
	return c
}

func (c *cache) shard(hash string) *shard {
	return &c.shards[maphash.String(c.seed, hash)%cacheShards]
}

func (c *cache) get(hash string, now time.Time) (entry, bool) {
	s := c.shard(hash)
	s.mu.RLock()
	e, ok := s.entries[hash]
	s.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		// Expired entries are left for put's sweep or overwritten by the refill; deleting here
		// would take the write lock on the hot path.
		return entry{}, false
	}
	return e, true
}

func (c *cache) generation(hash string) uint64 {
	s := c.shard(hash)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// put stores e unless the shard was invalidated since gen was read.
func (c *cache) put(hash string, e entry, gen uint64, now time.Time) {
	ttl := c.ttl
	if !e.found {
		ttl = c.negTTL
	}
	if ttl <= 0 {
		return
	}
	e.expires = now.Add(ttl)
	s := c.shard(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	if _, exists := s.entries[hash]; !exists && len(s.entries) >= c.perShard {
		s.evict(now, c.perShard)
	}
	s.entries[hash] = e
}

// evict makes room for one entry: expired entries go first; if that is not enough, an
// arbitrary one (map iteration order is randomised), which is cheap and good enough for a
// backstop bound: an evicted key costs one extra lookup.
func (s *shard) evict(now time.Time, limit int) {
	for h, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, h)
		}
	}
	for h := range s.entries {
		if len(s.entries) < limit {
			return
		}
		delete(s.entries, h)
	}
}

func (c *cache) invalidate(hash string) {
	s := c.shard(hash)
	s.mu.Lock()
	delete(s.entries, hash)
	s.gen++
	s.mu.Unlock()
}

// invalidateAll drops every entry (after a lost invalidation channel, when revocations
// may have been missed).
func (c *cache) invalidateAll() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.entries)
		s.gen++
		s.mu.Unlock()
	}
}
