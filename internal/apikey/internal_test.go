package apikey

import (
	"context"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

func TestCacheSizeIsBounded(t *testing.T) {
	const limit = 128
	c := newCache(limit, time.Hour, time.Second)
	now := time.Unix(0, 0)
	for i := range 10 * limit {
		c.put(HashKey(string(rune(i))), entry{found: true}, 0, now)
	}
	total := 0
	for i := range c.shards {
		total += len(c.shards[i].entries)
	}
	// Each shard holds at most its share, rounded up.
	if max := cacheShards * ((limit + cacheShards - 1) / cacheShards); total > max || total == 0 {
		t.Fatalf("cache holds %d entries, limit %d", total, max)
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	c := newCache(1, time.Minute, time.Second) // one entry per shard
	now := time.Unix(0, 0)
	h := "a"
	s := c.shard(h)
	c.put(h, entry{found: true}, 0, now)
	// Another hash of the same shard, after h expired: h goes, the new one stays.
	var other string
	for i := 0; ; i++ {
		other = HashKey(string(rune(i)))
		if c.shard(other) == s && other != h {
			break
		}
	}
	later := now.Add(2 * time.Minute)
	c.put(other, entry{found: true}, 0, later)
	if _, ok := c.get(other, later); !ok || len(s.entries) != 1 {
		t.Fatalf("entries %v", s.entries)
	}
}

type nopTouchStore struct{}

func (nopTouchStore) TouchLastUsed(context.Context, []pulid.ID, time.Time) error { return nil }

func TestToucherForgetsIdleKeys(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tc := NewToucher(nopTouchStore{}, ToucherOptions{Now: func() time.Time { return now }})
	id := pulid.MustNew("key")
	tc.Touch(id, now)
	if err := tc.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := tc.keys.Load(id); !ok {
		t.Fatal("state dropped right after the write")
	}
	now = now.Add(idleAfterIntervals*time.Minute + time.Second)
	if err := tc.flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, ok := tc.keys.Load(id); ok {
		t.Fatal("idle key still remembered")
	}
}
