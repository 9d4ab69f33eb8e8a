package graph_test

import (
	"fmt"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// Every list the portal shows issues the same number of statements whatever the number
// of rows: configs, keys, plans, tenants, documents, usage, recent calls, and the
// dashboard (subscriptions with configs and keys, and 30 days of usage).
func TestStatementCountOfEveryList(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			p := f.tenant("lp", "subject-lp", membership.RoleOwner)
			c := f.tenant("lc", "subject-lc", membership.RoleOwner)
			provider := h.token(p.Subject, auth.RoleProvider)
			customer := h.token(c.Subject, auth.RoleCustomer)
			admin := h.token("lists-admin", auth.RolePlatformAdmin)
			tenant := c.Tenant.ID

			cases := []struct {
				name, token, query string
				want               int
			}{
				{"configs with documents", customer, `{ agentConfigs { edges { node { displayName documents { filename downloadURL } } } } }`, 2},
				{"keys", customer, `{ apiKeys { totalCount edges { node { name prefix last4 lastUsedAt } } } }`, 2},
				{"plans", provider, `{ plans { edges { node { name priceAmount agent { name } } } } }`, 2},
				{"tenants (admin)", admin, `{ tenants { edges { node { name slug } } } }`, 1},
				{"usage by day", customer, fmt.Sprintf(`{ usage(filter: {tenantID: %q}, groupBy: DAY) { day requests p95Ms } }`, tenant), 1},
				{"usage by key", customer, fmt.Sprintf(`{ usage(filter: {tenantID: %q}, groupBy: KEY) { keyID requests } }`, tenant), 1},
				// Recent first reads the per-day counts to narrow the time window (see report.Recent).
				{"recent calls", customer, `{ recentCalls(first: 100) { requestID status elapsedMs } }`, 2},
				{"dashboard", customer, fmt.Sprintf(`{ subscriptions { edges { node { status currentPeriodEnd plan { name requestsPerMonth } config { displayName apiKeys { name last4 } } } } } usage(filter: {tenantID: %q}) { day requests errors inputTokens outputTokens p95Ms } }`, tenant), 5},
			}
			counts := make([][]int, len(cases))
			have := 0
			for _, n := range []int{1, 4, 12} {
				for _, pr := range f.agents(p.Tenant, "lp", n-have, 1, 1) {
					f.subscribe(c, pr, "lc", 2)
				}
				have = n
				for i, tc := range cases {
					resp := h.post(tc.token, tc.query, nil)
					if len(resp.Errors) > 0 || !resp.hasData() {
						t.Fatalf("%s: %s", tc.name, resp.Raw)
					}
					counts[i] = append(counts[i], int(h.graphStmts.Load()))
				}
			}
			for i, tc := range cases {
				t.Logf("%s: %s: statements for 1, 4, 12 subscriptions: %v", driver, tc.name, counts[i])
				for _, got := range counts[i] {
					if got != tc.want {
						t.Errorf("%s: %d statements, want %d for every size (%v)", tc.name, got, tc.want, counts[i])
						break
					}
				}
			}
		})
	}
}
