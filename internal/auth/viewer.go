// Package auth turns credentials into a Viewer: who is calling, with which roles, in which
// tenants. Keycloak access tokens are verified with go-oidc; in --dev a local issuer signs
// tokens that go through the very same verification path.
package auth

import (
	"context"
	"slices"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// Role is a platform-wide role taken from the access token.
type Role string

// The roles the design knows. Their names in Keycloak are configurable (RoleNames).
const (
	RolePlatformAdmin Role = "platform-admin"
	RoleProvider      Role = "provider"
	RoleCustomer      Role = "customer"
)

// TenantRole is a person's role inside one tenant (Membership.role).
type TenantRole string

// Tenant roles, from the weakest to the strongest.
const (
	TenantMember TenantRole = "member"
	TenantAdmin  TenantRole = "admin"
	TenantOwner  TenantRole = "owner"
)

// TenantMembership is one tenant the viewer belongs to.
type TenantMembership struct {
	TenantID pulid.ID
	Role     TenantRole
}

// Viewer is the authenticated caller of the portal API.
type Viewer struct {
	Subject string // OIDC sub
	Email   string
	Name    string
	Roles   []Role // platform roles, already mapped from Keycloak role names
	Tenants []TenantMembership
	Expiry  time.Time // when the token stops being valid; subscriptions end then
	// ClaimedTenants are tenant slugs named by a token claim (organization / groups);
	// the membership source turns them into Tenants.
	ClaimedTenants []string
}

// HasRole reports whether the viewer holds the platform role r.
func (v *Viewer) HasRole(r Role) bool { return v != nil && slices.Contains(v.Roles, r) }

// IsAdmin reports whether the viewer is a platform admin (sees every tenant).
func (v *Viewer) IsAdmin() bool { return v.HasRole(RolePlatformAdmin) }

// TenantIDs returns the ids of every tenant the viewer is a member of.
func (v *Viewer) TenantIDs() []pulid.ID {
	if v == nil {
		return nil
	}
	ids := make([]pulid.ID, 0, len(v.Tenants))
	for _, t := range v.Tenants {
		ids = append(ids, t.TenantID)
	}
	return ids
}

// MemberOf reports whether the viewer belongs to tenant id.
func (v *Viewer) MemberOf(id pulid.ID) bool {
	if v == nil {
		return false
	}
	for _, t := range v.Tenants {
		if t.TenantID == id {
			return true
		}
	}
	return false
}

// RoleIn returns the viewer's role in tenant id, or "" when it is not a member.
func (v *Viewer) RoleIn(id pulid.ID) TenantRole {
	if v == nil {
		return ""
	}
	for _, t := range v.Tenants {
		if t.TenantID == id {
			return t.Role
		}
	}
	return ""
}

type viewerKey struct{}

// NewContext returns ctx carrying v.
func NewContext(ctx context.Context, v *Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// FromContext returns the viewer in ctx, or nil when the caller is anonymous.
func FromContext(ctx context.Context) *Viewer {
	v, _ := ctx.Value(viewerKey{}).(*Viewer)
	return v
}
