package live

import "sync"

// memo is a message's cache of derived values, one per key.
type memo struct {
	mu      sync.Mutex
	entries map[string]*memoEntry
}

type memoEntry struct {
	mu   sync.Mutex
	done bool
	v    any
}

// Memo returns derive's result for key, calling derive at most once per message and
// key: the first caller derives, concurrent callers with the same key wait for it, later
// ones get the stored value. A nil result (or a panic) is not stored: the next caller
// derives again, so that one subscriber whose rendering failed (its connection ended
// mid-way) does not leave the others to render for themselves.
//
// A message reaches every subscriber of its filter, so a transport that renders it for a
// subscriber can key the rendering by what the subscriber asked for, and render once per
// filter and request instead of once per subscriber. The value must not depend on
// anything but the message and the key, and must not be modified by those it is handed
// to.
//
// A Stats the hub did not build (a zero value, a test's) derives on every call.
func (s *Stats) Memo(key string, derive func() any) any {
	if s.memo == nil {
		return derive()
	}
	s.memo.mu.Lock()
	e := s.memo.entries[key]
	if e == nil {
		if s.memo.entries == nil {
			s.memo.entries = make(map[string]*memoEntry, 1)
		}
		e = &memoEntry{}
		s.memo.entries[key] = e
	}
	s.memo.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.done {
		if v := derive(); v != nil {
			e.v, e.done = v, true
		}
	}
	return e.v
}

// resyncedCopy returns s marked Resynced, for one subscriber: with a memo of its own,
// since renderings of s say Resynced is false.
func (s *Stats) resyncedCopy() *Stats {
	cp := *s
	cp.Resynced = true
	cp.memo = new(memo)
	return &cp
}
