package graph_test

import (
	"encoding/json"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// TestStatementCount: a list with its edges costs the same few statements whatever the
// number of rows (eager loading through entgql's field collection, not one query per row:
// no N+1). The tenant filters are part of each statement's WHERE, not extra statements.
func TestStatementCount(t *testing.T) {
	const (
		agentsQuery = `{ agents(first: 100) { edges { node { id name plans { id name } flows { id version } } } } }`
		subsQuery   = `{ subscriptions { edges { node { plan { name } agent { name } config { displayName apiKeys { name } } } } } }`
	)
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			p := f.tenant("papa", "subject-papa", membership.RoleOwner)
			c := f.tenant("charlie", "subject-charlie", membership.RoleOwner)
			// A third tenant's rows must not change the counts either.
			x := f.tenant("xray", "subject-xray", membership.RoleOwner)
			for _, pr := range f.agents(x.Tenant, "xray", 3, 2, 2) {
				f.subscribe(x, pr, "xray", 2)
			}
			provider := h.token(p.Subject, auth.RoleProvider)
			customer := h.token(c.Subject, auth.RoleCustomer)

			cases := []struct {
				name, token, query string
				rows               func(data []byte) int
				// want is one statement per level of the tree: agents, plans, flows; and
				// subscriptions, plans, agents, configs, keys.
				want int
			}{
				{"provider agents with plans and flows", provider, agentsQuery, func(d []byte) int { return len(collectIDs(d)) }, 3},
				{"buyer subscriptions with plan, agent, config and keys", customer, subsQuery, nil, 5},
			}
			counts := make([][]int, len(cases))
			total := 0
			for _, n := range []int{1, 5, 25} {
				// Grow to n agents of P (2 plans, 2 flows each), each bought by C (2 keys).
				for _, pr := range f.agents(p.Tenant, "papa", n-total, 2, 2) {
					f.subscribe(c, pr, "charlie", 2)
				}
				total = n
				for i, tc := range cases {
					resp := h.post(tc.token, tc.query, nil)
					if len(resp.Errors) > 0 {
						t.Fatalf("%s: %s", tc.name, resp.Raw)
					}
					// Sanity: the whole tree came back (n agents + 2n plans + 2n flows).
					if tc.rows != nil {
						if got := tc.rows(resp.Data); got != 5*n {
							t.Fatalf("%s with %d agents: %d ids, want %d", tc.name, n, got, 5*n)
						}
					} else if got := countKey(resp.Data, "apiKeys"); got != n {
						t.Fatalf("%s with %d subscriptions: %d apiKeys lists: %s", tc.name, n, got, resp.Raw)
					}
					counts[i] = append(counts[i], int(h.graphStmts.Load()))
					if n == 1 {
						t.Logf("%s: %s: %d statements in all, with the membership lookup", driver, tc.name, h.counter.Count())
					}
				}
			}
			for i, tc := range cases {
				t.Logf("%s: %s: statements for 1, 5, 25 rows: %v", driver, tc.name, counts[i])
				for _, c := range counts[i] {
					if c != tc.want {
						t.Errorf("%s: statements for 1, 5, 25 rows = %v, want %d each", tc.name, counts[i], tc.want)
						break
					}
				}
			}
		})
	}
}

// countKey counts the occurrences of key as an object member anywhere in data.
func countKey(data []byte, key string) int {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return -1
	}
	n := 0
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == key {
					n++
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return n
}
