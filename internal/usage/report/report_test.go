package report

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// now is the tests' clock: mid-day, so that "today" is unambiguous.
var now = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			f(t, driver)
		})
	}
}

func newService(db *database.DB) *Service {
	return New(db.Client, Options{Now: func() time.Time { return now }})
}

// record stores events through the real recorder, concurrently so that they batch.
func record(t testing.TB, db *database.DB, events []usage.Event) {
	t.Helper()
	r := usage.NewRecorder(db, usage.RecorderOptions{})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, len(events))
	for _, ev := range events {
		wg.Go(func() { errs <- r.Record(context.Background(), ev) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// scope is one buyer's config under one key.
type scope struct{ tenant, provider, config, agent, key pulid.ID }

func newScope(tenant, provider pulid.ID) scope {
	return scope{tenant, provider, pulid.MustNew("cfg"), pulid.MustNew("agt"), pulid.MustNew("key")}
}

func (s scope) ev(status int, in, out, ms int64, at time.Time) usage.Event {
	return usage.Event{
		RequestID: string(pulid.MustNew("req")), TenantID: s.tenant, ProviderTenantID: s.provider,
		ConfigID: s.config, AgentID: s.agent, APIKeyID: s.key, Status: status,
		InputTokens: in, OutputTokens: out, ElapsedMS: ms, StartedAt: at,
	}
}

func viewer(tenants ...pulid.ID) context.Context {
	v := &auth.Viewer{Subject: "s", Roles: []auth.Role{auth.RoleCustomer, auth.RoleProvider}}
	for _, id := range tenants {
		v.Tenants = append(v.Tenants, auth.TenantMembership{TenantID: id, Role: auth.TenantMember})
	}
	return auth.NewContext(context.Background(), v)
}

func admin() context.Context {
	return auth.NewContext(context.Background(), &auth.Viewer{Subject: "a", Roles: []auth.Role{auth.RolePlatformAdmin}})
}

func day(offset int) time.Time { return dayOf(now).AddDate(0, 0, offset) }

// sums is what a Row must hold, computed from the events.
type sums struct{ requests, errors, in, out, ms int64 }

func (s *sums) add(ev usage.Event) {
	s.requests++
	if ev.Status >= 400 {
		s.errors++
	}
	s.in += ev.InputTokens
	s.out += ev.OutputTokens
	s.ms += ev.ElapsedMS
}

func check(t *testing.T, what string, r Row, want sums) {
	t.Helper()
	if r.Requests != want.requests || r.Errors != want.errors || r.InputTokens != want.in || r.OutputTokens != want.out {
		t.Errorf("%s: %+v, want %+v", what, r, want)
	}
	if avg := float64(want.ms) / float64(want.requests); math.Abs(r.AvgMs-avg) > 1e-9 {
		t.Errorf("%s: avg %v, want %v", what, r.AvgMs, avg)
	}
}

func TestUsageTotalsAndGroupings(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		db := dbtest.Open(t, driver)
		svc := newService(db)
		buyer, provider := pulid.MustNew("ten"), pulid.MustNew("ten")
		a, b := newScope(buyer, provider), newScope(buyer, provider)
		var events []usage.Event
		byDay, byAgent, byKey := map[time.Time]*sums{}, map[pulid.ID]*sums{}, map[pulid.ID]*sums{}
		var total sums
		for i := range 90 {
			s := []scope{a, b}[i%2]
			at := day(-(i % 5)).Add(time.Duration(i) * time.Minute)
			ev := s.ev([]int{200, 200, 500, 429}[i%4], int64(i), int64(2*i), int64(10*i), at)
			events = append(events, ev)
			for _, m := range []struct {
				m map[time.Time]*sums
				k time.Time
			}{{byDay, day(-(i % 5))}} {
				if m.m[m.k] == nil {
					m.m[m.k] = &sums{}
				}
				m.m[m.k].add(ev)
			}
			if byAgent[s.agent] == nil {
				byAgent[s.agent], byKey[s.key] = &sums{}, &sums{}
			}
			byAgent[s.agent].add(ev)
			byKey[s.key].add(ev)
			total.add(ev)
		}
		// Outside the default 30 days: never counted.
		events = append(events, a.ev(200, 1000, 1000, 1, day(-30)), a.ev(200, 1000, 1000, 1, day(1)))
		record(t, db, events)
		ctx := viewer(buyer)

		rows, err := svc.Usage(ctx, Filter{}, GroupByDay)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 5 {
			t.Fatalf("DAY rows = %d, want 5: %+v", len(rows), rows)
		}
		var got sums
		for i, r := range rows {
			if want := day(-4 + i); !r.Day.Equal(want) {
				t.Errorf("row %d day %v, want %v (ascending)", i, r.Day, want)
			}
			check(t, "day "+r.Day.Format(time.DateOnly), r, *byDay[r.Day])
			got.requests += r.Requests
		}
		if got.requests != total.requests {
			t.Errorf("DAY total %d, want %d", got.requests, total.requests)
		}

		rows, err = svc.Usage(ctx, Filter{}, GroupByAgent)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("AGENT rows = %d, want 2", len(rows))
		}
		for _, r := range rows {
			check(t, "agent", r, *byAgent[r.AgentID])
		}
		rows, err = svc.Usage(ctx, Filter{}, GroupByKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("KEY rows = %d, want 2", len(rows))
		}
		for _, r := range rows {
			check(t, "key", r, *byKey[r.KeyID])
		}

		// Filters narrow: one config, one key, one agent, one day.
		for name, f := range map[string]Filter{
			"config": {ConfigID: &a.config}, "key": {KeyID: &a.key}, "agent": {AgentID: &a.agent},
		} {
			rows, err := svc.Usage(ctx, f, GroupByAgent)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].AgentID != a.agent {
				t.Fatalf("%s filter: %+v", name, rows)
			}
			check(t, name, rows[0], *byAgent[a.agent])
		}
		rows, err = svc.Usage(ctx, Filter{From: day(-2), To: day(-2).Add(23 * time.Hour)}, GroupByDay)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("one day: %+v", rows)
		}
		check(t, "one day", rows[0], *byDay[day(-2)])
		// The explicit range reaches the rows the default leaves out.
		rows, err = svc.Usage(ctx, Filter{From: day(-30), To: day(1)}, GroupByKey)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range rows {
			n += r.Requests
		}
		if n != total.requests+2 {
			t.Errorf("explicit range: %d requests, want %d", n, total.requests+2)
		}
	})
}

func TestUsageRangeValidation(t *testing.T) {
	db := dbtest.Open(t, database.DriverSQLite)
	svc := newService(db)
	ctx := admin()
	for name, f := range map[string]Filter{
		"from after to": {From: day(0), To: day(-1)},
		"367 days":      {From: day(-366), To: day(0)},
	} {
		_, err := svc.Usage(ctx, f, GroupByDay)
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.BadUserInput {
			t.Errorf("%s: err = %v, want BAD_USER_INPUT", name, err)
		}
	}
	if _, err := svc.Usage(ctx, Filter{From: day(-365), To: day(0)}, GroupByDay); err != nil {
		t.Errorf("366 days: %v", err)
	}
	if _, err := svc.Usage(ctx, Filter{}, GroupBy("HOUR")); err == nil {
		t.Error("unknown grouping accepted")
	}
	if _, err := svc.Usage(context.Background(), Filter{}, GroupByDay); err == nil {
		t.Error("a context without viewer read usage")
	}
}

func TestQuantile(t *testing.T) {
	n := len(schema.LatencyBoundsMS) + 1
	hist := func(pairs ...int64) []int64 {
		h := make([]int64, n)
		for i := 0; i < len(pairs); i += 2 {
			h[usage.LatencyBucket(pairs[i])] += pairs[i+1]
		}
		return h
	}
	for _, c := range []struct {
		name string
		h    []int64
		want float64
	}{
		{"empty", make([]int64, n), 0},
		{"95 fast 5 slow", hist(20, 95, 5000, 5), 25},
		{"94 fast 6 slow", hist(20, 94, 5000, 6), 3200 + 3200*1.0/6},
		{"all in (200,400]", hist(300, 100), 200 + 200*0.95},
		{"open bucket", hist(10, 1, 99999, 99), 25600},
		{"first bucket", hist(1, 100), 25 * 0.95},
	} {
		if got := Quantile(0.95, c.h); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: p95 = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestUsageP95FromRollups(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		db := dbtest.Open(t, driver)
		svc := newService(db)
		buyer, provider := pulid.MustNew("ten"), pulid.MustNew("ten")
		fast, slow := newScope(buyer, provider), newScope(buyer, provider)
		var events []usage.Event
		// Day -1: 95 calls at 20 ms and 5 at 5 s over two keys: p95 in the <=25 bucket.
		for i := range 100 {
			s, ms := fast, int64(20)
			if i >= 95 {
				s, ms = slow, 5000
			}
			events = append(events, s.ev(200, 1, 1, ms, day(-1)))
		}
		// Day 0: 100 calls at 300 ms: within (200, 400].
		for range 100 {
			events = append(events, fast.ev(200, 1, 1, 300, day(0)))
		}
		record(t, db, events)
		rows, err := svc.Usage(viewer(buyer), Filter{}, GroupByDay)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("rows: %+v", rows)
		}
		if rows[0].P95Ms != 25 {
			t.Errorf("day -1 p95 = %v, want 25 (the <=25 bucket)", rows[0].P95Ms)
		}
		if want := 200 + 200*0.95; math.Abs(rows[1].P95Ms-want) > 1e-9 {
			t.Errorf("day 0 p95 = %v, want %v", rows[1].P95Ms, want)
		}
		if want := (95*20 + 5*5000) / 100.0; rows[0].AvgMs != want {
			t.Errorf("day -1 avg = %v, want %v", rows[0].AvgMs, want)
		}
		// Grouped by key, the slow key alone is all in the (3200, 6400] bucket.
		rows, err = svc.Usage(viewer(buyer), Filter{KeyID: &slow.key}, GroupByKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].P95Ms != 3200+3200*0.95 {
			t.Errorf("slow key: %+v", rows)
		}
	})
}

func TestUsageIsolation(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		db := dbtest.Open(t, driver)
		svc := newService(db)
		buyerA, buyerB, provider, other := pulid.MustNew("ten"), pulid.MustNew("ten"), pulid.MustNew("ten"), pulid.MustNew("ten")
		a, b := newScope(buyerA, provider), newScope(buyerB, provider)
		var events []usage.Event
		for range 3 {
			events = append(events, a.ev(200, 1, 1, 1, day(0)))
		}
		for range 5 {
			events = append(events, b.ev(200, 1, 1, 1, day(0)))
		}
		record(t, db, events)
		requests := func(ctx context.Context, f Filter) int64 {
			t.Helper()
			rows, err := svc.Usage(ctx, f, GroupByDay)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, r := range rows {
				n += r.Requests
			}
			return n
		}
		for name, c := range map[string]struct {
			ctx  context.Context
			f    Filter
			want int64
		}{
			"buyer A":                       {viewer(buyerA), Filter{}, 3},
			"buyer A, B's config":           {viewer(buyerA), Filter{ConfigID: &b.config}, 0},
			"buyer A, B's key":              {viewer(buyerA), Filter{KeyID: &b.key}, 0},
			"buyer A, B's agent":            {viewer(buyerA), Filter{AgentID: &b.agent}, 0},
			"buyer A, B's tenant":           {viewer(buyerA), Filter{TenantID: &buyerB}, 0},
			"buyer A, by its provider":      {viewer(buyerA), Filter{ProviderTenantID: &provider}, 3},
			"provider":                      {viewer(provider), Filter{ProviderTenantID: &provider}, 8},
			"provider, one buyer":           {viewer(provider), Filter{ProviderTenantID: &provider, TenantID: &buyerB}, 5},
			"another provider":              {viewer(other), Filter{}, 0},
			"another provider, provider id": {viewer(other), Filter{ProviderTenantID: &provider}, 0},
			"no tenants":                    {viewer(), Filter{}, 0},
			"admin":                         {admin(), Filter{}, 8},
		} {
			if got := requests(c.ctx, c.f); got != c.want {
				t.Errorf("%s: %d requests, want %d", name, got, c.want)
			}
		}
		recent, err := svc.Recent(viewer(buyerA), Filter{ConfigID: &b.config}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(recent) != 0 {
			t.Errorf("buyer A sees %d of B's recent calls", len(recent))
		}
	})
}

func TestUsageIsOneStatement(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		var c dbtest.Counter
		db := dbtest.Open(t, driver, dbtest.WithCounter(&c))
		svc := newService(db)
		buyer, provider := pulid.MustNew("ten"), pulid.MustNew("ten")
		scopes := []scope{newScope(buyer, provider), newScope(buyer, provider), newScope(buyer, provider)}
		ctx := viewer(buyer)
		for _, days := range []int{0, 1, 40} {
			var events []usage.Event
			for d := range days {
				for _, s := range scopes {
					events = append(events, s.ev(200, 1, 1, int64(d), day(-d)))
				}
			}
			// The counting driver cannot run the recorder's raw queries: record through
			// a plain client on the same pool.
			record(t, &database.DB{SQL: db.SQL, Driver: db.Driver, Dialect: db.Dialect,
				Client: ent.NewClient(ent.Driver(entsql.OpenDB(db.Dialect, db.SQL)))}, events)
			for _, by := range []GroupBy{GroupByDay, GroupByAgent, GroupByKey} {
				c.Reset()
				if _, err := svc.Usage(ctx, Filter{From: day(-60)}, by); err != nil {
					t.Fatal(err)
				}
				if n := c.Count(); n != 1 {
					t.Errorf("%d days, by %s: %d statements, want 1", days, by, n)
				}
			}
			c.Reset()
			if _, err := svc.Recent(ctx, Filter{}, 10); err != nil {
				t.Fatal(err)
			}
			if n := c.Count(); n != 2 {
				t.Errorf("%d days, Recent: %d statements, want 2", days, n)
			}
		}
	})
}

// fixture creates a buyer's subscription (with its config) to a provider's plan.
func fixture(t *testing.T, client *ent.Client, requests, tokens int64, start, end *time.Time) (*ent.Subscription, *ent.AgentConfig) {
	t.Helper()
	ctx := auth.SystemContext(context.Background())
	suffix := pulid.MustNew("xxx")
	prov := client.Tenant.Create().SetName("P").SetSlug("p-" + toSlug(suffix)).SaveX(ctx)
	buyer := client.Tenant.Create().SetName("B").SetSlug("b-" + toSlug(suffix)).SaveX(ctx)
	agent := client.Agent.Create().SetTenantID(prov.ID).SetName("A").SetSlug("a-" + toSlug(suffix)).SaveX(ctx)
	plan := client.Plan.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetName("Plan").
		SetRequestsPerMonth(requests).SetTokensPerMonth(tokens).SaveX(ctx)
	sub := client.Subscription.Create().SetTenantID(buyer.ID).SetAgentID(agent.ID).SetPlanID(plan.ID).
		SetStatus("active").SetNillableCurrentPeriodStart(start).SetNillableCurrentPeriodEnd(end).SaveX(ctx)
	cfg := client.AgentConfig.Create().SetTenantID(buyer.ID).SetSubscriptionID(sub.ID).SaveX(ctx)
	return sub, cfg
}

func toSlug(id pulid.ID) string {
	b := []byte(string(id))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		} else if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

func TestQuota(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		db := dbtest.Open(t, driver)
		svc := newService(db)
		// A period from the 10th to the 10th, mid-month: not the calendar month.
		ps, pe := time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC)
		sub, cfg := fixture(t, db.Client, 1000, 0, &ps, &pe)
		s := scope{sub.TenantID, sub.ProviderTenantID, cfg.ID, sub.AgentID, pulid.MustNew("key")}
		other := scope{sub.TenantID, sub.ProviderTenantID, pulid.MustNew("cfg"), sub.AgentID, s.key}
		record(t, db, []usage.Event{
			s.ev(200, 10, 20, 1, ps), s.ev(500, 1, 2, 1, now), s.ev(200, 100, 0, 1, ps.Add(-time.Second)),
			other.ev(200, 1000, 1000, 1, now),
		})
		got, err := svc.Quota(viewer(sub.TenantID), sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The 500 is metered (its tokens count) but does not use up the quota.
		want := QuotaUse{PeriodStart: ps, PeriodEnd: pe, Requests: 1, RequestsLimit: 1000, Tokens: 33, TokensLimit: 0}
		if got != want {
			t.Errorf("quota = %+v, want %+v", got, want)
		}
		// The provider sees its buyer's quota; an admin too; a stranger does not.
		if _, err := svc.Quota(viewer(sub.ProviderTenantID), sub.ID); err != nil {
			t.Errorf("provider: %v", err)
		}
		if _, err := svc.Quota(admin(), sub.ID); err != nil {
			t.Errorf("admin: %v", err)
		}
		if _, err := svc.Quota(viewer(pulid.MustNew("ten")), sub.ID); !ent.IsNotFound(err) {
			t.Errorf("stranger: err = %v, want not found", err)
		}

		// A stored period that has ended (a lapsed renewal): the calendar month.
		mayStart, mayEnd := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		sub3, _ := fixture(t, db.Client, 1, 1, &mayStart, &mayEnd)
		got, err = svc.Quota(viewer(sub3.TenantID), sub3.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.PeriodStart.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) || !got.PeriodEnd.Equal(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("lapsed period: %v .. %v, want June", got.PeriodStart, got.PeriodEnd)
		}

		// Without a stored period: the calendar month.
		sub2, cfg2 := fixture(t, db.Client, 0, 500, nil, nil)
		s2 := scope{sub2.TenantID, sub2.ProviderTenantID, cfg2.ID, sub2.AgentID, ""}
		record(t, db, []usage.Event{s2.ev(200, 5, 5, 1, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)), s2.ev(200, 7, 7, 1, time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC))})
		got, err = svc.Quota(viewer(sub2.TenantID), sub2.ID)
		if err != nil {
			t.Fatal(err)
		}
		want = QuotaUse{PeriodStart: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
			Requests: 1, Tokens: 10, TokensLimit: 500}
		if got != want {
			t.Errorf("calendar month quota = %+v, want %+v", got, want)
		}
	})
}

func TestRecent(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		db := dbtest.Open(t, driver)
		svc := New(db.Client, Options{Now: func() time.Time { return now }, Retention: 7 * 24 * time.Hour})
		buyer, provider := pulid.MustNew("ten"), pulid.MustNew("ten")
		s := newScope(buyer, provider)
		var events []usage.Event
		// Hourly over six days: the newest 100 span five days, so the window the rollups
		// suggest must still hold all of them.
		for i := range 150 {
			events = append(events, s.ev(200, 1, 1, 1, now.Add(-time.Duration(i)*time.Hour)))
		}
		old := s.ev(200, 1, 1, 1, now.Add(-8*24*time.Hour))
		record(t, db, append(events, old))
		got, err := svc.Recent(viewer(buyer), Filter{}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != MaxRecent {
			t.Fatalf("%d rows, want the cap %d", len(got), MaxRecent)
		}
		if !slices.IsSortedFunc(got, func(a, b *ent.UsageRecord) int { return b.StartedAt.Compare(a.StartedAt) }) {
			t.Error("not newest first")
		}
		for i, r := range got {
			if r.RequestID != events[i].RequestID {
				t.Fatalf("row %d = %s (%v), want %s: not the newest 100", i, r.RequestID, r.StartedAt, events[i].RequestID)
			}
		}
		// A day range in the past.
		got, err = svc.Recent(viewer(buyer), Filter{From: day(-3), To: day(-3)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 24 {
			t.Errorf("one day: %d rows, want 24", len(got))
		}
		got, err = svc.Recent(viewer(buyer), Filter{From: day(-30)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if r.RequestID == old.RequestID {
				t.Error("a record older than the retention window was listed")
			}
		}
		got, err = svc.Recent(viewer(buyer), Filter{KeyID: &s.key}, 5)
		if err != nil || len(got) != 5 {
			t.Errorf("limit 5: %d rows, %v", len(got), err)
		}
	})
}

// The histogram fields of dailyScan must be the rollup's columns in bucket order.
func TestScanMatchesLatencyColumns(t *testing.T) {
	typ := reflect.TypeFor[dailyScan]()
	cols := usage.LatencyColumns()
	first := typ.NumField() - len(cols)
	for i, c := range cols {
		if tag := typ.Field(first + i).Tag.Get("json"); tag != c {
			t.Errorf("field %d is %q, want %q", first+i, tag, c)
		}
	}
}
