package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

func TestEntResolver(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		var counter dbtest.Counter
		db := dbtest.Open(t, driver, dbtest.WithCounter(&counter))
		e := &env{t: t, db: db, client: db.Client}
		f := e.seed(fixtureOptions{
			rpmKey: 7, rpmTenant: 70, requestsPerMonth: 100, tokensPerMonth: 1000,
			tweakable: []string{"temperature"}, savedTweaks: map[string]any{"temperature": 0.1},
			systemPrompt: "persona", origins: []string{"https://a.example.com"},
		})
		// A newer provisioned version wins; a newer unprovisioned one does not.
		for v, status := range map[int]string{2: "provisioned", 3: "provisioning"} {
			fc := e.client.Flow.Create().SetTenantID(f.provider).SetAgentID(f.agent).SetVersion(v).
				SetDefinition(json.RawMessage(`{}`)).SetChecksum(strings.Repeat("1", 64)).SetRuntimeStatus(flow.RuntimeStatus(status))
			if status == "provisioned" {
				fc.SetRuntimeFlowID("flow-v2")
			}
			if err := fc.Exec(sys()); err != nil {
				t.Fatal(err)
			}
		}

		// JSON as text, as a raw SQL write leaves it: SQLite then returns it as a string,
		// not bytes (the plan's allowlist stays as ent wrote it).
		if _, err := db.SQL.ExecContext(context.Background(), fmt.Sprintf(
			`UPDATE agent_configs SET tweaks = '{"temperature": 0.1}', allowed_origins = '["https://a.example.com"]' WHERE id = '%s'`, f.config)); err != nil {
			t.Fatal(err)
		}
		// Another agent's newer provisioned flow is not this config's.
		other := e.seed(fixtureOptions{})
		if err := e.client.Flow.Create().SetTenantID(other.provider).SetAgentID(other.agent).SetVersion(9).
			SetDefinition(json.RawMessage(`{}`)).SetChecksum(strings.Repeat("2", 64)).
			SetRuntimeStatus(flow.RuntimeStatusProvisioned).SetRuntimeFlowID("flow-of-another-agent").Exec(sys()); err != nil {
			t.Fatal(err)
		}

		r := gateway.NewEntResolver(db.Client, gateway.EntResolverOptions{TTL: time.Minute})
		ctx := context.Background() // no viewer: the resolver must act as the system itself
		counter.Reset()
		got, err := r.Resolve(ctx, f.config)
		if err != nil {
			t.Fatal(err)
		}
		if n := counter.Count(); n != 1 {
			t.Errorf("resolving took %d statements, want 1", n)
		}
		want := gateway.Target{
			ConfigID: f.config, TenantID: f.buyer, ProviderTenantID: f.provider, AgentID: f.agent,
			SubscriptionID: f.sub, PlanID: f.plan, SubscriptionStatus: "active", RuntimeFlowID: "flow-v2",
			SystemPrompt: "persona", AllowedOrigins: []string{"https://a.example.com"},
			TweakableFields: []string{"temperature"},
			Limits:          gateway.PlanLimits{RPMPerKey: 7, RPMPerTenant: 70, RequestsPerMonth: 100, TokensPerMonth: 1000},
		}
		if got.Tweaks["temperature"] != 0.1 {
			t.Errorf("tweaks %v", got.Tweaks)
		}
		got.Tweaks = nil
		if gj, wj := mustJSON(t, got), mustJSON(t, want); gj != wj {
			t.Errorf("target\n got %s\nwant %s", gj, wj)
		}

		// Cached: concurrent calls cost nothing.
		counter.Reset()
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.Resolve(ctx, f.config); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n := counter.Count(); n != 0 {
			t.Errorf("cached resolves ran %d statements", n)
		}

		// Invalidate reads again; concurrent misses share one load.
		r.Invalidate(f.config)
		counter.Reset()
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := r.Resolve(ctx, f.config); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n := counter.Count(); n != 1 {
			t.Errorf("20 concurrent misses ran %d statements, want 1", n)
		}

		if _, err := r.Resolve(ctx, pulid.MustNew("cfg")); err != gateway.ErrConfigNotFound {
			t.Fatalf("unknown config: %v", err)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
