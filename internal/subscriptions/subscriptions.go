// Package subscriptions is the buyer's side: a tenant's access to an agent under a plan,
// and the configuration of that access (persona, tweaks, widget, allowed origins).
// Waldur and Stripe create subscriptions in their own rooms through Create; today a
// platform admin does it from the portal.
package subscriptions

import (
	"context"
	"fmt"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
)

// Service manages subscriptions and their configs.
type Service struct {
	client *ent.Client
	now    func() time.Time
}

// New returns a Service.
func New(client *ent.Client) *Service { return &Service{client: client, now: time.Now} }

// CreateParams describe a new subscription.
type CreateParams struct {
	TenantID  pulid.ID
	ProjectID *pulid.ID
	PlanID    pulid.ID
	Source    subscription.Source
}

// Create opens an active subscription of a tenant to a plan's agent for the current
// month, with its config, in one transaction. The caller's privacy decides (platform
// admins and system code may).
func (s *Service) Create(ctx context.Context, p CreateParams) (*ent.Subscription, error) {
	sys := auth.SystemContext(ctx)
	pl, err := s.client.Plan.Get(sys, p.PlanID)
	if ent.IsNotFound(err) {
		return nil, apperr.Invalid("input.planID", "no such plan")
	} else if err != nil {
		return nil, fmt.Errorf("subscriptions: plan: %w", err)
	}
	ag, err := s.client.Agent.Get(sys, pl.AgentID)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: agent: %w", err)
	}
	if p.Source == "" {
		p.Source = subscription.SourceManual
	}
	now := s.now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	var sub *ent.Subscription
	err = database.WithTx(ctx, s.client, func(tx *ent.Tx) error {
		var err error
		sub, err = tx.Subscription.Create().SetTenantID(p.TenantID).SetNillableProjectID(p.ProjectID).
			SetAgentID(ag.ID).SetPlanID(pl.ID).SetStatus(subscription.StatusActive).SetSource(p.Source).
			SetCurrentPeriodStart(start).SetCurrentPeriodEnd(start.AddDate(0, 1, 0)).Save(ctx)
		if err != nil {
			return err
		}
		_, err = tx.AgentConfig.Create().SetTenantID(p.TenantID).SetSubscriptionID(sub.ID).
			SetDisplayName(truncate(ag.Name, 100)).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sub.Unwrap(), nil
}

// UpdateConfig changes a config after checking what the schema cannot: origins are
// origins, and tweaks stay within the plan's allowlist.
func (s *Service) UpdateConfig(ctx context.Context, id pulid.ID, in ent.UpdateAgentConfigInput) (*ent.AgentConfig, error) {
	cfg, err := s.client.AgentConfig.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := checkOrigins("input.allowedOrigins", in.AllowedOrigins); err != nil {
		return nil, err
	}
	if err := checkOrigins("input.appendAllowedOrigins", in.AppendAllowedOrigins); err != nil {
		return nil, err
	}
	if in.WidgetPrimaryColor != nil && *in.WidgetPrimaryColor != "" && !colorPattern.MatchString(*in.WidgetPrimaryColor) {
		return nil, apperr.Invalid("input.widgetPrimaryColor", "colour must be #rgb or #rrggbb")
	}
	if in.AvatarURL != nil && *in.AvatarURL != "" {
		if err := checkAvatar(*in.AvatarURL); err != nil {
			return nil, err
		}
	}
	if in.Tweaks != nil {
		// The plan is the provider's row: read it as system, it only informs the check.
		sub, err := s.client.Subscription.Query().Where(subscription.ID(cfg.SubscriptionID)).WithPlan().Only(auth.SystemContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("subscriptions: plan of config: %w", err)
		}
		if err := checkTweaks("input.tweaks", in.Tweaks, sub.Edges.Plan.TweakableFields); err != nil {
			return nil, err
		}
	}
	return cfg.Update().SetInput(in).Save(ctx)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}
