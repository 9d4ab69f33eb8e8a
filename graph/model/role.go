package model

import "github.com/gsvdev/agentregistry/internal/auth"

// roleNames maps platform roles to their GraphQL enum values.
var roleNames = map[auth.Role]Role{
	auth.RolePlatformAdmin: RolePlatformAdmin,
	auth.RoleProvider:      RoleProvider,
	auth.RoleCustomer:      RoleCustomer,
}

// AuthRole returns the platform role a GraphQL Role names.
func (r Role) AuthRole() auth.Role {
	for k, v := range roleNames {
		if v == r {
			return k
		}
	}
	return ""
}

// RolesOf lists the viewer's platform roles as GraphQL enum values.
func RolesOf(v *auth.Viewer) []Role {
	out := make([]Role, 0, len(v.Roles))
	for _, r := range v.Roles {
		if g, ok := roleNames[r]; ok {
			out = append(out, g)
		}
	}
	return out
}
