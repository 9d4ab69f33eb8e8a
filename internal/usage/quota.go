package usage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/usagedaily"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Quota answers the gateway's "how much has this config used this month" from the
// rollups, the same rows billing reports from, so that the quota and the invoice never
// disagree about what was used.
type Quota struct {
	client *ent.Client
}

// NewQuota reads month-to-date usage through client.
func NewQuota(client *ent.Client) *Quota {
	if client == nil {
		panic("usage: NewQuota needs a client")
	}
	return &Quota{client: client}
}

// MonthToDate returns the answered requests and the input plus output tokens of config
// configID of tenant tenantID from the first day of now's UTC month. Calls answered with
// an error (status >= 400) are metered but do not use up the quota: otherwise anyone
// holding a page's public widget key could exhaust a customer's month with refused calls.
func (q *Quota) MonthToDate(ctx context.Context, tenantID, configID pulid.ID, now time.Time) (requests, tokens int64, err error) {
	start := monthOf(now)
	// The gateway has no viewer; it acts for the tenant of the key it verified, which the
	// WHERE clause pins, so reading as the system leaks nothing across tenants.
	var sums []struct {
		Requests sql.NullInt64 `json:"requests"`
		Errors   sql.NullInt64 `json:"errors"`
		Input    sql.NullInt64 `json:"input"`
		Output   sql.NullInt64 `json:"output"`
	}
	err = q.client.UsageDaily.Query().
		Where(
			usagedaily.TenantID(tenantID),
			usagedaily.ConfigID(configID),
			usagedaily.DayGTE(start),
			// Rows of a later month exist only under clock skew; they are that month's.
			usagedaily.DayLT(start.AddDate(0, 1, 0)),
		).
		Aggregate(
			ent.As(ent.Sum(usagedaily.FieldRequests), "requests"),
			ent.As(ent.Sum(usagedaily.FieldErrors), "errors"),
			ent.As(ent.Sum(usagedaily.FieldInputTokens), "input"),
			ent.As(ent.Sum(usagedaily.FieldOutputTokens), "output"),
		).
		Scan(auth.SystemContext(ctx), &sums)
	if err != nil {
		return 0, 0, fmt.Errorf("usage: month to date: %w", err)
	}
	if len(sums) == 0 { // SUM over no rows is one row of NULLs, but be lenient
		return 0, 0, nil
	}
	return sums[0].Requests.Int64 - sums[0].Errors.Int64, sums[0].Input.Int64 + sums[0].Output.Int64, nil
}

// QuotaCounterOptions tune a QuotaCounter. Zero values take the defaults.
type QuotaCounterOptions struct {
	// Refresh is how long a config's totals are trusted before they are read again from
	// the database, which is how the calls other replicas served get counted here.
	// Default 5s.
	Refresh time.Duration
	// IdleAfter drops a config that has not been asked about for this long, keeping the
	// cache to the configs in use. Default 10m.
	IdleAfter time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives refresh failures. Default slog.Default().
	Logger *slog.Logger
}

// QuotaCounter caches month-to-date totals per config for the invoke path, so that the
// quota check costs a map lookup rather than a query. Each config's totals are read from
// the database on first use and every Refresh, and in between the calls this process
// commits are added as they commit (the Recorder feeds Observe; see
// RecorderOptions.Quota).
//
// Accuracy, by design:
//   - Across replicas the counter lags by at most one Refresh: calls served by the other
//     replicas since this one last read are not seen, so together the replicas may admit
//     up to a Refresh window's worth of the other replicas' traffic beyond the limit
//     (about rate × Refresh × (replicas-1)/replicas). A single replica is exact.
//   - Calls that commit while a read is in flight are added on top of what the read
//     returns, so one that the read already saw is counted twice until the next
//     Refresh. That errs towards refusing slightly early for a few seconds, never
//     towards admitting more.
//   - A failed refresh keeps the cached totals (still updated by local commits) and is
//     tried again a second later; only a config's first read can fail the caller.
type QuotaCounter struct {
	quota     *Quota
	refresh   time.Duration
	idleAfter time.Duration
	now       func() time.Time
	log       *slog.Logger

	mu        sync.Mutex
	entries   map[counterKey]*counterEntry
	nextSweep time.Time
}

type counterKey struct{ tenant, config pulid.ID }

// counterEntry is one config's totals for one month. Its fields belong to mu.
type counterEntry struct {
	month            time.Time
	requests, tokens int64
	loaded           bool
	nextRefresh      time.Time
	lastUsed         time.Time

	// loading is non-nil while a read is in flight and closed when it ends; pending
	// counts what committed meanwhile, to be added to the read's result.
	loading                  chan struct{}
	pendingReq, pendingToken int64
	loadErr                  error // the failure of the last first read, for its waiters
}

// refreshRetry is how soon a failed refresh is tried again: soon enough to converge,
// rare enough not to add load to a database that is already failing.
const refreshRetry = time.Second

// NewQuotaCounter builds a QuotaCounter reading through q. It starts no goroutine: reads
// happen on the calls that find a config's totals due.
func NewQuotaCounter(q *Quota, opts QuotaCounterOptions) *QuotaCounter {
	if q == nil {
		panic("usage: NewQuotaCounter needs a Quota")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &QuotaCounter{
		quota:     q,
		refresh:   opts.Refresh,
		idleAfter: opts.IdleAfter,
		now:       opts.Now,
		log:       opts.Logger,
		entries:   make(map[counterKey]*counterEntry),
	}
}

// MonthToDate returns the config's requests and tokens this UTC month, as Quota does,
// from the cache. It queries the database on a config's first use (other callers for
// the same config wait for that one read) and when its totals are due for a refresh (one
// caller reads; the others meanwhile get the cached totals).
func (c *QuotaCounter) MonthToDate(ctx context.Context, tenantID, configID pulid.ID) (requests, tokens int64, err error) {
	key := counterKey{tenantID, configID}
	for {
		now := c.now()
		month := monthOf(now)
		c.mu.Lock()
		c.sweep(now)
		e := c.entries[key]
		if e == nil || !e.month.Equal(month) {
			// A new month starts from what the database holds for it.
			e = &counterEntry{month: month}
			c.entries[key] = e
		}
		e.lastUsed = now
		if e.loaded && (e.loading != nil || now.Before(e.nextRefresh)) {
			requests, tokens = e.requests, e.tokens
			c.mu.Unlock()
			return requests, tokens, nil
		}
		if wait := e.loading; wait != nil {
			// First read in flight: wait for it rather than send the same query.
			c.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
			c.mu.Lock()
			loaded, r, t, lerr := e.loaded, e.requests, e.tokens, e.loadErr
			c.mu.Unlock()
			if loaded {
				return r, t, nil
			}
			if lerr != nil && !errors.Is(lerr, context.Canceled) && !errors.Is(lerr, context.DeadlineExceeded) {
				return 0, 0, lerr
			}
			// The reader gave up (its own deadline, not ours): read ourselves.
			continue
		}
		return c.load(ctx, key, e, now)
	}
}

// load reads e's totals; c.mu is held on entry and released on return.
func (c *QuotaCounter) load(ctx context.Context, key counterKey, e *counterEntry, now time.Time) (int64, int64, error) {
	done := make(chan struct{})
	e.loading, e.pendingReq, e.pendingToken, e.loadErr = done, 0, 0, nil
	c.mu.Unlock()

	r, t, err := c.quota.MonthToDate(ctx, key.tenant, key.config, now)

	c.mu.Lock()
	defer c.mu.Unlock()
	e.loading = nil
	close(done)
	switch {
	case err == nil:
		e.requests, e.tokens = r+e.pendingReq, t+e.pendingToken
		e.loaded = true
		e.nextRefresh = now.Add(c.refresh)
		return e.requests, e.tokens, nil
	case e.loaded:
		c.log.Warn("usage: quota refresh failed; using cached totals",
			slog.String("config_id", string(key.config)), slog.Any("error", err))
		e.nextRefresh = now.Add(min(refreshRetry, c.refresh))
		return e.requests, e.tokens, nil
	default:
		e.loadErr = err
		return 0, 0, err
	}
}

// Observe adds committed events to the totals of the configs in the cache. Events of
// configs not cached are left to their first read, which will find them in the database.
// It never blocks on I/O: the Recorder calls it from its writer.
func (c *QuotaCounter) Observe(events []Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range events {
		ev := &events[i]
		e := c.entries[counterKey{ev.TenantID, ev.ConfigID}]
		if e == nil || !e.month.Equal(monthOf(ev.StartedAt)) {
			continue // rolled up into another month than the one cached
		}
		answered := int64(1)
		if ev.isError() {
			answered = 0 // refused and failed calls do not use up the quota (see MonthToDate)
		}
		e.requests += answered
		e.tokens += ev.tokens()
		if e.loading != nil {
			e.pendingReq += answered
			e.pendingToken += ev.tokens()
		}
	}
}

// sweep drops idle entries, at most once per Refresh; c.mu is held.
func (c *QuotaCounter) sweep(now time.Time) {
	if now.Before(c.nextSweep) {
		return
	}
	c.nextSweep = now.Add(c.refresh)
	for k, e := range c.entries {
		if e.loading == nil && now.Sub(e.lastUsed) > c.idleAfter {
			delete(c.entries, k)
		}
	}
}
