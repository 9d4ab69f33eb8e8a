package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMemory(t *testing.T) {
	runConformance(t, func(t *testing.T) (Limiter, string) {
		m := NewMemory(MemoryOptions{})
		t.Cleanup(func() { _ = m.Close() })
		return m, ""
	})
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFakeMemory(t *testing.T) (*Memory, *fakeClock) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemory(MemoryOptions{Now: clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { _ = m.Close() })
	return m, clock
}

func TestMemoryRefill(t *testing.T) {
	m, clock := newFakeMemory(t)
	lim := PerMinute(50)
	spend(t, m, "k", lim, 50)
	r := mustAllow(t, m, "k", lim)
	if r.Allowed || r.RetryAfter != 1200*time.Millisecond || r.ResetAfter != time.Minute {
		t.Fatalf("51st: %+v, want rejected, RetryAfter 1.2s, ResetAfter 1m", r)
	}

	// GCRA refills continuously: one emission interval buys exactly one request.
	clock.Advance(1200*time.Millisecond - 1)
	if r := mustAllow(t, m, "k", lim); r.Allowed || r.RetryAfter != 1 {
		t.Fatalf("1ns early: %+v", r)
	}
	clock.Advance(1)
	if r := mustAllow(t, m, "k", lim); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after one interval: %+v", r)
	}

	// After a full period the whole budget is back, and not more.
	clock.Advance(time.Minute)
	spend(t, m, "k", lim, 50)
	if r := mustAllow(t, m, "k", lim); r.Allowed {
		t.Fatalf("51st after refill allowed: %+v", r)
	}

	// Idle credit does not accumulate beyond the burst.
	clock.Advance(time.Hour)
	spend(t, m, "k", lim, 50)
	if r := mustAllow(t, m, "k", lim); r.Allowed {
		t.Fatalf("51st after an idle hour allowed: %+v", r)
	}
}

func TestMemoryBurstSmallerThanRate(t *testing.T) {
	m, clock := newFakeMemory(t)
	lim := Limit{Rate: 60, Period: time.Minute, Burst: 5}
	spend(t, m, "k", lim, 5)
	if r := mustAllow(t, m, "k", lim); r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("6th: %+v", r)
	}
	clock.Advance(time.Second)
	spend(t, m, "k", lim, 1)
}

func TestMemoryJanitorEvictsOnlyFullBudgets(t *testing.T) {
	m, clock := newFakeMemory(t)
	lim := PerMinute(2)
	spend(t, m, "idle", lim, 1)
	clock.Advance(20 * time.Second)
	spend(t, m, "busy", lim, 2)
	clock.Advance(10 * time.Second) // idle's TAT (30s) is due; busy's (80s) is not
	m.evict()
	if n := m.len(); n != 1 {
		t.Fatalf("%d keys after eviction, want 1 (busy)", n)
	}
	if r := mustAllow(t, m, "busy", lim); r.Allowed {
		t.Fatalf("eviction reset a busy key: %+v", r)
	}
	if r := mustAllow(t, m, "idle", lim); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("evicted key: %+v, want full budget", r)
	}
}

func TestMemoryJanitorRunsAndStops(t *testing.T) {
	m := NewMemory(MemoryOptions{JanitorInterval: time.Millisecond})
	lim := Limit{Rate: 1000, Period: time.Second} // 1ms per request
	spend(t, m, "k", lim, 1)
	deadline := time.Now().Add(5 * time.Second)
	for m.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("janitor did not evict an idle key")
		}
		time.Sleep(time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_ = m.Close() // idempotent
}

func TestMemoryAllowAllSameKeyTwice(t *testing.T) {
	m, _ := newFakeMemory(t)
	c := Check{"k", PerMinute(3)}
	if r, _ := m.AllowAll(context.Background(), c, c); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("first: %+v, want both charged", r)
	}
	if r, _ := m.AllowAll(context.Background(), c, c); r.Allowed {
		t.Fatalf("second: %+v, want rejected (1 left, 2 asked)", r)
	}
	if r := mustAllow(t, m, "k", c.Limit); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("rejected pair spent budget: %+v", r)
	}
}

// Many keys and tenants at once: per-tenant counts must be exact and no key may exceed its own.
func TestMemoryAllowAllManyTenantsConcurrently(t *testing.T) {
	m := NewMemory(MemoryOptions{Shards: 4}) // few shards: many multi-shard lock orders
	t.Cleanup(func() { _ = m.Close() })
	const tenants, keysPerTenant, perKey, perTenant, calls = 5, 4, 8, 20, 100
	var mu sync.Mutex
	gotTenant := map[int]int{}
	gotKey := map[string]int{}
	var wg sync.WaitGroup
	for tn := range tenants {
		for i := range calls {
			wg.Go(func() {
				key := fmt.Sprintf("t%d:k%d", tn, i%keysPerTenant)
				r, err := m.AllowAll(context.Background(),
					Check{"key:" + key, PerMinute(perKey)}, Check{fmt.Sprintf("tenant:%d", tn), PerMinute(perTenant)})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					mu.Lock()
					gotTenant[tn]++
					gotKey[key]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for tn := range tenants {
		if gotTenant[tn] != perTenant {
			t.Errorf("tenant %d allowed %d, want %d", tn, gotTenant[tn], perTenant)
		}
	}
	for k, n := range gotKey {
		if n > perKey {
			t.Errorf("key %s allowed %d, over its %d", k, n, perKey)
		}
		// Every rejected request must have left the key's budget alone.
		left := 0
		for mustAllow(t, m, "key:"+k, PerMinute(perKey)).Allowed {
			left++
		}
		if n+left != perKey {
			t.Errorf("key %s: %d allowed + %d left != %d", k, n, left, perKey)
		}
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory(MemoryOptions{})
	b.Cleanup(func() { _ = m.Close() })
	keys, _ := benchNames()
	lim := PerMinute(1 << 30)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Allow(context.Background(), keys[i%len(keys)], lim); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkMemoryAllowAll(b *testing.B) {
	m := NewMemory(MemoryOptions{})
	b.Cleanup(func() { _ = m.Close() })
	keys, tenants := benchNames()
	lim := PerMinute(1 << 30)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, err := m.AllowAll(context.Background(),
				Check{keys[i%len(keys)], lim}, Check{tenants[i%len(tenants)], lim})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// benchNames returns key and tenant names to spread benchmark load over shards.
func benchNames() (keys, tenants []string) {
	keys = make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%d", i)
	}
	tenants = make([]string, 16)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant:%d", i)
	}
	return keys, tenants
}
