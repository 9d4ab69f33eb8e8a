package live

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// droppingBus reports drops on demand, as a bus whose queue overflowed would.
type droppingBus struct {
	pubsub.Bus
	dropped atomic.Uint64
}

func (b *droppingBus) Dropped() uint64 { return b.dropped.Load() }

func TestBusDropsResync(t *testing.T) {
	db := sqliteDB(t)
	bus := &droppingBus{Bus: newMemory(t)}
	h := newHub(t, db.Client, bus, Options{Interval: 50 * time.Millisecond})
	a := newScope()
	ch, _ := subscribe(t, h, Filter{AgentID: a.agent})
	next(t, ch, time.Second)
	record(t, newRecorder(t, db, nil), a.event(200, 1, 1, 1, time.Now()))
	bus.dropped.Add(1) // the message of that call was lost
	s := waitFor(t, ch, 3*time.Second, "a resync", func(s *Stats) bool { return s.Resynced })
	if s.Day.Requests != 1 {
		t.Fatalf("after resync %+v", s.Day)
	}
}

// clock is a settable Now.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) now() time.Time  { return *c.t.Load() }
func (c *clock) set(t time.Time) { c.t.Store(&t) }

func TestMidnightStartsANewDay(t *testing.T) {
	db := sqliteDB(t)
	var c clock
	c.set(time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC))
	h := newHub(t, db.Client, newMemory(t), Options{Interval: 20 * time.Millisecond, Now: c.now})
	a := newScope()
	ch, _ := subscribe(t, h, Filter{TenantID: a.tenant})
	next(t, ch, time.Second)
	h.Publish([]usage.Event{a.event(200, 1, 1, 1, c.now())})
	waitFor(t, ch, time.Second, "the call", func(s *Stats) bool { return s.Day.Requests == 1 && s.Period.Requests == 1 })

	c.set(time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC))
	s := waitFor(t, ch, time.Second, "a new day", func(s *Stats) bool { return s.DayStart.Day() == 1 })
	if s.Day.Requests != 0 || s.Period.Requests != 0 || s.PeriodStart.Month() != time.April {
		t.Fatalf("after midnight: day %+v period %+v from %v", s.Day, s.Period, s.PeriodStart)
	}
	// The call of 23:59:59 is still in the last minute.
	if s.LastMinute.Requests != 1 {
		t.Fatalf("last minute %+v", s.LastMinute)
	}
	c.set(time.Date(2026, 4, 1, 0, 1, 5, 0, time.UTC))
	waitFor(t, ch, time.Second, "the minute emptied", func(s *Stats) bool { return s.LastMinute.Requests == 0 })
}

// Subscriptions come and go while events flow and the hub closes: the race detector
// and the goroutine check are the assertions.
func TestConcurrentChurn(t *testing.T) {
	db := sqliteDB(t)
	bus := newMemory(t)
	h := NewHub(db.Client, bus, Options{Interval: 5 * time.Millisecond, Logger: quietLogger()})
	scopes := []scope{newScope(), newScope(), newScope()}
	filters := []Filter{{}, {TenantID: scopes[0].tenant}, {ConfigID: scopes[1].config}, {ProviderTenantID: scopes[2].provider}, {KeyID: scopes[0].key}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := scopes[rand.IntN(len(scopes))]
			h.Publish([]usage.Event{s.event(200, 1, 1, 1, time.Now())})
			time.Sleep(time.Millisecond)
		}
	}()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(30))*time.Millisecond)
				ch, err := h.Subscribe(ctx, filters[(w+i)%len(filters)])
				if err == nil {
					for range ch {
						if rand.IntN(3) == 0 {
							time.Sleep(10 * time.Millisecond) // a slow reader now and then
						}
					}
				}
				cancel()
			}
		}()
	}
	time.Sleep(time.Second)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	waitNoHubGoroutines(t)
	if h.Groups() != 0 || h.Subscribers() != 0 {
		t.Fatalf("groups %d subscribers %d after Close", h.Groups(), h.Subscribers())
	}
}

// A call committed before a group's state was read, whose bus message arrives after,
// is not counted twice.
func TestLateMessageOfLoadedCallCountsOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		h := newHub(t, db.Client, newMemory(t), Options{Interval: 20 * time.Millisecond})
		a := newScope()
		ev := a.event(200, 1, 1, 1, time.Now())
		record(t, newRecorder(t, db, nil), ev)
		ch, _ := subscribe(t, h, Filter{ConfigID: a.config})
		if s := next(t, ch, time.Second); s.Day.Requests != 1 {
			t.Fatalf("first message %+v", s.Day)
		}
		h.Publish([]usage.Event{ev}) // the commit's message, late
		other := a.event(200, 1, 1, 1, time.Now())
		h.Publish([]usage.Event{other})
		s := waitFor(t, ch, time.Second, "the next call", func(s *Stats) bool { return s.Recent[0].RequestID == other.RequestID })
		if s.Day.Requests != 2 || s.LastMinute.Requests != 2 || len(s.Recent) != 2 {
			t.Fatalf("day %+v minute %+v recent %d: the late message was counted again", s.Day, s.LastMinute, len(s.Recent))
		}
	})
}

// Calls read with the state leave the last minute on time even if nothing else happens.
func TestLoadedMinuteSlides(t *testing.T) {
	db := sqliteDB(t)
	a := newScope()
	var c clock
	c.set(time.Now())
	record(t, newRecorder(t, db, nil), a.event(200, 1, 1, 1, c.now().Add(-50*time.Second)))
	h := newHub(t, db.Client, newMemory(t), Options{Interval: 20 * time.Millisecond, Now: c.now})
	ch, _ := subscribe(t, h, Filter{TenantID: a.tenant})
	if s := next(t, ch, time.Second); s.LastMinute.Requests != 1 {
		t.Fatalf("first message %+v", s.LastMinute)
	}
	c.set(c.now().Add(15 * time.Second))
	waitFor(t, ch, time.Second, "the call leaving the minute", func(s *Stats) bool { return s.LastMinute.Requests == 0 })
}
