package catalog_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/catalog"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// A flow export whose OpenAI node carries a literal API key in a password field.
const withSecret = `{"name":"Leaky","data":{"nodes":[
 {"id":"ChatInput-1","type":"genericNode","data":{"id":"ChatInput-1","type":"ChatInput","node":{"template":{"input_value":{"type":"str","value":""}},"outputs":[{"name":"message"}]}}},
 {"id":"OpenAIModel-1","type":"genericNode","data":{"id":"OpenAIModel-1","type":"OpenAIModel","node":{"template":{"api_key":{"type":"str","password":true,"value":"sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}},"outputs":[{"name":"text_output"}]}}},
 {"id":"ChatOutput-1","type":"genericNode","data":{"id":"ChatOutput-1","type":"ChatOutput","node":{"template":{"input_value":{"type":"str","value":""}},"outputs":[{"name":"message"}]}}}],
 "edges":[{"id":"e1","source":"ChatInput-1","target":"OpenAIModel-1"},{"id":"e2","source":"OpenAIModel-1","target":"ChatOutput-1"}]},
 "last_tested_version":"1.7.0"}`

func TestImportFlowStoresNoSecretsAndNumbersVersions(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			db := dbtest.Open(t, driver)
			sys := auth.SystemContext(context.Background())
			tn := db.Client.Tenant.Create().SetName("P").SetSlug("p").SaveX(sys)
			other := db.Client.Tenant.Create().SetName("O").SetSlug("o").SaveX(sys)
			ag := db.Client.Agent.Create().SetTenantID(tn.ID).SetName("A").SetSlug("a").SaveX(sys)
			prov := auth.NewContext(context.Background(), &auth.Viewer{Subject: "p", Roles: []auth.Role{auth.RoleProvider},
				Tenants: []auth.TenantMembership{{TenantID: tn.ID, Role: auth.TenantOwner}}})
			svc := catalog.New(db.Client, nil)

			f1, rep, err := svc.ImportFlow(prov, ag.ID, []byte(withSecret))
			if err != nil || f1 == nil || !rep.Valid {
				t.Fatalf("import: %v %+v", err, rep)
			}
			if len(rep.Secrets) != 1 || strings.Contains(rep.Secrets[0].Preview, "abcdefghij") {
				t.Fatalf("secrets reported: %+v", rep.Secrets)
			}
			stored := db.Client.Flow.GetX(sys, f1.ID)
			if strings.Contains(string(stored.Definition), "sk-proj-abcdefghij") {
				t.Fatal("the stored definition still contains the API key")
			}
			f2, _, err := svc.ImportFlow(prov, ag.ID, []byte(withSecret))
			if err != nil || f1.Version != 1 || f2.Version != 2 {
				t.Fatalf("versions %d, %d (%v)", f1.Version, f2.Version, err)
			}
			// Rejected exports store nothing.
			if f, rep, err := svc.ImportFlow(prov, ag.ID, []byte(`{"not":"a flow"}`)); f != nil || rep.Valid || err != nil {
				t.Fatalf("invalid export: %v %+v %v", f, rep, err)
			}
			// A provider of another tenant cannot import into this agent.
			stranger := auth.NewContext(context.Background(), &auth.Viewer{Subject: "o", Roles: []auth.Role{auth.RoleProvider},
				Tenants: []auth.TenantMembership{{TenantID: other.ID, Role: auth.TenantOwner}}})
			if _, _, err := svc.ImportFlow(stranger, ag.ID, []byte(withSecret)); !ent.IsNotFound(err) {
				t.Fatalf("import into another tenant's agent: %v", err)
			}
			if n := db.Client.Flow.Query().CountX(sys); n != 2 {
				t.Fatalf("%d flows stored, want 2", n)
			}
		})
	}
}
