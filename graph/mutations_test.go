package graph_test

import (
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// The provider journey through the API: agent, plan, the publishing rules, and every
// failure a client can cause answered with its code (and field path for bad input).
func TestProviderMutations(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			p := f.tenant("prov-m", "prov-m-user", membership.RoleOwner)
			other := f.tenant("other-m", "other-m-user", membership.RoleOwner)
			prov := h.token(p.Subject, auth.RoleProvider)
			otherTok := h.token(other.Subject, auth.RoleProvider)

			var created struct {
				CreateAgent struct{ ID, Status string }
			}
			h.post(prov, `mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "Helper", slug: "helper", category: "support"}) { id status } }`,
				map[string]any{"t": p.Tenant.ID}).decode(t, &created)
			agentID := created.CreateAgent.ID
			if created.CreateAgent.Status != "draft" || !strings.HasPrefix(agentID, "agt_") {
				t.Fatalf("created agent: %+v", created)
			}

			expectCode := func(name, token, query string, vars map[string]any, code, field string) {
				t.Helper()
				r := h.post(token, query, vars)
				if len(r.Errors) == 0 || r.Errors[0].code() != code {
					t.Fatalf("%s: want %s, got %s", name, code, r.Raw)
				}
				if field != "" && r.Errors[0].Extensions["field"] != field {
					t.Fatalf("%s: want field %q, got %s", name, field, r.Raw)
				}
				if r.hasData() {
					t.Fatalf("%s: refused mutation returned data: %s", name, r.Raw)
				}
			}
			vars := map[string]any{"a": agentID, "t": p.Tenant.ID}
			expectCode("duplicate slug", prov, `mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "Again", slug: "helper"}) { id } }`, vars, "CONFLICT", "")
			expectCode("bad slug", prov, `mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "X", slug: "Not A Slug"}) { id } }`, vars, "BAD_USER_INPUT", "input.slug")
			expectCode("publish without flow or plan", prov, `mutation($a: ID!) { publishAgent(id: $a) { id } }`, vars, "BAD_USER_INPUT", "")
			expectCode("customer creating an agent", h.token(p.Subject, auth.RoleCustomer),
				`mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "X", slug: "x"}) { id } }`, vars, "FORBIDDEN", "")
			// Another tenant's provider: cannot create in this tenant, nor touch its agent or
			// put a plan on it. The agent is simply not found for them.
			expectCode("agent in another tenant", otherTok, `mutation($t: ID!) { createAgent(tenantID: $t, input: {name: "X", slug: "x"}) { id } }`, vars, "FORBIDDEN", "")
			expectCode("update another tenant's agent", otherTok, `mutation($a: ID!) { updateAgent(id: $a, input: {name: "pwned"}) { id } }`, vars, "NOT_FOUND", "")
			expectCode("plan on another tenant's agent", otherTok, `mutation($a: ID!) { createPlan(agentID: $a, input: {name: "P"}) { id } }`, vars, "NOT_FOUND", "")
			expectCode("archive another tenant's agent", otherTok, `mutation($a: ID!) { archiveAgent(id: $a) { id } }`, vars, "NOT_FOUND", "")
			expectCode("bad currency", prov, `mutation($a: ID!) { createPlan(agentID: $a, input: {name: "P", currency: "eur"}) { id } }`, vars, "BAD_USER_INPUT", "input.currency")
			expectCode("code opened to buyers", prov, `mutation($a: ID!) { createPlan(agentID: $a, input: {name: "P", tweakableFields: ["Prompt-1.code"]}) { id } }`, vars, "BAD_USER_INPUT", "input.tweakableFields[0]")

			var plan struct {
				CreatePlan struct {
					ID, Name    string
					PriceAmount int
				}
			}
			h.post(prov, `mutation($a: ID!) { createPlan(agentID: $a, input: {name: "Pro", priceAmount: 4900, currency: "EUR", rpmPerKey: 30, tweakableFields: ["temperature"]}) { id name priceAmount } }`,
				vars).decode(t, &plan)
			if plan.CreatePlan.PriceAmount != 4900 {
				t.Fatalf("plan: %+v", plan)
			}
			// Still no provisioned flow: publishing is refused with a reason.
			r := h.post(prov, `mutation($a: ID!) { publishAgent(id: $a) { id } }`, vars)
			if len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, "flow") {
				t.Fatalf("publish without flow: %s", r.Raw)
			}
			// With a provisioned flow it publishes, and the other tenant still sees nothing.
			_, err := h.client.Flow.Create().SetTenantID(p.Tenant.ID).SetAgentID(pulid.ID(agentID)).SetVersion(1).
				SetDefinition([]byte(`{}`)).SetChecksum("c").SetRuntimeFlowID("rt-1").SetRuntimeStatus("provisioned").
				Save(f.ctx)
			f.check(err)
			var pub struct{ PublishAgent struct{ Status string } }
			h.post(prov, `mutation($a: ID!) { publishAgent(id: $a) { status } }`, vars).decode(t, &pub)
			if pub.PublishAgent.Status != "published" {
				t.Fatalf("publish: %+v", pub)
			}
			if r := h.post(otherTok, `{ agents { totalCount } }`, nil); !strings.Contains(r.Raw, `"totalCount":0`) {
				t.Fatalf("other provider sees agents: %s", r.Raw)
			}
		})
	}
}

// The buyer's side: config updates validated with field paths, keys created (secret
// shown once), listed without the secret, revoked; another tenant's config and keys are
// not found through ids in mutation inputs.
func TestBuyerMutations(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			prov := f.tenant("prov-b", "prov-b-user", membership.RoleOwner)
			prods := f.agents(prov.Tenant, "prov-b", 1, 1, 1)
			_, err := prods[0].Plans[0].Update().SetTweakableFields([]string{"temperature", "Prompt-1.template"}).Save(f.ctx)
			f.check(err)
			buyer := f.tenant("buyer-b", "buyer-b-user", membership.RoleOwner)
			rival := f.tenant("rival-b", "rival-b-user", membership.RoleOwner)
			mine := f.subscribe(buyer, prods[0], "buyer-b", 0)
			theirs := f.subscribe(rival, prods[0], "rival-b", 1)
			tok := h.token(buyer.Subject, auth.RoleCustomer)
			vars := map[string]any{"c": mine.Config.ID, "theirs": theirs.Config.ID, "theirKey": theirs.APIKeys[0].ID}

			var upd struct {
				UpdateAgentConfig struct {
					DisplayName    string
					AllowedOrigins []string
					Tweaks         map[string]any
				}
			}
			vars["tw"] = map[string]any{"temperature": 0.2, "Prompt-1": map[string]any{"template": "hi"}}
			h.post(tok, `mutation($c: ID!, $tw: Map) { updateAgentConfig(id: $c, input: {displayName: "Ava", allowedOrigins: ["https://shop.example.com", "https://*.example.org", "http://localhost:3000"], tweaks: $tw}) { displayName allowedOrigins tweaks } }`,
				vars).decode(t, &upd)
			if upd.UpdateAgentConfig.DisplayName != "Ava" || len(upd.UpdateAgentConfig.AllowedOrigins) != 3 {
				t.Fatalf("update: %+v", upd)
			}
			bad := []struct{ name, input, field string }{
				{"origin with path", `{allowedOrigins: ["https://shop.example.com/path"]}`, "input.allowedOrigins[0]"},
				{"origin wildcard in the middle", `{allowedOrigins: ["https://ok.example.com", "https://shop.*.com"]}`, "input.allowedOrigins[1]"},
				{"bare wildcard", `{allowedOrigins: ["*"]}`, "input.allowedOrigins[0]"},
				{"javascript scheme", `{appendAllowedOrigins: ["javascript:alert(1)"]}`, "input.appendAllowedOrigins[0]"},
				{"tweak not opened", `{tweaks: {max_tokens: 9000}}`, "input.tweaks.max_tokens"},
				{"code tweak", `{tweaks: $codeTweak}`, "input.tweaks.Prompt-1.code"},
				{"colour", `{widgetPrimaryColor: "red; background: url(x)"}`, "input.widgetPrimaryColor"},
				{"position", `{widgetPosition: "top-center"}`, "input.widgetPosition"},
			}
			for _, b := range bad {
				q := `mutation($c: ID!) { updateAgentConfig(id: $c, input: ` + b.input + `) { id } }`
				v := vars
				if strings.Contains(b.input, "$codeTweak") {
					q = `mutation($c: ID!, $codeTweak: Map) { updateAgentConfig(id: $c, input: ` + b.input + `) { id } }`
					v = map[string]any{"c": mine.Config.ID, "codeTweak": map[string]any{"Prompt-1": map[string]any{"code": "import os"}}}
				}
				r := h.post(tok, q, v)
				if len(r.Errors) == 0 || r.Errors[0].code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != b.field {
					t.Errorf("%s: want BAD_USER_INPUT at %s, got %s", b.name, b.field, r.Raw)
				}
			}
			// Nothing half-written: the refused updates left the config as it was.
			if got := h.client.AgentConfig.GetX(f.ctx, mine.Config.ID); got.DisplayName != "Ava" || len(got.AllowedOrigins) != 3 {
				t.Fatalf("config changed by refused updates: %+v", got)
			}

			var ck struct {
				CreateKey struct {
					Secret string
					Key    struct{ ID, Prefix, Last4, Kind string }
				}
			}
			h.post(tok, `mutation($c: ID!) { createKey(input: {configID: $c, name: "backend"}) { secret key { id prefix last4 kind } } }`, vars).decode(t, &ck)
			if !strings.HasPrefix(ck.CreateKey.Secret, apikey.PrefixSecret) || !strings.HasSuffix(ck.CreateKey.Secret, ck.CreateKey.Key.Last4) ||
				!strings.HasPrefix(ck.CreateKey.Secret, ck.CreateKey.Key.Prefix) {
				t.Fatalf("createKey: %+v", ck)
			}
			list := h.post(tok, `{ apiKeys { edges { node { id prefix last4 } } } }`, nil)
			if strings.Contains(list.Raw, ck.CreateKey.Secret) || !strings.Contains(list.Raw, ck.CreateKey.Key.ID) {
				t.Fatalf("key list: %s", list.Raw)
			}
			pk := h.post(tok, `mutation($c: ID!) { createKey(input: {configID: $c, name: "w", kind: publishable, scopes: ["invoke"]}) { secret } }`, vars)
			if len(pk.Errors) == 0 || pk.Errors[0].Extensions["field"] != "input.scopes[0]" {
				t.Fatalf("publishable key with invoke scope: %s", pk.Raw)
			}
			var rv struct{ RevokeKey struct{ RevokedAt *string } }
			h.post(tok, `mutation($k: ID!) { revokeKey(id: $k) { revokedAt } }`, map[string]any{"k": ck.CreateKey.Key.ID}).decode(t, &rv)
			if rv.RevokeKey.RevokedAt == nil {
				t.Fatal("revokeKey left revokedAt empty")
			}

			// Ids of the rival's rows in inputs: not found, and nothing of theirs changes.
			for _, q := range []string{
				`mutation($theirs: ID!) { updateAgentConfig(id: $theirs, input: {displayName: "pwned"}) { id } }`,
				`mutation($theirs: ID!) { createKey(input: {configID: $theirs, name: "pwned"}) { secret } }`,
				`mutation($theirKey: ID!) { revokeKey(id: $theirKey) { id } }`,
				`mutation($theirKey: ID!) { rotateKey(id: $theirKey) { secret } }`,
			} {
				if r := h.post(tok, q, vars); len(r.Errors) == 0 || r.Errors[0].code() != "NOT_FOUND" || r.hasData() {
					t.Errorf("cross-tenant %s: %s", q, r.Raw)
				}
			}
			if got := h.client.AgentConfig.GetX(f.ctx, theirs.Config.ID); got.DisplayName == "pwned" {
				t.Fatal("rival's config changed")
			}
			if got := h.client.APIKey.GetX(f.ctx, theirs.APIKeys[0].ID); got.RevokedAt != nil {
				t.Fatal("rival's key revoked")
			}
			// Admin-only: a customer cannot create subscriptions.
			if r := h.post(tok, `mutation($t: ID!, $p: ID!) { createSubscription(input: {tenantID: $t, planID: $p}) { id } }`,
				map[string]any{"t": buyer.Tenant.ID, "p": prods[0].Plans[0].ID}); len(r.Errors) == 0 || r.Errors[0].code() != "FORBIDDEN" {
				t.Fatalf("customer createSubscription: %s", r.Raw)
			}
			admin := h.token("admin-b", auth.RolePlatformAdmin)
			var cs struct {
				CreateSubscription struct {
					Status string
					Config struct{ ID, DisplayName string }
				}
			}
			h.post(admin, `mutation($t: ID!, $p: ID!) { createSubscription(input: {tenantID: $t, planID: $p}) { status config { id displayName } } }`,
				map[string]any{"t": buyer.Tenant.ID, "p": prods[0].Plans[0].ID}).decode(t, &cs)
			if cs.CreateSubscription.Status != "active" || cs.CreateSubscription.Config.ID == "" {
				t.Fatalf("createSubscription: %+v", cs)
			}
		})
	}
}
