package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/database"
)

// RetentionOptions tune UsageRetention. Zero values take the defaults.
type RetentionOptions struct {
	// Keep is how long raw usage records are kept. Default 30 days; report.Options'
	// Retention should be the same, so that "recent calls" never promises more.
	Keep time.Duration
	// Batch caps the rows one DELETE removes, so that no statement holds locks (or, on
	// SQLite, the database's only write lock) for long. Default 5000.
	Batch int
	// Pause is slept between batches to let the gateway's writes in. Default none.
	Pause time.Duration
	// Every is the job's period. Default one hour.
	Every time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives what each run deleted. Default slog.Default().
	Logger *slog.Logger
}

// UsageRetention deletes raw usage records older than the retention window. The daily
// rollups are kept: they are what reports, quotas and billing read, and they stay
// correct because the recorder counted each record into them when it was inserted.
type UsageRetention struct {
	db    *database.DB
	keep  time.Duration
	batch int
	pause time.Duration
	every time.Duration
	now   func() time.Time
	log   *slog.Logger
	query string
}

// RetentionJobName names the retention job (and its lock).
const RetentionJobName = "usage-record-retention"

// NewUsageRetention returns the retention of db's usage records.
func NewUsageRetention(db *database.DB, opts RetentionOptions) *UsageRetention {
	if db == nil {
		panic("jobs: NewUsageRetention needs a database")
	}
	if opts.Keep <= 0 {
		opts.Keep = 30 * 24 * time.Hour
	}
	if opts.Batch <= 0 {
		opts.Batch = 5000
	}
	if opts.Every <= 0 {
		opts.Every = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	placeholder := "?"
	if db.Driver == database.DriverPostgres {
		placeholder = "$1"
	}
	// Raw SQL because ent's delete builder has no LIMIT. The sub-select bounds the batch
	// on both databases (PostgreSQL's DELETE has no LIMIT either). Raw SQL also bypasses
	// the privacy policy that makes usage rows system-only, which is right: this is the
	// system. No index leads with started_at (usage_records' indexes lead with a tenant
	// or config), so each batch scans the table until it has found Batch old rows; those
	// are the oldest rows and so near the table's start, which keeps that cheap.
	query := fmt.Sprintf(`DELETE FROM %q WHERE %q IN (SELECT %q FROM %q WHERE %q < %s LIMIT %d)`,
		usagerecord.Table, usagerecord.FieldID, usagerecord.FieldID, usagerecord.Table,
		usagerecord.FieldStartedAt, placeholder, opts.Batch)
	return &UsageRetention{
		db: db, keep: opts.Keep, batch: opts.Batch, pause: opts.Pause, every: opts.Every,
		now: opts.Now, log: opts.Logger, query: query,
	}
}

// Job returns the retention as a Job for a Runner.
func (u *UsageRetention) Job() Job {
	return Job{Name: RetentionJobName, Every: u.every, Run: func(ctx context.Context) error {
		n, err := u.Purge(ctx)
		if n > 0 || err != nil {
			u.log.Info("jobs: usage records purged", slog.Int64("deleted", n), slog.Any("error", err))
		}
		return err
	}}
}

// Purge deletes the records that started before the window, batch by batch, and returns
// how many it deleted. Each batch commits on its own, so an interrupted purge keeps its
// progress and the next run carries on.
func (u *UsageRetention) Purge(ctx context.Context) (int64, error) {
	cutoff := u.now().Add(-u.keep).UTC()
	var total int64
	for {
		res, err := u.db.SQL.ExecContext(ctx, u.query, cutoff)
		if err != nil {
			return total, fmt.Errorf("jobs: purge usage records: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("jobs: purge usage records: %w", err)
		}
		total += n
		if n < int64(u.batch) {
			return total, nil
		}
		if u.pause > 0 {
			sleep(ctx, u.pause)
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
