package live

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
)

var appSeq atomic.Uint64

// newPGBus starts a replica's PostgreSQL bus whose listener session has a unique
// application_name, so that a test can terminate exactly its backend.
func newPGBus(t *testing.T, url string) (*pubsub.Postgres, string) {
	t.Helper()
	app := fmt.Sprintf("livetest-%d-%d", time.Now().UnixNano(), appSeq.Add(1))
	b, err := pubsub.NewPostgres(url, pubsub.PostgresOptions{ApplicationName: app, MinReconnect: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, app
}

func newRedisBus(t *testing.T) *pubsub.Redis {
	t.Helper()
	opt, err := redis.ParseURL(serviceURL(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	b, err := pubsub.NewRedis(c, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// testReplicas: a call recorded and published on replica A reaches a subscriber held by
// replica B within a second, and a large batch is split into payloads the bus accepts.
func testReplicas(t *testing.T, db *database.DB, busA, busB pubsub.Bus) {
	topic := uniqueTopic()
	opts := Options{Interval: 100 * time.Millisecond, Topic: topic}
	hubA := newHub(t, db.Client, busA, opts)
	hubB := newHub(t, db.Client, busB, opts)
	recA := newRecorder(t, db, hubA.Publish)
	a := newScope()

	chB, _ := subscribe(t, hubB, Filter{TenantID: a.tenant})
	chA, _ := subscribe(t, hubA, Filter{TenantID: a.tenant})
	next(t, chB, time.Second)
	next(t, chA, time.Second)

	ev := a.event(200, 5, 6, 42, time.Now())
	start := time.Now()
	record(t, recA, ev)
	s := waitFor(t, chB, time.Second, "A's call on B", func(s *Stats) bool { return s.Day.Requests == 1 })
	t.Logf("replica A commit -> replica B delivery: %v", time.Since(start))
	if s.Recent[0].RequestID != ev.RequestID || s.Day.OutputTokens != 6 {
		t.Fatalf("B got %+v", s)
	}
	// The publisher hears its own message once, through the bus.
	waitFor(t, chA, time.Second, "A's call on A", func(s *Stats) bool { return s.Day.Requests == 1 })

	// 300 events with long ids in one commit: many payloads, all under NOTIFY's limit.
	batch := make([]usage.Event, 300)
	for i := range batch {
		batch[i] = a.event(200, 1, 1, 1, time.Now())
		batch[i].RequestID = fmt.Sprintf("%0120d", i) + batch[i].RequestID[len(batch[i].RequestID)-8:]
		batch[i].ErrorCode = fmt.Sprintf("%064d", i)
	}
	hubA.Publish(batch)
	waitFor(t, chB, 2*time.Second, "301 calls on B", func(s *Stats) bool { return s.Day.Requests == 301 })
	// And exactly once on A as well.
	s = waitFor(t, chA, 2*time.Second, "301 calls on A", func(s *Stats) bool { return s.Day.Requests >= 301 })
	time.Sleep(300 * time.Millisecond)
	for len(chA) > 0 {
		s = <-chA
	}
	if s.Day.Requests != 301 {
		t.Fatalf("A counted %d calls, want 301", s.Day.Requests)
	}
	if d := hubA.PublishDropped(); d != 0 {
		t.Fatalf("%d events dropped", d)
	}
}

func TestReplicasOverPostgres(t *testing.T) {
	url := dbtest.PostgresURL(t)
	db := dbtest.Open(t, database.DriverPostgres)
	busA, _ := newPGBus(t, url)
	busB, _ := newPGBus(t, url)
	testReplicas(t, db, busA, busB)
}

func TestReplicasOverRedis(t *testing.T) {
	db := sqliteDB(t)
	testReplicas(t, db, newRedisBus(t), newRedisBus(t))
}

// The listener's backend is terminated while a call is recorded that the hub cannot
// hear of: after the bus reconnects, subscribers get the state re-read from the
// database, marked Resynced.
func TestReconnectResyncs(t *testing.T) {
	url := dbtest.PostgresURL(t)
	db := dbtest.Open(t, database.DriverPostgres)
	bus, app := newPGBus(t, url)
	h := newHub(t, db.Client, bus, Options{Interval: 50 * time.Millisecond, Topic: uniqueTopic()})
	a := newScope()
	loud := newRecorder(t, db, h.Publish)
	silent := newRecorder(t, db, nil)

	ch, _ := subscribe(t, h, Filter{ConfigID: a.config})
	next(t, ch, time.Second)
	record(t, loud, a.event(200, 1, 1, 1, time.Now()))
	waitFor(t, ch, time.Second, "the first call", func(s *Stats) bool { return s.Day.Requests == 1 })

	record(t, silent, a.event(500, 10, 10, 10, time.Now())) // lost, as during an outage
	admin, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var killed int
	err = admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate listener: killed %d, %v", killed, err)
	}
	s := waitFor(t, ch, 5*time.Second, "a resynced state", func(s *Stats) bool { return s.Resynced })
	if s.Day.Requests != 2 || s.Day.Errors != 1 || s.LastMinute.Requests != 2 {
		t.Fatalf("after resync: %+v minute %+v, want the silent call counted", s.Day, s.LastMinute)
	}
	// The next message is an ordinary one again, and live events still count once.
	record(t, loud, a.event(200, 1, 1, 1, time.Now()))
	s = waitFor(t, ch, 2*time.Second, "the call after the reconnect", func(s *Stats) bool { return s.Day.Requests >= 3 })
	if s.Day.Requests != 3 || s.Resynced {
		t.Fatalf("after reconnect: %+v resynced=%v", s.Day, s.Resynced)
	}
}

// flakyBus fails Publish while fail is set.
type flakyBus struct {
	pubsub.Bus
	fail atomic.Bool
}

func (b *flakyBus) Publish(ctx context.Context, topic string, payload []byte) error {
	if b.fail.Load() {
		return errors.New("bus down")
	}
	return b.Bus.Publish(ctx, topic, payload)
}

// Events a replica could not publish are not silently missing anywhere: once the bus
// works again the replica asks every hub to reload.
func TestLostPublishResyncs(t *testing.T) {
	db := sqliteDB(t)
	bus := &flakyBus{Bus: newMemory(t)}
	h := newHub(t, db.Client, bus, Options{Interval: 50 * time.Millisecond})
	rec := newRecorder(t, db, h.Publish)
	a := newScope()
	ch, _ := subscribe(t, h, Filter{TenantID: a.tenant})
	next(t, ch, time.Second)

	bus.fail.Store(true)
	record(t, rec, a.event(200, 1, 1, 1, time.Now()), a.event(200, 1, 1, 1, time.Now()))
	deadline := time.Now().Add(2 * time.Second)
	for h.PublishDropped() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d, want 2", h.PublishDropped())
		}
		time.Sleep(10 * time.Millisecond)
	}
	expectQuiet(t, ch, 200*time.Millisecond)
	bus.fail.Store(false)
	s := waitFor(t, ch, 3*time.Second, "a resync", func(s *Stats) bool { return s.Resynced })
	if s.Day.Requests != 2 {
		t.Fatalf("after resync %+v, want both calls from the database", s.Day)
	}
}
