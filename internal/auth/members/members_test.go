package members_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/tenant"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/members"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

func TestMemberships(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			db := dbtest.Open(t, driver)
			ctx := auth.SystemContext(context.Background())
			c := db.Client
			ten := map[string]pulid.ID{}
			for _, tc := range []struct {
				slug   string
				status tenant.Status
			}{
				{"acme", tenant.StatusActive},
				{"beta", tenant.StatusActive},
				{"gamma", tenant.StatusActive},
				{"delta", tenant.StatusActive},
				{"frozen", tenant.StatusSuspended},
				{"gone", tenant.StatusClosed},
			} {
				ten[tc.slug] = c.Tenant.Create().SetName(tc.slug).SetSlug(tc.slug).SetStatus(tc.status).SaveX(ctx).ID
			}
			for _, m := range []struct {
				tenant, subject string
				role            membership.Role
			}{
				{"acme", "alice", membership.RoleAdmin},
				{"beta", "alice", membership.RoleOwner},
				{"frozen", "alice", membership.RoleMember},
				{"gamma", "bob", membership.RoleOwner},
				{"acme", "bob", membership.RoleMember},
				{"delta", "alice-2", membership.RoleOwner}, // a subject that merely starts like alice's
			} {
				c.Membership.Create().SetTenantID(ten[m.tenant]).SetSubject(m.subject).SetRole(m.role).ExecX(ctx)
			}
			// An invitation not yet accepted: no subject.
			c.Membership.Create().SetTenantID(ten["delta"]).SetEmail("invited@example.test").SetRole(membership.RoleOwner).ExecX(ctx)

			type want struct {
				slug string
				role auth.TenantRole
			}
			for _, tc := range []struct {
				name    string
				subject string
				claims  []string
				want    []want
			}{
				{"rows keep their roles", "alice", nil, []want{
					// frozen is suspended: a row there grants nothing while it is.
					{"acme", auth.TenantAdmin}, {"beta", auth.TenantOwner}}},
				{"another subject's rows", "bob", nil, []want{{"gamma", auth.TenantOwner}, {"acme", auth.TenantMember}}},
				{"no rows, no claims", "carol", nil, nil},
				{"claims grant member of active tenants only", "carol", []string{"acme", "frozen", "gone", "nope", ""}, []want{
					{"acme", auth.TenantMember}}},
				{"claims for several tenants", "carol", []string{"gamma", "delta"}, []want{
					{"gamma", auth.TenantMember}, {"delta", auth.TenantMember}}},
				{"rows win over claims", "alice", []string{"acme", "beta", "delta"}, []want{
					{"acme", auth.TenantAdmin}, {"beta", auth.TenantOwner}, {"delta", auth.TenantMember}}},
				{"claimed slugs are not case folded", "carol", []string{"ACME"}, nil},
				{"empty subject matches no invitation", "", nil, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					v := &auth.Viewer{Subject: tc.subject, Roles: []auth.Role{auth.RoleCustomer}, ClaimedTenants: tc.claims}
					// The source decides tenants, so it must not depend on the caller's context
					// carrying a viewer or a system decision.
					for _, cctx := range []context.Context{context.Background(), auth.NewContext(context.Background(), v)} {
						got, err := members.New(c).Memberships(cctx, v)
						if err != nil {
							t.Fatal(err)
						}
						var gotS, wantS []string
						for _, m := range got {
							gotS = append(gotS, fmt.Sprintf("%s=%s", m.TenantID, m.Role))
						}
						for _, w := range tc.want {
							wantS = append(wantS, fmt.Sprintf("%s=%s", ten[w.slug], w.role))
						}
						slices.Sort(gotS)
						slices.Sort(wantS)
						if strings.Join(gotS, " ") != strings.Join(wantS, " ") {
							names := map[string]string{}
							for s, id := range ten {
								names[string(id)] = s
							}
							readable := func(xs []string) string {
								out := make([]string, len(xs))
								for i, x := range xs {
									id, role, _ := strings.Cut(x, "=")
									out[i] = names[id] + "=" + role
								}
								return strings.Join(out, " ")
							}
							t.Errorf("memberships = [%s], want [%s]", readable(gotS), readable(wantS))
						}
					}
				})
			}
		})
	}
}
