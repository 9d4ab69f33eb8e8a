// Package report answers the portal's usage questions: totals per day, agent or key from
// the daily rollups (one grouped statement, whatever the raw row count), quota use of a
// subscription's period, and the most recent raw calls.
//
// Every read runs with the caller's context, so the ent privacy interceptors narrow it to
// the viewer's tenants (as buyer or as provider); platform admins see everything. A
// filter naming another tenant's config, key or agent therefore finds nothing rather than
// leaking it.
package report

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/predicate"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/ent/usagedaily"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// GroupBy is how Usage groups its rows. The values are the GraphQL enum's.
type GroupBy string

// The groupings. The zero value groups by day.
const (
	GroupByDay   GroupBy = "DAY"
	GroupByAgent GroupBy = "AGENT"
	GroupByKey   GroupBy = "KEY"
)

// Limits of the API.
const (
	// DefaultDays is the span of a Usage filter without dates: the last 30 days, today
	// included.
	DefaultDays = 30
	// MaxDays is the longest span Usage accepts: a year, leap day included.
	MaxDays = 366
	// MaxRecent caps Recent's rows.
	MaxRecent = 100
	// DefaultRetention is how far back raw records are kept, and so what Recent shows,
	// unless Options say otherwise. The retention job (internal/jobs) must be given the
	// same value.
	DefaultRetention = 30 * 24 * time.Hour
)

// Filter narrows a report. Nil ids do not filter. From and To are days (their UTC date
// counts, the time of day is ignored), both included.
type Filter struct {
	TenantID         *pulid.ID // the buyer
	ProviderTenantID *pulid.ID // the seller
	ConfigID         *pulid.ID
	AgentID          *pulid.ID
	KeyID            *pulid.ID
	From, To         time.Time
}

// Row is one group of Usage. Day is set when grouping by day, AgentID by agent, KeyID by
// key ("" for calls made without a key).
type Row struct {
	Day          time.Time
	AgentID      pulid.ID
	KeyID        pulid.ID
	Requests     int64
	Errors       int64
	InputTokens  int64
	OutputTokens int64
	AvgMs        float64
	// P95Ms is estimated from the rollups' latency histogram: within the bucket where the
	// 95th percentile falls, interpolated linearly between its bounds; a percentile in the
	// open-ended last bucket reports that bucket's lower bound.
	P95Ms float64
}

// QuotaUse is a subscription's use of its plan's limits over its period. A zero limit
// means unlimited.
type QuotaUse struct {
	PeriodStart   time.Time
	PeriodEnd     time.Time // exclusive; always set
	Requests      int64
	RequestsLimit int64
	Tokens        int64
	TokensLimit   int64
}

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// Retention is how far back Recent looks. Default DefaultRetention.
	Retention time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Service answers usage reports.
type Service struct {
	client    *ent.Client
	retention time.Duration
	now       func() time.Time
}

// New returns a Service reading through client.
func New(client *ent.Client, opts Options) *Service {
	if client == nil {
		panic("report: New needs a client")
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{client: client, retention: opts.Retention, now: opts.Now}
}

// dayOf is t's UTC date at 00:00: the rollups' day.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// days resolves the filter's day range to [from, until): until is the day after To.
func (s *Service) days(f Filter) (from, until time.Time, err error) {
	to := dayOf(s.now())
	if !f.To.IsZero() {
		to = dayOf(f.To)
	}
	from = to.AddDate(0, 0, -(DefaultDays - 1))
	if !f.From.IsZero() {
		from = dayOf(f.From)
	}
	switch {
	case from.After(to):
		return time.Time{}, time.Time{}, apperr.Invalid("filter.from", "from is after to")
	case from.AddDate(0, 0, MaxDays).Before(to.AddDate(0, 0, 1)):
		return time.Time{}, time.Time{}, apperr.Invalid("filter.to", "the range spans more than %d days", MaxDays)
	}
	return from, to.AddDate(0, 0, 1), nil
}

// dailyScan is one grouped row as the database returns it. Sums over no rows are NULL,
// hence the nullable types. Group is the grouping column, aliased "grp": a time (day) or
// an id, whose Go type depends on the driver (see setKey).
type dailyScan struct {
	Group    any           `json:"grp"`
	Requests sql.NullInt64 `json:"requests"`
	Errors   sql.NullInt64 `json:"errors"`
	In       sql.NullInt64 `json:"input_tokens"`
	Out      sql.NullInt64 `json:"output_tokens"`
	Ms       sql.NullInt64 `json:"total_ms"`
	// The histogram, in the order of usage.LatencyColumns (checked by a test).
	Le25    sql.NullInt64 `json:"lat_le_25"`
	Le50    sql.NullInt64 `json:"lat_le_50"`
	Le100   sql.NullInt64 `json:"lat_le_100"`
	Le200   sql.NullInt64 `json:"lat_le_200"`
	Le400   sql.NullInt64 `json:"lat_le_400"`
	Le800   sql.NullInt64 `json:"lat_le_800"`
	Le1600  sql.NullInt64 `json:"lat_le_1600"`
	Le3200  sql.NullInt64 `json:"lat_le_3200"`
	Le6400  sql.NullInt64 `json:"lat_le_6400"`
	Le12800 sql.NullInt64 `json:"lat_le_12800"`
	Le25600 sql.NullInt64 `json:"lat_le_25600"`
	Inf     sql.NullInt64 `json:"lat_inf"`
}

// histogram returns the row's bucket counts in bucket order.
func (d *dailyScan) histogram() []int64 {
	return []int64{d.Le25.Int64, d.Le50.Int64, d.Le100.Int64, d.Le200.Int64, d.Le400.Int64, d.Le800.Int64,
		d.Le1600.Int64, d.Le3200.Int64, d.Le6400.Int64, d.Le12800.Int64, d.Le25600.Int64, d.Inf.Int64}
}

// Usage sums the rollups over the filter's days, grouped in the database: one statement,
// whatever the number of days or rows. Rows come ordered by their group (day, agent id
// or key id); only groups with calls appear.
func (s *Service) Usage(ctx context.Context, f Filter, by GroupBy) ([]Row, error) {
	if by == "" {
		by = GroupByDay
	}
	var group string
	switch by {
	case GroupByDay:
		group = usagedaily.FieldDay
	case GroupByAgent:
		group = usagedaily.FieldAgentID
	case GroupByKey:
		group = usagedaily.FieldAPIKeyID
	default:
		return nil, apperr.Invalid("groupBy", "unknown grouping %q", by)
	}
	from, until, err := s.days(f)
	if err != nil {
		return nil, err
	}
	preds := append(dailyFilter(f), usagedaily.DayGTE(from), usagedaily.DayLT(until))
	var scanned []dailyScan
	// Modify keeps the query an ent query, so the privacy interceptor still adds the
	// viewer's tenants to its WHERE clause; the selector only replaces the column list
	// with the grouped sums.
	err = s.client.UsageDaily.Query().Where(preds...).Modify(func(sel *entsql.Selector) {
		cols := []string{
			entsql.As(sel.C(group), "grp"),
			entsql.As(entsql.Sum(sel.C(usagedaily.FieldRequests)), "requests"),
			entsql.As(entsql.Sum(sel.C(usagedaily.FieldErrors)), "errors"),
			entsql.As(entsql.Sum(sel.C(usagedaily.FieldInputTokens)), "input_tokens"),
			entsql.As(entsql.Sum(sel.C(usagedaily.FieldOutputTokens)), "output_tokens"),
			entsql.As(entsql.Sum(sel.C(usagedaily.FieldTotalMs)), "total_ms"),
		}
		for _, b := range usage.LatencyColumns() {
			cols = append(cols, entsql.As(entsql.Sum(sel.C(b)), b))
		}
		sel.Select(cols...).GroupBy(sel.C(group)).OrderBy(sel.C(group))
	}).Scan(ctx, &scanned)
	if err != nil {
		return nil, fmt.Errorf("report: usage: %w", err)
	}
	out := make([]Row, len(scanned))
	for i := range scanned {
		d := &scanned[i]
		r := Row{Requests: d.Requests.Int64, Errors: d.Errors.Int64, InputTokens: d.In.Int64, OutputTokens: d.Out.Int64}
		if err := setKey(&r, by, d.Group); err != nil {
			return nil, err
		}
		if r.Requests > 0 {
			r.AvgMs = float64(d.Ms.Int64) / float64(r.Requests)
		}
		r.P95Ms = Quantile(0.95, d.histogram())
		out[i] = r
	}
	return out, nil
}

// dailyFilter is the filter's ids as rollup predicates.
func dailyFilter(f Filter) []predicate.UsageDaily {
	var preds []predicate.UsageDaily
	if f.TenantID != nil {
		preds = append(preds, usagedaily.TenantID(*f.TenantID))
	}
	if f.ProviderTenantID != nil {
		preds = append(preds, usagedaily.ProviderTenantID(*f.ProviderTenantID))
	}
	if f.ConfigID != nil {
		preds = append(preds, usagedaily.ConfigID(*f.ConfigID))
	}
	if f.AgentID != nil {
		preds = append(preds, usagedaily.AgentID(*f.AgentID))
	}
	if f.KeyID != nil {
		preds = append(preds, usagedaily.APIKeyID(string(*f.KeyID)))
	}
	return preds
}

// asTime reads a day column: a time on PostgreSQL and usually on SQLite (the column is
// declared a timestamp), text when SQLite cannot tell the column's type.
func asTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.UTC(), nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("report: day column: %w", err)
		}
		return t.UTC(), nil
	default:
		return time.Time{}, fmt.Errorf("report: day column scanned as %T", v)
	}
}

// setKey sets the row's group from the database value. The day comes back as a time on
// PostgreSQL and SQLite alike (the column is declared a timestamp), ids as strings or
// bytes depending on the driver.
func setKey(r *Row, by GroupBy, key any) error {
	if by == GroupByDay {
		t, err := asTime(key)
		r.Day = t
		return err
	}
	var id pulid.ID
	switch v := key.(type) {
	case string:
		id = pulid.ID(v)
	case []byte:
		id = pulid.ID(v)
	case nil:
	default:
		return fmt.Errorf("report: id column scanned as %T", key)
	}
	if by == GroupByAgent {
		r.AgentID = id
	} else {
		r.KeyID = id
	}
	return nil
}

// Quantile estimates the q-quantile (0 < q <= 1) of latencies counted per bucket of
// schema.LatencyBoundsMS (counts has one more entry, the open-ended bucket): the bucket
// holding the q·N-th call is found, and the value interpolated linearly between that
// bucket's lower and upper bounds (the first bucket starts at 0). In the open-ended
// bucket there is no upper bound, so its lower bound is reported. No calls: 0.
func Quantile(q float64, counts []int64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	bounds := schema.LatencyBoundsMS
	rank := q * float64(total)
	var below float64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		lower := 0.0
		if i > 0 {
			lower = float64(bounds[min(i, len(bounds))-1])
		}
		if i >= len(bounds) {
			return lower
		}
		if below+float64(c) >= rank {
			upper := float64(bounds[i])
			return lower + (upper-lower)*(rank-below)/float64(c)
		}
		below += float64(c)
	}
	return float64(bounds[len(bounds)-1])
}

// Quota returns the use of a subscription's plan limits over the subscription's current
// period: its stored period (start and end) when now lies within it, the current UTC
// month otherwise, so PeriodEnd is always set. The gateway enforces the plan's limits per
// calendar month (usage.Quota); the two agree for subscriptions created here, whose
// period is the month. Usage is summed per day from the rollups of the subscription's config, so a
// period starting mid-day counts that whole day. A subscription the caller may not see
// is not found (ent's NotFoundError).
func (s *Service) Quota(ctx context.Context, subscriptionID pulid.ID) (QuotaUse, error) {
	sub, err := s.client.Subscription.Query().Where(subscription.ID(subscriptionID)).
		WithPlan().WithConfig().Only(ctx)
	if err != nil {
		return QuotaUse{}, err
	}
	now := s.now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	if ps, pe := sub.CurrentPeriodStart, sub.CurrentPeriodEnd; ps != nil && pe != nil && !ps.After(now) && pe.After(now) {
		start, end = ps.UTC(), pe.UTC()
	}
	use := QuotaUse{PeriodStart: start, PeriodEnd: end}
	if p := sub.Edges.Plan; p != nil {
		use.RequestsLimit, use.TokensLimit = p.RequestsPerMonth, p.TokensPerMonth
	}
	cfg := sub.Edges.Config
	if cfg == nil {
		return use, nil // no config, no calls
	}
	preds := []predicate.UsageDaily{
		usagedaily.TenantID(sub.TenantID), usagedaily.ConfigID(cfg.ID), usagedaily.DayGTE(dayOf(start)), usagedaily.DayLT(end),
	}
	var sums []struct {
		Requests sql.NullInt64 `json:"requests"`
		Errors   sql.NullInt64 `json:"errors"`
		Input    sql.NullInt64 `json:"input"`
		Output   sql.NullInt64 `json:"output"`
	}
	err = s.client.UsageDaily.Query().Where(preds...).Aggregate(
		ent.As(ent.Sum(usagedaily.FieldRequests), "requests"),
		ent.As(ent.Sum(usagedaily.FieldErrors), "errors"),
		ent.As(ent.Sum(usagedaily.FieldInputTokens), "input"),
		ent.As(ent.Sum(usagedaily.FieldOutputTokens), "output"),
	).Scan(ctx, &sums)
	if err != nil {
		return QuotaUse{}, fmt.Errorf("report: quota: %w", err)
	}
	if len(sums) > 0 {
		// Like the gateway's enforcement (usage.Quota): refused and failed calls are
		// metered but do not use up the quota.
		use.Requests = sums[0].Requests.Int64 - sums[0].Errors.Int64
		use.Tokens = sums[0].Input.Int64 + sums[0].Output.Int64
	}
	return use, nil
}

// Recent returns the newest raw calls matching the filter, newest first, at most limit
// (capped at MaxRecent; limit <= 0 means MaxRecent), within the retention window. The
// filter's days narrow further when given.
//
// It takes two statements. The privacy filter makes the records' WHERE clause an OR of
// the buyer and the provider columns, which no index returns in started_at order, so
// PostgreSQL would fetch and sort every record of the window to keep the newest few
// (tens of milliseconds for a tenant with thousands of calls a month). The rollups say
// how many calls each day had, so the first statement finds the latest day from which
// the newest limit calls are found, and the second reads only the records from that day.
func (s *Service) Recent(ctx context.Context, f Filter, limit int) ([]*ent.UsageRecord, error) {
	if limit <= 0 || limit > MaxRecent {
		limit = MaxRecent
	}
	since := s.now().Add(-s.retention).UTC()
	if !f.From.IsZero() && dayOf(f.From).After(since) {
		since = dayOf(f.From)
	}
	until := dayOf(s.now()).AddDate(0, 0, 1)
	if !f.To.IsZero() {
		until = dayOf(f.To).AddDate(0, 0, 1)
	}
	if !since.Before(until) {
		return nil, nil
	}
	var days []struct {
		Day   any           `json:"day"`
		Calls sql.NullInt64 `json:"calls"`
	}
	err := s.client.UsageDaily.Query().
		Where(append(dailyFilter(f), usagedaily.DayGTE(dayOf(since)), usagedaily.DayLT(until))...).
		Modify(func(sel *entsql.Selector) {
			sel.Select(entsql.As(sel.C(usagedaily.FieldDay), "day"), entsql.As(entsql.Sum(sel.C(usagedaily.FieldRequests)), "calls")).
				GroupBy(sel.C(usagedaily.FieldDay)).OrderBy(entsql.Desc(sel.C(usagedaily.FieldDay)))
		}).Scan(ctx, &days)
	if err != nil {
		return nil, fmt.Errorf("report: recent: %w", err)
	}
	var calls int64
	for _, d := range days {
		if calls += d.Calls.Int64; calls >= int64(limit) {
			day, err := asTime(d.Day)
			if err != nil {
				return nil, err
			}
			if day.After(since) {
				since = day
			}
			break
		}
	}
	preds := []predicate.UsageRecord{usagerecord.StartedAtGTE(since), usagerecord.StartedAtLT(until)}
	if f.TenantID != nil {
		preds = append(preds, usagerecord.TenantID(*f.TenantID))
	}
	if f.ProviderTenantID != nil {
		preds = append(preds, usagerecord.ProviderTenantID(*f.ProviderTenantID))
	}
	if f.ConfigID != nil {
		preds = append(preds, usagerecord.ConfigID(*f.ConfigID))
	}
	if f.AgentID != nil {
		preds = append(preds, usagerecord.AgentID(*f.AgentID))
	}
	if f.KeyID != nil {
		preds = append(preds, usagerecord.APIKeyID(*f.KeyID))
	}
	recs, err := s.client.UsageRecord.Query().Where(preds...).
		Order(usagerecord.ByStartedAt(entsql.OrderDesc()), usagerecord.ByID(entsql.OrderDesc())).
		Limit(limit).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: recent: %w", err)
	}
	return recs, nil
}
