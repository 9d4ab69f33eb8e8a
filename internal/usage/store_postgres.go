package usage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/gsvdev/agentregistry/ent/usagedaily"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
)

// On PostgreSQL a batch is one prepared statement: the records' INSERT and the rollups'
// upsert are data-modifying CTEs of a single statement run outside an explicit
// transaction, which PostgreSQL makes atomic all the same. Every durable invoke waits for
// its batch, and at a steady rate a batch holds one or two calls. The transaction of two
// multi-row statements this replaces took 1.09 ms for a one-call batch, most of it
// parsing and planning statements whose text changes with the batch size; this takes
// 0.48 ms (go test -run - -bench WriteBatch/postgres ./internal/usage, idle machine).
//
// The rows travel as one array per column (unnest), so the statement's text and its 18
// parameters are the same for every batch size (which is what lets it be prepared once),
// and nothing needs splitting under PostgreSQL's parameter limit.
//
// What a call adds to its rollup row (its day, error or not, latency bucket) is decided
// here in Go, by the same functions as on SQLite; the statement only counts and sums,
// and only over the records it actually inserted (RETURNING), so a replayed request id
// is neither stored nor counted twice, as on SQLite.

// pgSourceColumns name the unnest columns, in the order of pgBatch's arrays. The first
// are the record's columns; then the rollup row the record goes to (its id should the
// row be created), and what the record adds to it.
var pgSourceColumns = append(append([]string(nil), recordColumns...), "daily_id", "day", "is_error", "bucket")

// pgSourceTypes are the arrays' SQL types by column; buildPGBatchSQL refuses a column
// without one, so a column added to recordColumns cannot be sent with the wrong type.
var pgSourceTypes = map[string]string{
	usagerecord.FieldID: "text[]", usagerecord.FieldRequestID: "text[]", usagerecord.FieldTenantID: "text[]",
	usagerecord.FieldProviderTenantID: "text[]", usagerecord.FieldConfigID: "text[]", usagerecord.FieldAgentID: "text[]",
	usagerecord.FieldAPIKeyID: "text[]", usagerecord.FieldStatus: "bigint[]", usagerecord.FieldInputTokens: "bigint[]",
	usagerecord.FieldOutputTokens: "bigint[]", usagerecord.FieldTokensEstimated: "boolean[]", usagerecord.FieldElapsedMs: "bigint[]",
	usagerecord.FieldStartedAt: "timestamptz[]", usagerecord.FieldErrorCode: "text[]",
	"daily_id": "text[]", "day": "timestamptz[]", "is_error": "boolean[]", "bucket": "bigint[]",
}

// pgBatchSQL is the statement; it returns the request ids it inserted.
var pgBatchSQL = buildPGBatchSQL()

func buildPGBatchSQL() string {
	if len(pgSourceTypes) != len(pgSourceColumns) {
		panic("usage: pgSourceTypes does not match pgSourceColumns")
	}
	var b strings.Builder
	b.WriteString("WITH src AS (SELECT * FROM unnest(")
	for i, c := range pgSourceColumns {
		typ, ok := pgSourceTypes[c]
		if !ok {
			panic("usage: no SQL type for usage column " + c)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s", i+1, typ)
	}
	b.WriteString(") AS s(")
	b.WriteString(quoteAll(pgSourceColumns))
	b.WriteString(")), ")

	// The records. Optional columns are NULL when absent, as on SQLite. Rows go in the
	// arrays' order (by request id) so that concurrent writers lock index entries in the
	// same order; the conflict target is the request id alone: a replay is the same call
	// whatever else differs.
	fmt.Fprintf(&b, "ins AS (INSERT INTO %s (%s) SELECT ", quote(usagerecord.Table), quoteAll(recordColumns))
	for i, c := range recordColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		switch c {
		case usagerecord.FieldAPIKeyID, usagerecord.FieldErrorCode:
			fmt.Fprintf(&b, "NULLIF(%s, '')", quote(c))
		default:
			b.WriteString(quote(c))
		}
	}
	// RETURNING casts to text, the type the statement was prepared with, so that a
	// migration widening a column cannot fail the prepared statement ("cached plan must
	// not change result type").
	fmt.Fprintf(&b, " FROM src ON CONFLICT (%[1]s) DO NOTHING RETURNING %[2]s::text AS %[2]s, %[1]s::text AS %[1]s), ",
		quote(usagerecord.FieldRequestID), quote(usagerecord.FieldID))

	// The rollup increments of the inserted records, one row per rollup key (an upsert
	// may not touch a row twice), in key order so that writers lock rows in one order.
	// Provider and agent follow from the config, so they are the same in every record of
	// a key; min picks that value.
	b.WriteString("agg AS (SELECT min(daily_id) AS daily_id, ")
	fmt.Fprintf(&b, "%[1]s, min(%[2]s) AS %[2]s, %[3]s, min(%[4]s) AS %[4]s, %[5]s, day, ",
		quote(usagedaily.FieldTenantID), quote(usagedaily.FieldProviderTenantID), quote(usagedaily.FieldConfigID),
		quote(usagedaily.FieldAgentID), quote(usagedaily.FieldAPIKeyID))
	b.WriteString("count(*) AS n, count(*) FILTER (WHERE is_error) AS n_errors, ")
	fmt.Fprintf(&b, "sum(%s) AS sum_in, sum(%s) AS sum_out, sum(%s) AS sum_ms",
		quote(usagerecord.FieldInputTokens), quote(usagerecord.FieldOutputTokens), quote(usagerecord.FieldElapsedMs))
	for i := range latencyColumns {
		fmt.Fprintf(&b, ", count(*) FILTER (WHERE bucket = %d) AS b%d", i, i)
	}
	// Joined on the record id, unique per source row, so that each inserted record is
	// counted once even if the arrays carried a request id twice.
	fmt.Fprintf(&b, " FROM src JOIN ins USING (%s) GROUP BY %s, %s, %s, day), ",
		quote(usagerecord.FieldID), quote(usagedaily.FieldTenantID), quote(usagedaily.FieldConfigID), quote(usagedaily.FieldAPIKeyID))

	fmt.Fprintf(&b, "up AS (INSERT INTO %s (%s) SELECT daily_id, %s, %s, %s, %s, %s, day, n, n_errors, sum_in, sum_out, sum_ms",
		quote(usagedaily.Table), quoteAll(dailyColumns),
		quote(usagedaily.FieldTenantID), quote(usagedaily.FieldProviderTenantID), quote(usagedaily.FieldConfigID),
		quote(usagedaily.FieldAgentID), quote(usagedaily.FieldAPIKeyID))
	for i := range latencyColumns {
		fmt.Fprintf(&b, ", b%d", i)
	}
	// Byte order (COLLATE "C"), as Go sorts the keys on SQLite, whatever the database's
	// collation.
	fmt.Fprintf(&b, ` FROM agg ORDER BY %s COLLATE "C", %s COLLATE "C", %s COLLATE "C", day`,
		quote(usagedaily.FieldTenantID), quote(usagedaily.FieldConfigID), quote(usagedaily.FieldAPIKeyID))
	writeRollupConflict(&b)
	b.WriteString(") ")

	// Data-modifying CTEs run to completion whether or not the main query reads them. The
	// transaction id goes with each event to the live-usage hubs, which compare it with
	// the snapshot they loaded their totals in (Event.CommitXID); xid8 is 64 bits wide and
	// never wraps, so it is sent as its decimal text.
	fmt.Fprintf(&b, "SELECT %s, pg_current_xact_id()::text FROM ins", quote(usagerecord.FieldRequestID))
	return b.String()
}

// writePostgres is write on PostgreSQL: one atomic statement.
func (s *store) writePostgres(ctx context.Context, events []Event) ([]Event, error) {
	if s.pgBatch == nil {
		stmt, err := s.db.SQL.PrepareContext(ctx, pgBatchSQL)
		if err != nil {
			return nil, fmt.Errorf("usage: prepare batch statement: %w", err)
		}
		s.pgBatch = stmt
	}
	rows, err := s.pgBatch.QueryContext(ctx, pgBatchArgs(events)...)
	if err == nil {
		var inserted []Event
		if inserted, err = scanInserted(rows, events); err == nil {
			return inserted, nil
		}
	}
	if ctx.Err() == nil {
		// Prepare afresh for the retry: whatever failed may have been the statement
		// itself (a schema change it was planned against, a pooler that dropped it).
		_ = s.pgBatch.Close()
		s.pgBatch = nil
	}
	return nil, fmt.Errorf("usage: write batch: %w", err)
}

// pgBatchArgs are the statement's arrays, one per pgSourceColumns entry.
func pgBatchArgs(events []Event) []any {
	n := len(events)
	var (
		ids, requestIDs, tenants, providers  = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		configs, agents, apiKeys, errorCodes = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		statuses, ins, outs, elapsed         = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		estimated, isError                   = make([]bool, n), make([]bool, n)
		startedAt, days                      = make([]string, n), make([]string, n)
		dailyIDs, buckets                    = make([]string, n), make([]int64, n)
	)
	// One new rollup id per rollup key: used only if the row does not exist yet.
	dailyID := make(map[rollupRowKey]string)
	for i, ev := range events {
		ids[i], requestIDs[i] = string(usagerecord.DefaultID()), ev.RequestID
		tenants[i], providers[i] = string(ev.TenantID), string(ev.ProviderTenantID)
		configs[i], agents[i], apiKeys[i] = string(ev.ConfigID), string(ev.AgentID), string(ev.APIKeyID)
		statuses[i], ins[i], outs[i], estimated[i] = int64(ev.Status), ev.InputTokens, ev.OutputTokens, ev.TokensEstimated
		elapsed[i], errorCodes[i] = ev.ElapsedMS, ev.ErrorCode
		startedAt[i] = ev.StartedAt.UTC().Format(time.RFC3339Nano)
		k := keyOf(ev)
		days[i] = k.day.Format(time.RFC3339)
		if dailyID[k] == "" {
			dailyID[k] = string(usagedaily.DefaultID())
		}
		dailyIDs[i], isError[i], buckets[i] = dailyID[k], ev.isError(), int64(LatencyBucket(ev.ElapsedMS))
	}
	return []any{
		pq.StringArray(ids), pq.StringArray(requestIDs), pq.StringArray(tenants), pq.StringArray(providers),
		pq.StringArray(configs), pq.StringArray(agents), pq.StringArray(apiKeys), pq.Int64Array(statuses),
		pq.Int64Array(ins), pq.Int64Array(outs), pq.BoolArray(estimated), pq.Int64Array(elapsed),
		pq.StringArray(startedAt), pq.StringArray(errorCodes), pq.StringArray(dailyIDs), pq.StringArray(days),
		pq.BoolArray(isError), pq.Int64Array(buckets),
	}
}
