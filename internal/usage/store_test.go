package usage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

func TestLatencyBucket(t *testing.T) {
	last := len(schema.LatencyBoundsMS)
	for _, c := range []struct {
		ms   int64
		want int
	}{
		{0, 0}, {25, 0}, {26, 1}, {50, 1}, {51, 2}, {3200, 7}, {25600, last - 1}, {25601, last}, {1 << 40, last},
	} {
		if got := LatencyBucket(c.ms); got != c.want {
			t.Errorf("LatencyBucket(%d) = %d, want %d", c.ms, got, c.want)
		}
	}
}

// histogram reads the one rollup row's latency buckets.
func histogram(t testing.TB, client *ent.Client) []int64 {
	t.Helper()
	row, err := client.UsageDaily.Query().Only(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return []int64{row.LatLe25, row.LatLe50, row.LatLe100, row.LatLe200, row.LatLe400, row.LatLe800,
		row.LatLe1600, row.LatLe3200, row.LatLe6400, row.LatLe12800, row.LatLe25600, row.LatInf}
}

func TestRollupLatencyHistogram(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		s := newScope()
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		// Bounds are inclusive: 25 ms is in lat_le_25, 26 ms in lat_le_50.
		elapsed := []int64{0, 25, 25, 26, 50, 51, 399, 400, 401, 25600, 25601, 90000, 7}
		want := make([]int64, len(latencyColumns))
		var events []Event
		for i, ms := range elapsed {
			events = append(events, s.event(fmt.Sprintf("h-%d", i), 200, 1, 1, ms, at))
			want[LatencyBucket(ms)]++
		}
		// Two batches, the second replaying the first half with other latencies: a
		// replay must not move a call to another bucket nor count it twice.
		recordAll(t, r, events[:7]...)
		var batch []Event
		for _, ev := range events[:7] {
			ev.ElapsedMS = 100000
			batch = append(batch, ev)
		}
		recordAll(t, r, append(batch, events[7:]...)...)
		got := histogram(t, db.Client)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s = %d, want %d", latencyColumns[i], got[i], want[i])
			}
		}
		var sum int64
		for _, n := range got {
			sum += n
		}
		if sum != int64(len(elapsed)) {
			t.Errorf("histogram holds %d calls, want %d", sum, len(elapsed))
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
	})
}

// The largest batch, each call on its own rollup row: on SQLite the upsert needs more
// parameters (24 per row) than one statement may carry and must split; PostgreSQL's one
// statement takes it whole.
func TestLargestBatchRollsUp(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := auth.SystemContext(context.Background())
		st := newStore(db)
		t.Cleanup(func() { _ = st.close() })
		const n = maxBatchLimit
		events := make([]Event, n)
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		for i := range events {
			events[i] = newScope().event(fmt.Sprintf("split-%05d", i), 200, 1, 2, int64(i*13), at)
		}
		inserted, err := st.write(ctx, uniqueSorted(events))
		if err != nil {
			t.Fatal(err)
		}
		if len(inserted) != n {
			t.Fatalf("inserted %d, want %d", len(inserted), n)
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
	})
}

// A batch that mixes new calls with replays of stored ones, over several rollup rows
// (keys, days, a call without a key), stores exactly the new records, column for column,
// and adds exactly them to the rollups: on PostgreSQL this is one statement whose
// rollup part must count only what its insert part inserted.
func TestWriteBatchMixedReplaysStoresExactly(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := auth.SystemContext(context.Background())
		st := newStore(db)
		t.Cleanup(func() { _ = st.close() })
		a, b := newScope(), newScope()
		keyless := newScope()
		keyless.key = ""
		day1 := time.Date(2026, 5, 5, 23, 59, 59, 999_000_000, time.UTC)
		day2 := time.Date(2026, 5, 6, 0, 0, 0, 0, time.UTC)
		first := []Event{
			a.event("m-01", 200, 10, 20, 30, day1),
			b.event("m-02", 502, 0, 0, 900, day1),
		}
		if _, err := st.write(ctx, uniqueSorted(first)); err != nil {
			t.Fatal(err)
		}
		replay := first[0]
		replay.InputTokens, replay.Status = 999, 500 // a replay may differ: the first record stands
		fresh := []Event{
			a.event("m-03", 200, 1, 2, 3, day2),
			b.event("m-04", 429, 0, 0, 1, day1),
			keyless.event("m-05", 200, 7, 8, 26, day2),
		}
		fresh[1].ErrorCode = "RATE_LIMITED"
		fresh[2].TokensEstimated = true
		inserted, err := st.write(ctx, uniqueSorted(append([]Event{replay}, fresh...)))
		if err != nil {
			t.Fatal(err)
		}
		if got := requestIDs(inserted); !slices.Equal(got, []string{"m-03", "m-04", "m-05"}) {
			t.Fatalf("inserted %v, want the three new calls", got)
		}
		all := append(slices.Clone(first), fresh...)
		compareRollups(t, readRollups(t, db.Client), expectedRollups(all))

		recs, err := db.Client.UsageRecord.Query().Order(ent.Asc(usagerecord.FieldRequestID)).All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(all) {
			t.Fatalf("records = %d, want %d", len(recs), len(all))
		}
		// Absent optional columns are NULL, as ent writes them, not '' (ent reads both as "").
		var nullKeys, nullCodes int
		if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE api_key_id IS NULL), count(*) FILTER (WHERE error_code IS NULL) FROM usage_records`).Scan(&nullKeys, &nullCodes); err != nil {
			t.Fatal(err)
		}
		if nullKeys != 1 || nullCodes != len(all)-1 {
			t.Errorf("NULL api_key_id = %d (want 1), NULL error_code = %d (want %d)", nullKeys, nullCodes, len(all)-1)
		}
		for i, ev := range all {
			r := recs[i]
			got := Event{RequestID: r.RequestID, TenantID: r.TenantID, ProviderTenantID: r.ProviderTenantID,
				ConfigID: r.ConfigID, AgentID: r.AgentID, APIKeyID: r.APIKeyID, Status: r.Status,
				InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, TokensEstimated: r.TokensEstimated,
				ElapsedMS: r.ElapsedMs, StartedAt: r.StartedAt.UTC(), ErrorCode: r.ErrorCode}
			if got != ev {
				t.Errorf("record %s:\n got %+v\nwant %+v", ev.RequestID, got, ev)
			}
		}
	})
}

// Two replicas writing overlapping request ids at the same moment: each call is stored
// and counted once, whichever replica wins it.
func TestWriteBatchConcurrentWritersCountOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := auth.SystemContext(context.Background())
		scopes := []scope{newScope(), newScope(), newScope()}
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		var events []Event
		for i := range 300 {
			events = append(events, scopes[i%3].event(fmt.Sprintf("c-%03d", i), 200+i%2*300, int64(i), 1, int64(i%50), at))
		}
		const writers = 4
		var wg sync.WaitGroup
		var total atomic.Int64
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				// Each writer takes an overlapping window of the calls, in batches.
				// Each writer is a replica: its own store, its own prepared statement.
				st := newStore(db)
				defer st.close()
				mine := events[w*50 : w*50+150]
				for len(mine) > 0 {
					n := min(len(mine), 40)
					ins, err := st.write(ctx, uniqueSorted(mine[:n]))
					if err != nil {
						errs[w] = err
						return
					}
					total.Add(int64(len(ins)))
					mine = mine[n:]
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		want := events[:3*50+150]
		if got := total.Load(); got != int64(len(want)) {
			t.Errorf("writers reported %d inserted, want %d", got, len(want))
		}
		if got := countRecords(t, db.Client); got != len(want) {
			t.Errorf("records = %d, want %d", got, len(want))
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(want))
	})
}

func requestIDs(events []Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.RequestID
	}
	return out
}

// The PostgreSQL statement counts each inserted record once even when its input repeats
// a request id (the recorder removes duplicates first; the statement must not rely on
// it). SQLite's path is only ever given unique ids.
func TestWriteBatchDuplicateInputCountedOnce(t *testing.T) {
	db := dbtest.Open(t, database.DriverPostgres)
	ctx := auth.SystemContext(context.Background())
	st := newStore(db)
	t.Cleanup(func() { _ = st.close() })
	ev := newScope().event("dup-in-input", 200, 3, 4, 5, time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC))
	if _, err := st.write(ctx, []Event{ev, ev, ev}); err != nil {
		t.Fatal(err)
	}
	if got := countRecords(t, db.Client); got != 1 {
		t.Errorf("records = %d, want 1", got)
	}
	compareRollups(t, readRollups(t, db.Client), expectedRollups([]Event{ev}))
}

// The prepared statement survives what a running service meets: a migration that changes
// a column it returns, and its connections being killed (a database restart).
func TestRecorderSurvivesSchemaChangeAndLostConnections(t *testing.T) {
	db := dbtest.Open(t, database.DriverPostgres)
	ctx := context.Background()
	r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
	s := newScope()
	at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
	if err := r.Record(ctx, s.event("before", 200, 1, 1, 1, at)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.ExecContext(ctx, `ALTER TABLE usage_records ALTER COLUMN request_id TYPE varchar(200)`); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(ctx, s.event("after-migration", 200, 1, 1, 1, at)); err != nil {
		t.Fatalf("after a migration: %v", err)
	}
	if _, err := db.SQL.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(ctx, s.event("after-restart", 200, 1, 1, 1, at)); err != nil {
		t.Fatalf("after the connections were killed: %v", err)
	}
	if got := countRecords(t, db.Client); got != 3 {
		t.Errorf("records = %d, want 3", got)
	}
}

// A call in the last microsecond of a day is stored and rolled up on that day, on both
// databases (PostgreSQL keeps microseconds and would round it into the next day).
func TestRecordAtMidnightStaysOnItsDay(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		at := time.Date(2026, 5, 5, 23, 59, 59, 999_999_600, time.UTC)
		ev := newScope().event("midnight", 200, 1, 1, 1, at)
		recordAll(t, r, ev)
		rec, err := db.Client.UsageRecord.Query().Only(auth.SystemContext(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.StartedAt.UTC().Format(time.DateOnly); got != "2026-05-05" {
			t.Errorf("record stored on %s (%v), want 2026-05-05", got, rec.StartedAt.UTC())
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups([]Event{ev}))
	})
}

// Request ids come from callers (Idempotency-Key). On PostgreSQL they travel inside an
// array literal; ids made of its syntax must arrive verbatim and must not shift the
// other calls' columns, which would book a call to another tenant.
func TestWriteBatchHostileRequestIDs(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := auth.SystemContext(context.Background())
		st := newStore(db)
		t.Cleanup(func() { _ = st.close() })
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		ids := []string{`a"b`, `c\d`, `e,f`, `{g}`, `NULL`, ` h `, `i\"}`, "j\tk", "l'); DROP TABLE usage_records;--", "ü€"}
		var events []Event
		for _, id := range ids {
			events = append(events, newScope().event(id, 200, 1, 2, 3, at))
		}
		inserted, err := st.write(ctx, uniqueSorted(events))
		if err != nil {
			t.Fatal(err)
		}
		if len(inserted) != len(ids) {
			t.Fatalf("inserted %d, want %d", len(inserted), len(ids))
		}
		recs, err := db.Client.UsageRecord.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tenantOf := map[string]string{}
		for _, r := range recs {
			tenantOf[r.RequestID] = string(r.TenantID)
		}
		for _, ev := range events {
			if got, ok := tenantOf[ev.RequestID]; !ok || got != string(ev.TenantID) {
				t.Errorf("request id %q: stored for tenant %q (found %v), want %q", ev.RequestID, got, ok, ev.TenantID)
			}
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
	})
}
