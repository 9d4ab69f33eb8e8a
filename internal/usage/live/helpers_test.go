package live

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/pubsub"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// forEachDriver runs f on every database the tests must cover.
func forEachDriver(t *testing.T, f func(t *testing.T, db *database.DB)) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			f(t, dbtest.Open(t, driver))
		})
	}
}

func sqliteDB(t testing.TB) *database.DB { return dbtest.Open(t, database.DriverSQLite) }

// scope is one buyer's config of one provider's agent, with one key.
type scope struct {
	tenant, provider, config, agent, key pulid.ID
}

func newScope() scope {
	return scope{
		tenant: pulid.MustNew("ten"), provider: pulid.MustNew("ten"), config: pulid.MustNew("cfg"),
		agent: pulid.MustNew("agt"), key: pulid.MustNew("key"),
	}
}

// buyer returns another buyer's config of the same provider's agent.
func (s scope) buyer() scope {
	return scope{tenant: pulid.MustNew("ten"), provider: s.provider, config: pulid.MustNew("cfg"), agent: s.agent, key: pulid.MustNew("key")}
}

var reqSeq atomic.Uint64

func (s scope) event(status int, in, out, ms int64, at time.Time) usage.Event {
	return usage.Event{
		RequestID: fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), reqSeq.Add(1)),
		TenantID:  s.tenant, ProviderTenantID: s.provider, ConfigID: s.config, AgentID: s.agent,
		APIKeyID: s.key, Status: status, InputTokens: in, OutputTokens: out, ElapsedMS: ms, StartedAt: at,
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newHub(t testing.TB, client *ent.Client, bus pubsub.Bus, opts Options) *Hub {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	h := NewHub(client, bus, opts)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newMemory(t testing.TB) *pubsub.Memory {
	b := pubsub.NewMemory(pubsub.MemoryOptions{QueueSize: 4096})
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newRecorder records durably, handing each committed batch to onCommit.
func newRecorder(t testing.TB, db *database.DB, onCommit func([]usage.Event)) *usage.Recorder {
	t.Helper()
	r := usage.NewRecorder(db, usage.RecorderOptions{OnCommit: onCommit, Logger: quietLogger()})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r
}

func record(t testing.TB, r *usage.Recorder, events ...usage.Event) {
	t.Helper()
	for _, ev := range events {
		if err := r.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func subscribe(t testing.TB, h *Hub, f Filter) (<-chan *Stats, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := h.Subscribe(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return ch, cancel
}

func next(t testing.TB, ch <-chan *Stats, timeout time.Duration) *Stats {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return s
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	panic("unreachable")
}

// waitFor reads messages until one satisfies ok, failing after timeout.
func waitFor(t testing.TB, ch <-chan *Stats, timeout time.Duration, what string, ok func(*Stats) bool) *Stats {
	t.Helper()
	deadline := time.After(timeout)
	var last *Stats
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatalf("subscription closed while waiting for %s", what)
			}
			if ok(s) {
				return s
			}
			last = s
		case <-deadline:
			t.Fatalf("no message with %s within %v; last %+v", what, timeout, last)
		}
	}
}

// expectQuiet fails if a message arrives within d.
func expectQuiet(t testing.TB, ch <-chan *Stats, d time.Duration) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected message: %+v", s)
	case <-time.After(d):
	}
}

func serviceURL(t testing.TB, env string) string {
	t.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (required when CI=true)", env)
		}
		t.Skipf("%s is not set", env)
	}
	return u
}

var topicSeq atomic.Uint64

// uniqueTopic keeps tests and repeated runs on one server from hearing each other.
func uniqueTopic() string {
	return fmt.Sprintf("test.live.%d.%d", time.Now().UnixNano(), topicSeq.Add(1))
}

// totals sums events the way the rollups do, for those selected by keep.
func totals(events []usage.Event, keep func(usage.Event) bool) Totals {
	var tt Totals
	for i := range events {
		if keep(events[i]) {
			tt.add(&events[i])
		}
	}
	return tt
}
