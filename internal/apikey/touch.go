package apikey

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// LastUsedStore is the part of Store the Toucher needs.
type LastUsedStore interface {
	TouchLastUsed(ctx context.Context, ids []pulid.ID, at time.Time) error
}

// ToucherOptions tune a Toucher. Zero values take the defaults.
type ToucherOptions struct {
	// Interval is the least time between two writes of one key's last_used_at. Default 1m:
	// the column is for humans ("used 3 minutes ago"), and one UPDATE per call would double
	// the database work of the gateway.
	Interval time.Duration
	// Tick is how often Run looks for keys to write. Default Interval/4, so that a key's
	// first use shows up well within a minute.
	Tick time.Duration
	// BatchSize caps the ids of one TouchLastUsed call. Default 500.
	BatchSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives write failures. Default slog.Default().
	Logger *slog.Logger
}

// Toucher remembers when keys were used and writes last_used_at in the background, so that
// Verify never waits for the database. Touch is lock-free for keys already seen.
type Toucher struct {
	store     LastUsedStore
	interval  time.Duration
	tick      time.Duration
	batchSize int
	now       func() time.Time
	log       *slog.Logger

	keys sync.Map // pulid.ID -> *touchState

	// flushMu serialises flushes; the flushed* fields of touchState belong to its holder.
	flushMu sync.Mutex
}

type touchState struct {
	used        atomic.Int64 // unix nanos of the latest use; written by Touch
	flushedUse  int64        // the value of used last written to the store
	attemptedAt int64        // unix nanos of the last write attempt
}

// NewToucher builds a Toucher writing through store.
func NewToucher(store LastUsedStore, opts ToucherOptions) *Toucher {
	if store == nil {
		panic("apikey: NewToucher needs a store")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Tick <= 0 {
		opts.Tick = opts.Interval / 4
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Toucher{
		store:     store,
		interval:  opts.Interval,
		tick:      opts.Tick,
		batchSize: opts.BatchSize,
		now:       opts.Now,
		log:       opts.Logger,
	}
}

// Touch records that key id was used at at. It never blocks on I/O.
func (t *Toucher) Touch(id pulid.ID, at time.Time) {
	ns := at.UnixNano()
	v, ok := t.keys.Load(id)
	if !ok {
		v, _ = t.keys.LoadOrStore(id, new(touchState))
	}
	st := v.(*touchState)
	for {
		old := st.used.Load()
		if old >= ns || st.used.CompareAndSwap(old, ns) {
			return
		}
	}
}

// Run writes due keys every Tick until ctx is done. Call Flush afterwards, with a shutdown
// deadline, to write what is still pending.
func (t *Toucher) Run(ctx context.Context) error {
	tk := time.NewTicker(t.tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			if err := t.flush(ctx, false); err != nil && ctx.Err() == nil {
				t.log.WarnContext(ctx, "apikey: writing last_used_at failed; will retry", slog.Any("error", err))
			}
		}
	}
}

// Flush writes every pending use now, whatever the interval says: it is for shutdown, when
// waiting another minute is not an option.
func (t *Toucher) Flush(ctx context.Context) error {
	return t.flush(ctx, true)
}

// idleAfterIntervals is how many intervals a key that is no longer used is remembered before
// its state is dropped, keeping the map to the keys in use.
const idleAfterIntervals = 10

func (t *Toucher) flush(ctx context.Context, force bool) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()

	now := t.now()
	nowNS := now.UnixNano()
	interval := t.interval.Nanoseconds()

	type due struct {
		id   pulid.ID
		st   *touchState
		used int64
	}
	var batch []due
	var errs []error
	write := func() {
		if len(batch) == 0 {
			return
		}
		ids := make([]pulid.ID, len(batch))
		for i, d := range batch {
			ids[i] = d.id
			// Counted even if the write fails: a failing database gets retried once per
			// interval per key, not hammered on every tick.
			d.st.attemptedAt = nowNS
		}
		if err := t.store.TouchLastUsed(ctx, ids, now); err != nil {
			errs = append(errs, err)
		} else {
			for _, d := range batch {
				d.st.flushedUse = d.used
			}
		}
		batch = batch[:0]
	}

	t.keys.Range(func(k, v any) bool {
		id, st := k.(pulid.ID), v.(*touchState)
		used := st.used.Load()
		if used <= st.flushedUse {
			if nowNS-st.attemptedAt > idleAfterIntervals*interval {
				t.forget(id, st)
			}
			return true
		}
		if !force && st.attemptedAt != 0 && nowNS-st.attemptedAt < interval {
			return true
		}
		batch = append(batch, due{id: id, st: st, used: used})
		if len(batch) >= t.batchSize {
			write()
		}
		return ctx.Err() == nil
	})
	write()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// forget drops an idle key's state. A use recorded in the dropped state just before the
// delete is carried over; one landing in the instant between the delete and that check is
// lost, which costs at most a stale last_used_at until the key's next use.
func (t *Toucher) forget(id pulid.ID, st *touchState) {
	if !t.keys.CompareAndDelete(id, st) {
		return
	}
	if used := st.used.Load(); used > st.flushedUse {
		t.Touch(id, time.Unix(0, used))
	}
}
