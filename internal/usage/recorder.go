package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
)

// ErrClosed is returned by Record once Close has begun.
var ErrClosed = errors.New("usage: recorder closed")

// RecorderOptions tune a Recorder. Zero values take the defaults.
type RecorderOptions struct {
	// MaxBatch caps the events of one transaction. Default 256, at most 2000.
	MaxBatch int
	// MaxWait is how long the writer, having taken the first event of a batch off an
	// empty queue, waits for companions before writing. Default 2ms: a small added
	// latency per call buys one transaction (one fsync) for every call that arrives in
	// the meantime. Negative means do not wait (events that are already queued are still
	// batched, which under load is most of the gain).
	MaxWait time.Duration
	// Async makes Record return once the event is queued instead of once it is
	// committed. A batch that still fails after its retry is then only logged: the
	// gateway has already answered. The queue is bounded and Record blocks (does not
	// drop) when it is full, so a slow database slows the gateway down rather than
	// losing billing data or growing memory without bound.
	Async bool
	// QueueSize bounds the queue. Default 2×MaxBatch when durable (callers wait anyway,
	// so a deep queue only adds latency) and 16×MaxBatch when async (absorbs bursts).
	QueueSize int
	// WriteTimeout bounds one attempt at a batch's transaction, so that a database that
	// stops answering fails the callers instead of hanging them. Default 10s.
	WriteTimeout time.Duration
	// Logger receives failed batches. Default slog.Default().
	Logger *slog.Logger
	// OnCommit is called by the writer after each committed batch that inserted
	// something, with the newly inserted events (replays left out, so counters fed from
	// it count each call once). It runs before the batch's callers are released, so it
	// must not block: it delays every caller of the batch and the next batch. The slice
	// belongs to the callee.
	OnCommit func([]Event)
	// Quota, when set, is fed the committed events before OnCommit, so that a call the
	// gateway has answered is already in the counter the next call is checked against.
	Quota *QuotaCounter
}

// Recorder writes usage records with group commit: one writer goroutine takes the
// events of concurrent callers off a queue and writes them, with their rollups, in one
// transaction per batch.
type Recorder struct {
	store        *store
	maxBatch     int
	maxWait      time.Duration
	async        bool
	writeTimeout time.Duration
	log          *slog.Logger
	onCommit     func([]Event)
	quota        *QuotaCounter

	queue chan *pending
	// mu is held for reading while a caller sends on queue and for writing while Close
	// closes it, so that no send can hit a closed channel.
	mu     sync.RWMutex
	closed bool
	// closing is closed when Close begins, releasing callers blocked on a full queue.
	closing   chan struct{}
	closeOnce sync.Once

	// ctx is the writer's: it does not come from any caller, so a caller that gives up
	// does not abort its batch for the others. Close cancels it only when its own
	// deadline passes.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the writer has exited

	// beforeWrite, when set (tests only), is called with each batch before it is written.
	beforeWrite func([]Event)
}

// pending is one queued event and, in durable mode, where its outcome goes.
type pending struct {
	ev   Event
	done chan error // buffered (1) so the writer never blocks on a caller that left; nil when async
}

// NewRecorder starts a Recorder writing to db. Close stops it.
func NewRecorder(db *database.DB, opts RecorderOptions) *Recorder {
	if db == nil || db.Client == nil || db.SQL == nil {
		panic("usage: NewRecorder needs an open database")
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	opts.MaxBatch = min(opts.MaxBatch, maxBatchLimit)
	switch {
	case opts.MaxWait == 0:
		opts.MaxWait = 2 * time.Millisecond
	case opts.MaxWait < 0:
		opts.MaxWait = 0
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 2 * opts.MaxBatch
		if opts.Async {
			opts.QueueSize = 16 * opts.MaxBatch
		}
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		store:        newStore(db),
		maxBatch:     opts.MaxBatch,
		maxWait:      opts.MaxWait,
		async:        opts.Async,
		writeTimeout: opts.WriteTimeout,
		log:          opts.Logger,
		onCommit:     opts.OnCommit,
		quota:        opts.Quota,
		queue:        make(chan *pending, opts.QueueSize),
		closing:      make(chan struct{}),
		ctx:          ctx,
		cancel:       cancel,
		done:         make(chan struct{}),
	}
	go r.run()
	return r
}

// Record stores ev. In durable mode (the default) it returns nil only once the
// transaction holding ev has committed, and the batch's error otherwise, so that the
// gateway never answers 2xx for a call without a record. A replayed request id is
// acknowledged with nil and neither stored nor counted again.
//
// If ctx ends first, Record returns ctx's error but the event stays queued and is
// written with its batch: the outcome is unknown to the caller, and recording again
// under the same request id is safe. In async mode Record returns once ev is queued.
func (r *Recorder) Record(ctx context.Context, ev Event) error {
	if err := ev.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ev.normalize()
	p := &pending{ev: ev}
	if !r.async {
		p.done = make(chan error, 1)
	}
	if err := r.enqueue(ctx, p); err != nil {
		return err
	}
	if p.done == nil {
		return nil
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue hands p to the writer, waiting while the queue is full.
func (r *Recorder) enqueue(ctx context.Context, p *pending) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	select {
	case <-r.closing:
		// Close has begun: refuse rather than let the select below pick at random.
		return ErrClosed
	default:
	}
	select {
	case r.queue <- p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closing:
		// Not accepted, so not drained: the caller learns it was not recorded.
		return ErrClosed
	}
}

// Close stops accepting events, writes everything already queued and stops the writer
// (the SIGTERM path). If ctx ends first, the transaction in flight is cancelled, the
// events still queued fail (durable callers get the error; async ones are logged) and
// Close returns ctx's error once the writer has exited. Later Record calls return
// ErrClosed. Close may be called more than once.
func (r *Recorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		close(r.closing)
		r.mu.Lock()
		r.closed = true
		close(r.queue)
		r.mu.Unlock()
	})
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return fmt.Errorf("usage: close: %w", ctx.Err())
	}
}

// run is the writer: it takes batches off the queue until the queue is closed and empty.
func (r *Recorder) run() {
	defer close(r.done)
	defer r.cancel()
	defer func() {
		if err := r.store.close(); err != nil {
			r.log.Warn("usage: close the batch statement", slog.Any("error", err))
		}
	}()
	batch := make([]*pending, 0, r.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		p, ok := <-r.queue
		if !ok {
			return
		}
		batch = append(batch[:0], p)
		batch, ok = r.collect(batch, timer)
		r.flush(batch)
		clear(batch) // let finished events be collected while the writer idles
		if !ok {
			return
		}
	}
}

// collect adds queued events to batch until it is full or nothing more arrives within
// MaxWait. It reports false once the queue is closed and drained.
func (r *Recorder) collect(batch []*pending, timer *time.Timer) ([]*pending, bool) {
	// What is already queued needs no timer: under load this is the whole batch.
	for len(batch) < r.maxBatch {
		select {
		case p, ok := <-r.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	if len(batch) >= r.maxBatch || r.maxWait <= 0 {
		return batch, true
	}
	timer.Reset(r.maxWait)
	defer timer.Stop()
	for len(batch) < r.maxBatch {
		select {
		case p, ok := <-r.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, p)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// flush writes one batch and releases its callers.
func (r *Recorder) flush(batch []*pending) {
	events := make([]Event, len(batch))
	for i, p := range batch {
		events[i] = p.ev
	}
	if r.beforeWrite != nil {
		r.beforeWrite(events)
	}
	inserted, err := r.write(uniqueSorted(events))
	if err == nil && len(inserted) > 0 {
		if r.quota != nil {
			r.quota.Observe(inserted)
		}
		if r.onCommit != nil {
			r.onCommit(inserted)
		}
	}
	if err != nil {
		r.logFailure(events, err)
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
}

// retryDelay is the pause before a batch's second attempt: long enough for a deadlock
// victim's competitor to finish or a connection to be replaced, short next to the
// callers' patience.
const retryDelay = 10 * time.Millisecond

// write runs the batch's transaction, retrying it once: a deadlock, a serialization
// failure or a dropped connection are usually gone on the second try. Retrying is safe
// even when a failed commit did in fact commit: the records are then found and skipped,
// and the rollups are not counted twice.
func (r *Recorder) write(events []Event) ([]Event, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			r.log.Warn("usage: batch failed; retrying once", slog.Int("events", len(events)), slog.Any("error", err))
			select {
			case <-time.After(retryDelay):
			case <-r.ctx.Done():
				return nil, err
			}
		}
		var inserted []Event
		if inserted, err = r.writeOnce(events); err == nil {
			return inserted, nil
		}
		if r.ctx.Err() != nil {
			break // Close gave up waiting: fail fast
		}
	}
	return nil, err
}

func (r *Recorder) writeOnce(events []Event) ([]Event, error) {
	// The writer acts for the service: usage rows are system-only (privacy.go), and the
	// tenant of each row comes from the API key the gateway verified, not from a viewer.
	ctx, cancel := context.WithTimeout(auth.SystemContext(r.ctx), r.writeTimeout)
	defer cancel()
	return r.store.write(ctx, events)
}

// logFailure logs a batch that was not written. In async mode nobody else will hear of
// it, so the request ids go to the log at error level for a manual replay.
func (r *Recorder) logFailure(events []Event, err error) {
	if !r.async {
		r.log.Warn("usage: batch failed; callers get the error", slog.Int("events", len(events)), slog.Any("error", err))
		return
	}
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.RequestID
	}
	r.log.Error("usage: batch lost after retry", slog.Int("events", len(events)),
		slog.String("request_ids", strings.Join(ids, ",")), slog.Any("error", err))
}

// uniqueSorted returns the events with one event per request id (the first), sorted by
// request id: duplicates in one statement would need the database to settle them, and a
// fixed order makes concurrent writers lock index entries in the same order.
func uniqueSorted(events []Event) []Event {
	out := slices.Clone(events)
	slices.SortStableFunc(out, func(a, b Event) int { return strings.Compare(a.RequestID, b.RequestID) })
	return slices.CompactFunc(out, func(a, b Event) bool { return a.RequestID == b.RequestID })
}
