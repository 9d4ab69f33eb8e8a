package schema

import (
	"context"
	"errors"
	"regexp"
	"slices"

	"entgo.io/ent"
	"entgo.io/ent/dialect/sql"

	gen "github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/hook"
	"github.com/gsvdev/agentregistry/ent/intercept"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/privacy"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Tenant isolation lives here, once, so that no resolver can forget it.
//
// Reads: every query of a tenant-scoped type, including eager loads and edge traversals,
// passes through a traverse interceptor that adds "rows of the viewer's tenants" to its
// WHERE clause. A platform admin and system code (a context carrying privacy.Allow, see
// auth.SystemContext) are not filtered. A context with neither a viewer nor a decision is
// an error, not an empty result: code that forgot to say who it acts for should fail loudly.
//
// Edge where-filters (hasXWith) are SQL sub-queries that do not pass through the target's
// interceptor, so every edge is kept out of the GraphQL where-inputs (noEdgeFilter).
//
// Writes: privacy mutation policies. System code and platform admins write anything.
// Otherwise a row is written by a member of its tenant holding the platform role that
// owns that kind of row (providers: agents, flows, plans; customers: configs, documents,
// keys): a create must name one of the viewer's tenants, and updates and deletes are
// narrowed to the viewer's tenants in their WHERE clause, so another tenant's row is
// simply not found. Everything else is denied.

var (
	slugPattern           = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`)
	widgetPositionPattern = regexp.MustCompile(`^(bottom-right|bottom-left)$`)
)

// errNoViewer is returned when a query runs without a viewer or a system decision.
var errNoViewer = privacy.Denyf("no viewer in context")

// viewerScope decides how a query is scoped: all rows (admin or system), the viewer's
// tenants, or an error.
func viewerScope(ctx context.Context) (tenants []any, all bool, err error) {
	// DecisionFromContext reports an Allow decision as (nil, true).
	if decision, ok := privacy.DecisionFromContext(ctx); ok && decision == nil {
		return nil, true, nil
	}
	v := auth.FromContext(ctx)
	if v == nil {
		return nil, false, errNoViewer
	}
	if v.IsAdmin() {
		return nil, true, nil
	}
	ids := v.TenantIDs()
	tenants = make([]any, len(ids))
	for i, id := range ids {
		tenants[i] = string(id)
	}
	return tenants, false, nil
}

// scoped builds a traverse interceptor from a predicate over the viewer's tenant ids.
func scoped(pred func(s *sql.Selector, tenants []any) *sql.Predicate) ent.Interceptor {
	return intercept.TraverseFunc(func(ctx context.Context, q intercept.Query) error {
		tenants, all, err := viewerScope(ctx)
		if err != nil || all {
			return err
		}
		q.WhereP(func(s *sql.Selector) {
			if len(tenants) == 0 {
				s.Where(sql.False())
				return
			}
			s.Where(pred(s, tenants))
		})
		return nil
	})
}

// inTenants is "column IN (viewer's tenants)".
func inTenants(s *sql.Selector, column string, tenants []any) *sql.Predicate {
	return sql.In(s.C(column), tenants...)
}

// subscribedAgents is "column IN (agents the viewer's tenants subscribe to)".
func subscribedAgents(s *sql.Selector, column string, tenants []any) *sql.Predicate {
	sub := sql.Select("agent_id").From(sql.Table("subscriptions")).Where(sql.In("tenant_id", tenants...))
	return sql.In(s.C(column), sub)
}

// filterOwned: rows of the viewer's tenants.
func filterOwned() ent.Interceptor {
	return scoped(func(s *sql.Selector, t []any) *sql.Predicate { return inTenants(s, "tenant_id", t) })
}

// filterShared: rows where the viewer's tenant is the buyer or the provider.
func filterShared() ent.Interceptor {
	return scoped(func(s *sql.Selector, t []any) *sql.Predicate {
		return sql.Or(inTenants(s, "tenant_id", t), inTenants(s, "provider_tenant_id", t))
	})
}

// filterCatalog: the provider's own agents and plans, and those of agents the viewer's
// tenants subscribe to (a buyer sees what it bought, not the whole catalogue: browsing
// happens in the Waldur marketplace). agentColumn names the row's agent id.
func filterCatalog(agentColumn string) ent.Interceptor {
	return scoped(func(s *sql.Selector, t []any) *sql.Predicate {
		return sql.Or(inTenants(s, "tenant_id", t), subscribedAgents(s, agentColumn, t))
	})
}

// filterTenants: the viewer's own tenants, the tenants that buy its agents (so that a
// provider can name a subscription's buyer) and the tenants it buys from (so that a buyer
// can name the seller). Billing ids of a tenant are admin-only fields (see Tenant).
func filterTenants() ent.Interceptor {
	return scoped(func(s *sql.Selector, t []any) *sql.Predicate {
		buyers := sql.Select("tenant_id").From(sql.Table("subscriptions")).Where(sql.In("provider_tenant_id", t...))
		sellers := sql.Select("provider_tenant_id").From(sql.Table("subscriptions")).Where(sql.In("tenant_id", t...))
		return sql.Or(inTenants(s, "id", t), sql.In(s.C("id"), buyers), sql.In(s.C("id"), sellers))
	})
}

// filterAdminOnly: nothing for anyone but admins and system code.
func filterAdminOnly() ent.Interceptor {
	return scoped(func(*sql.Selector, []any) *sql.Predicate { return sql.False() })
}

// allowSystemOrAdmin allows system code and platform admins and passes on the decision.
func allowSystemOrAdmin() privacy.MutationRule {
	return privacy.MutationRuleFunc(func(ctx context.Context, _ gen.Mutation) error {
		if auth.FromContext(ctx).IsAdmin() {
			return privacy.Allow
		}
		return privacy.Skip
	})
}

// tenantPolicy governs writes to tenants.
func tenantPolicy() ent.Policy {
	return privacy.Policy{
		Mutation: privacy.MutationPolicy{allowSystemOrAdmin(), privacy.AlwaysDenyRule()},
	}
}

// adminWrites governs rows only platform admins (and system code) write: tenants'
// projects and memberships, subscriptions.
func adminWrites() ent.Policy {
	return privacy.Policy{
		Mutation: privacy.MutationPolicy{allowSystemOrAdmin(), privacy.AlwaysDenyRule()},
	}
}

// writableBy governs rows that members of their tenant holding role may write.
func writableBy(role auth.Role) ent.Policy {
	return privacy.Policy{
		Mutation: privacy.MutationPolicy{allowSystemOrAdmin(), tenantWriter(role), privacy.AlwaysDenyRule()},
	}
}

// memberManagers governs memberships: platform admins, and the owners and admins of the
// membership's tenant.
func memberManagers() ent.Policy {
	return privacy.Policy{
		Mutation: privacy.MutationPolicy{allowSystemOrAdmin(), tenantManager(), privacy.AlwaysDenyRule()},
	}
}

// tenantManager allows a membership write by an owner or admin of its tenant; updates
// and deletes are narrowed to those tenants like tenantWriter's. Only owners grant,
// change or remove the owner role: an admin cannot make itself (or anyone) an owner, nor
// remove one.
func tenantManager() privacy.MutationRule {
	return privacy.MembershipMutationRuleFunc(func(ctx context.Context, m *gen.MembershipMutation) error {
		v := auth.FromContext(ctx)
		if v == nil {
			return privacy.Skip
		}
		var owned, administered []any
		for _, t := range v.Tenants {
			switch t.Role {
			case auth.TenantOwner:
				owned = append(owned, string(t.TenantID))
			case auth.TenantAdmin:
				administered = append(administered, string(t.TenantID))
			}
		}
		if len(owned)+len(administered) == 0 {
			return privacy.Skip
		}
		setsOwner := false
		if r, ok := m.Role(); ok && r == membership.RoleOwner {
			setsOwner = true
		}
		if m.Op().Is(ent.OpCreate) {
			id, _ := m.TenantID()
			switch {
			case slices.Contains(owned, any(string(id))):
				return privacy.Allow
			case slices.Contains(administered, any(string(id))) && !setsOwner:
				return privacy.Allow
			}
			return privacy.Denyf("not allowed to manage this tenant's members")
		}
		m.WhereP(func(s *sql.Selector) {
			byOwner := sql.In(s.C("tenant_id"), append(owned, "")...)
			byAdmin := sql.And(sql.In(s.C("tenant_id"), append(administered, "")...), sql.NEQ(s.C("role"), membership.RoleOwner.String()))
			if setsOwner {
				s.Where(byOwner)
				return
			}
			s.Where(sql.Or(byOwner, byAdmin))
		})
		return privacy.Allow
	})
}

// tenantWriter allows a write by a member of the row's tenant who holds role.
func tenantWriter(role auth.Role) privacy.MutationRule {
	type tenantScoped interface {
		gen.Mutation
		TenantID() (pulid.ID, bool)
		WhereP(...func(*sql.Selector))
	}
	return privacy.MutationRuleFunc(func(ctx context.Context, m gen.Mutation) error {
		v := auth.FromContext(ctx)
		if v == nil || !v.HasRole(role) {
			return privacy.Skip
		}
		tm, ok := m.(tenantScoped)
		if !ok {
			return privacy.Denyf("%s is not tenant scoped", m.Type())
		}
		if m.Op().Is(ent.OpCreate) {
			if id, ok := tm.TenantID(); ok && v.MemberOf(id) {
				return privacy.Allow
			}
			return privacy.Denyf("not a member of the tenant")
		}
		ids := v.TenantIDs()
		tenants := make([]any, len(ids))
		for i, id := range ids {
			tenants[i] = string(id)
		}
		tm.WhereP(func(s *sql.Selector) {
			if len(tenants) == 0 {
				s.Where(sql.False())
				return
			}
			s.Where(sql.In(s.C("tenant_id"), tenants...))
		})
		return privacy.Allow
	})
}

// systemOnlyMutations: rows only the service itself writes (usage, inbox, outbox).
func systemOnlyMutations() ent.Policy {
	return privacy.Policy{Mutation: privacy.MutationPolicy{privacy.AlwaysDenyRule()}}
}

// copyProviderTenant copies the agent's tenant onto a new subscription so that the
// provider's filter is one indexed column. The lookup runs as system: the buyer may not
// see the agent before the subscription exists.
func copyProviderTenant() ent.Hook {
	return hook.On(func(next ent.Mutator) ent.Mutator {
		return hook.SubscriptionFunc(func(ctx context.Context, m *gen.SubscriptionMutation) (ent.Value, error) {
			agentID, ok := m.AgentID()
			if !ok {
				return nil, errors.New("subscription: agent is required")
			}
			a, err := m.Client().Agent.Get(auth.SystemContext(ctx), agentID)
			if err != nil {
				return nil, err
			}
			m.SetProviderTenantID(a.TenantID)
			return next.Mutate(ctx, m)
		})
	}, ent.OpCreate)
}
