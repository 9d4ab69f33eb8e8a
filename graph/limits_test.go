package graph_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"entgo.io/contrib/entgql"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// deepQuery returns a query whose deepest field is nested depth levels:
// agents > edges > node > subscriptions > agent > subscriptions > ... > id.
func deepQuery(depth int) string {
	fields := []string{"agents", "edges", "node"}
	for i := 0; len(fields) < depth-1; i++ {
		fields = append(fields, []string{"subscriptions", "agent"}[i%2])
	}
	return "{ " + strings.Join(fields, " { ") + " { id" + strings.Repeat(" }", len(fields)) + " }"
}

// doubling is an operation whose fragment Fi spreads F(i-1) twice, down to F0 { subject }:
// 2^levels fields once every spread is replaced by its fragment.
func doubling(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ viewer { ...F%d } }\nfragment F0 on Viewer { subject }\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on Viewer { ...F%d ...F%d }\n", i, i-1, i-1)
	}
	return b.String()
}

// nest returns subscriptions { agent { subscriptions { ... leaf { id } } } }, levels deep
// counting the leaf and its id.
func nest(levels int, leaf string) string {
	var fields []string
	for i := 0; len(fields) < levels-2; i++ {
		fields = append(fields, []string{"subscriptions", "agent"}[i%2])
	}
	fields = append(fields, leaf)
	return strings.Join(fields, " { ") + " { id" + strings.Repeat(" }", len(fields))
}

// cursor encodes an entgql cursor as a client would send it back.
func cursor(id string, value any) string {
	var b bytes.Buffer
	entgql.Cursor[pulid.ID]{ID: pulid.ID(id), Value: value}.MarshalGQL(&b)
	return strings.Trim(b.String(), `"`)
}

// aliases repeats field n times under distinct aliases.
func aliases(n int, field string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, " a%d: %s", i, field)
	}
	b.WriteString(" }")
	return b.String()
}

// driverWords appear in SQL and driver messages, never in a message meant for clients.
var driverWords = []string{
	"select ", " from ", " where ", "sql", "pq:", "sqlite", "postgres", "converting", "unsupported type",
	"msgpack", "base64", "decode", "table", "column", "relation", "constraint", "syntax",
}

// TestDocumentTokenLimit: a document longer than DefaultMaxTokens is refused by the
// parser, before validation, whose cost grows faster than the document (10,000 repeated
// fields took 5 s of CPU).
func TestDocumentTokenLimit(t *testing.T) {
	h := newHarness(t, dbtest.Drivers(t)[0])
	tok := h.token("tokens", auth.RoleCustomer)
	long := "{ viewer {" + strings.Repeat(" subject", 100_000) + " } }"
	r := h.post(tok, long, nil)
	if len(r.Errors) == 0 || r.Errors[0].code() != "GRAPHQL_PARSE_FAILED" || r.hasData() {
		t.Fatalf("100,000 repeated fields: %.300s", r.Raw)
	}
	if !strings.Contains(r.Errors[0].Message, "token limit") {
		t.Fatalf("message %q does not say what limit was met", r.Errors[0].Message)
	}
	// Just under the limit the document is answered.
	within := "{ viewer {" + strings.Repeat(" subject", graph.DefaultMaxTokens-10) + " } }"
	if r := h.post(tok, within, nil); len(r.Errors) > 0 || !r.hasData() {
		t.Fatalf("a document just under the limit: %.300s", r.Raw)
	}
}

func TestLimits(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			// Long documents, to reach the complexity limit with cheap fields (the token
			// limit has its own test).
			h := newHarness(t, driver, func(o *graph.Options) { o.MaxTokens = 100_000 })
			f := newFixtures(t, h.client)
			p := f.tenant("papa", "subject-papa", membership.RoleOwner)
			sold := f.agents(p.Tenant, "papa", 1, 1, 1)[0]
			f.subscribe(p, sold, "papa", 1)
			// MaxPageSize+5 agents, inserted in one statement each for agents.
			f.agents(p.Tenant, "bulk", maxPageSize+4, 1, 0)
			provider := h.token(p.Subject, auth.RoleProvider, auth.RoleCustomer)

			// rejected: the operation is refused with code before any SQL runs.
			for _, c := range []struct {
				name, query, code string
			}{
				{"depth MaxDepth+1", deepQuery(maxDepth + 1), "DEPTH_LIMIT_EXCEEDED"},
				{"depth 40", deepQuery(40), "DEPTH_LIMIT_EXCEEDED"},
				{"depth through a named fragment", `{ agents { edges { node { ...deep } } } }
					fragment deep on Agent { subscriptions { agent { subscriptions { agent { subscriptions { agent { subscriptions { agent { subscriptions { agent { id } } } } } } } } } } }`, "DEPTH_LIMIT_EXCEEDED"},
				{"depth through inline fragments", `{ node(id: "` + string(sold.Agent.ID) + `") { ... on Agent { ` + nest(maxDepth, "plans") + ` } } }`, "DEPTH_LIMIT_EXCEEDED"},
				{"complexity", aliases(600, `agents(first: 1) { edges { node { id } } }`), "COMPLEXITY_LIMIT_EXCEEDED"},
				{"complexity of cheap fields", aliases(maxComplexity+1, `viewer { subject }`), "COMPLEXITY_LIMIT_EXCEEDED"},
				// 2^40 fields once spread: refused by counting each fragment once, before
				// the complexity and depth walks, which would take hours on it.
				{"fragments each spreading the next twice", doubling(40), "COMPLEXITY_LIMIT_EXCEEDED"},
			} {
				t.Run("rejected: "+c.name, func(t *testing.T) {
					resp := h.post(provider, c.query, nil)
					if len(resp.Errors) == 0 || resp.Errors[0].code() != c.code {
						t.Fatalf("want %s, got %.500s", c.code, resp.Raw)
					}
					if resp.hasData() {
						t.Errorf("data in a rejected operation: %.500s", resp.Raw)
					}
					if n := h.graphStmts.Load(); n != 0 {
						t.Errorf("%d statements ran before the operation was rejected", n)
					}
				})
			}

			// accepted: just inside the limits.
			for _, c := range []struct{ name, query string }{
				{"depth MaxDepth", deepQuery(maxDepth)},
				{"complexity under the limit", aliases(100, `agents(first: 1) { edges { node { id } } }`)},
				{"a fragment spread 256 times", doubling(8)},
				{"first MaxPageSize", `{ agents(first: 100) { edges { node { id } } } }`},
				{"last MaxPageSize", `{ agents(last: 100) { edges { node { id } } } }`},
			} {
				t.Run("accepted: "+c.name, func(t *testing.T) {
					resp := h.post(provider, c.query, nil)
					if len(resp.Errors) > 0 || !resp.hasData() {
						t.Fatalf("want data, got %.500s", resp.Raw)
					}
				})
			}

			for _, c := range []struct{ name, query, field string }{
				{"first MaxPageSize+1", `{ agents(first: 101) { edges { node { id } } } }`, "first"},
				{"last MaxPageSize+1", `{ plans(last: 101) { edges { node { id } } } }`, "last"},
				{"first negative", `{ subscriptions(first: -1) { edges { node { id } } } }`, "first"},
				{"first huge", `{ apiKeys(first: 1000000) { edges { node { id } } } }`, "first"},
			} {
				t.Run("bad page size: "+c.name, func(t *testing.T) {
					resp := h.post(provider, c.query, nil)
					if len(resp.Errors) == 0 || resp.Errors[0].code() != "BAD_USER_INPUT" || resp.Errors[0].Extensions["field"] != c.field {
						t.Fatalf("want BAD_USER_INPUT on %s, got %s", c.field, resp.Raw)
					}
					if resp.hasData() {
						t.Errorf("data served: %.300s", resp.Raw)
					}
				})
			}

			for _, c := range []struct {
				name, query string
				want        int
			}{
				{"agents", `{ agents { edges { node { id } } pageInfo { hasNextPage endCursor } } }`, maxPageSize},
				{"plans", `{ plans { edges { node { id } } pageInfo { hasNextPage endCursor } } }`, maxPageSize},
			} {
				t.Run("default page size: "+c.name, func(t *testing.T) {
					resp := h.post(provider, c.query, nil)
					var got map[string]struct {
						Edges    []struct{ Node struct{ ID string } }
						PageInfo struct {
							HasNextPage bool
							EndCursor   string
						}
					}
					resp.decode(t, &got)
					conn := got[c.name]
					if len(conn.Edges) != c.want || !conn.PageInfo.HasNextPage {
						t.Fatalf("%d rows (hasNextPage %v), want %d and more pages", len(conn.Edges), conn.PageInfo.HasNextPage, c.want)
					}
					// The next page holds the rest: the cap truncates, it does not lose rows.
					resp = h.post(provider, `query($after: Cursor) { `+c.name+`(after: $after) { edges { node { id } } pageInfo { hasNextPage } } }`,
						map[string]any{"after": conn.PageInfo.EndCursor})
					resp.decode(t, &got)
					if n := len(got[c.name].Edges); n != maxPageSize+5-c.want || got[c.name].PageInfo.HasNextPage {
						t.Errorf("second page: %d rows, want %d", n, maxPageSize+5-c.want)
					}
				})
			}

			// Errors carry a code and a generic message, never SQL or driver text. An
			// argument that does not parse is the client's mistake (BAD_USER_INPUT, naming the
			// argument); an id of no known type is simply not found.
			unknownType := "zzz" + string(sold.Agent.ID)[3:]
			for _, c := range []struct {
				name, query string
				vars        map[string]any
				code, field string
			}{
				{"cursor that is not base64", `query($c: Cursor) { agents(after: $c) { edges { node { id } } } }`, map[string]any{"c": "!!!not-a-cursor!!!"}, "BAD_USER_INPUT", "after"},
				{"cursor that is not msgpack", `query($c: Cursor) { plans(before: $c) { edges { node { id } } } }`, map[string]any{"c": "AAAAAAAAAAAA"}, "BAD_USER_INPUT", "before"},
				{"cursor inline in the query", `{ subscriptions(after: "%%%") { edges { node { id } } } }`, nil, "BAD_USER_INPUT", "after"},
				{"time that is not RFC 3339", `{ agents(where: {createdAtGT: "yesterday"}) { edges { node { id } } } }`, nil, "BAD_USER_INPUT", "where.createdAtGT"},
				{"malformed node id", `{ node(id: "garbage") { id } }`, nil, "BAD_USER_INPUT", "id"},
				{"malformed id in a filter", `{ apiKeys(where: {idIn: ["garbage"]}) { edges { node { id } } } }`, nil, "BAD_USER_INPUT", "where.idIn[0]"},
				{"node id of no known type", `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": unknownType}, "NOT_FOUND", ""},
				{"nodes id of no known type", `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": []string{unknownType, "zzz" + string(sold.Plans[0].ID)[3:]}}, "NOT_FOUND", ""},
				{"cursor whose value the driver rejects", `query($c: Cursor) { plans(after: $c, orderBy: {field: NAME, direction: ASC}) { edges { node { id } } } }`,
					map[string]any{"c": cursor(string(sold.Plans[0].ID), map[string]any{"x": []any{1, "y"}})}, "INTERNAL", ""},
				{"multi-order cursor of the wrong shape", `query($c: Cursor) { agents(after: $c, orderBy: [{field: NAME, direction: ASC}]) { edges { node { id } } } }`,
					map[string]any{"c": cursor(string(sold.Agent.ID), "not-a-list")}, "INTERNAL", ""},
			} {
				t.Run("generic error: "+c.name, func(t *testing.T) {
					resp := h.post(provider, c.query, c.vars)
					if len(resp.Errors) == 0 {
						t.Fatalf("no error: %.300s", resp.Raw)
					}
					if resp.hasData() {
						t.Errorf("data served: %.300s", resp.Raw)
					}
					for _, e := range resp.Errors {
						if e.code() != c.code {
							t.Errorf("code %q (%q), want %s", e.code(), e.Message, c.code)
						}
						if f, _ := e.Extensions["field"].(string); f != c.field {
							t.Errorf("extensions.field = %q, want %q", f, c.field)
						}
						msg := strings.ToLower(e.Message)
						for _, w := range driverWords {
							if strings.Contains(msg, w) {
								t.Errorf("message %q contains driver text %q", e.Message, w)
							}
						}
					}
					t.Logf("%s -> %s %q", c.name, resp.Errors[0].code(), resp.Errors[0].Message)
				})
			}
			t.Run("driver errors are logged, not shown", func(t *testing.T) {
				// The cursor case above reached the driver; its real message is in the log.
				if !strings.Contains(h.logs.String(), "graphql resolver error") {
					t.Errorf("no resolver error logged:\n%s", h.logs)
				}
			})

			t.Run("GET with a mutation", func(t *testing.T) {
				resp := h.post(provider, `{ __schema { mutationType { name } } }`, nil)
				var got struct {
					Schema struct{ MutationType *struct{ Name string } } `json:"__schema"`
				}
				resp.decode(t, &got)
				if got.Schema.MutationType == nil {
					t.Skip("the schema has no Mutation type yet")
				}
				// When mutations exist, GET must refuse them (no state change from a link).
				req, err := http.NewRequest(http.MethodGet, h.srv.URL+"?query="+url.QueryEscape(`mutation { __typename }`), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+provider)
				get := h.send(req)
				if len(get.Errors) == 0 || get.hasData() {
					t.Errorf("GET ran a mutation: %d %s", get.Status, get.Raw)
				}
			})
			t.Run("GET with a query works", func(t *testing.T) {
				req, err := http.NewRequest(http.MethodGet, h.srv.URL+"?query="+url.QueryEscape(`{ viewer { subject } }`), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+provider)
				get := h.send(req)
				if len(get.Errors) > 0 || !strings.Contains(get.Raw, p.Subject) {
					t.Errorf("GET query: %d %s", get.Status, get.Raw)
				}
			})
		})
	}
}

// TestDatabaseFailuresAreGeneric: when the database fails, whether in a resolver or in the
// membership lookup, the answer is a code and a generic message; the driver's text goes
// to the log only.
func TestDatabaseFailuresAreGeneric(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			p := f.tenant("papa", "subject-papa", membership.RoleOwner)
			member := h.token(p.Subject, auth.RoleProvider)
			// Steps run in order, each breaking the database further.
			for _, c := range []struct {
				name   string
				break_ string
				logs   string // the driver's text, expected in the log
			}{
				{"missing table (resolver fails)", "ALTER TABLE agents RENAME TO agents_gone", "agents"},
				{"database closed (membership lookup fails)", "", "membership"},
			} {
				t.Run(c.name, func(t *testing.T) {
					if c.break_ != "" {
						if _, err := h.db.SQL.Exec(c.break_); err != nil {
							t.Fatal(err)
						}
					} else if err := h.db.SQL.Close(); err != nil {
						t.Fatal(err)
					}
					resp := h.post(member, `{ agents { edges { node { id } } } }`, nil)
					if len(resp.Errors) == 0 || resp.Errors[0].code() != "INTERNAL" || resp.hasData() {
						t.Fatalf("want INTERNAL, got %s", resp.Raw)
					}
					for _, e := range resp.Errors {
						for _, w := range append(driverWords, "closed", "agents", "exist") {
							if strings.Contains(strings.ToLower(e.Message), w) {
								t.Errorf("message %q contains driver text %q", e.Message, w)
							}
						}
					}
					if !strings.Contains(h.logs.String(), c.logs) {
						t.Errorf("the real error is not logged:\n%s", h.logs)
					}
				})
			}
		})
	}
}
