package live

import (
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/usage"
)

func TestPGSnapshotVisibility(t *testing.T) {
	snap, err := parsePGSnapshot("100:105:101,103")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint64]bool{
		1: true, 99: true, // ended before the snapshot
		100: true, 102: true, 104: true, // between the bounds, not running then
		101: false, 103: false, // running when it was taken
		105: false, 200: false, // started after it
	} {
		if got := snap.visible(xid); got != want {
			t.Errorf("visible(%d) = %v, want %v", xid, got, want)
		}
	}
	if s, err := parsePGSnapshot("7:7:"); err != nil || !s.visible(6) || s.visible(7) {
		t.Errorf("empty snapshot 7:7: %v, %v", s, err)
	}
	for _, bad := range []string{"", "1:2", "x:2:", "5:4:", "1:5:7", "1:5:a", "1:5:2,,3"} {
		if _, err := parsePGSnapshot(bad); err == nil {
			t.Errorf("parsePGSnapshot(%q) accepted", bad)
		}
	}
}

// A call that ended just before a dashboard loaded its totals, but started long before
// (a slow agent run) or among more calls than the load reads one by one, is in the totals
// the load read; its commit's message, arriving afterwards, must not count it again. The
// request ids the load read cannot tell (the call is not among them); on PostgreSQL the
// event's transaction id, compared with the load's snapshot, does.
func TestLateMessageOfCallOutsideTheLoadedRowsCountsOnce(t *testing.T) {
	db := dbtest.Open(t, database.DriverPostgres)
	// RecentCalls 1: the load reads one recent call, the newest, so the long one is not
	// among the ids it read (as with more than RecentCalls calls since).
	// The clock is noon today, so that a call started three minutes earlier is today's.
	var c clock
	c.set(dayOf(time.Now()).Add(12 * time.Hour))
	h := newHub(t, db.Client, newMemory(t), Options{Interval: 20 * time.Millisecond, RecentCalls: 1, Now: c.now})
	var mu sync.Mutex
	var committed []usage.Event
	rec := newRecorder(t, db, func(evs []usage.Event) {
		mu.Lock()
		committed = append(committed, evs...)
		mu.Unlock()
	})
	a := newScope()
	now := c.now()
	long := a.event(200, 5, 5, 180_000, now.Add(-3*time.Minute))
	record(t, rec, long, a.event(200, 1, 1, 10, now))
	mu.Lock()
	late := append([]usage.Event(nil), committed...) // both commits' messages, held back
	mu.Unlock()
	if len(late) != 2 || late[0].CommitXID == 0 {
		t.Fatalf("committed events %+v: want two, with their transaction ids", late)
	}

	ch, _ := subscribe(t, h, Filter{ConfigID: a.config})
	if s := next(t, ch, time.Second); s.Day.Requests != 2 {
		t.Fatalf("first message %+v", s.Day)
	}
	h.Publish(late) // the commits' messages, late
	other := a.event(200, 1, 1, 10, now)
	record(t, rec, other)
	mu.Lock()
	h.Publish(committed[len(committed)-1:])
	mu.Unlock()
	s := waitFor(t, ch, 2*time.Second, "the next call", func(s *Stats) bool { return s.Recent[0].RequestID == other.RequestID })
	if s.Day.Requests != 3 || s.Day.InputTokens != 7 {
		t.Fatalf("day %+v: want 3 calls and 7 input tokens; a late message was counted again", s.Day)
	}
}
