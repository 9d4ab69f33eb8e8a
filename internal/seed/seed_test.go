package seed_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	ak "github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/seed"
)

// tableCounts counts the rows of every application table (all but the migration
// bookkeeping), read from the catalogue so that a new table is counted too.
func tableCounts(t *testing.T, db *database.DB) map[string]int {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if db.Driver == database.DriverPostgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.SQL.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "goose_") {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("found only tables %v", tables)
	}
	out := map[string]int{}
	for _, tb := range tables {
		var n int
		if err := db.SQL.QueryRow(`SELECT COUNT(*) FROM "` + tb + `"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tb] = n
	}
	return out
}

func TestDemoIsIdempotent(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			db := dbtest.Open(t, driver)
			// Demo says it acts as the system itself; a bare context must do.
			first, err := seed.Demo(context.Background(), db.Client)
			if err != nil {
				t.Fatal(err)
			}
			for name, id := range map[string]pulid.ID{
				"provider tenant": first.ProviderTenant, "buyer tenant": first.BuyerTenant, "agent": first.Agent,
				"flow": first.Flow, "plan": first.Plan, "subscription": first.Subscription, "config": first.Config,
			} {
				if !id.Valid() {
					t.Errorf("%s id %q is not a valid id", name, id)
				}
			}
			if first.APIKey != "" || first.PublishableKey != "" {
				t.Error("Demo returned keys; only DevKeys mints them")
			}
			counts := tableCounts(t, db)
			for tb, want := range map[string]int{
				"tenants": 2, "memberships": 2, "projects": 1, "agents": 1, "flows": 1, "plans": 1,
				"subscriptions": 1, "agent_configs": 1, "api_keys": 0, "usage_records": 0,
			} {
				if counts[tb] != want {
					t.Errorf("after the first run %s has %d rows, want %d", tb, counts[tb], want)
				}
			}
			for i := range 2 {
				again, err := seed.Demo(auth.SystemContext(context.Background()), db.Client)
				if err != nil {
					t.Fatalf("run %d: %v", i+2, err)
				}
				if again != first {
					t.Errorf("run %d returned %+v, want the first run's %+v", i+2, again, first)
				}
				after := tableCounts(t, db)
				for tb, n := range counts {
					if after[tb] != n {
						t.Errorf("run %d: %s has %d rows, was %d", i+2, tb, after[tb], n)
					}
				}
				if len(after) != len(counts) {
					t.Errorf("run %d changed the tables: %v -> %v", i+2, counts, after)
				}
			}
			// The ids name rows of the right shape.
			ctx := auth.SystemContext(context.Background())
			cfg, err := db.Client.AgentConfig.Get(ctx, first.Config)
			if err != nil || cfg.TenantID != first.BuyerTenant || cfg.SubscriptionID != first.Subscription {
				t.Errorf("config %+v (err %v) is not the buyer's config of the subscription", cfg, err)
			}
			sub, err := db.Client.Subscription.Get(ctx, first.Subscription)
			if err != nil || sub.AgentID != first.Agent || sub.PlanID != first.Plan || sub.ProviderTenantID != first.ProviderTenant {
				t.Errorf("subscription %+v (err %v) does not join agent, plan and provider", sub, err)
			}
		})
	}
}

func TestDevKeys(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			db := dbtest.Open(t, driver)
			ctx := context.Background()
			sys := auth.SystemContext(ctx)
			kr, err := ak.NewKeyring([]ak.SigningKey{{ID: "dev", Secret: []byte(strings.Repeat("d", 32))}},
				ak.KeyringOptions{Issuer: "agentregistry", Audience: "agentregistry/gateway"})
			if err != nil {
				t.Fatal(err)
			}
			svc := keys.New(db.Client, kr, nil)
			res, err := seed.Demo(ctx, db.Client)
			if err != nil {
				t.Fatal(err)
			}
			// A key someone else made for the demo config: DevKeys must leave it alone.
			other, err := svc.Create(sys, keys.CreateParams{ConfigID: res.Config, Name: "operator", Kind: ak.KindSecret, CreatedBy: "cli"})
			if err != nil {
				t.Fatal(err)
			}
			// A fresh verifier per check: caching must not hide a deleted row.
			verify := func(key string) (ak.Record, error) {
				rec, _, err := ak.NewVerifier(kr, svc, ak.VerifierOptions{}).Verify(ctx, key)
				return rec, err
			}
			var previous []string
			for run := 1; run <= 3; run++ {
				got, err := seed.DevKeys(ctx, db.Client, svc, res)
				if err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
				if got.Config != res.Config || got.BuyerTenant != res.BuyerTenant {
					t.Errorf("run %d changed the demo ids: %+v", run, got)
				}
				for _, tc := range []struct {
					name, key, prefix string
					kind              ak.Kind
					scope             ak.Scope
				}{
					{"secret", got.APIKey, ak.PrefixSecret, ak.KindSecret, ak.ScopeInvoke},
					{"publishable", got.PublishableKey, ak.PrefixPublishable, ak.KindPublishable, ak.ScopeWidgetInvoke},
				} {
					if !strings.HasPrefix(tc.key, tc.prefix) {
						t.Fatalf("run %d: %s key %q lacks prefix %s", run, tc.name, tc.key, tc.prefix)
					}
					rec, err := verify(tc.key)
					if err != nil {
						t.Fatalf("run %d: %s key does not verify: %v", run, tc.name, err)
					}
					if rec.Kind != tc.kind || rec.ConfigID != res.Config || rec.TenantID != res.BuyerTenant || !rec.Allows(tc.scope) {
						t.Errorf("run %d: %s key record %+v, want kind %s on the demo config with %s", run, tc.name, rec, tc.kind, tc.scope)
					}
					if rec.ExpiresAt == nil || !rec.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
						t.Errorf("run %d: %s key expires at %v", run, tc.name, rec.ExpiresAt)
					}
				}
				for _, old := range previous {
					if _, err := verify(old); !errors.Is(err, ak.ErrUnknownKey) {
						t.Errorf("run %d: a previous dev key still verifies (err %v), want ErrUnknownKey", run, err)
					}
					if _, err := svc.LookupByHash(ctx, ak.HashKey(old)); !errors.Is(err, ak.ErrNotFound) {
						t.Errorf("run %d: a previous dev key's row remains (err %v)", run, err)
					}
				}
				n, err := db.Client.APIKey.Query().Count(sys)
				if err != nil || n != 3 {
					t.Errorf("run %d: %d keys (err %v), want the 2 dev keys and the operator's", run, n, err)
				}
				if _, err := verify(other.Secret); err != nil {
					t.Errorf("run %d: the operator's key stopped verifying: %v", run, err)
				}
				if ok, err := db.Client.APIKey.Query().Where(apikey.ID(other.Key.ID)).Exist(sys); err != nil || !ok {
					t.Errorf("run %d: DevKeys deleted the operator's key (err %v)", run, err)
				}
				previous = append(previous, got.APIKey, got.PublishableKey)
			}
		})
	}
}
