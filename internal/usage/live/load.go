package live

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/predicate"
	"github.com/gsvdev/agentregistry/ent/usagedaily"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// load reads group k's state from the database: day and period totals from the rollups,
// the last minute (at most MaxMinuteSamples rows) and the recent calls (at most
// RecentCalls, within recentWindow) from usage_records. It also returns what it counted,
// so that the events of those calls, which may still arrive on the bus, are skipped.
//
// On PostgreSQL the queries share one REPEATABLE READ snapshot, so that the rollups and
// the records (written in one transaction by the recorder) agree about which calls are
// counted, and that snapshot then tells every event's call apart (counted.snap). SQLite
// is left without a transaction: the service opens it with immediate transactions, which
// would take the write lock from the recorder.
func (h *Hub) load(k groupKey) (state, counted, error) {
	select { // at most loadConcurrency loads at a time; the wait is not the load's timeout
	case h.loads <- struct{}{}:
		defer func() { <-h.loads }()
	case <-h.ctx.Done():
		return state{}, counted{}, fmt.Errorf("live: load: %w", h.ctx.Err())
	}
	// The load acts for the service, not for a viewer: the subscription's filter was
	// authorized by the caller of Subscribe, and the WHERE clauses pin it.
	ctx, cancel := context.WithTimeout(auth.SystemContext(h.ctx), h.opts.LoadTimeout)
	defer cancel()
	pg, err := h.isPostgres(ctx)
	if err != nil {
		return state{}, counted{}, err
	}
	client := h.client
	var c counted
	if pg {
		tx, err := h.client.BeginTx(ctx, &stdsql.TxOptions{Isolation: stdsql.LevelRepeatableRead, ReadOnly: true})
		if err != nil {
			return state{}, counted{}, fmt.Errorf("live: load: begin: %w", err)
		}
		defer func() { _ = tx.Rollback() }() // read-only: nothing to commit
		client = tx.Client()
		// The transaction's first statement takes its snapshot: every query below reads in it.
		if c.snap, err = currentSnapshot(ctx, client); err != nil {
			return state{}, counted{}, err
		}
	}
	// One instant anchors the day, the period and the minute for every query, so that
	// they describe the same moment.
	now := h.now()
	st := newState(k, now)

	if st.dayT, err = sumDailies(ctx, client, k, st.day, st.day.AddDate(0, 0, 1)); err != nil {
		return state{}, counted{}, err
	}
	if st.periodT, err = sumDailies(ctx, client, k, st.periodStart, st.periodEnd); err != nil {
		return state{}, counted{}, err
	}

	since := now.Add(-time.Minute)
	rows, err := client.UsageRecord.Query().
		Where(recordPreds(k, usagerecord.StartedAtGTE(since))...).
		Order(ent.Desc(usagerecord.FieldStartedAt)).
		Limit(MaxMinuteSamples).
		All(ctx)
	if err != nil {
		return state{}, counted{}, fmt.Errorf("live: load last minute: %w", err)
	}
	c.ids = make(map[string]struct{}, len(rows))
	for i := len(rows) - 1; i >= 0; i-- { // oldest first, as they would have arrived
		r := rows[i]
		c.ids[r.RequestID] = struct{}{}
		st.addMinute(r.StartedAt.UTC(), r.ElapsedMs, now, 1)
	}
	recent := rows
	if len(rows) < h.opts.RecentCalls {
		// A quiet filter still shows its latest calls, from further back.
		recent, err = client.UsageRecord.Query().
			Where(recordPreds(k, usagerecord.StartedAtGTE(now.Add(-recentWindow)))...).
			Order(ent.Desc(usagerecord.FieldStartedAt)).
			Limit(h.opts.RecentCalls).
			All(ctx)
		if err != nil {
			return state{}, counted{}, fmt.Errorf("live: load recent calls: %w", err)
		}
	}
	for _, r := range recent[:min(len(recent), h.opts.RecentCalls)] {
		c.ids[r.RequestID] = struct{}{}
		st.addRecent(Call{
			RequestID: r.RequestID, Status: r.Status, InputTokens: r.InputTokens,
			OutputTokens: r.OutputTokens, ElapsedMS: r.ElapsedMs, At: r.StartedAt.UTC(), ErrorCode: r.ErrorCode,
		}, h.opts.RecentCalls)
	}
	if len(rows) == MaxMinuteSamples {
		// More calls in the minute than samples: count them all. The ones not read started
		// before the oldest read, so they are put in its second (they leave the window a
		// little late rather than early).
		total, err := client.UsageRecord.Query().
			Where(recordPreds(k, usagerecord.StartedAtGTE(since))...).
			Count(ctx)
		if err != nil {
			return state{}, counted{}, fmt.Errorf("live: load last minute: %w", err)
		}
		if extra := int64(total - len(rows)); extra > 0 {
			oldest := rows[len(rows)-1].StartedAt.UTC()
			if oldest.After(now) {
				oldest = now
			}
			if oldest.After(since) {
				st.buckets[mod60(oldest.Unix())].n += extra
			}
		}
	}
	return st, c, nil
}

// recentWindow bounds how far back the recent calls of a quiet filter are looked for,
// so that the query stays a bounded range scan.
const recentWindow = 30 * 24 * time.Hour

// sumDailies sums the rollups of k's filter over the days [from, to); to zero means no
// end.
func sumDailies(ctx context.Context, client *ent.Client, k groupKey, from, to time.Time) (Totals, error) {
	preds := []predicate.UsageDaily{usagedaily.DayGTE(from)}
	if !to.IsZero() {
		preds = append(preds, usagedaily.DayLT(to))
	}
	ids := k.ids
	if v := ids[dimTenant]; v != "" {
		preds = append(preds, usagedaily.TenantID(v))
	}
	if v := ids[dimProvider]; v != "" {
		preds = append(preds, usagedaily.ProviderTenantID(v))
	}
	if v := ids[dimConfig]; v != "" {
		preds = append(preds, usagedaily.ConfigID(v))
	}
	if v := ids[dimAgent]; v != "" {
		preds = append(preds, usagedaily.AgentID(v))
	}
	if v := ids[dimKey]; v != "" {
		preds = append(preds, usagedaily.APIKeyID(string(v)))
	}
	var sums []struct {
		Requests stdsql.NullInt64 `json:"requests"`
		Errors   stdsql.NullInt64 `json:"errors"`
		Input    stdsql.NullInt64 `json:"input"`
		Output   stdsql.NullInt64 `json:"output"`
	}
	err := client.UsageDaily.Query().
		Where(preds...).
		Aggregate(
			ent.As(ent.Sum(usagedaily.FieldRequests), "requests"),
			ent.As(ent.Sum(usagedaily.FieldErrors), "errors"),
			ent.As(ent.Sum(usagedaily.FieldInputTokens), "input"),
			ent.As(ent.Sum(usagedaily.FieldOutputTokens), "output"),
		).
		Scan(ctx, &sums)
	if err != nil {
		return Totals{}, fmt.Errorf("live: load rollups: %w", err)
	}
	if len(sums) == 0 {
		return Totals{}, nil
	}
	s := sums[0]
	return Totals{Requests: s.Requests.Int64, Errors: s.Errors.Int64, InputTokens: s.Input.Int64, OutputTokens: s.Output.Int64}, nil
}

func recordPreds(k groupKey, more ...predicate.UsageRecord) []predicate.UsageRecord {
	preds := more
	ids := k.ids
	if v := ids[dimTenant]; v != "" {
		preds = append(preds, usagerecord.TenantID(v))
	}
	if v := ids[dimProvider]; v != "" {
		preds = append(preds, usagerecord.ProviderTenantID(v))
	}
	if v := ids[dimConfig]; v != "" {
		preds = append(preds, usagerecord.ConfigID(v))
	}
	if v := ids[dimAgent]; v != "" {
		preds = append(preds, usagerecord.AgentID(v))
	}
	if v := ids[dimKey]; v != "" {
		preds = append(preds, usagerecord.APIKeyID(v))
	}
	return preds
}

// isPostgres learns the client's dialect once. The generated client does not expose
// its driver, but every query builder knows the dialect, so a predicate reads it off
// the selector of a query that matches nothing.
func (h *Hub) isPostgres(ctx context.Context) (bool, error) {
	h.dialectMu.Lock()
	defer h.dialectMu.Unlock()
	if h.dialect == "" {
		var d string
		_, err := h.client.UsageRecord.Query().
			Where(predicate.UsageRecord(func(s *sql.Selector) {
				d = s.Dialect()
				s.Where(sql.False())
			})).
			Exist(ctx)
		if err != nil {
			return false, fmt.Errorf("live: detect dialect: %w", err)
		}
		h.dialect = d
	}
	return h.dialect == dialect.Postgres, nil
}
