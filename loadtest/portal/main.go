// Command portal is the portal's usage-read benchmark (issue 4, make bench-portal). On a
// scratch PostgreSQL database it loads -records usage records (default 1,000,000) across
// -tenants buyer tenants (default 100, two subscriptions each, two keys per config) over
// -days days, builds their daily rollups the way the recorder would have, and then times,
// in process, as one buyer at a time (a viewer context, so the privacy filters apply):
//
//   - usage(groupBy: DAY) over the last 30 days, through report.Service;
//   - the dashboard read: the tenant's subscriptions with their configs and keys (one ent
//     query with eager loads, as the GraphQL resolvers do it) plus that usage call;
//   - the "recent calls" list: the newest 100 raw records;
//
// printing p50/p90/p99/max of each, the statements per read, and the EXPLAIN ANALYZE of
// the usage statement. It asserts nothing: the machines it runs on are shared.
//
//	go run ./loadtest/portal [-records 1000000] [-tenants 100] [-days 45] [-iterations 2000] [-db URL] [-keep]
//
// The records are bulk-loaded with COPY and rolled up with one INSERT ... SELECT ...
// GROUP BY (the recorder would take far longer to write a million rows, and its write
// path is not what is measured here); the load checks that the rollups add up to the
// records before anything is timed.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"
	"github.com/oklog/ulid/v2"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/usage"
	"github.com/gsvdev/agentregistry/internal/usage/report"
	h "github.com/gsvdev/agentregistry/loadtest/internal/harness"
)

type options struct {
	records, tenants, days, iterations int
	dbURL                              string
	keep                               bool
}

func main() {
	var o options
	flag.IntVar(&o.records, "records", 1_000_000, "usage records to load")
	flag.IntVar(&o.tenants, "tenants", 100, "buyer tenants (two subscriptions each, two keys per config)")
	flag.IntVar(&o.days, "days", 45, "days the records are spread over, ending now")
	flag.IntVar(&o.iterations, "iterations", 2000, "timed reads of each kind")
	flag.StringVar(&o.dbURL, "db", h.EnvOr("BENCH_DATABASE_URL", os.Getenv("TEST_DATABASE_URL")), "PostgreSQL server URL; a scratch database is created and dropped")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch database (its URL is printed)")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest/portal:", err)
		os.Exit(1)
	}
}

// config is one subscription's config and what its records carry.
type config struct {
	tenant, provider, agent, id pulid.ID
	keys                        []pulid.ID
}

func run(ctx context.Context, o options) error {
	if o.dbURL == "" {
		return fmt.Errorf("no PostgreSQL: set BENCH_DATABASE_URL or TEST_DATABASE_URL, or pass -db")
	}
	dsn, drop, err := dbtest.CreatePostgresDatabase(ctx, o.dbURL, "bench_portal")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("scratch database kept:", dsn)
	} else {
		defer drop()
	}
	db, err := database.Open(ctx, database.DriverPostgres, dsn, database.Options{MaxOpenConns: 8})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}

	t0 := time.Now()
	configs, err := seed(ctx, db.Client, o.tenants)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	now := time.Now().UTC()
	if err := loadRecords(ctx, db.SQL, configs, o, now); err != nil {
		return fmt.Errorf("load records: %w", err)
	}
	tLoad := time.Since(t0)
	t1 := time.Now()
	if err := buildRollups(ctx, db.SQL); err != nil {
		return fmt.Errorf("rollups: %w", err)
	}
	if _, err := db.SQL.ExecContext(ctx, "ANALYZE"); err != nil {
		return err
	}
	var records, rollups, rolled, bucketed int64
	err = db.SQL.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM usage_records), (SELECT count(*) FROM usage_dailies),
		(SELECT coalesce(sum(requests), 0) FROM usage_dailies), (SELECT coalesce(sum(`+strings.Join(usage.LatencyColumns(), "+")+`), 0) FROM usage_dailies)`).
		Scan(&records, &rollups, &rolled, &bucketed)
	if err != nil {
		return err
	}
	if rolled != records || bucketed != records {
		return fmt.Errorf("rollups count %d requests and %d in the histogram, the records are %d", rolled, bucketed, records)
	}
	fmt.Printf("loaded %d usage records (%d tenants, %d configs, %d days) in %s; %d daily rollups in %s (+ANALYZE)\n",
		records, o.tenants, len(configs), o.days, h.FmtDur(tLoad), rollups, h.FmtDur(time.Since(t1)))

	return measure(ctx, db, configs, o, now)
}

// seed creates the buyers, two providers with an agent and a plan each, and for every
// buyer a subscription to each agent with its config and two keys.
func seed(ctx context.Context, client *ent.Client, tenants int) ([]config, error) {
	ctx = auth.SystemContext(ctx)
	var plans []*ent.Plan
	for i := range 2 {
		p, err := client.Tenant.Create().SetName(fmt.Sprintf("Provider %d", i)).SetSlug(fmt.Sprintf("provider-%d", i)).Save(ctx)
		if err != nil {
			return nil, err
		}
		a, err := client.Agent.Create().SetTenantID(p.ID).SetName("Agent").SetSlug(fmt.Sprintf("agent-%d", i)).Save(ctx)
		if err != nil {
			return nil, err
		}
		pl, err := client.Plan.Create().SetTenantID(p.ID).SetAgentID(a.ID).SetName("Plan").
			SetRequestsPerMonth(100000).SetTokensPerMonth(50_000_000).Save(ctx)
		if err != nil {
			return nil, err
		}
		plans = append(plans, pl)
	}
	start := time.Now().UTC()
	start = time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC)
	var out []config
	for i := range tenants {
		b, err := client.Tenant.Create().SetName(fmt.Sprintf("Buyer %d", i)).SetSlug(fmt.Sprintf("buyer-%d", i)).Save(ctx)
		if err != nil {
			return nil, err
		}
		for _, pl := range plans {
			sub, err := client.Subscription.Create().SetTenantID(b.ID).SetAgentID(pl.AgentID).SetPlanID(pl.ID).
				SetStatus(subscription.StatusActive).SetCurrentPeriodStart(start).SetCurrentPeriodEnd(start.AddDate(0, 1, 0)).Save(ctx)
			if err != nil {
				return nil, err
			}
			cfg, err := client.AgentConfig.Create().SetTenantID(b.ID).SetSubscriptionID(sub.ID).SetDisplayName("Assistant").Save(ctx)
			if err != nil {
				return nil, err
			}
			c := config{tenant: b.ID, provider: sub.ProviderTenantID, agent: pl.AgentID, id: cfg.ID}
			for k, kind := range []apikey.Kind{apikey.KindSecret, apikey.KindPublishable} {
				key, err := client.APIKey.Create().SetTenantID(b.ID).SetConfigID(cfg.ID).SetName(fmt.Sprintf("key %d", k)).
					SetKind(kind).SetPrefix("ar_sk_live_").SetLast4("abcd").SetKeyHash(fmt.Sprintf("%032x%032x", rand.Uint64(), rand.Uint64())).
					SetJti(string(pulid.MustNew("jti"))).SetScopes([]string{"invoke"}).Save(ctx)
				if err != nil {
					return nil, err
				}
				c.keys = append(c.keys, key.ID)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// loadRecords COPYs the records in, from a few connections at once.
func loadRecords(ctx context.Context, db *sql.DB, configs []config, o options, now time.Time) error {
	const workers = 4
	first := now.Truncate(24*time.Hour).AddDate(0, 0, -(o.days - 1))
	span := now.Sub(first)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			entropy := rand.NewChaCha8([32]byte{byte(w)})
			errs <- copyRecords(ctx, db, func(yield func(row []any) error) error {
				for i := w; i < o.records; i += workers {
					c := configs[rng.IntN(len(configs))]
					at := first.Add(time.Duration(rng.Int64N(int64(span))))
					status, code := 200, any(nil)
					switch r := rng.IntN(100); {
					case r < 2:
						status, code = 502, "upstream_error"
					case r < 3:
						status, code = 429, "rate_limited"
					}
					// Log-normal latencies around 400 ms with a slow tail.
					ms := int64(math.Exp(math.Log(400) + 0.7*rng.NormFloat64()))
					if rng.IntN(50) == 0 {
						ms *= 10
					}
					id := "use_" + ulid.MustNew(ulid.Timestamp(at), entropy).String()
					if err := yield([]any{id, fmt.Sprintf("bench-%d", i), string(c.tenant), string(c.provider),
						string(c.id), string(c.agent), string(c.keys[rng.IntN(len(c.keys))]), status,
						50 + rng.Int64N(450), 20 + rng.Int64N(780), false, ms, at, code}); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	var firstErr error
	for range workers {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// copyRecords runs one COPY of the rows rows yields.
func copyRecords(ctx context.Context, db *sql.DB, rows func(yield func([]any) error) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("usage_records", "id", "request_id", "tenant_id", "provider_tenant_id",
		"config_id", "agent_id", "api_key_id", "status", "input_tokens", "output_tokens", "tokens_estimated",
		"elapsed_ms", "started_at", "error_code"))
	if err != nil {
		return err
	}
	if err := rows(func(row []any) error { _, err := stmt.ExecContext(ctx, row...); return err }); err != nil {
		return err
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return err
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	return tx.Commit()
}

// buildRollups fills usage_dailies from the records in one statement, with the same
// rules as the recorder: one row per (tenant, config, key, UTC day), errors are statuses
// of 400 and up, and each call lands in the first latency bucket whose bound is at least
// its elapsed time (usage.LatencyBucket).
func buildRollups(ctx context.Context, db *sql.DB) error {
	cols := usage.LatencyColumns()
	bounds := schema.LatencyBoundsMS
	var sums []string
	for i := range cols {
		var cond string
		switch {
		case i == 0:
			cond = fmt.Sprintf("elapsed_ms <= %d", bounds[0])
		case i == len(bounds):
			cond = fmt.Sprintf("elapsed_ms > %d", bounds[i-1])
		default:
			cond = fmt.Sprintf("elapsed_ms > %d AND elapsed_ms <= %d", bounds[i-1], bounds[i])
		}
		sums = append(sums, fmt.Sprintf("count(*) FILTER (WHERE %s)", cond))
	}
	q := `INSERT INTO usage_dailies (id, tenant_id, provider_tenant_id, config_id, agent_id, api_key_id, day,
		requests, errors, input_tokens, output_tokens, total_ms, ` + strings.Join(cols, ", ") + `)
	SELECT 'udy_0' || upper(substr(md5(tenant_id || config_id || key || day::text), 1, 25)),
		tenant_id, provider, config_id, agent, key, day, requests, errors, input, output, ms, ` + strings.Join(cols, ", ") + `
	FROM (
		SELECT tenant_id, config_id, coalesce(api_key_id, '') AS key, date_trunc('day', started_at, 'UTC') AS day,
			min(provider_tenant_id) AS provider, min(agent_id) AS agent, count(*) AS requests,
			count(*) FILTER (WHERE status >= 400) AS errors, sum(input_tokens) AS input,
			sum(output_tokens) AS output, sum(elapsed_ms) AS ms, ` + aliased(sums, cols) + `
		FROM usage_records GROUP BY 1, 2, 3, 4
	) g`
	_, err := db.ExecContext(ctx, q)
	return err
}

func aliased(exprs, names []string) string {
	out := make([]string, len(exprs))
	for i := range exprs {
		out[i] = exprs[i] + " AS " + names[i]
	}
	return strings.Join(out, ", ")
}

func viewer(ctx context.Context, tenant pulid.ID) context.Context {
	return auth.NewContext(ctx, &auth.Viewer{Subject: "bench", Roles: []auth.Role{auth.RoleCustomer},
		Tenants: []auth.TenantMembership{{TenantID: tenant, Role: auth.TenantMember}}})
}

// dashboard is the portal's landing read: subscriptions with configs and keys, and 30
// days of usage by day.
func dashboard(ctx context.Context, client *ent.Client, svc *report.Service) (int, error) {
	subs, err := client.Subscription.Query().
		WithConfig(func(q *ent.AgentConfigQuery) { q.WithAPIKeys() }).
		Order(subscription.ByID()).Limit(100).All(ctx)
	if err != nil {
		return 0, err
	}
	rows, err := svc.Usage(ctx, report.Filter{}, report.GroupByDay)
	if err != nil {
		return 0, err
	}
	return len(subs) + len(rows), nil
}

func measure(ctx context.Context, db *database.DB, configs []config, o options, now time.Time) error {
	var tenants []pulid.ID
	for _, c := range configs {
		if !slices.Contains(tenants, c.tenant) {
			tenants = append(tenants, c.tenant)
		}
	}
	// A second client on the same pool whose driver counts statements and keeps the last
	// usage statement, for the EXPLAIN.
	capture := &captureDriver{Driver: entsql.OpenDB(dialect.Postgres, db.SQL)}
	client := ent.NewClient(ent.Driver(capture))
	svc := report.New(client, report.Options{})

	// Correctness before speed: the report's 30-day total is the raw count.
	first := now.Truncate(24*time.Hour).AddDate(0, 0, -(report.DefaultDays - 1))
	var raw int64
	if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM usage_records WHERE tenant_id = $1 AND started_at >= $2`,
		string(tenants[0]), first).Scan(&raw); err != nil {
		return err
	}
	rows, err := svc.Usage(viewer(ctx, tenants[0]), report.Filter{}, report.GroupByDay)
	if err != nil {
		return err
	}
	var got int64
	for _, r := range rows {
		got += r.Requests
	}
	if got != raw {
		return fmt.Errorf("usage of %s over 30 days = %d requests, raw records say %d", tenants[0], got, raw)
	}
	fmt.Printf("check: tenant %s, 30 days: %d requests in %d day rows = raw count; day p95 e.g. %.0f ms, avg %.0f ms\n",
		tenants[0], got, len(rows), rows[0].P95Ms, rows[0].AvgMs)

	type kind struct {
		name string
		read func(ctx context.Context) error
	}
	kinds := []kind{
		{"usage(groupBy: DAY), 30 days", func(ctx context.Context) error {
			_, err := svc.Usage(ctx, report.Filter{}, report.GroupByDay)
			return err
		}},
		{"dashboard (subscriptions+configs+keys, usage DAY)", func(ctx context.Context) error {
			_, err := dashboard(ctx, client, svc)
			return err
		}},
		{"recent calls (newest 100 raw records)", func(ctx context.Context) error {
			_, err := svc.Recent(ctx, report.Filter{}, report.MaxRecent)
			return err
		}},
	}
	fmt.Printf("%d iterations each, one buyer tenant per iteration (round robin over %d), sequential; %d CPUs, load %s\n",
		o.iterations, len(tenants), runtime.NumCPU(), h.LoadAvg())
	for _, k := range kinds {
		for i := range 50 { // warm-up: connections, plan cache
			if err := k.read(viewer(ctx, tenants[i%len(tenants)])); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, 0, o.iterations)
		capture.statements = 0
		for i := range o.iterations {
			vctx := viewer(ctx, tenants[i%len(tenants)])
			start := time.Now()
			if err := k.read(vctx); err != nil {
				return err
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		fmt.Printf("%-52s p50 %-9s p90 %-9s p99 %-9s max %-9s statements/read %d\n", k.name,
			h.FmtDur(pct(lat, 50)), h.FmtDur(pct(lat, 90)), h.FmtDur(pct(lat, 99)), h.FmtDur(lat[len(lat)-1]),
			capture.statements/o.iterations)
	}

	// The usage statement as the service sends it, explained with its arguments.
	capture.keep = true
	if _, err := svc.Usage(viewer(ctx, tenants[0]), report.Filter{}, report.GroupByDay); err != nil {
		return err
	}
	fmt.Printf("\nusage statement:\n  %s\n  args %v\n\nEXPLAIN (ANALYZE, BUFFERS):\n", capture.query, capture.args)
	plan, err := db.SQL.QueryContext(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+capture.query, capture.args...)
	if err != nil {
		return err
	}
	defer plan.Close()
	for plan.Next() {
		var line string
		if err := plan.Scan(&line); err != nil {
			return err
		}
		fmt.Println("  " + line)
	}
	return plan.Err()
}

func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// captureDriver counts the statements sent through it and, when keep is set, keeps the
// last query. The benchmark reads sequentially, so plain fields do.
type captureDriver struct {
	dialect.Driver
	statements int
	keep       bool
	query      string
	args       []any
}

func (d *captureDriver) Query(ctx context.Context, query string, args, v any) error {
	d.statements++
	if d.keep {
		d.query = query
		d.args, _ = args.([]any)
	}
	return d.Driver.Query(ctx, query, args, v)
}
