// Package live keeps running usage statistics for the usageStats subscription and fans
// them out to subscribers.
//
// The flow: the usage Recorder's OnCommit hands each committed batch to Hub.Publish,
// which sends it to the bus (pubsub) asynchronously. Every replica's Hub subscribes to
// the bus topic and ingests every event exactly once, its own included (the cross-replica
// buses deliver a replica's own messages back through the backend, never directly), so
// a call answered by replica A shows up on a subscription held by replica B.
//
// Subscribers are grouped by filter. An event is matched against the groups through an
// index on each filter dimension and updates each matching group's running state once,
// however many subscribers the group has. One ticker goroutine sends the dirty groups'
// state to their subscribers every Interval, so a subscriber gets at most one message
// per Interval whatever the event rate. Sends never block: a subscriber that has not
// read its previous message has it replaced by the latest one, marked Resynced.
//
// The state is derived from messages that may be lost (a replica disconnected from the
// bus, a full queue), so it is re-read from the database whenever a loss is possible:
// on the bus's OnReconnect, when the bus reports dropped messages, and when a replica
// could not publish (it then publishes a resync request to every replica).
package live

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// ErrClosed is returned by Subscribe once Close has begun.
var ErrClosed = errors.New("live: hub closed")

// DefaultTopic is the bus topic usage events travel on.
const DefaultTopic = "usage.live"

// Filter selects the calls a subscription follows. Empty ids match anything, so the zero
// Filter follows every call (the platform admin's view).
//
// Subscribe trusts its filter: it does not know who is asking. The caller (the GraphQL
// resolver) must check the filter against the viewer before subscribing: a buyer only
// with its own TenantID, a provider only with its own ProviderTenantID, everything empty
// only for a platform admin.
type Filter struct {
	TenantID         pulid.ID // the buyer
	ProviderTenantID pulid.ID // the seller: a provider watching all buyers of its agents
	ConfigID         pulid.ID
	AgentID          pulid.ID
	KeyID            pulid.ID
	// PeriodStart starts the billing period that Stats.Period covers. It is truncated to
	// its UTC day because the rollups are daily. Zero means the current UTC calendar
	// month, which rolls over at each month's start; a given start never rolls over (the
	// caller subscribes again when the period changes).
	PeriodStart time.Time
}

// Totals are counts over a span of days.
type Totals struct {
	Requests     int64
	Errors       int64 // calls answered with status >= 400
	InputTokens  int64
	OutputTokens int64
}

// Minute describes the calls started in the last 60 seconds.
type Minute struct {
	Requests int64
	// P50Ms and P95Ms are latency percentiles (linear interpolation between ranks) over
	// the latest calls of the minute: at most MaxMinuteSamples of them, so that a busy
	// filter costs bounded memory. 0 when there was no call.
	P50Ms, P95Ms float64
}

// Call is one recent gateway call.
type Call struct {
	RequestID    string
	Status       int
	InputTokens  int64
	OutputTokens int64
	ElapsedMS    int64
	At           time.Time // when the call started (UTC)
	ErrorCode    string
}

// Stats is one message of a subscription: the whole current state, never a delta, so
// that a message that was skipped loses nothing.
type Stats struct {
	Day         Totals    // the current UTC day
	DayStart    time.Time // 00:00 UTC of that day
	Period      Totals    // the billing period (Filter.PeriodStart), today included
	PeriodStart time.Time
	LastMinute  Minute
	// Recent are the latest calls, newest (by start time) first. The slice is shared by
	// every subscriber of the filter: read it, do not modify it.
	Recent []Call
	AsOf   time.Time
	// Resynced is set when this message does not follow from the previous one: the
	// state was re-read from the database (the bus reconnected, messages were lost) or
	// the subscriber was too slow and earlier messages were dropped for this one.
	// Since every message is a whole state, a client needs no special handling; the
	// flag tells a dashboard (or a test) that what it shows jumped rather than ticked.
	Resynced bool

	// memo holds what consumers derived from this message (see Memo). A message is
	// shared by every subscriber of its filter, so this is where "render once per
	// filter, not once per subscriber" lives.
	memo *memo
}

// Options tune a Hub. Zero values take the defaults.
type Options struct {
	// Interval is the shortest time between two messages to a subscriber; events in
	// between are coalesced. Default 500ms. The groups are spread over the interval
	// (each has its own phase) so that their subscribers' messages are not all sent in
	// one burst that would stall everything else the process does.
	Interval time.Duration
	// BufferPerSubscriber is the capacity of each subscription's channel. Default 1:
	// the latest state is all a dashboard needs.
	BufferPerSubscriber int
	// RecentCalls caps Stats.Recent. Default 20.
	RecentCalls int
	// Topic is the bus topic. Default DefaultTopic. Every replica must use the same.
	Topic string
	// Logger receives lost messages and failed loads. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// LoadTimeout bounds reading one filter's state from the database. Default 10s.
	LoadTimeout time.Duration
	// MaxPublishQueue bounds the events waiting to be published. When the bus cannot
	// keep up, further events are dropped (and every replica told to resync) rather than
	// blocking the recorder or growing memory. Default 65536.
	MaxPublishQueue int
	// PublishInterval is the shortest time between two publishes to the bus; the
	// batches committed in between go out together (in one message, or several past
	// the bus's payload limit). Default 50ms, small next to
	// Interval. On PostgreSQL each publish is a transaction of its own (NOTIFY commits
	// like a write), and publishing every committed batch, several hundred a second at
	// 1,000 calls/s, doubled the commits the gateway's calls wait behind (make
	// bench-gateway at 1,000 calls/s: p50 3.4 -> 1.8 ms without them). Negative: publish at once.
	PublishInterval time.Duration
}

// Internal bounds. They are constants rather than options because they size memory
// per group and nothing outside needs to tune them.
const (
	// MaxMinuteSamples caps the latencies a group keeps for the last minute's p50/p95.
	MaxMinuteSamples = 512
	// maxPending bounds the events a group buffers while its state is being loaded;
	// beyond it the group is loaded again instead.
	maxPending = 4096
	// seenTTL is how long the request ids read with a group's state are remembered to
	// skip their events if they still arrive on the bus: longer than any plausible bus
	// delay between a commit and its delivery.
	seenTTL = 30 * time.Second
	// loadConcurrency bounds the hub's database loads in flight: first loads of new
	// filters and reloads alike. Each holds a pooled connection for its snapshot, and the
	// usage recorder's commits, which invokes wait for, need the same pool; without the
	// bound one person opening a few hundred distinct filters, or a mass reload after a
	// reconnect, could take every connection.
	loadConcurrency = 4
	// publishTimeout bounds one bus publish.
	publishTimeout = 5 * time.Second
	// maxPayload keeps each bus payload under PostgreSQL's NOTIFY limit (8000 bytes)
	// with room for the bus's own encoding tag.
	maxPayload = 7500
)

// Hub ingests usage events from the bus and serves subscriptions. It is safe for
// concurrent use.
type Hub struct {
	client *ent.Client
	bus    pubsub.Bus
	opts   Options
	log    *slog.Logger
	now    func() time.Time

	// ctx bounds database loads and bus publishes; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by Close: stops the ticker and the reloader
	wg     sync.WaitGroup

	unsubscribeBus func()
	unreconnect    func()
	dropped        func() uint64 // the bus's drop counter, when it has one

	pub        publisher
	reloadKick chan struct{} // capacity 1
	loads      chan struct{} // capacity loadConcurrency: a slot per database load in flight

	dialectMu sync.Mutex
	dialect   string

	// mu guards the groups and their state. Channel sends and closes happen under
	// sendMu instead, after mu is released, so that ingestion never waits while a flush
	// hands a message to thousands of subscribers. A flush holds flushMu throughout.
	mu          sync.Mutex
	closed      bool
	groups      map[groupKey]*group
	idx         index
	subscribers int
	lastDropped uint64
	matched     []*group // scratch for ingest
	scratch     []int64  // scratch for percentiles

	sendMu  sync.Mutex
	flushMu sync.Mutex
	sends   []send // scratch for flush, guarded by flushMu
	flushes uint64 // flushes so far, guarded by flushMu: turns the cohorts' order

	// nextPhase assigns new groups their flush phase round-robin; guarded by mu.
	nextPhase int

	delivered   atomic.Uint64 // messages handed to subscribers by flushes
	overwritten atomic.Uint64 // of which replaced an unread message (a slow subscriber)
}

// flushPhases is how many slices the flush interval is cut into: each group is flushed
// in one of them, once per interval.
const flushPhases = 8

// deliverChunk is how many subscribers a flush wakes at a time (see deliverPaced).
const deliverChunk = 64

// send is one message for one subscriber.
type send struct {
	s  *subscriber
	st *Stats
}

type cohortKey struct{}

// WithCohort returns a context whose subscriptions (Subscribe) belong to cohort id: a
// flush hands the messages of one cohort's subscriptions out back to back, in the same
// chunk (deliverPaced). The GraphQL layer makes each websocket connection a cohort, so
// that the connection writes their messages in one batch. Zero is no cohort.
func WithCohort(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, cohortKey{}, id)
}

// CohortFrom returns the cohort WithCohort put in ctx, or 0.
func CohortFrom(ctx context.Context) uint64 {
	id, _ := ctx.Value(cohortKey{}).(uint64)
	return id
}

// NewHub starts a hub reading the database through client and exchanging events on bus.
// It subscribes to the bus before returning, which with a cross-replica bus may take up
// to the bus's subscribe timeout when its backend is down (the hub then resyncs when the
// bus reconnects). Close stops it; it does not close the bus.
func NewHub(client *ent.Client, bus pubsub.Bus, opts Options) *Hub {
	if client == nil || bus == nil {
		panic("live: NewHub needs a client and a bus")
	}
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.BufferPerSubscriber <= 0 {
		opts.BufferPerSubscriber = 1
	}
	if opts.RecentCalls <= 0 {
		opts.RecentCalls = 20
	}
	if opts.Topic == "" {
		opts.Topic = DefaultTopic
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 10 * time.Second
	}
	if opts.MaxPublishQueue <= 0 {
		opts.MaxPublishQueue = 65536
	}
	switch {
	case opts.PublishInterval == 0:
		opts.PublishInterval = 50 * time.Millisecond
	case opts.PublishInterval < 0:
		opts.PublishInterval = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		client:     client,
		bus:        bus,
		opts:       opts,
		log:        opts.Logger,
		now:        opts.Now,
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		reloadKick: make(chan struct{}, 1),
		loads:      make(chan struct{}, loadConcurrency),
		groups:     make(map[groupKey]*group),
		idx:        newIndex(),
	}
	h.pub.init(h)
	if d, ok := bus.(interface{ Dropped() uint64 }); ok {
		h.dropped = d.Dropped
		h.lastDropped = d.Dropped()
	}
	h.unreconnect = bus.OnReconnect(func() {
		h.log.Info("live: bus reconnected; reloading usage stats from the database")
		h.requestReload()
	})
	h.unsubscribeBus = bus.Subscribe(opts.Topic, h.ingest)
	h.wg.Add(3)
	go h.ticker()
	go h.reloader()
	go h.pub.run()
	return h
}

// Publish hands committed events to every replica's hub, this one included. It never
// blocks: the events are queued and sent by a goroutine of the hub. It is meant to be
// the usage Recorder's OnCommit (which passes events it no longer uses; Publish keeps the
// slice). Events published after Close are dropped.
func (h *Hub) Publish(events []usage.Event) { h.pub.enqueue(events) }

// Subscribe follows the usage matching f. The first message, already in the channel
// when Subscribe returns, is the current state read from the database (shared with the
// other subscribers of the same filter); later messages follow at most once per Interval
// when something changed. When ctx ends (or the hub closes) the channel is closed.
//
// Subscribe does not authorize: check f against the viewer first (see Filter).
func (h *Hub) Subscribe(ctx context.Context, f Filter) (<-chan *Stats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := f.key()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	g := h.groups[k]
	if g == nil {
		g = newGroup(k, h.nextPhase)
		h.nextPhase = (h.nextPhase + 1) % flushPhases
		h.groups[k] = g
		h.idx.add(g)
		// The load runs on its own goroutine so that it serves every subscriber waiting
		// for this group, not just the first, whose context may end before the others'.
		h.wg.Add(1)
		go h.firstLoad(g)
	}
	g.refs++ // keeps the group alive while we wait for its load
	h.mu.Unlock()

	select {
	case <-g.ready:
	case <-ctx.Done():
		h.mu.Lock()
		h.release(g)
		h.mu.Unlock()
		return nil, ctx.Err()
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, ErrClosed
	case g.err != nil:
		h.release(g)
		return nil, g.err
	}
	s := &subscriber{g: g, ch: make(chan *Stats, h.opts.BufferPerSubscriber), cohort: CohortFrom(ctx)}
	g.subs[s] = struct{}{}
	h.subscribers++
	s.ch <- g.stats(h.now(), &h.scratch) // a fresh channel has room
	// AfterFunc starts no goroutine until ctx ends, which is what lets one process hold
	// tens of thousands of subscriptions.
	s.stop = context.AfterFunc(ctx, func() { h.unsubscribe(s) })
	return s.ch, nil
}

// Groups returns the number of distinct filters being followed: the hub's unit of work
// and memory. Exported for tests and metrics.
func (h *Hub) Groups() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.groups)
}

// Subscribers returns the number of open subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subscribers
}

// Delivered returns how many messages flushes handed to subscribers (first messages
// not included), and how many of those replaced a message the subscriber had not read
// yet: a subscriber too slow for the interval. Exported for metrics.
func (h *Hub) Delivered() (delivered, overwritten uint64) {
	return h.delivered.Load(), h.overwritten.Load()
}

// PublishDropped returns how many events Publish dropped because the bus could not
// keep up or failed.
func (h *Hub) PublishDropped() uint64 { return h.pub.droppedEvents.Load() }

// Close closes every subscription, stops the hub's goroutines and waits for them. Events
// already handed to Publish are sent first, for at most a few seconds. Close does not
// close the bus or the client. It may be called more than once.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var subs []*subscriber
	for _, g := range h.groups {
		for s := range g.subs {
			s.stop()
			s.removed = true
			subs = append(subs, s)
		}
		g.subs = nil
		g.freed = true
	}
	h.groups = nil
	h.idx = newIndex()
	h.subscribers = 0
	h.mu.Unlock()
	h.sendMu.Lock()
	for _, s := range subs {
		s.close()
	}
	h.sendMu.Unlock()

	h.unsubscribeBus()
	h.unreconnect()
	close(h.done)
	// The publisher flushes with its own deadline; loads in flight are abandoned.
	h.pub.close()
	h.cancel()
	h.wg.Wait()
	return nil
}

// subscriber is one subscription.
type subscriber struct {
	g       *group
	cohort  uint64 // see WithCohort
	ch      chan *Stats
	stop    func() bool // stops the context.AfterFunc; guarded by Hub.mu
	removed bool        // taken out of its group; guarded by Hub.mu
	closed  bool        // ch is closed; guarded by Hub.sendMu
}

func (s *subscriber) close() {
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// deliver sends st without blocking. Only the ticker sends (Subscribe's first message
// goes into a channel nobody else knows yet), under Hub.sendMu, so after making room the
// send cannot fail. It reports false when it had to replace an unread message.
func (s *subscriber) deliver(st *Stats) bool {
	select {
	case s.ch <- st:
		return true
	default:
	}
	// The subscriber has not read what it was sent: drop the oldest message, which the
	// new one supersedes (messages are whole states), and say so on a copy of its own:
	// st is shared with the rest of the group.
	select {
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- st.resyncedCopy():
	default:
	}
	return false
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if s.removed {
		h.mu.Unlock()
		return
	}
	s.removed = true
	delete(s.g.subs, s)
	h.subscribers--
	h.release(s.g)
	h.mu.Unlock()
	h.sendMu.Lock()
	s.close()
	h.sendMu.Unlock()
}

// release drops one reference to g and frees it with the last. Hub.mu must be held.
func (h *Hub) release(g *group) {
	g.refs--
	if g.refs <= 0 && !g.freed {
		h.free(g)
	}
}

// free forgets g: it stops matching events, and a load in flight for it is discarded.
func (h *Hub) free(g *group) {
	g.freed = true
	if h.groups[g.key] == g {
		delete(h.groups, g.key)
	}
	h.idx.remove(g)
	g.pending = nil
	g.counted = counted{}
}

// firstLoad reads a new group's state and releases the subscribers waiting for it.
func (h *Hub) firstLoad(g *group) {
	defer h.wg.Done()
	st, c, err := h.load(g.key)
	h.mu.Lock()
	defer h.mu.Unlock()
	defer close(g.ready)
	if err != nil {
		g.err = err
		if !g.freed {
			// Forgotten so that the next Subscribe tries again.
			h.free(g)
		}
		return
	}
	if !g.freed {
		h.install(g, st, c, false)
	}
}

// install makes a freshly loaded state g's, then applies the events that arrived during
// the load, minus those the load already counted. Hub.mu must be held.
func (h *Hub) install(g *group, st state, c counted, resynced bool) {
	g.st = st
	g.counted = c
	g.seenUntil = h.now().Add(seenTTL)
	g.loading = false
	g.loaded = true
	pending, overflow := g.pending, g.pendingOverflow
	g.pending, g.pendingOverflow = nil, false
	today := dayOf(h.now())
	for i := range pending {
		g.apply(&pending[i], today, h.now(), h.opts.RecentCalls)
	}
	// The first messages will show this count; the flush watches it slide from there.
	g.sentMinute = g.st.minuteCount(h.now())
	// After the first load, the subscribers waiting for it get the state with their
	// first message; after a reload, every subscriber needs the new state.
	if resynced {
		g.dirty, g.resynced = true, true
	}
	if overflow {
		g.needReload = true
	}
	if g.needReload {
		h.kickReload()
	}
}

// requestReload marks every group for reloading from the database.
func (h *Hub) requestReload() {
	h.mu.Lock()
	for _, g := range h.groups {
		g.needReload = true
	}
	h.mu.Unlock()
	h.kickReload()
}

func (h *Hub) kickReload() {
	select {
	case h.reloadKick <- struct{}{}:
	default:
	}
}

// reloader reloads the groups marked for it, retrying failed loads every second.
func (h *Hub) reloader() {
	defer h.wg.Done()
	var retry <-chan time.Time
	for {
		select {
		case <-h.reloadKick:
		case <-retry:
		case <-h.done:
			return
		}
		retry = nil
		if !h.reloadMarked() {
			retry = time.After(time.Second)
		}
	}
}

// reloadMarked reloads the marked groups and reports whether every load succeeded.
func (h *Hub) reloadMarked() bool {
	h.mu.Lock()
	var todo []*group
	for _, g := range h.groups {
		if g.needReload && g.loaded && !g.loading {
			g.needReload = false
			g.loading = true // events now wait in g.pending
			todo = append(todo, g)
		}
	}
	h.mu.Unlock()
	if len(todo) == 0 {
		return true
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, loadConcurrency)
		failMu sync.Mutex
		failed int
	)
	for _, g := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, c, err := h.load(g.key)
			h.mu.Lock()
			defer h.mu.Unlock()
			if g.freed {
				return
			}
			if err != nil {
				failMu.Lock()
				failed++
				failMu.Unlock()
				// Keep the old state, catch up with what arrived meanwhile, try again later.
				g.loading = false
				g.needReload = true
				pending := g.pending
				g.pending, g.pendingOverflow = nil, false
				now := h.now()
				for i := range pending {
					g.apply(&pending[i], dayOf(now), now, h.opts.RecentCalls)
				}
				return
			}
			h.install(g, st, c, true)
		}()
	}
	wg.Wait()
	if failed > 0 && h.ctx.Err() == nil {
		h.log.Warn("live: reloading usage stats failed; retrying", slog.Int("groups", failed))
	}
	return failed == 0
}

// ticker sends the dirty groups' state to their subscribers: one goroutine for the whole
// hub, however many subscriptions it holds. It wakes flushPhases times per Interval and
// flushes the groups of one phase each time, so every group is flushed once per Interval.
func (h *Hub) ticker() {
	defer h.wg.Done()
	t := time.NewTicker(max(h.opts.Interval/flushPhases, time.Millisecond))
	defer t.Stop()
	phase := 0
	for {
		select {
		case <-t.C:
			phase = (phase + 1) % flushPhases
			h.flush(phase)
		case <-h.done:
			return
		}
	}
}

// flush sends the state of the dirty groups of one phase (-1: all phases) to their
// subscribers.
func (h *Hub) flush(phase int) {
	if h.dropped != nil {
		// A message the bus dropped for any of its subscriptions may have been ours.
		if d := h.dropped(); d != h.lastDroppedSwap(d) {
			h.log.Warn("live: the bus dropped messages; reloading usage stats")
			h.requestReload()
		}
	}
	now := h.now()
	today := dayOf(now)
	h.flushMu.Lock()
	defer h.flushMu.Unlock()
	h.mu.Lock()
	for _, g := range h.groups {
		if !g.loaded || (phase >= 0 && g.phase != phase) {
			continue
		}
		if g.counted.ids != nil && now.After(g.seenUntil) {
			g.counted.ids = nil
		}
		if g.st.roll(today) {
			g.dirty = true
		}
		// The minute slides without events too: calls leaving it change the stats.
		if g.sentMinute != 0 && g.st.minuteCount(now) != g.sentMinute {
			g.dirty = true
		}
		if !g.dirty || len(g.subs) == 0 {
			continue
		}
		st := g.stats(now, &h.scratch)
		st.Resynced = g.resynced
		// What every subscriber of g now shows (a new subscriber's first message may be
		// fresher, but the next flush brings the others level with it).
		g.sentMinute = st.LastMinute.Requests
		for s := range g.subs {
			h.sends = append(h.sends, send{s: s, st: st})
		}
		g.dirty, g.resynced = false, false
	}
	h.mu.Unlock()
	h.flushes++
	sortByCohort(h.sends, h.flushes)
	h.deliverPaced(h.sends)
	clear(h.sends)
	h.sends = h.sends[:0]
}

// deliverPaced hands out a flush's messages deliverChunk at a time, spread over most of
// a phase. Each message wakes its subscriber's goroutine, which writes to a connection;
// waking thousands at once would queue every other goroutine of the process (the
// gateway's calls) behind them for tens of milliseconds.
func (h *Hub) deliverPaced(sends []send) {
	var pause time.Duration
	if chunks := (len(sends) + deliverChunk - 1) / deliverChunk; chunks > 1 {
		pause = h.opts.Interval / flushPhases * 3 / 4 / time.Duration(chunks)
	}
	for len(sends) > 0 {
		n := chunkLen(sends)
		var sent, replaced uint64
		h.sendMu.Lock()
		for _, d := range sends[:n] {
			// A subscription removed meanwhile is closed (under sendMu) and skipped.
			if !d.s.closed {
				sent++
				if !d.s.deliver(d.st) {
					replaced++
				}
			}
		}
		h.sendMu.Unlock()
		h.delivered.Add(sent)
		h.overwritten.Add(replaced)
		sends = sends[n:]
		if len(sends) > 0 && pause > 0 {
			select {
			case <-time.After(pause):
			case <-h.done:
				pause = 0 // closing: the rest are closed and skipped
			}
		}
	}
}

// chunkLen is how many of sends (sorted by cohort) the next chunk takes: deliverChunk,
// or more so as not to split a cohort, whose connection would then write twice.
func chunkLen(sends []send) int {
	n := min(deliverChunk, len(sends))
	for n < len(sends) && sends[n].s.cohort != 0 && sends[n].s.cohort == sends[n-1].s.cohort {
		n++
	}
	return n
}

// sortByCohort puts each cohort's messages back to back (see WithCohort), in an order
// of the cohorts that turn (any number, a different one per flush) decides: the later
// chunks of a flush wait up to most of a phase, and no connection should always be last.
func sortByCohort(sends []send, turn uint64) {
	slices.SortFunc(sends, func(a, b send) int {
		if c := cmp.Compare(mix(a.s.cohort^turn), mix(b.s.cohort^turn)); c != 0 {
			return c
		}
		return cmp.Compare(a.s.cohort, b.s.cohort)
	})
}

// mix is SplitMix64's finalizer: consecutive inputs come out in unrelated orders.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (h *Hub) lastDroppedSwap(d uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.lastDropped
	h.lastDropped = d
	return old
}

// ingest is the bus callback: it applies one payload's events to every matching group.
func (h *Hub) ingest(payload []byte) {
	// With nobody watching, the payload is not even decoded (a few percent of the
	// gateway's CPU otherwise, make bench-gateway): a subscription that starts later
	// reads what was committed from the database. Groups are registered before their
	// load starts, under mu, so an event is either seen here or in that load.
	h.mu.Lock()
	idle := len(h.groups) == 0
	h.mu.Unlock()
	if idle {
		return
	}
	msg, err := decodeMessage(payload)
	if err != nil {
		h.log.Warn("live: dropping undecodable usage message", slog.Any("error", err))
		return
	}
	if msg.Resync {
		h.log.Info("live: a replica lost usage events; reloading usage stats")
		h.requestReload()
	}
	if len(msg.Events) == 0 {
		return
	}
	events := make([]usage.Event, len(msg.Events))
	for i := range msg.Events {
		events[i] = msg.Events[i].event()
	}
	now := h.now()
	today := dayOf(now)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for i := range events {
		ev := &events[i]
		h.matched = h.idx.match(idsOf(ev), h.matched[:0])
		for _, g := range h.matched {
			g.ingest(ev, today, now, h.opts.RecentCalls)
		}
	}
	clear(h.matched)
}
