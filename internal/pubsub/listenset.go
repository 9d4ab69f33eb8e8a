package pubsub

import (
	"log/slog"
	"sync"
	"time"
)

// listenSet keeps the backend's subscriptions (LISTEN / SUBSCRIBE) in line with the
// channels the fanout has subscribers for. One goroutine applies the changes, in order,
// so that a Subscribe racing the cancel of the last subscriber of the same channel can
// never end with the channel unsubscribed, and so that cancel never waits on the network.
type listenSet struct {
	f     *fanout
	log   *slog.Logger
	apply func(channel string, listen bool) error // blocks until the change is in effect
	kick  chan struct{}                           // capacity 1
	done  chan struct{}

	mu      sync.Mutex
	active  map[string]bool // channels the backend confirmed; written by run only
	waiters map[string][]chan struct{}
}

// retryAfterError paces retries of a failed LISTEN/SUBSCRIBE: backends fail those only
// when the connection is gone, and the connection has its own reconnect backoff.
const retryAfterError = time.Second

func newListenSet(f *fanout, log *slog.Logger, apply func(string, bool) error) *listenSet {
	return &listenSet{
		f:       f,
		log:     log,
		apply:   apply,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		active:  make(map[string]bool),
		waiters: make(map[string][]chan struct{}),
	}
}

func (l *listenSet) changed() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// await asks for channel to be listened on and waits until it is, the timeout passes
// or the set stops. It reports whether the subscription is in effect.
func (l *listenSet) await(channel string, timeout time.Duration) bool {
	w := make(chan struct{})
	l.mu.Lock()
	l.waiters[channel] = append(l.waiters[channel], w)
	l.mu.Unlock()
	// Always a full pass, even if the channel looks active: it may be in the middle of
	// being unsubscribed for the previous last subscriber.
	l.changed()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w:
		return true
	case <-t.C:
	case <-l.done:
	}
	l.mu.Lock()
	ws := l.waiters[channel]
	for i, x := range ws {
		if x == w {
			l.waiters[channel] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(l.waiters[channel]) == 0 {
		delete(l.waiters, channel)
	}
	l.mu.Unlock()
	return false
}

// stop ends run; the caller must first make apply return (close the backend).
func (l *listenSet) stop() { close(l.done) }

func (l *listenSet) run() {
	var retry <-chan time.Time
	for {
		select {
		case <-l.kick:
		case <-retry:
		case <-l.done:
			return
		}
		retry = nil
		if !l.sync() {
			retry = time.After(retryAfterError)
		}
	}
}

// sync applies every pending change and releases the waiters of active channels. It
// reports false when some change failed and must be retried.
func (l *listenSet) sync() bool {
	ok := true
	chans := make(map[string]struct{})
	for _, k := range l.f.keys() {
		chans[k] = struct{}{}
	}
	l.mu.Lock()
	for k := range l.active {
		chans[k] = struct{}{}
	}
	l.mu.Unlock()
	for ch := range chans {
		// Read now, not from the snapshot: applying a stale unsubscribe would leave a new
		// subscriber deaf until the next change.
		w := l.f.has(ch)
		l.mu.Lock()
		have := l.active[ch]
		l.mu.Unlock()
		if w == have {
			continue
		}
		select {
		case <-l.done:
			return true
		default:
		}
		if err := l.apply(ch, w); err != nil {
			ok = false
			select {
			case <-l.done:
				return true // closing: the backend refused because it is closed
			default:
			}
			l.log.Warn("pubsub: backend (un)subscribe failed; will retry",
				slog.String("channel", ch), slog.Bool("listen", w), slog.Any("error", err))
			continue
		}
		l.mu.Lock()
		if w {
			l.active[ch] = true
		} else {
			delete(l.active, ch)
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	for ch, ws := range l.waiters {
		if l.active[ch] {
			for _, w := range ws {
				close(w)
			}
			delete(l.waiters, ch)
		}
	}
	l.mu.Unlock()
	// A change that arrived during the pass has kicked again; run will come back.
	return ok
}
