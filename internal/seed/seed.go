// Package seed writes the demo data that `serve --dev` and `agentregistry seed` start
// from: a provider tenant with an agent, its flow and a plan; a buyer tenant with a
// subscription, a config and keys; and the memberships of the dev users.
package seed

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	entapikey "github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/tenant"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
)

// demoFlow is a two-node chat flow written for the seed (the fixtures' exports carry
// third-party code and stay out of the product).
//
//go:embed demo_flow.json
var demoFlow []byte

// Dev users' subjects, matched by the dev tokens.
const (
	AdminSubject    = "dev-admin"
	ProviderSubject = "dev-provider"
	CustomerSubject = "dev-customer"

	ProviderSlug = "demo-provider"
	BuyerSlug    = "demo-buyer"

	// devKeyCreator marks keys minted by the dev start, so the next start can revoke them.
	devKeyCreator = "seed:dev"
)

// Result names what the seed made.
type Result struct {
	ProviderTenant, BuyerTenant pulid.ID
	Agent, Flow, Plan           pulid.ID
	Subscription, Config        pulid.ID
	// APIKey and PublishableKey are set only by DevKeys.
	APIKey, PublishableKey string
}

// Demo makes sure the demo rows exist; a second run finds them and changes nothing.
func Demo(ctx context.Context, client *ent.Client) (Result, error) {
	ctx = auth.SystemContext(ctx)
	if existing, err := find(ctx, client); err == nil {
		return existing, nil
	} else if !ent.IsNotFound(err) {
		return Result{}, err
	}
	var res Result
	err := database.WithTx(ctx, client, func(tx *ent.Tx) error {
		prov, err := tx.Tenant.Create().SetName("Demo Provider").SetSlug(ProviderSlug).Save(ctx)
		if err != nil {
			return fmt.Errorf("provider tenant: %w", err)
		}
		buyer, err := tx.Tenant.Create().SetName("Demo Buyer").SetSlug(BuyerSlug).Save(ctx)
		if err != nil {
			return fmt.Errorf("buyer tenant: %w", err)
		}
		if err := tx.Membership.CreateBulk(
			tx.Membership.Create().SetTenantID(prov.ID).SetSubject(ProviderSubject).SetEmail("provider@demo.test").SetRole(membership.RoleOwner),
			tx.Membership.Create().SetTenantID(buyer.ID).SetSubject(CustomerSubject).SetEmail("customer@demo.test").SetRole(membership.RoleOwner),
		).Exec(ctx); err != nil {
			return fmt.Errorf("memberships: %w", err)
		}
		project, err := tx.Project.Create().SetTenantID(buyer.ID).SetName("Demo Project").Save(ctx)
		if err != nil {
			return fmt.Errorf("project: %w", err)
		}
		agent, err := tx.Agent.Create().SetTenantID(prov.ID).SetName("Demo Echo Assistant").SetSlug("demo-echo").
			SetDescription("Answers with what you say: the dev runtime's echo.").SetCategory("demo").Save(ctx)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		sum := sha256.Sum256(demoFlow)
		flow, err := tx.Flow.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetVersion(1).
			SetDefinition(json.RawMessage(demoFlow)).SetChecksum(hex.EncodeToString(sum[:])).
			SetValidationReport(map[string]any{"errors": []string{}, "warnings": []string{}}).
			SetRuntimeFlowID("demo-echo").SetRuntimeStatus("provisioned").Save(ctx)
		if err != nil {
			return fmt.Errorf("flow: %w", err)
		}
		plan, err := tx.Plan.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetName("Starter").
			SetPriceAmount(1900).SetCurrency("EUR").SetRequestsPerMonth(10000).SetTokensPerMonth(2_000_000).
			SetRpmPerKey(60).SetRpmPerTenant(600).SetTweakableFields([]string{"temperature"}).Save(ctx)
		if err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		if _, err := agent.Update().SetStatus("published").Save(ctx); err != nil {
			return fmt.Errorf("publish agent: %w", err)
		}
		now := time.Now().UTC()
		start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		sub, err := tx.Subscription.Create().SetTenantID(buyer.ID).SetProjectID(project.ID).SetAgentID(agent.ID).
			SetPlanID(plan.ID).SetStatus("active").SetSource("manual").
			SetCurrentPeriodStart(start).SetCurrentPeriodEnd(start.AddDate(0, 1, 0)).Save(ctx)
		if err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		cfg, err := tx.AgentConfig.Create().SetTenantID(buyer.ID).SetSubscriptionID(sub.ID).
			SetDisplayName("Echo").SetGreeting("Hi! Say something and I will say it back.").
			SetSystemPrompt("You are a friendly demo assistant.").SetWidgetTitle("Demo chat").
			SetAllowedOrigins([]string{"http://127.0.0.1:8080", "http://localhost:8080"}).Save(ctx)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		res = Result{ProviderTenant: prov.ID, BuyerTenant: buyer.ID, Agent: agent.ID, Flow: flow.ID,
			Plan: plan.ID, Subscription: sub.ID, Config: cfg.ID}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("seed: %w", err)
	}
	return res, nil
}

// DevKeys deletes the keys an earlier dev start minted (nothing else can have them: they
// were printed to that run's terminal) and mints a fresh secret and publishable key for
// the demo config, to print once.
func DevKeys(ctx context.Context, client *ent.Client, svc *keys.Service, res Result) (Result, error) {
	ctx = auth.SystemContext(ctx)
	if _, err := client.APIKey.Delete().Where(entapikey.CreatedBy(devKeyCreator)).Exec(ctx); err != nil {
		return res, fmt.Errorf("seed: previous dev keys: %w", err)
	}
	sk, err := svc.Create(ctx, keys.CreateParams{ConfigID: res.Config, Name: "dev secret key", Kind: apikey.KindSecret,
		Scopes: []apikey.Scope{apikey.ScopeInvoke, apikey.ScopeUsageRead}, CreatedBy: devKeyCreator})
	if err != nil {
		return res, fmt.Errorf("seed: dev secret key: %w", err)
	}
	pk, err := svc.Create(ctx, keys.CreateParams{ConfigID: res.Config, Name: "dev widget key", Kind: apikey.KindPublishable, CreatedBy: devKeyCreator})
	if err != nil {
		return res, fmt.Errorf("seed: dev publishable key: %w", err)
	}
	res.APIKey, res.PublishableKey = sk.Secret, pk.Secret
	return res, nil
}

// find returns the demo rows when they already exist.
func find(ctx context.Context, client *ent.Client) (Result, error) {
	prov, err := client.Tenant.Query().Where(tenant.Slug(ProviderSlug)).Only(ctx)
	if err != nil {
		return Result{}, err
	}
	buyer, err := client.Tenant.Query().Where(tenant.Slug(BuyerSlug)).Only(ctx)
	if err != nil {
		return Result{}, err
	}
	sub, err := buyer.QuerySubscriptions().WithConfig().WithPlan().First(ctx)
	if err != nil {
		return Result{}, err
	}
	if sub.Edges.Config == nil {
		return Result{}, fmt.Errorf("seed: demo subscription has no config")
	}
	fl, err := client.Flow.Query().Where(flow.AgentID(sub.AgentID)).Order(ent.Desc(flow.FieldVersion)).First(ctx)
	if err != nil {
		return Result{}, err
	}
	return Result{ProviderTenant: prov.ID, BuyerTenant: buyer.ID, Agent: sub.AgentID, Flow: fl.ID,
		Plan: sub.PlanID, Subscription: sub.ID, Config: sub.Edges.Config.ID}, nil
}

// AllowOrigin adds origin to the config's allowed origins when it is not there yet (the
// dev server lets its own widget demo page call it, on whatever port it listens).
func AllowOrigin(ctx context.Context, client *ent.Client, config pulid.ID, origin string) error {
	ctx = auth.SystemContext(ctx)
	cfg, err := client.AgentConfig.Get(ctx, config)
	if err != nil {
		return fmt.Errorf("seed: config: %w", err)
	}
	if slices.Contains(cfg.AllowedOrigins, origin) {
		return nil
	}
	if err := cfg.Update().AppendAllowedOrigins([]string{origin}).Exec(ctx); err != nil {
		return fmt.Errorf("seed: allow origin: %w", err)
	}
	return nil
}
