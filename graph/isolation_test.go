package graph_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// nodeFields selects, on every node type, the fields that carry a fixture's marker, so
// that a leaked row shows up as text in the response.
const nodeFields = `
fragment all on Node {
  id
  __typename
  ... on Tenant { name slug }
  ... on Project { name }
  ... on Membership { email subject }
  ... on Agent { name slug description }
  ... on Flow { checksum runtimeError }
  ... on Plan { name }
  ... on AgentSubscription { waldurOrderUUID }
  ... on AgentConfig { displayName systemPrompt }
  ... on Document { filename }
  ... on APIKey { name }
  ... on UsageRecord { requestID errorCode }
  ... on UsageDaily { apiKeyID }
  ... on UsageReport { component externalRef }
  ... on WebhookEvent { externalID type error }
}`

// nestedQuery walks every edge reachable from the root connections.
const nestedQuery = `{
  agents { edges { node { id name
    tenant { id name }
    plans { id name subscriptions { id } }
    flows { id checksum runtimeError }
    subscriptions { id tenant { id name } config { id systemPrompt } }
  } } }
  plans { edges { node { id agent { id } subscriptions { id } } } }
  subscriptions { edges { node { id waldurOrderUUID
    tenant { id name
      projects { id name }
      memberships { id email }
      agents { id name plans { id } flows { id } }
      subscriptions { id }
    }
    project { id name }
    agent { id name }
    plan { id name }
    config { id systemPrompt subscription { id }
      apiKeys { id name config { id } }
      documents { id filename config { id } }
    }
  } } }
  agentConfigs { edges { node { id systemPrompt documents { id } apiKeys { id } } } }
  apiKeys { edges { node { id name config { id displayName } } } }
  viewer { memberships { role tenant { id name } } }
}`

// connections maps each root connection to the query listing its ids and the world's
// rows it must list.
var connections = []struct {
	name  string
	query string
	want  func(w *world) []string
}{
	{"agents", `{ agents { edges { node { id } } } }`, func(w *world) []string { return []string{string(w.Agent.ID)} }},
	{"plans", `{ plans { edges { node { id } } } }`, func(w *world) []string { return []string{string(w.Plans[0].ID)} }},
	{"subscriptions", `{ subscriptions { edges { node { id } } } }`, func(w *world) []string { return []string{string(w.Subscription.ID)} }},
	{"agentConfigs", `{ agentConfigs { edges { node { id } } } }`, func(w *world) []string { return []string{string(w.Config.ID)} }},
	{"apiKeys", `{ apiKeys { edges { node { id } } } }`, func(w *world) []string { return []string{string(w.APIKeys[0].ID)} }},
}

func TestTenantIsolation(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			a := f.world("alpha", "subject-alpha")
			b := f.world("bravo", "subject-bravo")
			roles := []auth.Role{auth.RoleProvider, auth.RoleCustomer}
			admin := h.token("subject-admin", auth.RolePlatformAdmin)

			for _, v := range []struct {
				name       string
				token      string
				own, other *world
			}{
				{"member of A", h.token(a.Subject, roles...), a, b},
				{"member of B", h.token(b.Subject, roles...), b, a},
			} {
				t.Run(v.name, func(t *testing.T) {
					// The viewer must reach its own rows (so that an empty answer cannot pass)
					// and nothing of the other tenant, by id or by any text.
					for _, r := range v.other.rows() {
						t.Run("node of other "+r.Type, func(t *testing.T) {
							resp := h.post(v.token, `query($id: ID!) { node(id: $id) { ...all } }`+nodeFields, map[string]any{"id": r.ID})
							assertNull(t, resp, "node")
							assertNoLeak(t, resp, v.other)
						})
					}
					for _, r := range v.own.rows() {
						t.Run("node of own "+r.Type, func(t *testing.T) {
							resp := h.post(v.token, `query($id: ID!) { node(id: $id) { ...all } }`+nodeFields, map[string]any{"id": r.ID})
							if r.Type == "WebhookEvent" {
								// The inbox is the platform admin's alone.
								assertNull(t, resp, "node")
								if strings.Contains(resp.Raw, v.own.Marker) {
									t.Errorf("webhook event data leaked to a tenant member: %s", resp.Raw)
								}
								return
							}
							var got struct{ Node map[string]any }
							resp.decode(t, &got)
							if got.Node == nil || got.Node["id"] != r.ID || got.Node["__typename"] != r.Type {
								t.Fatalf("own %s %s: got %v", r.Type, r.ID, got.Node)
							}
						})
					}
					t.Run("nodes of other", func(t *testing.T) {
						ids := rowIDs(v.other.rows())
						resp := h.post(v.token, `query($ids: [ID!]!) { nodes(ids: $ids) { ...all } }`+nodeFields, map[string]any{"ids": ids})
						var got struct{ Nodes []map[string]any }
						if err := json.Unmarshal(resp.Data, &got); err != nil {
							t.Fatalf("decode: %v\n%s", err, resp.Raw)
						}
						if len(got.Nodes) != len(ids) {
							t.Fatalf("nodes: %d entries for %d ids: %s", len(got.Nodes), len(ids), resp.Raw)
						}
						for i, n := range got.Nodes {
							if n != nil {
								t.Errorf("nodes[%d] (%s) = %v, want null", i, v.other.rows()[i].Type, n)
							}
						}
						assertNoLeak(t, resp, v.other)
					})
					t.Run("nodes of own", func(t *testing.T) {
						rows := v.own.rows()
						resp := h.post(v.token, `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": rowIDs(rows)})
						var got struct{ Nodes []map[string]any }
						if err := json.Unmarshal(resp.Data, &got); err != nil {
							t.Fatalf("decode: %v\n%s", err, resp.Raw)
						}
						for i, r := range rows {
							visible := got.Nodes[i] != nil
							if visible != (r.Type != "WebhookEvent") {
								t.Errorf("nodes[%d] (%s): visible = %v", i, r.Type, visible)
							}
						}
					})
					for _, c := range connections {
						t.Run("connection "+c.name, func(t *testing.T) {
							resp := h.post(v.token, c.query, nil)
							if len(resp.Errors) > 0 {
								t.Fatalf("errors: %s", resp.Raw)
							}
							assertSameIDs(t, collectIDs(resp.Data), c.want(v.own))
						})
					}
					// Field filters narrow the viewer's rows; they never widen them, so aiming
					// them at the other tenant finds nothing.
					for _, c := range []struct{ name, query string }{
						{"agents by tenant", `query($t: ID!) { agents(where: {tenantID: $t}) { edges { node { id name } } } }`},
						{"agents by tenant list", `query($t: ID!) { agents(where: {or: [{tenantIDIn: [$t]}, {not: {tenantIDNEQ: $t}}]}) { edges { node { id name } } } }`},
						{"plans by tenant", `query($t: ID!) { plans(where: {tenantID: $t}) { edges { node { id name } } } }`},
						{"subscriptions by tenant", `query($t: ID!) { subscriptions(where: {or: [{tenantID: $t}, {providerTenantID: $t}]}) { edges { node { id } } } }`},
						{"configs by tenant", `query($t: ID!) { agentConfigs(where: {tenantID: $t}) { edges { node { id systemPrompt } } } }`},
						{"configs by prompt text", `query($t: ID!) { agentConfigs(where: {systemPromptContains: "secret", not: {tenantIDNEQ: $t}}) { edges { node { id systemPrompt } } } }`},
						{"keys by tenant", `query($t: ID!) { apiKeys(where: {tenantIDIn: [$t]}) { edges { node { id name } } } }`},
					} {
						t.Run("filter on other: "+c.name, func(t *testing.T) {
							resp := h.post(v.token, c.query, map[string]any{"t": string(v.other.Tenant.ID)})
							if len(resp.Errors) > 0 {
								t.Fatalf("errors: %s", resp.Raw)
							}
							if ids := collectIDs(resp.Data); len(ids) != 0 {
								t.Errorf("filter aimed at the other tenant found %v", ids)
							}
							assertNoLeak(t, resp, v.other)
						})
					}
					t.Run("nested edges", func(t *testing.T) {
						resp := h.post(v.token, nestedQuery, nil)
						if len(resp.Errors) > 0 {
							t.Fatalf("errors: %s", resp.Raw)
						}
						own := v.own.ids()
						got := collectIDs(resp.Data)
						for _, id := range got {
							if !own[id] {
								t.Errorf("row %s of another tenant reached through an edge", id)
							}
						}
						// Everything reachable by edges is reached: an empty answer fails.
						for _, r := range v.own.rows() {
							switch r.Type {
							case "UsageRecord", "UsageDaily", "UsageReport", "WebhookEvent":
								continue // no edges lead to them
							}
							if !slices.Contains(got, r.ID) {
								t.Errorf("own %s %s not reached through the edges", r.Type, r.ID)
							}
						}
						assertNoLeak(t, resp, v.other)
					})
				})
			}

			t.Run("platform admin", func(t *testing.T) {
				for _, c := range connections {
					t.Run("connection "+c.name, func(t *testing.T) {
						resp := h.post(admin, c.query, nil)
						if len(resp.Errors) > 0 {
							t.Fatalf("errors: %s", resp.Raw)
						}
						assertSameIDs(t, collectIDs(resp.Data), append(c.want(a), c.want(b)...))
					})
				}
				t.Run("tenants", func(t *testing.T) {
					resp := h.post(admin, `{ tenants { edges { node { id } } } }`, nil)
					assertSameIDs(t, collectIDs(resp.Data), []string{string(a.Tenant.ID), string(b.Tenant.ID)})
				})
				for _, w := range []*world{a, b} {
					for _, r := range w.rows() {
						t.Run("node "+w.Marker+" "+r.Type, func(t *testing.T) {
							resp := h.post(admin, `query($id: ID!) { node(id: $id) { ...all } }`+nodeFields, map[string]any{"id": r.ID})
							var got struct{ Node map[string]any }
							resp.decode(t, &got)
							if got.Node == nil || got.Node["id"] != r.ID {
								t.Fatalf("admin cannot see %s %s: %s", r.Type, r.ID, resp.Raw)
							}
						})
					}
				}
				t.Run("nodes", func(t *testing.T) {
					ids := append(rowIDs(a.rows()), rowIDs(b.rows())...)
					resp := h.post(admin, `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": ids})
					var got struct{ Nodes []map[string]any }
					resp.decode(t, &got)
					for i, n := range got.Nodes {
						if n == nil || n["id"] != ids[i] {
							t.Errorf("nodes[%d] = %v, want %s", i, n, ids[i])
						}
					}
				})
				t.Run("nested edges", func(t *testing.T) {
					resp := h.post(admin, nestedQuery, nil)
					if len(resp.Errors) > 0 {
						t.Fatalf("errors: %s", resp.Raw)
					}
					got := collectIDs(resp.Data)
					for _, w := range []*world{a, b} {
						for _, id := range []string{string(w.Flows[0].ID), string(w.Config.ID), string(w.APIKeys[0].ID), string(w.Document.ID), string(w.Membership.ID)} {
							if !slices.Contains(got, id) {
								t.Errorf("admin does not reach %s of %s", id, w.Marker)
							}
						}
					}
				})
			})
		})
	}
}

// TestEdgeFiltersAreNotExposed: has<Edge>With filters are SQL sub-queries that skip the
// target's interceptor, so no where-input may offer them.
func TestEdgeFiltersAreNotExposed(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			a := f.world("alpha", "subject-alpha")
			tok := h.token(a.Subject, auth.RoleProvider, auth.RoleCustomer)

			t.Run("introspection", func(t *testing.T) {
				resp := h.post(tok, `{ __schema { types { name kind inputFields { name } } } }`, nil)
				var got struct {
					Schema struct {
						Types []struct {
							Name        string
							Kind        string
							InputFields []struct{ Name string }
						}
					} `json:"__schema"`
				}
				resp.decode(t, &got)
				var whereInputs int
				for _, typ := range got.Schema.Types {
					if typ.Kind != "INPUT_OBJECT" || !strings.HasSuffix(typ.Name, "WhereInput") {
						continue
					}
					whereInputs++
					if len(typ.InputFields) == 0 {
						t.Errorf("%s has no fields", typ.Name)
					}
					for _, fld := range typ.InputFields {
						if strings.HasPrefix(fld.Name, "has") {
							t.Errorf("%s.%s is an edge filter", typ.Name, fld.Name)
						}
					}
				}
				// One per entity: 14 types.
				if whereInputs < 14 {
					t.Errorf("found %d where-inputs, want 14", whereInputs)
				}
			})
			for _, c := range []struct{ name, query string }{
				{"hasPlansWith", `{ agents(where: {hasPlansWith: {name: "x"}}) { edges { node { id } } } }`},
				{"hasFlows", `{ agents(where: {hasFlows: true}) { edges { node { id } } } }`},
				{"hasConfigWith", `{ subscriptions(where: {hasConfigWith: {systemPromptContains: "secret"}}) { edges { node { id } } } }`},
				{"hasTenantWith", `{ agents(where: {hasTenantWith: {nameContains: "a"}}) { edges { node { id } } } }`},
				{"hasSubscriptionWith", `{ agentConfigs(where: {hasSubscriptionWith: {status: active}}) { edges { node { id } } } }`},
				{"hasDocumentsWith", `{ agentConfigs(where: {hasDocumentsWith: {filenameContains: "a"}}) { edges { node { id } } } }`},
			} {
				t.Run("query "+c.name, func(t *testing.T) {
					resp := h.post(tok, c.query, nil)
					if resp.hasData() || len(resp.Errors) == 0 || resp.Errors[0].code() != "GRAPHQL_VALIDATION_FAILED" {
						t.Fatalf("want GRAPHQL_VALIDATION_FAILED and no data, got %s", resp.Raw)
					}
					if n := h.graphStmts.Load(); n != 0 {
						t.Errorf("%d statements ran for an invalid query", n)
					}
				})
			}
		})
	}
}

// TestCrossTenantVisibility: provider P sells an agent that buyer C subscribes to.
func TestCrossTenantVisibility(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			p := f.tenant("papa", "subject-papa", membership.RoleOwner)
			products := f.agents(p.Tenant, "papa", 2, 1, 1)
			sold, unsold := products[0], products[1]
			c := f.tenant("charlie", "subject-charlie", membership.RoleOwner)
			buy := f.subscribe(c, sold, "charlie", 1)
			provider := h.token(p.Subject, auth.RoleProvider)
			customer := h.token(c.Subject, auth.RoleCustomer)

			t.Run("provider sees the subscription and the buyer's name", func(t *testing.T) {
				resp := h.post(provider, `{ subscriptions { edges { node { id tenant { id name } plan { id } agent { id } } } } }`, nil)
				var got struct {
					Subscriptions struct {
						Edges []struct {
							Node struct {
								ID     string
								Tenant struct{ ID, Name string }
							}
						}
					}
				}
				resp.decode(t, &got)
				if len(got.Subscriptions.Edges) != 1 || got.Subscriptions.Edges[0].Node.ID != string(buy.Subscription.ID) {
					t.Fatalf("provider's subscriptions: %s", resp.Raw)
				}
				if n := got.Subscriptions.Edges[0].Node.Tenant; n.ID != string(c.Tenant.ID) || n.Name != c.Tenant.Name {
					t.Errorf("buyer tenant = %+v, want %s", n, c.Tenant.Name)
				}
			})
			t.Run("provider does not see the buyer's config, keys, documents, project, members", func(t *testing.T) {
				resp := h.post(provider, `{
				  subscriptions { edges { node { id config { id systemPrompt apiKeys { id } documents { id } } project { id name }
				    tenant { name projects { id } memberships { id email } subscriptions { id } } } } }
				  agentConfigs { edges { node { id systemPrompt } } }
				  apiKeys { edges { node { id name } } }
				}`, nil)
				if len(resp.Errors) > 0 {
					t.Fatalf("errors: %s", resp.Raw)
				}
				got := collectIDs(resp.Data)
				assertSameIDs(t, got, []string{string(buy.Subscription.ID)})
				if strings.Contains(resp.Raw, "secret system prompt") || strings.Contains(resp.Raw, "charlie@") {
					t.Errorf("buyer's private data leaked: %s", resp.Raw)
				}
			})
			for _, r := range []row{
				{"AgentConfig", string(buy.Config.ID)},
				{"APIKey", string(buy.APIKeys[0].ID)},
				{"Document", string(buy.Document.ID)},
				{"Project", string(c.Project.ID)},
				{"Membership", string(c.Membership.ID)},
				{"UsageReport", string(buy.UsageReport.ID)},
			} {
				t.Run("provider node of buyer's "+r.Type, func(t *testing.T) {
					resp := h.post(provider, `query($id: ID!) { node(id: $id) { ...all } }`+nodeFields, map[string]any{"id": r.ID})
					assertNull(t, resp, "node")
					if strings.Contains(resp.Raw, "charlie") {
						t.Errorf("buyer's data leaked: %s", resp.Raw)
					}
				})
			}

			t.Run("buyer sees the agent and its plans but not its flows", func(t *testing.T) {
				resp := h.post(customer, `{ subscriptions { edges { node { agent { id name plans { id name } flows { id checksum runtimeError } } } } } }`, nil)
				var got struct {
					Subscriptions struct {
						Edges []struct {
							Node struct {
								Agent struct {
									ID, Name string
									Plans    []struct{ ID string }
									Flows    []struct{ ID string }
								}
							}
						}
					}
				}
				resp.decode(t, &got)
				if len(got.Subscriptions.Edges) != 1 {
					t.Fatalf("buyer's subscriptions: %s", resp.Raw)
				}
				ag := got.Subscriptions.Edges[0].Node.Agent
				if ag.ID != string(sold.Agent.ID) || ag.Name != sold.Agent.Name {
					t.Errorf("agent = %s %q, want %s", ag.ID, ag.Name, sold.Agent.ID)
				}
				if len(ag.Plans) != 1 || ag.Plans[0].ID != string(sold.Plans[0].ID) {
					t.Errorf("plans = %v, want %s", ag.Plans, sold.Plans[0].ID)
				}
				if len(ag.Flows) != 0 || strings.Contains(resp.Raw, "flow internals") {
					t.Errorf("buyer sees the provider's flows: %s", resp.Raw)
				}
			})
			for _, c := range []struct {
				name  string
				query string
				want  []string
			}{
				{"agents", `{ agents { edges { node { id } } } }`, []string{string(sold.Agent.ID)}},
				{"plans", `{ plans { edges { node { id } } } }`, []string{string(sold.Plans[0].ID)}},
				{"agentConfigs", `{ agentConfigs { edges { node { id } } } }`, []string{string(buy.Config.ID)}},
			} {
				t.Run("buyer connection "+c.name, func(t *testing.T) {
					resp := h.post(customer, c.query, nil)
					if len(resp.Errors) > 0 {
						t.Fatalf("errors: %s", resp.Raw)
					}
					assertSameIDs(t, collectIDs(resp.Data), c.want)
				})
			}
			for _, r := range []row{
				{"Flow", string(sold.Flows[0].ID)},
				{"Agent", string(unsold.Agent.ID)},
				{"Plan", string(unsold.Plans[0].ID)},
				{"Project", string(p.Project.ID)},
				{"Membership", string(p.Membership.ID)},
			} {
				t.Run("buyer node of provider's "+r.Type, func(t *testing.T) {
					resp := h.post(customer, `query($id: ID!) { node(id: $id) { ...all } }`+nodeFields, map[string]any{"id": r.ID})
					assertNull(t, resp, "node")
					if strings.Contains(resp.Raw, "papa") {
						t.Errorf("provider's data leaked: %s", resp.Raw)
					}
				})
			}
			// A row the viewer may see must not point through a non-null edge at a row it may
			// not see: the field then fails and nulls the whole node (and, up the non-null
			// chain, the whole list). Agent.tenant is Tenant!, so a buyer must be able to name
			// the seller of what it bought.
			for _, c := range []struct {
				name, token, query, want string
			}{
				{"buyer: subscription > agent > tenant", customer, `{ subscriptions { edges { node { id agent { name tenant { name } } plan { name agent { name } } tenant { name } } } } }`, p.Tenant.Name},
				{"buyer: agents > tenant", customer, `{ agents { edges { node { id tenant { name } } } } }`, p.Tenant.Name},
				{"buyer: plans > agent > tenant", customer, `{ plans { edges { node { id agent { tenant { name } } } } } }`, p.Tenant.Name},
				{"buyer: keys > config > subscription > agent", customer, `{ apiKeys { edges { node { id config { subscription { agent { name } plan { name } tenant { name } } } } } } }`, sold.Agent.Name},
				{"provider: subscription > tenant, agent, plan", provider, `{ subscriptions { edges { node { id tenant { name } agent { name tenant { name } } plan { name } } } } }`, c.Tenant.Name},
			} {
				t.Run("non-null edges resolve: "+c.name, func(t *testing.T) {
					resp := h.post(c.token, c.query, nil)
					if len(resp.Errors) > 0 {
						t.Fatalf("a visible row has an invisible non-null edge: %s", resp.Raw)
					}
					if !strings.Contains(resp.Raw, c.want) {
						t.Errorf("%q not in %s", c.want, resp.Raw)
					}
				})
			}
			t.Run("buyer sees nothing of the seller beyond what it bought", func(t *testing.T) {
				resp := h.post(customer, `{ agents { edges { node { id tenant { id name
				  memberships { id email } projects { id name } subscriptions { id } agents { id flows { id } plans { id } } } } } } }`, nil)
				if len(resp.Errors) > 0 {
					t.Fatalf("errors: %s", resp.Raw)
				}
				assertSameIDs(t, collectIDs(resp.Data), []string{
					// tenant.subscriptions are the seller's own purchases: none.
					string(sold.Agent.ID), string(p.Tenant.ID), string(sold.Plans[0].ID),
				})
				if strings.Contains(resp.Raw, "papa@") || strings.Contains(resp.Raw, "Project papa") {
					t.Errorf("seller's members or projects leaked: %s", resp.Raw)
				}
			})
			t.Run("provider sees its own flows and both agents", func(t *testing.T) {
				resp := h.post(provider, `{ agents { edges { node { id flows { id } } } } }`, nil)
				if len(resp.Errors) > 0 {
					t.Fatalf("errors: %s", resp.Raw)
				}
				assertSameIDs(t, collectIDs(resp.Data), []string{
					string(sold.Agent.ID), string(sold.Flows[0].ID), string(unsold.Agent.ID), string(unsold.Flows[0].ID),
				})
			})
		})
	}
}

func rowIDs(rows []row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

// assertNull checks that data.<field> is null.
func assertNull(t *testing.T, resp gqlResponse, field string) {
	t.Helper()
	var got map[string]json.RawMessage
	if err := json.Unmarshal(resp.Data, &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, resp.Raw)
	}
	if v := strings.TrimSpace(string(got[field])); v != "null" {
		t.Errorf("%s = %s, want null", field, v)
	}
}

// assertNoLeak checks that nothing of w appears in the response: not its ids in data, not
// its marker (in every text field of its rows) anywhere.
func assertNoLeak(t *testing.T, resp gqlResponse, w *world) {
	t.Helper()
	ids := w.ids()
	for _, id := range collectIDs(resp.Data) {
		if ids[id] {
			t.Errorf("data contains %s of tenant %s", id, w.Marker)
		}
	}
	if strings.Contains(resp.Raw, w.Marker) {
		t.Errorf("response contains data of tenant %s: %s", w.Marker, resp.Raw)
	}
}

func assertSameIDs(t *testing.T, got, want []string) {
	t.Helper()
	g := map[string]bool{}
	for _, id := range got {
		g[id] = true
	}
	w := map[string]bool{}
	for _, id := range want {
		w[id] = true
	}
	if !maps.Equal(g, w) {
		gs, ws := slices.Sorted(maps.Keys(g)), slices.Sorted(maps.Keys(w))
		t.Errorf("ids = %v, want %v", gs, ws)
	}
}
