package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/testsupport/fixtures"
)

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
	fx := fixtures.Dir(t, "langflow")
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			url := ""
			if driver == database.DriverPostgres {
				dsn, drop, err := dbtest.CreatePostgresDatabase(context.Background(), dbtest.PostgresURL(t), "t")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(drop)
				url = dsn
			}
			journeys(t, fx, url)
		})
	}
}

func journeys(t *testing.T, fx, databaseURL string) {
	base, creds, _, _ := startDevOn(t, databaseURL)
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

	// The buyer attaches a document and sees the call in its usage and recent calls.
	if out := upload(t, base, cust, cfg, "faq.md", "text/markdown", []byte("# FAQ\nOrders ship in 2 days.")); out["errors"] != nil {
		t.Fatalf("upload: %v", out)
	}
	var us struct {
		Usage []struct {
			Requests int
			P95Ms    float64
		}
		RecentCalls []struct{ Status int }
		Quota       struct{ Requests, RequestsLimit int }
	}
	var subs struct {
		Subscriptions struct {
			Edges []struct {
				Node struct {
					ID     string
					Config struct{ ID string }
				}
			}
		}
	}
	gqlOK(t, base, cust, `{ subscriptions { edges { node { id config { id } } } } }`, nil, &subs)
	var subID string
	for _, e := range subs.Subscriptions.Edges {
		if e.Node.Config.ID == cfg {
			subID = e.Node.ID
		}
	}
	gqlOK(t, base, cust, `query($c: ID!, $s: ID!) { usage(filter: {configID: $c}) { requests p95Ms } recentCalls(filter: {configID: $c}) { status } quota(subscriptionID: $s) { requests requestsLimit } }`,
		map[string]any{"c": cfg, "s": subID}, &us)
	if len(us.Usage) != 1 || us.Usage[0].Requests != 1 || len(us.RecentCalls) != 1 || us.RecentCalls[0].Status != 200 ||
		us.Quota.Requests != 1 || us.Quota.RequestsLimit != 1000 {
		t.Fatalf("the buyer's usage after one call: %+v", us)
	}
}

// upload posts a GraphQL multipart request (the GraphQL multipart request spec) with one file.
func upload(t *testing.T, base, token, configID, filename, contentType string, content []byte) map[string]any {
	t.Helper()
	var buf strings.Builder
	mw := multipart.NewWriter(&buf)
	ops, _ := json.Marshal(map[string]any{
		"query":     `mutation($c: ID!, $f: Upload!) { uploadDocument(configID: $c, file: $f) { id filename contentType size sha256 downloadURL } }`,
		"variables": map[string]any{"c": configID, "f": nil},
	})
	_ = mw.WriteField("operations", string(ops))
	_ = mw.WriteField("map", `{"0": ["variables.f"]}`)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="0"; filename=%q`, filename))
	h.Set("Content-Type", contentType)
	part, _ := mw.CreatePart(h)
	_, _ = part.Write(content)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", strings.NewReader(buf.String()))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// Documents: a buyer uploads with the multipart spec, the file comes back as an
// attachment with sniffing off; disallowed types and oversize files are refused with
// BAD_USER_INPUT; the provider cannot download the buyer's document. The embed snippet
// carries a fresh publishable key that works from the config's origins.
func TestDocumentsAndEmbedSnippet(t *testing.T) {
	base, creds, _, _ := startDev(t)
	cust, prov := creds["customer token"], creds["provider token"]
	cfg := creds["config id"]

	pdf := []byte("%PDF-1.4 fake but fine")
	out := upload(t, base, cust, cfg, "../../etc/handbook.pdf", "application/pdf", pdf)
	doc, _ := out["data"].(map[string]any)["uploadDocument"].(map[string]any)
	if doc == nil || doc["filename"] != "handbook.pdf" || doc["size"] != float64(len(pdf)) {
		t.Fatalf("upload: %v", out)
	}
	for _, c := range []struct {
		name, file, ctype string
		body              []byte
	}{
		{"html", "x.html", "text/html", []byte("<script>alert(1)</script>")},
		{"svg", "x.svg", "image/svg+xml", []byte("<svg onload=alert(1)>")},
		{"empty", "x.txt", "text/plain", nil},
		{"oversize", "big.txt", "text/plain", make([]byte, 10<<20+1)},
	} {
		out := upload(t, base, cust, cfg, c.file, c.ctype, c.body)
		errs, _ := out["errors"].([]any)
		if len(errs) == 0 {
			t.Errorf("%s upload accepted: %v", c.name, out)
			continue
		}
		if code := errs[0].(map[string]any)["extensions"].(map[string]any)["code"]; c.name != "oversize" && code != "BAD_USER_INPUT" {
			t.Errorf("%s upload: code %v", c.name, code)
		}
	}

	get := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+doc["downloadURL"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get(cust)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != string(pdf) ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("download: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp := get(prov); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the provider downloaded the buyer's document: %d", resp.StatusCode)
	}
	if resp := get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous download: %d", resp.StatusCode)
	}

	var es struct {
		EmbedSnippet struct{ HTML, PublishableKey string }
	}
	gqlOK(t, base, cust, `mutation($c: ID!) { embedSnippet(configID: $c) { html publishableKey } }`, map[string]any{"c": cfg}, &es)
	if !strings.HasPrefix(es.EmbedSnippet.PublishableKey, "ar_pk_live_") || !strings.Contains(es.EmbedSnippet.HTML, base+"/widget/loader.js") ||
		!strings.Contains(es.EmbedSnippet.HTML, es.EmbedSnippet.PublishableKey) || !strings.Contains(es.EmbedSnippet.HTML, cfg) {
		t.Fatalf("snippet: %+v", es)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/agent-gateway/invoke/", strings.NewReader(`{"input":"hi"}`))
	req.Header.Set("Authorization", "Bearer "+es.EmbedSnippet.PublishableKey)
	req.Header.Set("Origin", base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the snippet's key from the dev origin: %d", resp.StatusCode)
	}
}
