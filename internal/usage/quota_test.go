package usage

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/database"
)

func recordAll(t testing.TB, r *Recorder, events ...Event) {
	t.Helper()
	for _, ev := range events {
		if err := r.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMonthToDateMonthBoundary(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		s := newScope()
		other := newScope()
		otherConfig := s
		otherConfig.config = pulid.MustNew("cfg")
		lastOfOct := time.Date(2026, 10, 31, 23, 59, 59, 999e6, time.UTC)
		firstOfNov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		recordAll(t, r,
			s.event("oct-1", 200, 100, 1, 1, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
			s.event("oct-31", 500, 10, 5, 1, lastOfOct),
			s.event("nov-1", 200, 1, 2, 1, firstOfNov),
			s.event("nov-15", 200, 3, 4, 1, time.Date(2026, 11, 15, 8, 0, 0, 0, time.UTC)),
			s.event("nov-16-key2", 200, 5, 0, 1, time.Date(2026, 11, 16, 8, 0, 0, 0, time.UTC)),
			s.event("dec-1", 200, 1000, 1000, 1, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)),
			other.event("other-tenant", 200, 1000, 1000, 1, firstOfNov),
			otherConfig.event("other-config", 200, 1000, 1000, 1, firstOfNov),
		)
		q := NewQuota(db.Client)
		ctx := context.Background()
		// A caller in UTC+2 at 01:00 on 1 November is still in October, UTC.
		east := time.FixedZone("UTC+2", 2*3600)
		for _, tc := range []struct {
			name             string
			now              time.Time
			requests, tokens int64
		}{
			// oct-31 failed (500): metered, but it does not use up the quota.
			{"last instant of October", lastOfOct, 1, 116},
			{"October seen from UTC+2", time.Date(2026, 11, 1, 1, 0, 0, 0, east), 1, 116},
			{"first instant of November", firstOfNov, 3, 15},
			{"mid November", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), 3, 15},
			{"empty month", time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC), 0, 0},
		} {
			req, tok, err := q.MonthToDate(ctx, s.tenant, s.config, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if req != tc.requests || tok != tc.tokens {
				t.Errorf("%s: got %d requests / %d tokens, want %d / %d", tc.name, req, tok, tc.requests, tc.tokens)
			}
		}
	})
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// countingClient counts the rollup queries sent through db's client (a QuotaCounter's).
func countingClient(db *database.DB, n *atomic.Int64) *ent.Client {
	c := db.Client
	c.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
		return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
			if _, ok := q.(*ent.UsageDailyQuery); ok {
				n.Add(1)
			}
			return next.Query(ctx, q)
		})
	}))
	return c
}

func TestQuotaCounter(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		var queries atomic.Int64
		client := countingClient(db, &queries)
		clk := &clock{now: time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)}
		counter := NewQuotaCounter(NewQuota(client), QuotaCounterOptions{Refresh: 5 * time.Second, Now: clk.Now})
		// This replica's recorder feeds the counter; the other replica's does not.
		here := newRecorder(t, db, RecorderOptions{MaxWait: -1, Quota: counter})
		there := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		s := newScope()
		at := clk.Now()

		recordAll(t, here, s.event("a", 200, 10, 5, 1, at))
		check := func(step string, wantReq, wantTok int64) {
			t.Helper()
			req, tok, err := counter.MonthToDate(ctx, s.tenant, s.config)
			if err != nil {
				t.Fatal(err)
			}
			if req != wantReq || tok != wantTok {
				t.Errorf("%s: got %d requests / %d tokens, want %d / %d", step, req, tok, wantReq, wantTok)
			}
		}
		check("first read", 1, 15)
		if queries.Load() != 1 {
			t.Fatalf("first read sent %d queries, want 1", queries.Load())
		}

		recordAll(t, here, s.event("b", 500, 1, 1, 1, at), s.event("b", 500, 1, 1, 1, at))
		// "b" failed (500): its tokens count, the request does not.
		check("local commit, replay counted once", 1, 17)
		recordAll(t, there, s.event("c", 200, 100, 100, 1, at))
		check("other replica not yet seen", 1, 17)
		if queries.Load() != 1 {
			t.Fatalf("cached reads sent %d queries, want 1", queries.Load())
		}

		clk.Set(time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC))
		check("new month starts from the database", 0, 0)
		clk.Set(time.Date(2026, 11, 30, 23, 59, 10, 0, time.UTC))
		check("back in November: read again, other replica seen", 2, 217)

		recordAll(t, there, s.event("d", 200, 1000, 0, 1, at))
		clk.Set(time.Date(2026, 11, 30, 23, 59, 14, 0, time.UTC))
		check("within the refresh window", 2, 217)
		clk.Set(time.Date(2026, 11, 30, 23, 59, 16, 0, time.UTC))
		check("refresh converges with the other replica", 3, 1217)

		// Concurrent first reads of a new config share one query.
		s2 := newScope()
		recordAll(t, there, s2.event("s2", 200, 7, 0, 1, at))
		before := queries.Load()
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Go(func() {
				req, tok, err := counter.MonthToDate(ctx, s2.tenant, s2.config)
				if err != nil || req != 1 || tok != 7 {
					t.Errorf("concurrent first read: %d / %d / %v", req, tok, err)
				}
			})
		}
		wg.Wait()
		if q := queries.Load() - before; q != 1 {
			t.Errorf("20 concurrent first reads sent %d queries, want 1", q)
		}
	})
}

func TestQuotaCounterKeepsCacheWhenRefreshFails(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)}
		counter := NewQuotaCounter(NewQuota(db.Client), QuotaCounterOptions{Now: clk.Now})
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1, Quota: counter})
		s := newScope()
		recordAll(t, r, s.event("x", 200, 2, 3, 1, clk.Now()))
		if req, tok, err := counter.MonthToDate(ctx, s.tenant, s.config); err != nil || req != 1 || tok != 5 {
			t.Fatalf("first read: %d / %d / %v", req, tok, err)
		}
		db.Close()
		clk.Add(time.Minute)
		if req, tok, err := counter.MonthToDate(ctx, s.tenant, s.config); err != nil || req != 1 || tok != 5 {
			t.Fatalf("failed refresh: %d / %d / %v, want the cached 1 / 5", req, tok, err)
		}
		other := newScope()
		if _, _, err := counter.MonthToDate(ctx, other.tenant, other.config); err == nil {
			t.Fatal("first read on a closed database succeeded")
		}
	})
}

func TestQuotaCounterCountsCommitsDuringRead(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		// A commit that lands while a refresh is in flight must not be lost when the
		// refresh's (older) result replaces the cached totals.
		ctx := context.Background()
		var hold atomic.Bool
		reading, resume := make(chan struct{}), make(chan struct{})
		client := db.Client
		client.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
			return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
				if _, ok := q.(*ent.UsageDailyQuery); ok && hold.Load() {
					v, err := next.Query(ctx, q) // the read's snapshot is taken here
					reading <- struct{}{}
					<-resume
					return v, err
				}
				return next.Query(ctx, q)
			})
		}))
		clk := &clock{now: time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)}
		counter := NewQuotaCounter(NewQuota(client), QuotaCounterOptions{Now: clk.Now})
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1, Quota: counter})
		s := newScope()
		at := clk.Now()
		recordAll(t, r, s.event("before", 200, 1, 1, 1, at))
		if req, _, err := counter.MonthToDate(ctx, s.tenant, s.config); err != nil || req != 1 {
			t.Fatalf("first read: %d / %v", req, err)
		}
		clk.Add(time.Minute)
		hold.Store(true)
		refreshed := make(chan [2]int64, 1)
		go func() {
			req, tok, err := counter.MonthToDate(ctx, s.tenant, s.config)
			if err != nil {
				t.Error(err)
			}
			refreshed <- [2]int64{req, tok}
		}()
		<-reading
		hold.Store(false)
		// While the refresh is out, other callers get the cached totals at once.
		if req, _, err := counter.MonthToDate(ctx, s.tenant, s.config); err != nil || req != 1 {
			t.Errorf("during refresh: %d / %v, want the cached 1", req, err)
		}
		recordAll(t, r, s.event("during", 200, 10, 10, 1, at))
		close(resume)
		if got := <-refreshed; got != [2]int64{2, 22} {
			t.Errorf("after refresh = %v, want [2 22] (the commit during the read kept)", got)
		}
		if req, tok, err := counter.MonthToDate(ctx, s.tenant, s.config); err != nil || req != 2 || tok != 22 {
			t.Errorf("cached after refresh: %d / %d / %v", req, tok, err)
		}
	})
}
