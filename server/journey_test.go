package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir finds ../shared/fixtures/langflow beside the repository. Tests skip when
// it is absent, unless CI=true, where its absence is a failure.
func fixturesDir(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for ; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
	}
	p := filepath.Join(dir, "..", "shared", "fixtures", "langflow")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the Langflow fixtures are missing: %v", err)
		}
		t.Skip("../shared/fixtures/langflow not present")
	}
	return p
}

// gqlOK posts a query and fails the test on errors.
func gqlOK(t *testing.T, base, token, query string, vars map[string]any, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage `json:"data"`
		Errors []any           `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("%s\nerrors: %v", query, r.Errors)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			t.Fatal(err)
		}
	}
}

// The provider journey and the buyer journey, end to end through the API and the
// gateway of a running dev server (the built-in echo runtime plays Langflow).
func TestProviderAndBuyerJourneys(t *testing.T) {
	fx := fixturesDir(t)
	base, creds, _, _ := startDev(t)
	prov, admin, cust := creds["provider token"], creds["admin token"], creds["customer token"]

	var me struct {
		Viewer struct {
			Memberships []struct{ Tenant struct{ ID string } }
		}
	}
	gqlOK(t, base, prov, `{ viewer { memberships { tenant { id } } } }`, nil, &me)
	tenant := me.Viewer.Memberships[0].Tenant.ID

	var ag struct{ CreateAgent struct{ ID string } }
	gqlOK(t, base, prov, `mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "Support bot", slug: "support-bot", category: "support"}) { id } }`,
		map[string]any{"t": tenant}, &ag)
	agent := ag.CreateAgent.ID

	files, _ := filepath.Glob(filepath.Join(fx, "*.json"))
	others, _ := filepath.Glob(filepath.Join(fx, "other", "*.json"))
	if len(files) == 0 || len(others) == 0 {
		t.Fatal("no fixture flows found")
	}
	var lastFlow string
	for _, f := range append(files, others...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var imp struct {
			ImportFlow struct {
				Flow *struct {
					ID      string
					Version int
				}
				Report struct {
					Valid  bool
					Errors []struct{ Code string }
				}
			}
		}
		gqlOK(t, base, prov, `mutation($a: ID!, $d: String!) { importFlow(agentID: $a, definition: $d) { flow { id version } report { valid errors { code } } } }`,
			map[string]any{"a": agent, "d": string(raw)}, &imp)
		zeroX := filepath.Base(filepath.Dir(f)) == "other"
		switch {
		case zeroX && (imp.ImportFlow.Report.Valid || imp.ImportFlow.Flow != nil ||
			len(imp.ImportFlow.Report.Errors) == 0 || imp.ImportFlow.Report.Errors[0].Code != "LANGFLOW_0X_EXPORT"):
			t.Errorf("%s: a Langflow 0.x export must be rejected with LANGFLOW_0X_EXPORT: %+v", filepath.Base(f), imp.ImportFlow)
		case !zeroX && (!imp.ImportFlow.Report.Valid || imp.ImportFlow.Flow == nil):
			t.Errorf("%s: a Langflow 1.x starter project must import: %+v", filepath.Base(f), imp.ImportFlow.Report)
		case !zeroX:
			lastFlow = imp.ImportFlow.Flow.ID
		}
	}

	var pv struct {
		ProvisionFlow struct{ RuntimeStatus string }
	}
	gqlOK(t, base, prov, `mutation($f: ID!) { provisionFlow(id: $f) { runtimeStatus } }`, map[string]any{"f": lastFlow}, &pv)
	if pv.ProvisionFlow.RuntimeStatus != "provisioned" {
		t.Fatalf("provision: %+v", pv)
	}
	var pl struct{ CreatePlan struct{ ID string } }
	gqlOK(t, base, prov, `mutation($a: ID!) { createPlan(agentID: $a, input: {name: "Team", priceAmount: 9900, currency: "EUR", requestsPerMonth: 1000, rpmPerKey: 120, tweakableFields: ["temperature"]}) { id } }`,
		map[string]any{"a": agent}, &pl)
	var pub struct{ PublishAgent struct{ Status string } }
	gqlOK(t, base, prov, `mutation($a: ID!) { publishAgent(id: $a) { status } }`, map[string]any{"a": agent}, &pub)
	if pub.PublishAgent.Status != "published" {
		t.Fatalf("publish: %+v", pub)
	}

	// Buyer: the admin opens a subscription for the demo buyer; the buyer configures it,
	// mints a key and calls the agent through the gateway.
	var cm struct {
		Viewer struct {
			Memberships []struct{ Tenant struct{ ID string } }
		}
	}
	gqlOK(t, base, cust, `{ viewer { memberships { tenant { id } } } }`, nil, &cm)
	var cs struct {
		CreateSubscription struct{ Config struct{ ID string } }
	}
	gqlOK(t, base, admin, `mutation($t: ID!, $p: ID!) { createSubscription(input: {tenantID: $t, planID: $p}) { config { id } } }`,
		map[string]any{"t": cm.Viewer.Memberships[0].Tenant.ID, "p": pl.CreatePlan.ID}, &cs)
	cfg := cs.CreateSubscription.Config.ID
	gqlOK(t, base, cust, `mutation($c: ID!) { updateAgentConfig(id: $c, input: {displayName: "Sam", systemPrompt: "You are Sam from support.", widgetTheme: dark, widgetPosition: "bottom-left", allowedOrigins: ["https://shop.example.com"]}) { id } }`,
		map[string]any{"c": cfg}, nil)
	var ck struct{ CreateKey struct{ Secret string } }
	gqlOK(t, base, cust, `mutation($c: ID!) { createKey(input: {configID: $c, name: "backend"}) { secret } }`, map[string]any{"c": cfg}, &ck)

	req, _ := http.NewRequest(http.MethodPost, base+"/api/agent-gateway/invoke/", strings.NewReader(`{"input":"where is my order?"}`))
	req.Header.Set("Authorization", "Bearer "+ck.CreateKey.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var inv struct{ Output string }
	_ = json.NewDecoder(resp.Body).Decode(&inv)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(inv.Output, "You are Sam from support.") || !strings.Contains(inv.Output, "where is my order?") {
		t.Fatalf("invoke through the new config: %d %q", resp.StatusCode, inv.Output)
	}
}
