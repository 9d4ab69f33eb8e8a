// Package jobs runs the service's periodic work (usage retention today; reconciling
// Waldur orders and reporting usage later) so that one replica runs each job at a time.
//
// Leadership is a PostgreSQL session-level advisory lock per job, taken with
// pg_try_advisory_lock on a connection the leader keeps for as long as it leads: the lock
// lives exactly as long as that session, so a replica that crashes or loses its
// connection loses the lock with it and another replica takes over at its next try. On
// SQLite (one process, the dev setup) every runner leads.
//
// A leader checks its lock connection every Options.CheckLock and cancels the job's
// context when the connection is gone. Between the loss and that check another replica
// may already lead, so jobs must be idempotent (they are: each re-derives its work from
// the database) and should stop promptly when their context ends.
package jobs

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/gsvdev/agentregistry/internal/database"
)

// Job is one piece of periodic work.
type Job struct {
	// Name identifies the job in logs and names its lock: replicas agree on the lock
	// because they agree on the name.
	Name string
	// Every is the pause between the end of one run and the start of the next. The first
	// run starts as soon as the runner leads.
	Every time.Duration
	// Run does the work. Its context ends when the runner stops or loses the lock; an
	// error is logged and the job runs again after Every.
	Run func(ctx context.Context) error
}

// Options tune a Runner. Zero values take the defaults.
type Options struct {
	// RetryLock is how often a replica that does not lead a job tries to take its lock.
	// Default 15s: how long a job may go unattended after its leader dies.
	RetryLock time.Duration
	// CheckLock is how often the leader checks that its lock connection is alive.
	// Default 5s.
	CheckLock time.Duration
	// Logger receives job failures and leadership changes. Default slog.Default().
	Logger *slog.Logger
}

// minCheckTimeout is the least time the leader's liveness check may take before the
// lock's session is given up for lost.
const minCheckTimeout = 2 * time.Second

// Runner runs jobs, each under its leader lock.
type Runner struct {
	db        *database.DB
	jobs      []Job
	retryLock time.Duration
	checkLock time.Duration
	log       *slog.Logger
}

// NewRunner returns a Runner of jobs on db. Each job that leads holds one connection of
// db's pool on PostgreSQL, so size the pool for it. It panics on a job without a name,
// a positive Every or a Run function, or on two jobs of one name: programming errors.
func NewRunner(db *database.DB, opts Options, jobs ...Job) *Runner {
	if db == nil {
		panic("jobs: NewRunner needs a database")
	}
	seen := map[string]bool{}
	for _, j := range jobs {
		if j.Name == "" || j.Every <= 0 || j.Run == nil || seen[j.Name] {
			panic(fmt.Sprintf("jobs: invalid or duplicate job %q", j.Name))
		}
		seen[j.Name] = true
	}
	if opts.RetryLock <= 0 {
		opts.RetryLock = 15 * time.Second
	}
	if opts.CheckLock <= 0 {
		opts.CheckLock = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Runner{db: db, jobs: jobs, retryLock: opts.RetryLock, checkLock: opts.CheckLock, log: opts.Logger}
}

// Run runs the jobs until ctx ends, then releases their locks and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, j := range r.jobs {
		wg.Go(func() { r.runJob(ctx, j) })
	}
	wg.Wait()
	return nil
}

// LockKey is the advisory lock key of the job named name: a 64-bit hash of a namespaced
// name, so that it cannot meet another user of advisory locks by accident.
func LockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentregistry/jobs/" + name))
	return int64(h.Sum64())
}

// runJob alternates between trying to lead j and leading it, until ctx ends.
func (r *Runner) runJob(ctx context.Context, j Job) {
	if r.db.Driver != database.DriverPostgres {
		r.lead(ctx, j) // one process per SQLite file: always the leader
		return
	}
	key := LockKey(j.Name)
	for ctx.Err() == nil {
		conn, err := r.tryLock(ctx, key)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("jobs: taking the lock failed", slog.String("job", j.Name), slog.Any("error", err))
		case conn != nil:
			r.log.Info("jobs: leading", slog.String("job", j.Name))
			r.leadOn(ctx, conn, key, j)
			r.log.Info("jobs: no longer leading", slog.String("job", j.Name))
			continue // lost the connection, not asked to stop: try again at once
		}
		sleep(ctx, r.retryLock)
	}
}

// tryLock takes key's lock on a connection of its own and returns that connection, or
// nil when another session holds the lock.
func (r *Runner) tryLock(ctx context.Context, key int64) (*sql.Conn, error) {
	conn, err := r.db.SQL.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		// Not holding the lock, so the session may go back to the pool; a failed
		// statement may have left it unusable, which database/sql detects itself.
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// leadOn runs j while conn, which holds key's lock, stays alive and ctx lasts; then it
// unlocks and discards conn.
func (r *Runner) leadOn(ctx context.Context, conn *sql.Conn, key int64, j Job) {
	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watch(leadCtx, conn, j.Name)
		cancel()
	}()
	r.lead(leadCtx, j)
	cancel()
	<-watched
	r.release(conn, key)
}

// watch returns when ctx ends or conn stops answering (the session, and the lock with
// it, is then gone).
func (r *Runner) watch(ctx context.Context, conn *sql.Conn, job string) {
	t := time.NewTicker(r.checkLock)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A dead session fails at once; a slow answer on a busy database is not a lost
		// lock, so the check may take longer than the interval between checks.
		check, cancel := context.WithTimeout(ctx, max(r.checkLock, minCheckTimeout))
		var one int
		err := conn.QueryRowContext(check, "SELECT 1").Scan(&one)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("jobs: lock connection lost", slog.String("job", job), slog.Any("error", err))
			return
		}
	}
}

// release unlocks key and discards conn. The session is never returned to the pool:
// were the unlock to fail, a pooled session would keep the lock (and the leadership)
// for as long as it lived, with nobody running the job.
func (r *Runner) release(conn *sql.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key)
	// driver.ErrBadConn from Raw makes database/sql close the connection instead of
	// pooling it.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// lead runs j now and then every j.Every until ctx ends.
func (r *Runner) lead(ctx context.Context, j Job) {
	for ctx.Err() == nil {
		start := time.Now()
		if err := j.Run(ctx); err != nil && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
			r.log.Error("jobs: run failed", slog.String("job", j.Name), slog.Any("error", err))
		} else if err == nil {
			r.log.Debug("jobs: ran", slog.String("job", j.Name), slog.Duration("took", time.Since(start)))
		}
		sleep(ctx, j.Every)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
