package ratelimit

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configures NewMemory. The zero value is ready to use.
type MemoryOptions struct {
	// Now is the clock; nil means time.Now. Tests inject a fake one to step through periods.
	Now func() time.Time
	// JanitorInterval is how often keys whose budget is full again are evicted; 0 means every
	// minute, negative disables the janitor (memory then grows with the number of keys ever seen).
	JanitorInterval time.Duration
	// Shards splits the key space so unrelated keys do not contend on one mutex; 0 means 32.
	Shards int
}

// Memory is an in-process GCRA limiter. Decisions are exact under concurrency: each key's TAT is
// read and written under its shard's mutex. It does not share budgets across replicas; use Redis
// for that. Close stops the janitor.
type Memory struct {
	now    func() time.Time
	base   time.Time // TATs are nanoseconds since base, using the monotonic clock when real
	seed   maphash.Seed
	shards []shard

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type shard struct {
	mu   sync.Mutex
	tats map[string]int64
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-process limiter and starts its janitor.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Shards <= 0 {
		opts.Shards = 32
	}
	if opts.JanitorInterval == 0 {
		opts.JanitorInterval = time.Minute
	}
	m := &Memory{
		now:    opts.Now,
		base:   opts.Now(),
		seed:   maphash.MakeSeed(),
		shards: make([]shard, opts.Shards),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].tats = make(map[string]int64)
	}
	if opts.JanitorInterval > 0 {
		go m.janitor(opts.JanitorInterval)
	} else {
		close(m.done)
	}
	return m
}

// Close stops the janitor. The limiter keeps working without it.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() { close(m.stop) })
	<-m.done
	return nil
}

func (m *Memory) janitor(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.evict()
		}
	}
}

// evict drops keys whose TAT is not in the future: such a key has its full burst available, which
// is exactly the state of an absent key, so eviction never changes a decision.
func (m *Memory) evict() {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		now := m.elapsed()
		for k, tat := range s.tats {
			if tat <= now {
				delete(s.tats, k)
			}
		}
		s.mu.Unlock()
	}
}

// len counts tracked keys (tests).
func (m *Memory) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

func (m *Memory) elapsed() int64 { return int64(m.now().Sub(m.base)) }

func (m *Memory) shardOf(key string) int {
	return int(maphash.String(m.seed, key) % uint64(len(m.shards)))
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit Limit) (Result, error) {
	if err := limit.validate(); err != nil {
		return Result{}, err
	}
	limit = limit.normalized()
	s := &m.shards[m.shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	// Read the clock under the lock so that decisions on one key see non-decreasing times.
	now := m.elapsed()
	newTAT, r := gcra(now, s.tats[key], limit)
	if r.Allowed {
		s.tats[key] = newTAT
	}
	return r, nil
}

// AllowAll implements Limiter. All checks are decided under their shards' locks (taken in index
// order, so concurrent calls cannot deadlock) and committed only if every one allows, so a request
// rejected by one limit spends nothing of the others.
func (m *Memory) AllowAll(_ context.Context, checks ...Check) (Result, error) {
	checks, err := active(checks)
	if err != nil {
		return Result{}, err
	}
	if len(checks) == 0 {
		return Result{Allowed: true}, nil
	}

	idx := make([]int, len(checks))
	for i, c := range checks {
		idx[i] = m.shardOf(c.Key)
	}
	locks := slices.Clone(idx)
	slices.Sort(locks)
	locks = slices.Compact(locks)
	for _, i := range locks {
		m.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range locks {
			m.shards[i].mu.Unlock()
		}
	}()

	now := m.elapsed()
	results := make([]Result, len(checks))
	tats := make([]int64, len(checks))
	allowed := true
	for i, c := range checks {
		tat := m.shards[idx[i]].tats[c.Key]
		// The same key twice in one request is charged twice: see the staged TAT, not the stored.
		for j := range i {
			if checks[j].Key == c.Key && results[j].Allowed {
				tat = tats[j]
			}
		}
		tats[i], results[i] = gcra(now, tat, c.Limit)
		allowed = allowed && results[i].Allowed
	}
	if allowed {
		for i, c := range checks {
			m.shards[idx[i]].tats[c.Key] = tats[i]
		}
	}
	return mostRestrictive(results), nil
}

// gcra decides one request at time now (ns) against the key's stored TAT (0 when absent) and
// returns the TAT to store if it is allowed. Integer nanoseconds keep it exact: after Burst
// requests at one instant the next is rejected, never one more or one less through rounding.
func gcra(now, tat int64, l Limit) (int64, Result) {
	interval := int64(l.interval())
	burstOffset := interval * int64(l.Burst)
	tat = max(tat, now)
	newTAT := tat + interval
	allowAt := newTAT - burstOffset
	if now < allowAt {
		return tat, Result{
			Limit:      l,
			RetryAfter: time.Duration(allowAt - now),
			ResetAfter: time.Duration(tat - now),
		}
	}
	return newTAT, Result{
		Allowed:    true,
		Limit:      l,
		Remaining:  int((now - allowAt) / interval),
		ResetAfter: time.Duration(newTAT - now),
	}
}
