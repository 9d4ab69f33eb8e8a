package live

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
)

func TestFirstMessageIsCurrentStateFromRollups(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		now := time.Now().UTC()
		a, b := newScope(), newScope()
		monthStart := monthOf(now)
		lastMonth := monthStart.Add(-36 * time.Hour)
		events := []usage.Event{
			a.event(200, 10, 20, 100, now.Add(-5*time.Second)),
			a.event(502, 1, 0, 300, now.Add(-15*time.Second)),
			a.event(200, 7, 8, 200, now.Add(-30*time.Second)),
			a.event(200, 100, 200, 50, now.Add(-3*time.Minute)), // out of the minute
			a.event(200, 1000, 2000, 60, monthStart),            // this month, maybe today
			a.event(200, 5, 5, 70, lastMonth),                   // last month
			b.event(200, 9999, 9999, 10, now.Add(-time.Second)), // another tenant
		}
		rec := newRecorder(t, db, nil) // nothing published: the hub must read the rollups
		record(t, rec, events...)

		h := newHub(t, db.Client, newMemory(t), Options{})
		ch, _ := subscribe(t, h, Filter{TenantID: a.tenant, ConfigID: a.config})
		s := next(t, ch, time.Second) // already there

		isA := func(ev usage.Event) bool { return ev.TenantID == a.tenant }
		wantDay := totals(events, func(ev usage.Event) bool { return isA(ev) && dayOf(ev.StartedAt).Equal(dayOf(now)) })
		wantPeriod := totals(events, func(ev usage.Event) bool { return isA(ev) && !ev.StartedAt.Before(monthStart) })
		if s.Day != wantDay {
			t.Errorf("Day = %+v, want %+v", s.Day, wantDay)
		}
		if s.Period != wantPeriod {
			t.Errorf("Period = %+v, want %+v", s.Period, wantPeriod)
		}
		if !s.PeriodStart.Equal(monthStart) || !s.DayStart.Equal(dayOf(now)) {
			t.Errorf("PeriodStart %v DayStart %v", s.PeriodStart, s.DayStart)
		}
		if s.LastMinute.Requests != 3 || s.LastMinute.P50Ms != 200 || s.LastMinute.P95Ms != 290 {
			t.Errorf("LastMinute = %+v, want 3 requests, p50 200, p95 290", s.LastMinute)
		}
		// Newest first, within the recent window (last month's call may be outside it).
		mine := slices.Clone(events[:6])
		slices.SortStableFunc(mine, func(x, y usage.Event) int { return y.StartedAt.Compare(x.StartedAt) })
		var wantIDs, gotIDs []string
		for _, ev := range mine {
			if ev.StartedAt.After(now.Add(-recentWindow)) {
				wantIDs = append(wantIDs, ev.RequestID)
			}
		}
		for _, c := range s.Recent {
			gotIDs = append(gotIDs, c.RequestID)
		}
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("Recent = %v, want %v (newest first)", gotIDs, wantIDs)
		}
		if r := s.Recent[1]; r.Status != 502 || r.ElapsedMS != 300 || r.InputTokens != 1 {
			t.Errorf("Recent[1] = %+v", r)
		}
		if s.Resynced {
			t.Error("first message marked Resynced")
		}

		// A billing period given by the caller reaches back into last month.
		ch2, _ := subscribe(t, h, Filter{TenantID: a.tenant, PeriodStart: lastMonth.Add(time.Hour)})
		s2 := next(t, ch2, time.Second)
		wantPeriod2 := totals(events, isA)
		if s2.Period != wantPeriod2 || !s2.PeriodStart.Equal(dayOf(lastMonth)) {
			t.Errorf("custom period = %+v from %v, want %+v from %v", s2.Period, s2.PeriodStart, wantPeriod2, dayOf(lastMonth))
		}
	})
}

func TestEventArrivesWithinInterval(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		const interval = 200 * time.Millisecond
		a := newScope()
		h := newHub(t, db.Client, newMemory(t), Options{Interval: interval})
		rec := newRecorder(t, db, h.Publish)
		record(t, rec, a.event(200, 1, 1, 10, time.Now()))
		ch, _ := subscribe(t, h, Filter{ConfigID: a.config})
		first := next(t, ch, time.Second)
		if first.Day.Requests != 1 {
			t.Fatalf("first message: %+v", first.Day)
		}
		// Let the event recorded before subscribing drain from the bus.
		time.Sleep(2 * interval)
		for len(ch) > 0 {
			<-ch
		}

		ev := a.event(404, 3, 4, 25, time.Now())
		ev.ErrorCode = "not_found"
		start := time.Now()
		record(t, rec, ev)
		s := waitFor(t, ch, interval+500*time.Millisecond, "the new call", func(s *Stats) bool { return s.Day.Requests == 2 })
		t.Logf("committed -> delivered in %v (interval %v)", time.Since(start), interval)
		want := Totals{Requests: 2, Errors: 1, InputTokens: 4, OutputTokens: 5}
		if s.Day != want || s.Period != want {
			t.Errorf("Day %+v Period %+v, want %+v", s.Day, s.Period, want)
		}
		if s.LastMinute.Requests != 2 {
			t.Errorf("LastMinute = %+v", s.LastMinute)
		}
		if c := s.Recent[0]; c.RequestID != ev.RequestID || c.Status != 404 || c.ErrorCode != "not_found" || c.ElapsedMS != 25 {
			t.Errorf("Recent[0] = %+v", c)
		}
	})
}

func TestFiltersIsolate(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		const interval = 50 * time.Millisecond
		a := newScope()
		b := a.buyer()      // another buyer of the same provider's agent
		other := newScope() // another provider altogether
		h := newHub(t, db.Client, newMemory(t), Options{Interval: interval})
		rec := newRecorder(t, db, h.Publish)

		chA, _ := subscribe(t, h, Filter{TenantID: a.tenant, ConfigID: a.config})
		chKeyB, _ := subscribe(t, h, Filter{TenantID: b.tenant, KeyID: b.key})
		chProvider, _ := subscribe(t, h, Filter{ProviderTenantID: a.provider})
		chOther, _ := subscribe(t, h, Filter{TenantID: other.tenant})
		chAll, _ := subscribe(t, h, Filter{})
		for _, ch := range []<-chan *Stats{chA, chKeyB, chProvider, chOther, chAll} {
			if s := next(t, ch, time.Second); s.Day.Requests != 0 {
				t.Fatalf("empty database, first message %+v", s.Day)
			}
		}

		evB := b.event(200, 1, 1, 1, time.Now())
		record(t, rec, evB, a.event(200, 1, 1, 1, time.Now()), a.event(500, 1, 1, 1, time.Now()))

		sProvider := waitFor(t, chProvider, time.Second, "3 calls", func(s *Stats) bool { return s.Day.Requests == 3 })
		waitFor(t, chAll, time.Second, "3 calls", func(s *Stats) bool { return s.Day.Requests == 3 })
		waitFor(t, chKeyB, time.Second, "1 call", func(s *Stats) bool { return s.Day.Requests == 1 })
		sA := waitFor(t, chA, time.Second, "2 calls", func(s *Stats) bool { return s.Day.Requests == 2 })
		for _, c := range sA.Recent {
			if c.RequestID == evB.RequestID {
				t.Fatalf("buyer A saw buyer B's call %s", c.RequestID)
			}
		}
		if sA.Day.Errors != 1 || sProvider.Day.Errors != 1 {
			t.Errorf("errors: A %d provider %d", sA.Day.Errors, sProvider.Day.Errors)
		}
		// Nothing changed for the other provider's buyer: no message at all.
		expectQuiet(t, chOther, 4*interval)
		// Nor any later message with B's call for A.
		select {
		case s := <-chA:
			if s.Day.Requests != 2 {
				t.Fatalf("A got %+v", s.Day)
			}
		default:
		}
	})
}

func TestBurstIsCoalesced(t *testing.T) {
	const interval = 100 * time.Millisecond
	db := sqliteDB(t)
	a := newScope()
	h := newHub(t, db.Client, newMemory(t), Options{Interval: interval})
	ch, _ := subscribe(t, h, Filter{TenantID: a.tenant})
	next(t, ch, time.Second)

	start := time.Now()
	for range 100 {
		h.Publish([]usage.Event{a.event(200, 1, 2, 10, time.Now())})
	}
	const window = time.Second
	deadline := time.After(window)
	var msgs int
	var last *Stats
loop:
	for {
		select {
		case s := <-ch:
			msgs++
			last = s
		case <-deadline:
			break loop
		}
	}
	elapsed := time.Since(start)
	if last.Day.Requests != 100 || last.Day.OutputTokens != 200 {
		t.Fatalf("last message %+v, want 100 requests", last.Day)
	}
	if limit := int(elapsed/interval) + 1; msgs > limit || msgs == 0 {
		t.Fatalf("%d messages in %v for 100 events, want between 1 and %d", msgs, elapsed, limit)
	}
	t.Logf("100 events -> %d messages", msgs)
}

func TestSlowSubscriberBlocksNothing(t *testing.T) {
	const interval = 50 * time.Millisecond
	db := sqliteDB(t)
	a := newScope()
	h := newHub(t, db.Client, newMemory(t), Options{Interval: interval})
	slow, _ := subscribe(t, h, Filter{TenantID: a.tenant})                // never read until the end
	slowOther, _ := subscribe(t, h, Filter{ConfigID: a.config})           // another group, never read
	fast, _ := subscribe(t, h, Filter{TenantID: a.tenant})                // same group as slow
	fastOther, _ := subscribe(t, h, Filter{ProviderTenantID: a.provider}) // different group
	next(t, fast, time.Second)
	next(t, fastOther, time.Second)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc

	// The fast subscribers' delivery delay: from Publish to seeing the round's calls.
	var worstPublish, worstDelay time.Duration
	const rounds, perRound = 40, 250
	for i := range rounds {
		batch := make([]usage.Event, perRound)
		for j := range batch {
			batch[j] = a.event(200, 1, 1, int64(j), time.Now())
		}
		start := time.Now()
		h.Publish(batch)
		worstPublish = max(worstPublish, time.Since(start))
		want := int64((i + 1) * perRound)
		waitFor(t, fast, interval+2*time.Second, "the round's calls", func(s *Stats) bool { return s.Day.Requests >= want })
		waitFor(t, fastOther, interval+2*time.Second, "the round's calls", func(s *Stats) bool { return s.Day.Requests >= want })
		worstDelay = max(worstDelay, time.Since(start))
	}
	// Generous bounds: -race, GC and a shared machine. A Publish or a delivery that
	// waited for the stalled readers would not finish at all.
	if worstPublish > 100*time.Millisecond {
		t.Errorf("Publish took up to %v with stalled subscribers", worstPublish)
	}
	if worstDelay > interval+time.Second {
		t.Errorf("the fast subscribers waited up to %v for a round's calls", worstDelay)
	}
	// The stalled subscriptions hold one message each, however many were sent.
	if len(slow) != cap(slow) || cap(slow) != 1 || len(slowOther) != 1 {
		t.Fatalf("stalled channels hold %d and %d messages", len(slow), len(slowOther))
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grown := int64(ms.HeapAlloc) - int64(heapBefore); grown > 8<<20 {
		t.Errorf("heap grew by %d bytes over %d events", grown, rounds*perRound)
	}
	// When the stalled subscriber reads, it gets the latest state, flagged.
	s := <-slow
	if s.Day.Requests != rounds*perRound || !s.Resynced {
		t.Fatalf("stalled subscriber got %+v resynced=%v, want the latest state marked Resynced", s.Day, s.Resynced)
	}
	// The flushes counted what they sent, and the replacements the stalled ones cost.
	if delivered, overwritten := h.Delivered(); overwritten == 0 || delivered <= overwritten {
		t.Errorf("Delivered() = %d, %d: want messages sent and some of them replacing unread ones", delivered, overwritten)
	}
	t.Logf("worst Publish %v, worst delivery to the fast subscribers %v", worstPublish, worstDelay)
}

func TestLastSubscriberFreesGroup(t *testing.T) {
	db := sqliteDB(t)
	a, b := newScope(), newScope()
	h := newHub(t, db.Client, newMemory(t), Options{Interval: 20 * time.Millisecond})
	ch1, cancel1 := subscribe(t, h, Filter{TenantID: a.tenant})
	_, cancel2 := subscribe(t, h, Filter{TenantID: a.tenant})
	_, cancel3 := subscribe(t, h, Filter{TenantID: b.tenant})
	if g, s := h.Groups(), h.Subscribers(); g != 2 || s != 3 {
		t.Fatalf("groups %d subscribers %d, want 2 and 3", g, s)
	}
	waitCounts := func(groups, subs int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for h.Groups() != groups || h.Subscribers() != subs {
			if time.Now().After(deadline) {
				t.Fatalf("groups %d subscribers %d, want %d and %d", h.Groups(), h.Subscribers(), groups, subs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel1()
	waitCounts(2, 2)
	// The cancelled subscription's channel is closed (after its pending message).
	for range ch1 {
	}
	cancel2()
	waitCounts(1, 1)
	// Events for a freed group go nowhere; a new subscriber starts over from the database.
	h.Publish([]usage.Event{a.event(200, 1, 1, 1, time.Now())})
	cancel3()
	waitCounts(0, 0)
	h.mu.Lock()
	n := len(h.idx.all)
	for d := range h.idx.byDim {
		n += len(h.idx.byDim[d])
	}
	h.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d index entries left", n)
	}
}

// hubGoroutines returns the stacks of goroutines running the hub's code.
func hubGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "usage/live.(*Hub)") || strings.Contains(g, "usage/live.(*publisher)") {
			out = append(out, g)
		}
	}
	return out
}

func waitNoHubGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := hubGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hub goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGoroutinesEnd(t *testing.T) {
	db := sqliteDB(t)
	bus := newMemory(t)
	a := newScope()
	baseline := runtime.NumGoroutine()

	h := NewHub(db.Client, bus, Options{Interval: 10 * time.Millisecond, Logger: quietLogger()})
	var chans []<-chan *Stats
	var cancels []context.CancelFunc
	for i := range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		f := Filter{TenantID: a.tenant}
		if i%2 == 0 {
			f = Filter{ConfigID: a.config}
		}
		ch, err := h.Subscribe(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
		cancels = append(cancels, cancel)
	}
	h.Publish([]usage.Event{a.event(200, 1, 1, 1, time.Now())})
	// Half end by their context, the rest by Close.
	for _, c := range cancels[:25] {
		c()
	}
	time.Sleep(50 * time.Millisecond)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		timeout := time.After(time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-timeout:
				t.Fatalf("subscription %d not closed", i)
			}
		}
	}
	for _, c := range cancels[25:] {
		c() // after Close: must not panic or leak
	}
	if _, err := h.Subscribe(context.Background(), Filter{}); err != ErrClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	h.Publish([]usage.Event{a.event(200, 1, 1, 1, time.Now())}) // dropped, no panic
	waitNoHubGoroutines(t)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the hub", runtime.NumGoroutine(), baseline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSubscribeContextEndsWhileLoading(t *testing.T) {
	db := sqliteDB(t)
	h := newHub(t, db.Client, newMemory(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Subscribe(ctx, Filter{}); err == nil {
		t.Fatal("Subscribe with an ended context succeeded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for h.Groups() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d groups left", h.Groups())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingBus counts the messages published through it.
type countingBus struct {
	pubsub.Bus
	published atomic.Int64
}

func (b *countingBus) Publish(ctx context.Context, topic string, payload []byte) error {
	b.published.Add(1)
	return b.Bus.Publish(ctx, topic, payload)
}

// Committed batches arriving back to back (one per commit under steady load) go to the
// bus together, at most one message per PublishInterval: on PostgreSQL each message is
// a NOTIFY transaction that the gateway's own commits would wait behind. The first
// batch after a quiet spell goes out at once, and nothing is lost either way.
func TestPublishesAreCoalesced(t *testing.T) {
	const publishEvery = 100 * time.Millisecond
	db := sqliteDB(t)
	a := newScope()
	bus := &countingBus{Bus: newMemory(t)}
	h := newHub(t, db.Client, bus, Options{Interval: 20 * time.Millisecond, PublishInterval: publishEvery})
	ch, _ := subscribe(t, h, Filter{TenantID: a.tenant})
	next(t, ch, time.Second)

	// After a quiet spell: delivered well within the publish interval.
	start := time.Now()
	h.Publish([]usage.Event{a.event(200, 1, 1, 1, time.Now())})
	if s := next(t, ch, time.Second); s.Day.Requests != 1 {
		t.Fatalf("first message %+v, want 1 request", s.Day)
	}
	if d := time.Since(start); d > publishEvery {
		t.Errorf("a lone batch took %v to arrive, want less than the publish interval %v", d, publishEvery)
	}

	// 80 batches over about 400 ms (few enough per interval for one bus payload).
	const batches = 80
	bus.published.Store(0)
	start = time.Now()
	for range batches {
		h.Publish([]usage.Event{a.event(200, 1, 1, 1, time.Now())})
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, ch, 2*time.Second, "every request", func(s *Stats) bool { return s.Day.Requests == batches+1 })
	elapsed := time.Since(start)
	// One send per interval, each small enough for one bus message; twice that leaves
	// room for a send that a loaded machine delays past its payload limit, and is still
	// far from one message per batch.
	if n, limit := bus.published.Load(), 2*(int64(elapsed/publishEvery)+1); n > limit {
		t.Errorf("%d batches in %v went out in %d bus messages, want at most %d", batches, elapsed, n, limit)
	}
	t.Logf("%d batches in %v -> %d bus messages", batches, elapsed, bus.published.Load())
}

// Subscribe puts the subscription in the cohort its context names (WithCohort).
func TestSubscribeTakesCohortFromContext(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		h := newHub(t, db.Client, newMemory(t), Options{})
		a := newScope()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := h.Subscribe(WithCohort(ctx, 42), Filter{TenantID: a.tenant}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Subscribe(ctx, Filter{TenantID: a.tenant}); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		var cohorts []uint64
		for _, g := range h.groups {
			for s := range g.subs {
				cohorts = append(cohorts, s.cohort)
			}
		}
		slices.Sort(cohorts)
		if !slices.Equal(cohorts, []uint64{0, 42}) {
			t.Fatalf("cohorts %v, want [0 42]", cohorts)
		}
	})
}
