package graph_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// Every mutation and report that takes an id, called by another tenant's provider and
// customer with tenant A's ids: refused (NOT_FOUND, or FORBIDDEN for a role the caller
// lacks) with no data, and A's rows unchanged. Reports filtered by A's ids return nothing.
func TestCrossTenantIDsInEveryOperation(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			aProv := f.tenant("xa-prov", "xa-prov-user", membership.RoleOwner)
			aBuy := f.tenant("xa-buy", "xa-buy-user", membership.RoleOwner)
			prods := f.agents(aProv.Tenant, "xa", 1, 1, 1)
			buy := f.subscribe(aBuy, prods[0], "xa", 1)
			b := f.tenant("xb", "xb-user", membership.RoleOwner)
			bProv := h.token(b.Subject, auth.RoleProvider)
			bCust := h.token(b.Subject, auth.RoleCustomer)

			ids := map[string]any{
				"agent": prods[0].Agent.ID, "plan": prods[0].Plans[0].ID, "flow": prods[0].Flows[0].ID,
				"config": buy.Config.ID, "doc": buy.Document.ID, "key": buy.APIKeys[0].ID, "sub": buy.Subscription.ID,
				"member": aBuy.Membership.ID,
			}
			refused := []struct{ name, token, query string }{
				{"updatePlan", bProv, `mutation($plan: ID!) { updatePlan(id: $plan, input: {name: "pwned"}) { id } }`},
				{"archivePlan", bProv, `mutation($plan: ID!) { archivePlan(id: $plan) { id } }`},
				{"publishAgent", bProv, `mutation($agent: ID!) { publishAgent(id: $agent) { id } }`},
				{"unpublishAgent", bProv, `mutation($agent: ID!) { unpublishAgent(id: $agent) { id } }`},
				{"importFlow", bProv, `mutation($agent: ID!) { importFlow(agentID: $agent, definition: "{}") { report { valid } } }`},
				{"provisionFlow", bProv, `mutation($flow: ID!) { provisionFlow(id: $flow) { id } }`},
				{"deprovisionFlow", bProv, `mutation($flow: ID!) { deprovisionFlow(id: $flow) { id } }`},
				{"deleteDocument", bCust, `mutation($doc: ID!) { deleteDocument(id: $doc) }`},
				{"embedSnippet", bCust, `mutation($config: ID!) { embedSnippet(configID: $config) { html } }`},
				{"quota", bCust, `query($sub: ID!) { quota(subscriptionID: $sub) { requests } }`},
				{"removeMember", bCust, `mutation($member: ID!) { removeMember(id: $member) }`},
				{"addMember", bCust, `mutation { addMember(input: {tenantID: "` + string(aBuy.Tenant.ID) + `", subject: "intruder"}) { id } }`},
				{"createKey as provider", bProv, `mutation($config: ID!) { createKey(input: {configID: $config, name: "x"}) { secret } }`},
			}
			for _, c := range refused {
				r := h.post(c.token, c.query, ids)
				if len(r.Errors) == 0 || r.hasData() {
					t.Errorf("%s with another tenant's id: %s", c.name, r.Raw)
					continue
				}
				if code := r.Errors[0].code(); code != "NOT_FOUND" && code != "FORBIDDEN" {
					t.Errorf("%s: code %s, want NOT_FOUND or FORBIDDEN: %s", c.name, code, r.Raw)
				}
			}
			empty := []struct{ name, token, query string }{
				{"usage by A's config", bCust, `query($config: ID!) { usage(filter: {configID: $config}) { requests } }`},
				{"usage by A's tenant", bCust, `{ usage(filter: {tenantID: "` + string(aBuy.Tenant.ID) + `"}) { requests } }`},
				{"recent calls of A's config", bCust, `query($config: ID!) { recentCalls(filter: {configID: $config}) { requestID } }`},
				{"usage as another provider", bProv, `query($agent: ID!) { usage(filter: {agentID: $agent}, groupBy: AGENT) { requests } }`},
			}
			for _, c := range empty {
				r := h.post(c.token, c.query, ids)
				if len(r.Errors) > 0 || r.hasData() && strings.Contains(r.Raw, "requests\":") && !strings.Contains(r.Raw, "[]") {
					t.Errorf("%s: %s", c.name, r.Raw)
				}
			}
			// Nothing of A's changed.
			if p := h.client.Plan.GetX(f.ctx, prods[0].Plans[0].ID); p.Name == "pwned" || p.Status != "active" {
				t.Errorf("A's plan changed: %+v", p)
			}
			if n := h.client.Document.Query().CountX(f.ctx); n != 1 {
				t.Errorf("documents: %d, want 1", n)
			}
			if n := h.client.Membership.Query().CountX(f.ctx); n != 3 {
				t.Errorf("memberships: %d, want 3", n)
			}
			if n := h.client.APIKey.Query().CountX(f.ctx); n != 1 {
				t.Errorf("keys: %d, want 1 (embedSnippet or createKey minted one)", n)
			}
		})
	}
}

// GraphQL over HTTP: application/graphql-response+json is honoured with the spec's
// status codes, application/json still works, and viewer.links is empty without Waldur.
func TestGraphQLOverHTTPAndLinks(t *testing.T) {
	h := newHarness(t, dbtest.Drivers(t)[0])
	tok := h.token("http-user", auth.RoleCustomer)
	send := func(accept, query string) (*http.Response, map[string]any) {
		body, _ := json.Marshal(map[string]any{"query": query})
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", accept)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	resp, out := send("application/graphql-response+json", `{ viewer { subject links { marketplace billing organization } } }`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/graphql-response+json") {
		t.Fatalf("graphql-response+json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	links := out["data"].(map[string]any)["viewer"].(map[string]any)["links"].(map[string]any)
	if links["marketplace"] != nil || links["billing"] != nil {
		t.Fatalf("links without WALDUR_URL: %v", links)
	}
	if resp, _ := send("application/graphql-response+json", `{ viewer { nope } }`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid query with graphql-response+json: %d", resp.StatusCode)
	}
	if resp, _ := send("application/json", `{ viewer { subject } }`); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("application/json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
