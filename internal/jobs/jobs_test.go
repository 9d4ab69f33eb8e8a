package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// probe is a job that records who ran it and whether two runs ever overlapped.
type probe struct {
	running  atomic.Int32
	overlaps atomic.Int32
	mu       sync.Mutex
	runs     map[string]int
}

func (p *probe) job(runner string) Job {
	return Job{Name: "probe", Every: 5 * time.Millisecond, Run: func(ctx context.Context) error {
		if p.running.Add(1) > 1 {
			p.overlaps.Add(1)
		}
		defer p.running.Add(-1)
		p.mu.Lock()
		p.runs[runner]++
		p.mu.Unlock()
		sleep(ctx, 5*time.Millisecond)
		return nil
	}}
}

func (p *probe) count(runner string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs[runner]
}

// start runs a runner of job until the returned stop is called (or the test ends).
func start(t *testing.T, db *database.DB, job Job) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := NewRunner(db, Options{RetryLock: 10 * time.Millisecond, CheckLock: 10 * time.Millisecond}, job)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockHolder returns the backend pid holding the probe's advisory lock, or 0.
func lockHolder(t *testing.T, db *database.DB) int {
	t.Helper()
	key := uint64(LockKey("probe"))
	var pid int
	err := db.SQL.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid = $1 AND objid = $2 AND objsubid = 1`, int64(key>>32), int64(key&0xffffffff)).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestOneLeaderOnPostgres(t *testing.T) {
	dbtest.PostgresURL(t)
	// The runners share a pool here, but each leader holds a session of its own, and
	// sessions are what the lock tells apart: as good as two replicas.
	a := dbtest.Open(t, database.DriverPostgres)
	p := &probe{runs: map[string]int{}}
	stopA := start(t, a, p.job("a"))
	waitFor(t, "a to lead", func() bool { return p.count("a") >= 3 })
	stopB := start(t, a, p.job("b"))
	time.Sleep(200 * time.Millisecond)
	if n := p.count("b"); n != 0 {
		t.Fatalf("b ran %d times while a led", n)
	}
	// The leader stops: b takes over.
	stopA()
	waitFor(t, "b to take over", func() bool { return p.count("b") >= 3 })
	if n := p.overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping runs", n)
	}

	// The leader's session dies (a killed backend, a network cut): the lock goes with it
	// and a replica leads again.
	start(t, a, p.job("c"))
	pidB := lockHolder(t, a)
	if pidB == 0 {
		t.Fatal("nobody holds the lock")
	}
	if _, err := a.SQL.Exec("SELECT pg_terminate_backend($1)", pidB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new session to lead", func() bool { pid := lockHolder(t, a); return pid != 0 && pid != pidB })
	before := p.count("b") + p.count("c")
	waitFor(t, "the job to run again", func() bool { return p.count("b")+p.count("c") >= before+3 })
	stopB()
}

func TestRunnerOnSQLite(t *testing.T) {
	db := dbtest.Open(t, database.DriverSQLite)
	p := &probe{runs: map[string]int{}}
	stop := start(t, db, p.job("a"))
	waitFor(t, "the job to run", func() bool { return p.count("a") >= 3 })
	stop()
	n := p.count("a")
	time.Sleep(30 * time.Millisecond)
	if p.count("a") != n {
		t.Error("the job ran after Run returned")
	}
}

func TestRetention(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Open(t, driver)
			now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
			ret := NewUsageRetention(db, RetentionOptions{Keep: 30 * 24 * time.Hour, Batch: 7, Now: func() time.Time { return now }})
			cutoff := now.Add(-30 * 24 * time.Hour)
			tenant, provider, cfg, agent := pulid.MustNew("ten"), pulid.MustNew("ten"), pulid.MustNew("cfg"), pulid.MustNew("agt")
			var events []usage.Event
			kept := map[string]bool{}
			for i := range 60 {
				// Every other record is old: 25 deletions in batches of 7; one at the
				// cutoff itself stays.
				at := cutoff.Add(time.Duration(i-50) * time.Hour)
				if i == 59 {
					at = cutoff
				}
				id := fmt.Sprintf("ret-%02d", i)
				events = append(events, usage.Event{RequestID: id, TenantID: tenant, ProviderTenantID: provider,
					ConfigID: cfg, AgentID: agent, Status: 200, InputTokens: 1, ElapsedMS: 3, StartedAt: at})
				if !at.Before(cutoff) {
					kept[id] = true
				}
			}
			r := usage.NewRecorder(db, usage.RecorderOptions{})
			for _, ev := range events {
				if err := r.Record(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			sys := auth.SystemContext(context.Background())
			rollupsBefore := db.Client.UsageDaily.Query().AllX(sys)

			n, err := ret.Purge(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(events) - len(kept)); n != want {
				t.Errorf("deleted %d, want %d", n, want)
			}
			left := db.Client.UsageRecord.Query().AllX(sys)
			if len(left) != len(kept) {
				t.Errorf("%d records left, want %d", len(left), len(kept))
			}
			for _, rec := range left {
				if !kept[rec.RequestID] {
					t.Errorf("old record %s (%v) kept", rec.RequestID, rec.StartedAt)
				}
			}
			rollupsAfter := db.Client.UsageDaily.Query().AllX(sys)
			if len(rollupsAfter) != len(rollupsBefore) {
				t.Fatalf("rollups %d -> %d", len(rollupsBefore), len(rollupsAfter))
			}
			var requests int64
			for _, d := range rollupsAfter {
				requests += d.Requests
			}
			if requests != int64(len(events)) {
				t.Errorf("rollups count %d requests after the purge, want %d", requests, len(events))
			}
			// Nothing more to do: a second run deletes nothing.
			if n, err := ret.Purge(context.Background()); err != nil || n != 0 {
				t.Errorf("second purge: %d, %v", n, err)
			}
			// Through a runner, as the service runs it.
			now = now.Add(24 * time.Hour)
			stop := start(t, db, ret.Job())
			waitFor(t, "the runner's purge", func() bool { return db.Client.UsageRecord.Query().CountX(sys) < len(kept) })
			stop()
		})
	}
}
