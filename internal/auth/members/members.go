// Package members is the database-backed auth.MembershipSource: a viewer's tenants come
// from Membership rows keyed by the token's subject, and from tenant slugs named by a
// token claim (organization / groups) when one is configured.
package members

import (
	"context"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/tenant"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Source reads memberships with the ent client.
type Source struct {
	client *ent.Client
}

// New returns a Source.
func New(client *ent.Client) *Source { return &Source{client: client} }

// Memberships returns the viewer's tenants. Membership rows win over claims: a claim only
// ever grants the plain member role. Lookups run as system code, since the viewer's
// tenants are what is being decided.
func (s *Source) Memberships(ctx context.Context, v *auth.Viewer) ([]auth.TenantMembership, error) {
	sys := auth.SystemContext(ctx)
	rows, err := s.client.Membership.Query().
		// A suspended or closed tenant grants nothing, however the person belongs to it.
		Where(membership.Subject(v.Subject), membership.HasTenantWith(tenant.StatusEQ(tenant.StatusActive))).
		Select(membership.FieldTenantID, membership.FieldRole).
		All(sys)
	if err != nil {
		return nil, fmt.Errorf("members: by subject: %w", err)
	}
	out := make([]auth.TenantMembership, 0, len(rows)+len(v.ClaimedTenants))
	seen := make(map[string]bool, len(rows))
	for _, m := range rows {
		out = append(out, auth.TenantMembership{TenantID: m.TenantID, Role: auth.TenantRole(m.Role)})
		seen[string(m.TenantID)] = true
	}
	if len(v.ClaimedTenants) == 0 {
		return out, nil
	}
	claimed, err := s.client.Tenant.Query().
		Where(tenant.SlugIn(v.ClaimedTenants...), tenant.StatusEQ(tenant.StatusActive)).
		IDs(sys)
	if err != nil {
		return nil, fmt.Errorf("members: by claim: %w", err)
	}
	for _, id := range claimed {
		if !seen[string(id)] {
			out = append(out, auth.TenantMembership{TenantID: id, Role: auth.TenantMember})
		}
	}
	return out, nil
}
