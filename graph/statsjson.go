package graph

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// renderUsageStats writes the data of one usageStats message, {"<alias>":{…}}, exactly as
// gqlgen's generated code would for the operation oc, without executing it.
//
// Why: the usageStats types are plain values (no resolvers, no directives, no
// per-viewer fields), yet gqlgen's execution of them builds a field context, a context
// value and a marshaler per field, and a goroutine per element of recent. At 10,000
// subscribers that was a third of the process's allocations (make bench-subscriptions),
// and the garbage collection it causes is what delays the gateway's calls most. For
// every field and 20 recent calls, BenchmarkUsageStatsRendering measured 240–264 µs,
// 109 KB and 2,295 allocations per rendering with gqlgen, 43–46 µs, 25 KB and 109
// allocations with this.
//
// It follows what the generated code does: graphql.CollectFields (fragments, @skip and
// @include, merged fields) per selection set, fields in that order, the first of two
// fields with one alias written, and gqlgen's own scalar marshalers for strings,
// floats and times, so their escaping and formatting cannot drift. It reports false for
// anything it does not know (a field added to the schema but not here, @defer, a
// value gqlgen would turn into an error such as a zero time), and the caller lets gqlgen
// render that message; TestRenderUsageStatsMatchesGqlgen holds the two to the same bytes
// for every field of the schema.
//
// Field middleware (handler.go's AroundFields) does not run for these fields. Today's
// concerns root fields (requireViewer, which ran when the subscription started) and
// arguments (capPageSize; these fields take none). A field middleware that must see
// usageStats' fields needs this renderer to decline.
func renderUsageStats(oc *graphql.OperationContext, st *live.Stats) ([]byte, bool) {
	if oc == nil || oc.Operation == nil || st == nil {
		return nil, false
	}
	root := graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Subscription"})
	if len(root) != 1 || root[0].Name != "usageStats" || len(root[0].Deferrables) > 0 {
		return nil, false
	}
	w := statsWriter{oc: oc}
	w.buf.Grow(1024)
	w.buf.WriteByte('{')
	w.str(root[0].Alias)
	w.buf.WriteByte(':')
	if !w.stats(root[0].Selections, st) {
		return nil, false
	}
	w.buf.WriteByte('}')
	return w.buf.Bytes(), true
}

type statsWriter struct {
	oc  *graphql.OperationContext
	buf bytes.Buffer
}

// object writes one object of GraphQL type typ: its collected fields, each by value.
func (w *statsWriter) object(typ string, fields []graphql.CollectedField, value func(f *graphql.CollectedField) bool) bool {
	w.buf.WriteByte('{')
	for i := range fields {
		f := &fields[i]
		if len(f.Deferrables) > 0 {
			return false
		}
		if written(fields[:i], f.Alias) {
			continue
		}
		if i > 0 {
			w.buf.WriteByte(',')
		}
		w.str(f.Alias)
		w.buf.WriteByte(':')
		if f.Name == "__typename" {
			w.str(typ)
		} else if !value(f) {
			return false
		}
	}
	w.buf.WriteByte('}')
	return true
}

// written reports whether a field of before already took alias (gqlgen writes the first).
func written(before []graphql.CollectedField, alias string) bool {
	for i := range before {
		if before[i].Alias == alias {
			return true
		}
	}
	return false
}

func (w *statsWriter) collect(sel ast.SelectionSet, typ string) []graphql.CollectedField {
	return graphql.CollectFields(w.oc, sel, []string{typ})
}

func (w *statsWriter) stats(sel ast.SelectionSet, st *live.Stats) bool {
	return w.object("UsageStats", w.collect(sel, "UsageStats"), func(f *graphql.CollectedField) bool {
		switch f.Name {
		case "day":
			return w.totals(f.Selections, &st.Day)
		case "dayStart":
			return w.time(st.DayStart)
		case "period":
			return w.totals(f.Selections, &st.Period)
		case "periodStart":
			return w.time(st.PeriodStart)
		case "lastMinute":
			return w.minute(f.Selections, &st.LastMinute)
		case "recent":
			return w.calls(f.Selections, st.Recent)
		case "asOf":
			return w.time(st.AsOf)
		case "resynced":
			w.buf.WriteString(strconv.FormatBool(st.Resynced))
			return true
		}
		return false
	})
}

func (w *statsWriter) totals(sel ast.SelectionSet, t *live.Totals) bool {
	return w.object("UsageTotals", w.collect(sel, "UsageTotals"), func(f *graphql.CollectedField) bool {
		switch f.Name {
		case "requests":
			return w.int(t.Requests)
		case "errors":
			return w.int(t.Errors)
		case "inputTokens":
			return w.int(t.InputTokens)
		case "outputTokens":
			return w.int(t.OutputTokens)
		}
		return false
	})
}

func (w *statsWriter) minute(sel ast.SelectionSet, m *live.Minute) bool {
	return w.object("UsageMinute", w.collect(sel, "UsageMinute"), func(f *graphql.CollectedField) bool {
		switch f.Name {
		case "requests":
			return w.int(m.Requests)
		case "p50Ms":
			return w.float(m.P50Ms)
		case "p95Ms":
			return w.float(m.P95Ms)
		}
		return false
	})
}

// calls writes the recent list. Its elements share one selection, collected once.
func (w *statsWriter) calls(sel ast.SelectionSet, calls []live.Call) bool {
	fields := w.collect(sel, "UsageCall")
	w.buf.WriteByte('[')
	for i := range calls {
		if i > 0 {
			w.buf.WriteByte(',')
		}
		c := &calls[i]
		ok := w.object("UsageCall", fields, func(f *graphql.CollectedField) bool {
			switch f.Name {
			case "requestID":
				return w.str(c.RequestID)
			case "status":
				return w.int(int64(c.Status))
			case "inputTokens":
				return w.int(c.InputTokens)
			case "outputTokens":
				return w.int(c.OutputTokens)
			case "elapsedMs":
				return w.int(c.ElapsedMS)
			case "at":
				return w.time(c.At)
			case "errorCode":
				return w.str(c.ErrorCode)
			}
			return false
		})
		if !ok {
			return false
		}
	}
	w.buf.WriteByte(']')
	return true
}

func (w *statsWriter) str(s string) bool {
	graphql.MarshalString(s).MarshalGQL(&w.buf)
	return true
}

func (w *statsWriter) int(v int64) bool {
	var b [20]byte
	w.buf.Write(strconv.AppendInt(b[:0], v, 10))
	return true
}

// float fails where gqlgen's Float marshaler does (NaN, ±Inf).
func (w *statsWriter) float(v float64) bool {
	return graphql.MarshalFloatContext(v).MarshalGQLContext(context.Background(), &w.buf) == nil
}

// time fails on the zero time, which gqlgen marshals as null: an error in a non-null field.
func (w *statsWriter) time(t time.Time) bool {
	m := graphql.MarshalTime(t)
	if m == graphql.Null {
		return false
	}
	m.MarshalGQL(&w.buf)
	return true
}
