package graph

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/gsvdev/agentregistry/graph/generated"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// renderUsageStats must write byte for byte what gqlgen's execution writes, for every
// field of the schema, through aliases, fragments, directives and merged fields, and for
// values whose encoding is easy to get wrong (escapes, invalid UTF-8, float formats,
// time zones). Where gqlgen would answer with an error it must decline.
func TestRenderUsageStatsMatchesGqlgen(t *testing.T) {
	es := statsSchema()
	queries := []struct {
		name  string
		query string
		vars  map[string]any
	}{
		{"every field of the schema", allFieldsQuery(t, es), nil},
		{"aliases, repeats and merged selections", `subscription { s: usageStats(filter: {}) {
			a: day { requests } b: day { errors requests } day { requests } day { errors }
			recent { at requestID at } recent { status } r2: recent { requestID }
			asOf asOf resynced t: __typename } }`, nil},
		{"fragments", `subscription { usageStats(filter: {}) { ...S ... on UsageStats { period { ...T } }
			... { lastMinute { __typename p95Ms ... on UsageMinute { p50Ms requests } } } } }
			fragment S on UsageStats { recent { ...C errorCode } day { ...T } }
			fragment T on UsageTotals { outputTokens inputTokens __typename }
			fragment C on UsageCall { elapsedMs outputTokens inputTokens status }`, nil},
		{"skip and include", `subscription($yes: Boolean!, $no: Boolean!) { usageStats(filter: {}) {
			day @include(if: $yes) { requests @skip(if: $no) errors @skip(if: $yes) }
			period @include(if: $no) { requests }
			recent @skip(if: $no) { requestID @include(if: $no) at }
			... @include(if: $no) { asOf } ... @skip(if: $no) { dayStart } } }`,
			map[string]any{"yes": true, "no": false}},
		{"everything skipped below the root", `subscription($no: Boolean!) { usageStats(filter: {}) {
			resynced @include(if: $no) } }`, map[string]any{"no": false}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			for i := range 300 {
				st := randomStats(rng, i)
				want, oc := gqlgenRender(t, es, q.query, q.vars, st)
				got, ok := renderUsageStats(oc, st)
				if !ok {
					t.Fatalf("declined a message gqlgen renders as %s", want)
				}
				if string(got) != want {
					t.Fatalf("message %d:\n got %s\nwant %s", i, got, want)
				}
				// The protocol payload around it, as newRendering encodes gqlgen's.
				wantPayload, err := json.Marshal(&graphql.Response{Data: got})
				if err != nil {
					t.Fatal(err)
				}
				if r := renderingOf(got); string(r.payload) != string(wantPayload) || !json.Valid(r.resp.Data) {
					t.Fatalf("message %d: payload\n got %s\nwant %s", i, r.payload, wantPayload)
				}
			}
		})
	}
}

// Values gqlgen turns into an error (null in a non-null field, a float JSON cannot
// carry) are left to gqlgen.
func TestRenderUsageStatsDeclinesWhatGqlgenRejects(t *testing.T) {
	es := statsSchema()
	query := allFieldsQuery(t, es)
	for name, spoil := range map[string]func(*live.Stats){
		"zero time":      func(s *live.Stats) { s.AsOf = time.Time{} },
		"zero call time": func(s *live.Stats) { s.Recent[1].At = time.Time{} },
		"NaN":            func(s *live.Stats) { s.LastMinute.P50Ms = math.NaN() },
		"infinity":       func(s *live.Stats) { s.LastMinute.P95Ms = math.Inf(1) },
	} {
		t.Run(name, func(t *testing.T) {
			st := randomStats(rand.New(rand.NewPCG(3, 4)), 5)
			spoil(st)
			resp, oc := gqlgenResponse(t, es, query, nil, st)
			if len(resp.Errors) == 0 {
				t.Fatalf("gqlgen rendered it without an error (%s): the case tests nothing", resp.Data)
			}
			if got, ok := renderUsageStats(oc, st); ok {
				t.Fatalf("rendered %s; gqlgen answers %v", got, resp.Errors)
			}
		})
	}
	_, oc := gqlgenResponse(t, es, query, nil, randomStats(rand.New(rand.NewPCG(5, 6)), 1))
	if _, ok := renderUsageStats(oc, nil); ok {
		t.Fatal("rendered a nil message")
	}
	// @defer is gqlgen's to interpret, however it does for a subscription.
	_, oc = gqlgenResponse(t, es, `subscription { usageStats(filter: {}) { resynced ... @defer { asOf } } }`, nil,
		randomStats(rand.New(rand.NewPCG(5, 6)), 1))
	if got, ok := renderUsageStats(oc, randomStats(rand.New(rand.NewPCG(5, 6)), 1)); ok {
		t.Fatalf("rendered a deferred fragment: %s", got)
	}
}

// statsSchema is the service's schema with a subscription resolver that serves the
// message under test.
func statsSchema() graphql.ExecutableSchema {
	cfg := generated.Config{Resolvers: statsRoot{}}
	cfg.Directives.HasRole = hasRole
	return generated.NewExecutableSchema(cfg)
}

type statsRoot struct{ *Resolver }

func (statsRoot) Subscription() generated.SubscriptionResolver { return statsSubscription{} }

type statsSubscription struct{}

type statsKey struct{}

// statsFeedKey carries a channel of messages to serve instead (the benchmark's).
type statsFeedKey struct{}

func (statsSubscription) UsageStats(ctx context.Context, _ model.UsageStatsFilter) (<-chan *live.Stats, error) {
	if feed, ok := ctx.Value(statsFeedKey{}).(chan *live.Stats); ok {
		return feed, nil
	}
	ch := make(chan *live.Stats, 1)
	ch <- ctx.Value(statsKey{}).(*live.Stats)
	return ch, nil
}

// gqlgenResponse executes query with gqlgen alone and returns its first message and the
// operation context renderUsageStats is given in the service.
func gqlgenResponse(t *testing.T, es graphql.ExecutableSchema, query string, vars map[string]any, st *live.Stats) (*graphql.Response, *graphql.OperationContext) {
	t.Helper()
	exec := executor.New(es)
	ctx := graphql.StartOperationTrace(context.WithValue(context.Background(), statsKey{}, st))
	oc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query, Variables: vars})
	if errs != nil {
		t.Fatalf("%s: %v", query, errs)
	}
	handler, ctx := exec.DispatchOperation(graphql.WithOperationContext(ctx, oc), oc)
	resp := handler(ctx)
	if resp == nil {
		t.Fatal("gqlgen sent no message")
	}
	return resp, oc
}

func gqlgenRender(t *testing.T, es graphql.ExecutableSchema, query string, vars map[string]any, st *live.Stats) (string, *graphql.OperationContext) {
	t.Helper()
	resp, oc := gqlgenResponse(t, es, query, vars, st)
	if len(resp.Errors) > 0 {
		t.Fatalf("gqlgen: %v", resp.Errors)
	}
	return string(resp.Data), oc
}

// allFieldsQuery selects every field of usageStats' type, recursively, as the schema
// declares them: a field added to the schema is in the test without editing it.
func allFieldsQuery(t *testing.T, es graphql.ExecutableSchema) string {
	t.Helper()
	schema := es.Schema()
	var sel func(typ string) string
	sel = func(typ string) string {
		def := schema.Types[typ]
		if def == nil || def.Kind != ast.Object {
			t.Fatalf("type %s is not an object type", typ)
		}
		names := make([]string, 0, len(def.Fields))
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			if len(f.Arguments) > 0 {
				t.Fatalf("%s.%s takes arguments: extend this test", typ, f.Name)
			}
			name := f.Type.Name()
			if inner := schema.Types[name]; inner != nil && inner.Kind == ast.Object {
				names = append(names, f.Name+" "+sel(name))
			} else {
				names = append(names, f.Name)
			}
		}
		sort.Strings(names)
		return "{ __typename " + strings.Join(names, " ") + " }"
	}
	field := schema.Subscription.Fields.ForName("usageStats")
	if field == nil {
		t.Fatal("no Subscription.usageStats in the schema")
	}
	return "subscription { usageStats(filter: {}) " + sel(field.Type.Name()) + " }"
}

// randomStats returns a message whose values cover what encoders get wrong.
func randomStats(rng *rand.Rand, i int) *live.Stats {
	strs := []string{"", "call-1", `quote " and \ backslash`, "line\nbreak\ttab\x01\x1f", "héllo ✓ 日本",
		"bad utf-8 \xff\xfe", "</script>&<>", "\u2028\u2029", strings.Repeat("x", 300)}
	floats := []float64{0, 12.5, 3, 1e21, 1e20, 1e-7, 0.0001, 123456789.123, math.MaxFloat64,
		5e-324, math.Copysign(0, -1), -2.5, 1.0 / 3}
	zones := []*time.Location{time.UTC, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("minus", -7*3600)}
	ints := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64, 1 << 53}
	str := func() string { return strs[rng.IntN(len(strs))] }
	flt := func() float64 {
		if rng.IntN(3) == 0 {
			return rng.Float64() * math.Pow(10, float64(rng.IntN(40)-20))
		}
		return floats[rng.IntN(len(floats))]
	}
	num := func() int64 {
		if rng.IntN(2) == 0 {
			return rng.Int64N(1 << 40)
		}
		return ints[rng.IntN(len(ints))]
	}
	tm := func() time.Time {
		t := time.Unix(rng.Int64N(4e9), 0)
		if rng.IntN(2) == 0 {
			t = t.Add(time.Duration(rng.IntN(1e9)))
		}
		return t.In(zones[rng.IntN(len(zones))])
	}
	tot := func() live.Totals {
		return live.Totals{Requests: num(), Errors: num(), InputTokens: num(), OutputTokens: num()}
	}
	st := &live.Stats{
		Day: tot(), DayStart: tm(), Period: tot(), PeriodStart: tm(),
		LastMinute: live.Minute{Requests: num(), P50Ms: flt(), P95Ms: flt()},
		AsOf:       tm(), Resynced: rng.IntN(2) == 0,
	}
	for range i % 25 { // none, one and many
		st.Recent = append(st.Recent, live.Call{RequestID: str(), Status: int(num()), InputTokens: num(),
			OutputTokens: num(), ElapsedMS: num(), At: tm(), ErrorCode: str()})
	}
	return st
}

// One rendering of a dashboard's message (every field, 20 recent calls) on a running
// subscription, with its protocol payload: by gqlgen's execution (newRendering) and by
// renderUsageStats (renderingOf). Compare the two side by side (make bench).
func BenchmarkUsageStatsRendering(b *testing.B) {
	es := statsSchema()
	query := allFieldsQuery(&testing.T{}, es)
	st := randomStats(rand.New(rand.NewPCG(7, 8)), 20)
	exec := executor.New(es)
	start := func(b *testing.B, feed chan *live.Stats) (context.Context, *graphql.OperationContext) {
		ctx := graphql.StartOperationTrace(context.WithValue(context.Background(), statsFeedKey{}, feed))
		oc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query})
		if errs != nil {
			b.Fatal(errs)
		}
		return graphql.WithOperationContext(ctx, oc), oc
	}
	b.Run("gqlgen", func(b *testing.B) {
		feed := make(chan *live.Stats, 1)
		ctx, oc := start(b, feed)
		handler, ctx := exec.DispatchOperation(ctx, oc)
		b.ReportAllocs()
		for b.Loop() {
			feed <- st
			resp := handler(ctx)
			if resp == nil || len(resp.Errors) > 0 {
				b.Fatal("gqlgen failed")
			}
			newRendering(resp)
		}
	})
	b.Run("direct", func(b *testing.B) {
		_, oc := start(b, nil)
		b.ReportAllocs()
		for b.Loop() {
			data, ok := renderUsageStats(oc, st)
			if !ok {
				b.Fatal("declined")
			}
			renderingOf(data)
		}
	})
}
