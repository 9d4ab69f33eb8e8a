package usage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
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

// scope is one (tenant, config, key) that events are recorded for.
type scope struct {
	tenant, provider, config, agent, key pulid.ID
}

func newScope() scope {
	return scope{
		tenant:   pulid.MustNew("ten"),
		provider: pulid.MustNew("ten"),
		config:   pulid.MustNew("cfg"),
		agent:    pulid.MustNew("agt"),
		key:      pulid.MustNew("key"),
	}
}

func (s scope) event(requestID string, status int, in, out, ms int64, at time.Time) Event {
	return Event{
		RequestID: requestID, TenantID: s.tenant, ProviderTenantID: s.provider, ConfigID: s.config,
		AgentID: s.agent, APIKeyID: s.key, Status: status, InputTokens: in, OutputTokens: out,
		ElapsedMS: ms, StartedAt: at,
	}
}

// newRecorder starts a recorder closed at the end of the test.
func newRecorder(t testing.TB, db *database.DB, opts RecorderOptions) *Recorder {
	t.Helper()
	r := NewRecorder(db, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r
}

// totals are the sums the rollups must hold.
type totals struct{ requests, errors, in, out, ms int64 }

type rollupKey struct {
	tenant, config, key pulid.ID
	day                 string
}

// readRollups returns the usage_dailies rows by key.
func readRollups(t testing.TB, client *ent.Client) map[rollupKey]totals {
	t.Helper()
	rows, err := client.UsageDaily.Query().All(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[rollupKey]totals, len(rows))
	for _, r := range rows {
		k := rollupKey{r.TenantID, r.ConfigID, pulid.ID(r.APIKeyID), r.Day.UTC().Format(time.DateOnly)}
		if _, dup := out[k]; dup {
			t.Fatalf("two rollup rows for %v", k)
		}
		out[k] = totals{r.Requests, r.Errors, r.InputTokens, r.OutputTokens, r.TotalMs}
	}
	return out
}

// expectedRollups sums events the way the rollups should.
func expectedRollups(events []Event) map[rollupKey]totals {
	out := map[rollupKey]totals{}
	for _, ev := range events {
		k := rollupKey{ev.TenantID, ev.ConfigID, ev.APIKeyID, ev.StartedAt.UTC().Format(time.DateOnly)}
		s := out[k]
		s.requests++
		if ev.Status >= 400 {
			s.errors++
		}
		s.in += ev.InputTokens
		s.out += ev.OutputTokens
		s.ms += ev.ElapsedMS
		out[k] = s
	}
	return out
}

func compareRollups(t testing.TB, got, want map[rollupKey]totals) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("rollup rows = %d, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("rollup %v = %+v, want %+v", k, g, w)
		}
	}
}

func countRecords(t testing.TB, client *ent.Client) int {
	t.Helper()
	n, err := client.UsageRecord.Query().Count(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRecordConcurrentGroupsAndRollsUp(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		var batches, committed atomic.Int64
		r := newRecorder(t, db, RecorderOptions{OnCommit: func(evs []Event) {
			batches.Add(1)
			committed.Add(int64(len(evs)))
		}})
		scopes := []scope{newScope(), newScope(), newScope()}
		day1 := time.Date(2026, 3, 10, 23, 59, 59, 0, time.UTC)
		day2 := time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)
		const n = 200
		events := make([]Event, n)
		for i := range events {
			at := day1
			if i%2 == 1 {
				at = day2
			}
			status := []int{200, 200, 429, 500, 201}[i%5]
			events[i] = scopes[i%3].event(fmt.Sprintf("req-%d", i), status, int64(i), int64(2*i), int64(i%7), at)
		}
		start := make(chan struct{})
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for _, ev := range events {
			wg.Go(func() {
				<-start
				errs <- r.Record(context.Background(), ev)
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := countRecords(t, db.Client); got != n {
			t.Errorf("records = %d, want %d", got, n)
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups(events))
		if got := committed.Load(); got != n {
			t.Errorf("OnCommit saw %d events, want %d", got, n)
		}
		// Group commit: 200 concurrent callers must share transactions.
		b := batches.Load()
		t.Logf("%d events in %d transactions", n, b)
		if b > n/5 {
			t.Errorf("%d transactions for %d concurrent events: batching does not group", b, n)
		}
	})
}

func TestRecordErrorsCounted(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		s := newScope()
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		var events []Event
		for i, status := range []int{200, 399, 400, 404, 429, 500, 502, 204} {
			ev := s.event(fmt.Sprintf("e-%d", i), status, 1, 1, 10, at)
			events = append(events, ev)
			if err := r.Record(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		got := readRollups(t, db.Client)
		want := expectedRollups(events)
		compareRollups(t, got, want)
		for _, v := range got {
			if v.errors != 5 || v.requests != 8 {
				t.Errorf("rollup = %+v, want 8 requests and 5 errors", v)
			}
		}
	})
}

func TestRecordReplayAcrossBatches(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		var seen atomic.Int64
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1, OnCommit: func(evs []Event) { seen.Add(int64(len(evs))) }})
		s := newScope()
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		first := s.event("replayed", 200, 10, 20, 30, at)
		for i := 0; i < 3; i++ {
			ev := first
			ev.InputTokens += int64(i) // a replay may differ: the first record stands
			if err := r.Record(context.Background(), ev); err != nil {
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		if got := countRecords(t, db.Client); got != 1 {
			t.Errorf("records = %d, want 1", got)
		}
		rec, err := db.Client.UsageRecord.Query().Only(auth.SystemContext(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		if rec.InputTokens != 10 {
			t.Errorf("stored input tokens = %d, want the first event's 10", rec.InputTokens)
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups([]Event{first}))
		if seen.Load() != 1 {
			t.Errorf("OnCommit saw %d events, want 1", seen.Load())
		}
	})
}

func TestRecordReplayWithinBatch(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		// The first batch is held until the duplicates are queued, so that they are
		// written together in the second.
		var mu sync.Mutex
		var sizes []int
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		release := newGate(t)
		r.beforeWrite = func(evs []Event) {
			mu.Lock()
			first := len(sizes) == 0
			sizes = append(sizes, len(evs))
			mu.Unlock()
			if first {
				release.wait()
			}
		}
		s := newScope()
		at := time.Date(2026, 5, 5, 12, 0, 0, 0, time.UTC)
		blocker := s.event("blocker", 200, 1, 1, 1, at)
		dup := s.event("dup", 500, 5, 5, 5, at)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		wg.Go(func() { errs[0] = r.Record(context.Background(), blocker) })
		waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
		for i := 1; i <= 3; i++ {
			wg.Go(func() { errs[i] = r.Record(context.Background(), dup) })
		}
		waitFor(t, func() bool { return len(r.queue) == 3 })
		release.open()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: %v", i, err)
			}
		}
		mu.Lock()
		got := slices.Clone(sizes)
		mu.Unlock()
		if !slices.Equal(got, []int{1, 3}) {
			t.Fatalf("batch sizes = %v, want [1 3]", got)
		}
		if got := countRecords(t, db.Client); got != 2 {
			t.Errorf("records = %d, want 2", got)
		}
		compareRollups(t, readRollups(t, db.Client), expectedRollups([]Event{blocker, dup}))
	})
}

func TestRecordDurableIsVisibleElsewhere(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		// Taken before recording, so the writer cannot be using this connection.
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := newRecorder(t, db, RecorderOptions{})
		s := newScope()
		for i := 0; i < 5; i++ {
			id := fmt.Sprintf("visible-%d", i)
			if err := r.Record(ctx, s.event(id, 200, 1, 2, 3, time.Now())); err != nil {
				t.Fatal(err)
			}
			var n int
			// No waiting, no retry: the row must be there the moment Record returns.
			if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM usage_records WHERE request_id = $1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("record %s not visible after Record returned", id)
			}
		}
	})
}

func TestRecordCallerCancelDoesNotAbortBatch(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{MaxWait: -1})
		release := newGate(t)
		var calls atomic.Int64
		r.beforeWrite = func([]Event) {
			if calls.Add(1) == 1 {
				release.wait()
			}
		}
		s := newScope()
		at := time.Now()
		cctx, cancel := context.WithCancel(context.Background())
		var gaveUp, stayed error
		var wg sync.WaitGroup
		// The impatient caller's event is in the batch held at the gate before it gives
		// up (had it given up before Record, nothing would have been queued); the patient
		// one waits behind it.
		impatientDone := make(chan struct{})
		go func() {
			defer close(impatientDone)
			gaveUp = r.Record(cctx, s.event("impatient", 200, 1, 1, 1, at))
		}()
		waitFor(t, func() bool { return calls.Load() == 1 })
		wg.Go(func() { stayed = r.Record(context.Background(), s.event("patient", 200, 1, 1, 1, at)) })
		cancel()
		<-impatientDone // it gave up while its batch was still held
		release.open()
		wg.Wait()
		if stayed != nil {
			t.Fatalf("patient caller: %v", stayed)
		}
		if !errors.Is(gaveUp, context.Canceled) {
			t.Fatalf("impatient caller: %v, want context.Canceled", gaveUp)
		}
		// The batch the impatient caller left is written all the same, and so is the next.
		waitFor(t, func() bool { return countRecords(t, db.Client) == 2 })
	})
}

func TestRecordFailingDatabase(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{WriteTimeout: 5 * time.Second})
		s := newScope()
		if err := r.Record(context.Background(), s.event("before", 200, 1, 1, 1, time.Now())); err != nil {
			t.Fatal(err)
		}
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 10)
		for i := range errs {
			wg.Go(func() { errs[i] = r.Record(ctx, s.event(fmt.Sprintf("after-%d", i), 200, 1, 1, 1, time.Now())) })
		}
		wg.Wait()
		for i, err := range errs {
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("caller %d: err = %v, want the database's error", i, err)
			}
		}
	})
}

func TestCloseDrainsAsync(t *testing.T) {
	forEachDriver(t, func(t *testing.T, db *database.DB) {
		r := newRecorder(t, db, RecorderOptions{Async: true, MaxBatch: 16})
		release := newGate(t)
		var calls atomic.Int64
		r.beforeWrite = func([]Event) {
			if calls.Add(1) == 1 {
				release.wait()
			}
		}
		s := newScope()
		at := time.Now()
		ctx := context.Background()
		if err := r.Record(ctx, s.event("async-0", 200, 1, 1, 1, at)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return calls.Load() == 1 })
		// The writer is held: these stay queued until Close drains them.
		const n = 100
		for i := 1; i <= n; i++ {
			if err := r.Record(ctx, s.event(fmt.Sprintf("async-%d", i), 200, 1, 1, 1, at)); err != nil {
				t.Fatal(err)
			}
		}
		if got := countRecords(t, db.Client); got != 0 {
			t.Fatalf("records before Close = %d, want 0 (the writer is held)", got)
		}
		closed := make(chan error, 1)
		go func() { closed <- r.Close(ctx) }()
		waitFor(t, func() bool {
			select {
			case <-r.closing:
				return true
			default:
				return false
			}
		})
		time.Sleep(10 * time.Millisecond) // let Close reach its wait
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v before the queue was drained", err)
		default:
		}
		release.open()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if got := countRecords(t, db.Client); got != n+1 {
			t.Errorf("records after Close = %d, want %d", got, n+1)
		}
		if err := r.Record(ctx, s.event("later", 200, 1, 1, 1, at)); !errors.Is(err, ErrClosed) {
			t.Errorf("Record after Close: %v, want ErrClosed", err)
		}
		if err := r.Close(ctx); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestCloseDeadlineAbortsWriter(t *testing.T) {
	db := dbtest.Open(t, database.DriverSQLite)
	r := newRecorder(t, db, RecorderOptions{Async: true})
	release := newGate(t)
	r.beforeWrite = func([]Event) {
		select {
		case <-release.ch:
		case <-r.ctx.Done(): // the cancelled writer moves on
		}
	}
	s := newScope()
	if err := r.Record(context.Background(), s.event("stuck", 200, 1, 1, 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	select {
	case <-r.done:
	default:
		t.Fatal("writer still running after Close returned")
	}
}

func TestRecordRejectsInvalidEvents(t *testing.T) {
	db := dbtest.Open(t, database.DriverSQLite)
	r := newRecorder(t, db, RecorderOptions{})
	s := newScope()
	good := s.event("ok", 200, 1, 1, 1, time.Now())
	for name, mutate := range map[string]func(*Event){
		"no request id":   func(e *Event) { e.RequestID = "" },
		"long request id": func(e *Event) { e.RequestID = string(make([]byte, 129)) },
		"no tenant":       func(e *Event) { e.TenantID = "" },
		"no config":       func(e *Event) { e.ConfigID = "" },
		"negative tokens": func(e *Event) { e.OutputTokens = -1 },
		"no start":        func(e *Event) { e.StartedAt = time.Time{} },
	} {
		ev := good
		mutate(&ev)
		if err := r.Record(context.Background(), ev); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", name, err)
		}
	}
	long := good
	long.RequestID = "long-code"
	long.Status = 502
	long.ErrorCode = string(make([]byte, 100))
	if err := r.Record(context.Background(), long); err != nil {
		t.Fatalf("long error code: %v", err)
	}
	rec, err := db.Client.UsageRecord.Query().Where(usagerecord.RequestID("long-code")).Only(auth.SystemContext(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.ErrorCode) != maxErrorCodeLen {
		t.Errorf("error code length = %d, want %d", len(rec.ErrorCode), maxErrorCodeLen)
	}
}

// gate holds the writer (in beforeWrite) until opened. It opens itself when the test
// ends, before the recorder's Close, so that a failing test cannot hang in Close.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

// newGate returns a closed gate; create it after the recorder it holds.
func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

// waitFor polls cond for up to 10s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
