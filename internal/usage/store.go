package usage

import (
	"cmp"
	"context"
	stdsql "database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"entgo.io/ent/dialect"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/usagedaily"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/database"
)

// The batch is written with SQL rather than ent's builders because the rollups must count
// only the records this transaction actually inserted, and ent's bulk upsert cannot
// return that subset (INSERT ... ON CONFLICT DO NOTHING RETURNING can). Nor can ent's
// bulk upsert add a different amount to each conflicting rollup row (excluded.column).
//
// The SQLite statements (3.35+ for RETURNING) use "?" placeholders: SQLite would accept
// "$n" too, as named parameters, but resolves each by name, which made a 256-row batch
// spend a third of its time binding. PostgreSQL writes a batch in one statement of its
// own (store_postgres.go). Column and table names come from ent's generated constants so
// that a schema rename breaks the build, not billing.

// recordColumns are the usage_records columns written, in the order of insertRecords' arguments.
var recordColumns = []string{
	usagerecord.FieldID, usagerecord.FieldRequestID, usagerecord.FieldTenantID,
	usagerecord.FieldProviderTenantID, usagerecord.FieldConfigID, usagerecord.FieldAgentID,
	usagerecord.FieldAPIKeyID, usagerecord.FieldStatus, usagerecord.FieldInputTokens,
	usagerecord.FieldOutputTokens, usagerecord.FieldTokensEstimated, usagerecord.FieldElapsedMs,
	usagerecord.FieldStartedAt, usagerecord.FieldErrorCode,
}

// latencyColumns are the rollup's latency histogram columns, one per bound of
// schema.LatencyBoundsMS in the same order, then the open-ended lat_inf. Spelled with the
// generated constants so that a renamed column breaks the build; the init check below
// catches a bound added to the schema without its column here.
var latencyColumns = []string{
	usagedaily.FieldLatLe25, usagedaily.FieldLatLe50, usagedaily.FieldLatLe100,
	usagedaily.FieldLatLe200, usagedaily.FieldLatLe400, usagedaily.FieldLatLe800,
	usagedaily.FieldLatLe1600, usagedaily.FieldLatLe3200, usagedaily.FieldLatLe6400,
	usagedaily.FieldLatLe12800, usagedaily.FieldLatLe25600, usagedaily.FieldLatInf,
}

func init() {
	if len(latencyColumns) != len(schema.LatencyBoundsMS)+1 || len(latencyColumns) != nLatencyBuckets {
		panic("usage: latencyColumns does not match schema.LatencyBoundsMS")
	}
	for i, b := range schema.LatencyBoundsMS {
		if latencyColumns[i] != fmt.Sprintf("lat_le_%d", b) {
			panic("usage: latencyColumns does not match schema.LatencyBoundsMS at " + latencyColumns[i])
		}
	}
}

// LatencyColumns returns the rollup's latency histogram columns in bucket order (the
// last is the open-ended lat_inf), for readers that sum the histogram.
func LatencyColumns() []string { return slices.Clone(latencyColumns) }

// LatencyBucket returns the histogram bucket of a call that took ms milliseconds: the
// first bound at least ms, or the open-ended last bucket past the largest bound.
func LatencyBucket(ms int64) int {
	i, _ := slices.BinarySearch(schema.LatencyBoundsMS, ms)
	return i
}

// dailyColumns are the usage_dailies columns written, in the order of upsertDailiesOnce's arguments.
var dailyColumns = append([]string{
	usagedaily.FieldID, usagedaily.FieldTenantID, usagedaily.FieldProviderTenantID,
	usagedaily.FieldConfigID, usagedaily.FieldAgentID, usagedaily.FieldAPIKeyID,
	usagedaily.FieldDay, usagedaily.FieldRequests, usagedaily.FieldErrors,
	usagedaily.FieldInputTokens, usagedaily.FieldOutputTokens, usagedaily.FieldTotalMs,
}, latencyColumns...)

// dailyKey is the rollup's unique key (the table's unique index).
var dailyKey = []string{usagedaily.FieldTenantID, usagedaily.FieldConfigID, usagedaily.FieldAPIKeyID, usagedaily.FieldDay}

// dailyCounters are the rollup columns a conflict adds to.
var dailyCounters = append([]string{
	usagedaily.FieldRequests, usagedaily.FieldErrors, usagedaily.FieldInputTokens,
	usagedaily.FieldOutputTokens, usagedaily.FieldTotalMs,
}, latencyColumns...)

// maxBatchLimit caps MaxBatch: 14 parameters per record must stay under SQLite's 32766
// bound parameters per statement (PostgreSQL's statement takes 18 arrays whatever the
// batch size).
const maxBatchLimit = 2000

// maxParams is the bound parameters one SQLite statement may carry. A batch's rollup
// rows carry more parameters each than its records, so the upsert is split into
// statements of at most maxParams.
const maxParams = 32766

// store writes the recorder's batches. Only the recorder's writer goroutine uses it.
type store struct {
	db *database.DB
	// pgBatch is PostgreSQL's batch statement (store_postgres.go), prepared on first use
	// and kept: parsing and planning it took longer than running it.
	pgBatch *stdsql.Stmt
}

func newStore(db *database.DB) *store { return &store{db: db} }

// write stores events (unique request ids, sorted) and their rollups atomically and
// returns the events it inserted: those whose request id was not stored before. ctx must
// be a system context. PostgreSQL does it in one statement; SQLite, which has no
// data-modifying CTEs, in a transaction of two.
func (s *store) write(ctx context.Context, events []Event) ([]Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	switch s.db.Dialect {
	case dialect.Postgres:
		return s.writePostgres(ctx, events)
	case dialect.SQLite:
		return writeSQLite(ctx, s.db.Client, events)
	default:
		return nil, fmt.Errorf("usage: unsupported database dialect %q", s.db.Dialect)
	}
}

// close releases the prepared statement.
func (s *store) close() error {
	if s.pgBatch == nil {
		return nil
	}
	return s.pgBatch.Close()
}

// writeSQLite is write's transaction on SQLite.
func writeSQLite(ctx context.Context, client *ent.Client, events []Event) (inserted []Event, err error) {
	err = database.WithTx(ctx, client, func(tx *ent.Tx) error {
		var err error
		if inserted, err = insertRecords(ctx, tx, events); err != nil {
			return err
		}
		return upsertDailies(ctx, tx, rollup(inserted))
	})
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return inserted, nil
}

// insertRecords inserts the records that are new and returns their events.
func insertRecords(ctx context.Context, tx *ent.Tx, events []Event) ([]Event, error) {
	var b strings.Builder
	args := make([]any, 0, len(events)*len(recordColumns))
	writeInsert(&b, usagerecord.Table, recordColumns, len(events))
	for _, ev := range events {
		var apiKey, errorCode any // NULL when absent: both columns are optional
		if ev.APIKeyID != "" {
			apiKey = string(ev.APIKeyID)
		}
		if ev.ErrorCode != "" {
			errorCode = ev.ErrorCode
		}
		args = append(args,
			string(usagerecord.DefaultID()), ev.RequestID, string(ev.TenantID),
			string(ev.ProviderTenantID), string(ev.ConfigID), string(ev.AgentID),
			apiKey, ev.Status, ev.InputTokens,
			ev.OutputTokens, ev.TokensEstimated, ev.ElapsedMS,
			ev.StartedAt, errorCode,
		)
	}
	// The conflict target is the request id alone: a replay is the same call whatever
	// else differs. RETURNING lists only the rows this statement inserted; a row another
	// transaction inserts concurrently makes this one wait for it and then skip.
	fmt.Fprintf(&b, ` ON CONFLICT (%s) DO NOTHING RETURNING %s`,
		quote(usagerecord.FieldRequestID), quote(usagerecord.FieldRequestID))
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("usage: insert records: %w", err)
	}
	inserted, err := scanInserted(rows, events)
	if err != nil {
		return nil, fmt.Errorf("usage: insert records: %w", err)
	}
	return inserted, nil
}

// scanInserted reads the request ids an INSERT ... RETURNING inserted, closes rows, and
// returns those of events, in events' order. When rows carry a second column, it is the
// inserting transaction's id (Event.CommitXID).
func scanInserted(rows *stdsql.Rows, events []Event) ([]Event, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	fresh := make(map[string]uint64, len(events))
	for rows.Next() {
		var (
			id  string
			xid uint64
			err error
		)
		if len(cols) > 1 {
			err = rows.Scan(&id, &xid)
		} else {
			err = rows.Scan(&id)
		}
		if err != nil {
			return nil, err
		}
		fresh[id] = xid
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	inserted := make([]Event, 0, len(fresh))
	for _, ev := range events {
		if xid, ok := fresh[ev.RequestID]; ok {
			ev.CommitXID = xid
			inserted = append(inserted, ev)
		}
	}
	return inserted, nil
}

// daily is one rollup row's increment.
type daily struct {
	tenant, provider, config, agent, apiKey pulid.ID
	day                                     time.Time
	requests, errors, in, out, ms           int64
	latency                                 [nLatencyBuckets]int64 // calls per histogram bucket
}

// rollupRowKey is a rollup row's unique key (dailyKey).
type rollupRowKey struct {
	tenant, config, apiKey pulid.ID
	day                    time.Time // UTC midnight, so comparable with ==
}

// keyOf is the rollup row ev is counted in.
func keyOf(ev Event) rollupRowKey {
	return rollupRowKey{ev.TenantID, ev.ConfigID, ev.APIKeyID, dayOf(ev.StartedAt)}
}

// nLatencyBuckets is the histogram's bucket count, lat_inf included.
const nLatencyBuckets = 12

// rollup sums events per rollup key, so that the upsert touches each row once (PostgreSQL
// refuses to update one row twice in a statement), sorted by key so that concurrent
// writers (replicas) lock rows in the same order and cannot deadlock each other.
func rollup(events []Event) []daily {
	index := make(map[rollupRowKey]int, len(events))
	var out []daily
	for _, ev := range events {
		k := keyOf(ev)
		day := k.day
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			// Provider and agent follow from the config, so the first event's are the row's.
			out = append(out, daily{tenant: ev.TenantID, provider: ev.ProviderTenantID, config: ev.ConfigID,
				agent: ev.AgentID, apiKey: ev.APIKeyID, day: day})
		}
		d := &out[i]
		d.requests++
		if ev.isError() {
			d.errors++
		}
		d.in += ev.InputTokens
		d.out += ev.OutputTokens
		d.ms += ev.ElapsedMS
		d.latency[LatencyBucket(ev.ElapsedMS)]++
	}
	slices.SortFunc(out, func(a, b daily) int {
		return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.config, b.config),
			cmp.Compare(a.apiKey, b.apiKey), a.day.Compare(b.day))
	})
	return out
}

// upsertDailies adds rows to the rollups, creating the rows that do not exist yet. Rows
// stay in their sorted order across statements, so the lock order is unchanged.
func upsertDailies(ctx context.Context, tx *ent.Tx, rows []daily) error {
	per := maxParams / len(dailyColumns)
	for len(rows) > 0 {
		n := min(len(rows), per)
		if err := upsertDailiesOnce(ctx, tx, rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// upsertDailiesOnce is one upsert statement of upsertDailies.
func upsertDailiesOnce(ctx context.Context, tx *ent.Tx, rows []daily) error {
	var b strings.Builder
	args := make([]any, 0, len(rows)*len(dailyColumns))
	writeInsert(&b, usagedaily.Table, dailyColumns, len(rows))
	for _, d := range rows {
		args = append(args,
			string(usagedaily.DefaultID()), string(d.tenant), string(d.provider),
			string(d.config), string(d.agent), string(d.apiKey),
			d.day, d.requests, d.errors,
			d.in, d.out, d.ms,
		)
		for _, n := range d.latency {
			args = append(args, n)
		}
	}
	writeRollupConflict(&b)
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("usage: upsert rollups: %w", err)
	}
	return nil
}

// writeRollupConflict writes the rollup upsert's conflict clause: a row that exists
// already has the increment added to each counter.
func writeRollupConflict(b *strings.Builder) {
	fmt.Fprintf(b, " ON CONFLICT (%s) DO UPDATE SET ", quoteAll(dailyKey))
	for i, c := range dailyCounters {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%s = %s.%s + excluded.%s", quote(c), quote(usagedaily.Table), quote(c), quote(c))
	}
}

// writeInsert writes `INSERT INTO table (columns) VALUES (?, ...), ...` for n rows.
func writeInsert(b *strings.Builder, table string, columns []string, n int) {
	b.WriteString("INSERT INTO ")
	b.WriteString(quote(table))
	b.WriteString(" (")
	b.WriteString(quoteAll(columns))
	b.WriteString(") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
	for r := 0; r < n; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
}

// quote quotes an identifier the standard way, which both dialects accept.
func quote(ident string) string { return `"` + ident + `"` }

// quoteAll quotes identifiers and joins them with commas.
func quoteAll(idents []string) string {
	var b strings.Builder
	for i, c := range idents {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c))
	}
	return b.String()
}
