package pubsub

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// fanout is the local half of every bus: subscriptions keyed by a backend channel name,
// each with its own bounded queue and goroutine. The cross-replica buses feed it from
// their receive loop; the Memory bus feeds it from Publish.
type fanout struct {
	queueSize int
	log       *slog.Logger
	dropped   atomic.Uint64
	wg        sync.WaitGroup

	mu     sync.Mutex
	closed bool
	subs   map[string]map[*subscriber]struct{}
	hooks  map[*func()]struct{}
}

func newFanout(queueSize int, log *slog.Logger) *fanout {
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	return &fanout{
		queueSize: queueSize,
		log:       log,
		subs:      make(map[string]map[*subscriber]struct{}),
		hooks:     make(map[*func()]struct{}),
	}
}

type subscriber struct {
	f    *fanout
	key  string
	fn   func([]byte)
	wake chan struct{} // capacity 1: a pending wake-up is enough, the queue holds the data
	stop chan struct{}

	mu      sync.Mutex
	queue   [][]byte
	stopped bool
	dropped uint64
}

// add registers fn under key and starts its goroutine. It returns nil after close.
func (f *fanout) add(key string, fn func([]byte)) *subscriber {
	s := &subscriber{f: f, key: key, fn: fn, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	m := f.subs[key]
	if m == nil {
		m = make(map[*subscriber]struct{})
		f.subs[key] = m
	}
	m[s] = struct{}{}
	f.wg.Add(1)
	go s.run()
	return s
}

// remove stops s; it does not wait for a callback in progress, so that a callback may
// cancel its own subscription.
func (f *fanout) remove(s *subscriber) {
	f.mu.Lock()
	if m := f.subs[s.key]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(f.subs, s.key)
		}
	}
	f.mu.Unlock()
	s.halt()
}

// has reports whether key has subscribers, i.e. whether the backend should listen on it.
func (f *fanout) has(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs[key]) > 0
}

func (f *fanout) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := make([]string, 0, len(f.subs))
	for k := range f.subs {
		ks = append(ks, k)
	}
	return ks
}

// deliver queues payload for every subscriber of key without waiting for any of them.
func (f *fanout) deliver(key string, payload []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs[key] {
		s.push(payload)
	}
}

func (f *fanout) onReconnect(fn func()) (cancel func()) {
	p := &fn
	f.mu.Lock()
	if !f.closed {
		f.hooks[p] = struct{}{}
	}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.hooks, p)
		f.mu.Unlock()
	}
}

// reconnected runs the reconnect hooks. They are copied out first so that a hook may
// (un)register hooks or subscriptions without deadlocking.
func (f *fanout) reconnected() {
	f.mu.Lock()
	hooks := make([]func(), 0, len(f.hooks))
	for p := range f.hooks {
		hooks = append(hooks, *p)
	}
	f.mu.Unlock()
	for _, h := range hooks {
		f.safeCall("reconnect hook", func() { h() })
	}
}

// close stops every subscription and waits for their goroutines.
func (f *fanout) close() {
	f.mu.Lock()
	f.closed = true
	var all []*subscriber
	for _, m := range f.subs {
		for s := range m {
			all = append(all, s)
		}
	}
	f.subs = make(map[string]map[*subscriber]struct{})
	f.hooks = make(map[*func()]struct{})
	f.mu.Unlock()
	for _, s := range all {
		s.halt()
	}
	f.wg.Wait()
}

// safeCall keeps one faulty subscriber from taking the process (and every other
// subscriber) down with it.
func (f *fanout) safeCall(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("pubsub: "+what+" panicked", slog.String("panic", fmt.Sprint(r)))
		}
	}()
	fn()
}

func (s *subscriber) push(p []byte) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	dropped := false
	if len(s.queue) >= s.f.queueSize {
		// Drop the oldest: the newest message describes the latest state, and for
		// invalidations an old one is no more precious than a new one.
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.dropped++
		dropped = true
	}
	s.queue = append(s.queue, p)
	first := dropped && s.dropped == 1
	s.mu.Unlock()
	if dropped {
		s.f.dropped.Add(1)
		if first {
			s.f.log.Warn("pubsub: subscriber too slow; dropping its oldest messages",
				slog.String("channel", s.key), slog.Int("queue", s.f.queueSize))
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) halt() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		s.queue = nil
		close(s.stop)
	}
	s.mu.Unlock()
}

func (s *subscriber) run() {
	defer s.f.wg.Done()
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		for {
			s.mu.Lock()
			// Checked under the lock before every call: once halt returns, no new call starts.
			if s.stopped || len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			p := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.mu.Unlock()
			s.f.safeCall("subscriber", func() { s.fn(p) })
		}
	}
}
