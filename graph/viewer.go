package graph

import (
	"context"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/tenant"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// viewerMemberships loads the viewer's tenants in one query, in the order of the
// viewer's memberships.
func viewerMemberships(ctx context.Context, client *ent.Client, v *auth.Viewer) ([]*model.ViewerMembership, error) {
	tenants, err := client.Tenant.Query().Where(tenant.IDIn(v.TenantIDs()...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load viewer tenants: %w", err)
	}
	byID := make(map[string]*ent.Tenant, len(tenants))
	for _, t := range tenants {
		byID[string(t.ID)] = t
	}
	out := make([]*model.ViewerMembership, 0, len(v.Tenants))
	for _, m := range v.Tenants {
		if t, ok := byID[string(m.TenantID)]; ok {
			out = append(out, &model.ViewerMembership{Tenant: t, Role: membership.Role(m.Role)})
		}
	}
	return out, nil
}
