// Package catalog is the provider's side of the marketplace: agents, their plans and
// their flow versions, and the rules for publishing. Tenant isolation and role checks are
// the privacy policies' (every call runs with the caller's context); this package holds
// the rules that are about the product.
package catalog

import (
	"context"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/agent"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/plan"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apperr"
)

// Publisher is told when an agent is published or unpublished (the Waldur offering
// publication plugs in here; nil until that integration exists).
type Publisher interface {
	AgentPublished(ctx context.Context, a *ent.Agent) error
	AgentUnpublished(ctx context.Context, a *ent.Agent) error
}

// Service manages the catalogue.
type Service struct {
	client    *ent.Client
	publisher Publisher
}

// New returns a Service; publisher may be nil.
func New(client *ent.Client, publisher Publisher) *Service {
	return &Service{client: client, publisher: publisher}
}

// CreateAgent creates a draft agent in tenantID (the privacy policy checks the caller
// is a provider member of it).
func (s *Service) CreateAgent(ctx context.Context, tenantID pulid.ID, in ent.CreateAgentInput) (*ent.Agent, error) {
	return s.client.Agent.Create().SetInput(in).SetTenantID(tenantID).Save(ctx)
}

// UpdateAgent changes an agent's descriptive fields.
func (s *Service) UpdateAgent(ctx context.Context, id pulid.ID, in ent.UpdateAgentInput) (*ent.Agent, error) {
	return s.client.Agent.UpdateOneID(id).SetInput(in).Save(ctx)
}

// ArchiveAgent takes an agent out of the catalogue for good; existing subscriptions keep
// working until they are cancelled.
func (s *Service) ArchiveAgent(ctx context.Context, id pulid.ID) (*ent.Agent, error) {
	a, err := s.client.Agent.UpdateOneID(id).SetStatus(agent.StatusArchived).Save(ctx)
	if err != nil {
		return nil, err
	}
	return a, s.notify(ctx, a, false)
}

// PublishAgent puts an agent on sale. It needs a provisioned flow (something to run) and
// an active plan (something to sell); an archived agent stays archived.
func (s *Service) PublishAgent(ctx context.Context, id pulid.ID) (*ent.Agent, error) {
	a, err := s.client.Agent.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Status == agent.StatusArchived {
		return nil, apperr.Precondition("an archived agent cannot be published")
	}
	provisioned, err := a.QueryFlows().Where(flow.RuntimeStatusEQ(flow.RuntimeStatusProvisioned)).Exist(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: flows of agent: %w", err)
	}
	if !provisioned {
		return nil, apperr.Precondition("the agent has no provisioned flow: import a flow and provision it first")
	}
	planned, err := a.QueryPlans().Where(plan.StatusEQ(plan.StatusActive)).Exist(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: plans of agent: %w", err)
	}
	if !planned {
		return nil, apperr.Precondition("the agent has no active plan: create a plan first")
	}
	if a, err = a.Update().SetStatus(agent.StatusPublished).Save(ctx); err != nil {
		return nil, err
	}
	return a, s.notify(ctx, a, true)
}

// UnpublishAgent takes an agent off sale (back to draft).
func (s *Service) UnpublishAgent(ctx context.Context, id pulid.ID) (*ent.Agent, error) {
	a, err := s.client.Agent.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Status != agent.StatusPublished {
		return a, nil
	}
	if a, err = a.Update().SetStatus(agent.StatusDraft).Save(ctx); err != nil {
		return nil, err
	}
	return a, s.notify(ctx, a, false)
}

func (s *Service) notify(ctx context.Context, a *ent.Agent, published bool) error {
	if s.publisher == nil {
		return nil
	}
	if published {
		return s.publisher.AgentPublished(ctx, a)
	}
	return s.publisher.AgentUnpublished(ctx, a)
}

// CreatePlan adds a plan to an agent. The plan's tenant is the agent's: the caller names
// the agent, never the tenant, so it cannot put a plan on someone else's agent (the
// policy then checks it is a provider member of that tenant).
func (s *Service) CreatePlan(ctx context.Context, agentID pulid.ID, in ent.CreatePlanInput) (*ent.Plan, error) {
	a, err := s.client.Agent.Get(ctx, agentID)
	if err != nil {
		return nil, err
	}
	if err := validatePlan(in.Currency, in.TweakableFields); err != nil {
		return nil, err
	}
	return s.client.Plan.Create().SetInput(in).SetAgentID(a.ID).SetTenantID(a.TenantID).Save(ctx)
}

// UpdatePlan changes a plan's price, limits or tweak allowlist.
func (s *Service) UpdatePlan(ctx context.Context, id pulid.ID, in ent.UpdatePlanInput) (*ent.Plan, error) {
	if err := validatePlan(in.Currency, in.TweakableFields); err != nil {
		return nil, err
	}
	return s.client.Plan.UpdateOneID(id).SetInput(in).Save(ctx)
}

// ArchivePlan stops selling a plan; subscriptions on it keep their terms.
func (s *Service) ArchivePlan(ctx context.Context, id pulid.ID) (*ent.Plan, error) {
	return s.client.Plan.UpdateOneID(id).SetStatus(plan.StatusArchived).Save(ctx)
}
