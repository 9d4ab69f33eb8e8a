package graph_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

// Tenants are the platform admin's; members are managed by the admin and by the
// tenant's own owners and admins, never by plain members or another tenant's owners.
func TestTenantAndMemberManagement(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			own := f.tenant("own-t", "own-owner", membership.RoleOwner)
			f.tenant("other-t", "other-owner", membership.RoleOwner)
			f.check(h.client.Membership.Create().SetTenantID(own.Tenant.ID).SetSubject("own-member").SetRole(membership.RoleMember).Exec(f.ctx))
			admin := h.token("platform", auth.RolePlatformAdmin)
			owner := h.token("own-owner", auth.RoleCustomer)
			plain := h.token("own-member", auth.RoleCustomer)
			stranger := h.token("other-owner", auth.RoleCustomer)

			var ct struct{ CreateTenant struct{ ID, Slug string } }
			h.post(admin, `mutation { createTenant(input: {name: "Newco", slug: "newco"}) { id slug } }`, nil).decode(t, &ct)
			if ct.CreateTenant.Slug != "newco" {
				t.Fatalf("createTenant: %+v", ct)
			}
			if r := h.post(owner, `mutation { createTenant(input: {name: "X", slug: "x"}) { id } }`, nil); len(r.Errors) == 0 || r.Errors[0].code() != "FORBIDDEN" {
				t.Fatalf("createTenant by a customer: %s", r.Raw)
			}

			add := `mutation($t: ID!, $s: String) { addMember(input: {tenantID: $t, subject: $s, role: admin}) { id role } }`
			var am struct{ AddMember struct{ ID, Role string } }
			h.post(owner, add, map[string]any{"t": own.Tenant.ID, "s": "new-person"}).decode(t, &am)
			if am.AddMember.Role != "admin" {
				t.Fatalf("owner adding a member: %+v", am)
			}
			for name, c := range map[string]struct{ token, tenant string }{
				"plain member adds":           {plain, string(own.Tenant.ID)},
				"another tenant's owner adds": {stranger, string(own.Tenant.ID)},
			} {
				if r := h.post(c.token, add, map[string]any{"t": c.tenant, "s": "intruder"}); len(r.Errors) == 0 || r.hasData() {
					t.Errorf("%s: %s", name, r.Raw)
				}
			}
			if r := h.post(owner, `mutation($t: ID!) { addMember(input: {tenantID: $t}) { id } }`, map[string]any{"t": own.Tenant.ID}); len(r.Errors) == 0 || r.Errors[0].code() != "BAD_USER_INPUT" {
				t.Fatalf("member without subject or email: %s", r.Raw)
			}
			// The other tenant's owner cannot remove someone from this tenant: not found.
			if r := h.post(stranger, `mutation($m: ID!) { removeMember(id: $m) }`, map[string]any{"m": am.AddMember.ID}); len(r.Errors) == 0 || r.Errors[0].code() != "NOT_FOUND" {
				t.Fatalf("stranger removing a member: %s", r.Raw)
			}
			if r := h.post(owner, `mutation($m: ID!) { removeMember(id: $m) }`, map[string]any{"m": am.AddMember.ID}); len(r.Errors) > 0 || !strings.Contains(r.Raw, am.AddMember.ID) {
				t.Fatalf("owner removing a member: %s", r.Raw)
			}
			if n := h.client.Membership.Query().CountX(f.ctx); n != 3 {
				t.Fatalf("%d memberships left, want 3 (two owners and the plain member)", n)
			}

			// A tenant admin manages members but not owners: it cannot grant the owner role
			// (to itself or anyone) nor remove an owner.
			f.check(h.client.Membership.Create().SetTenantID(own.Tenant.ID).SetSubject("own-admin").SetRole(membership.RoleAdmin).Exec(f.ctx))
			tenantAdmin := h.token("own-admin", auth.RoleCustomer)
			addOwner := `mutation($t: ID!) { addMember(input: {tenantID: $t, subject: "own-admin-2", role: owner}) { id } }`
			if r := h.post(tenantAdmin, addOwner, map[string]any{"t": own.Tenant.ID}); len(r.Errors) == 0 || r.hasData() {
				t.Fatalf("tenant admin granting the owner role: %s", r.Raw)
			}
			if r := h.post(tenantAdmin, `mutation($m: ID!) { removeMember(id: $m) }`, map[string]any{"m": own.Membership.ID}); len(r.Errors) == 0 || r.Errors[0].code() != "NOT_FOUND" {
				t.Fatalf("tenant admin removing the owner: %s", r.Raw)
			}
			if r := h.post(tenantAdmin, `mutation($t: ID!) { addMember(input: {tenantID: $t, subject: "helper", role: member}) { id } }`, map[string]any{"t": own.Tenant.ID}); len(r.Errors) > 0 {
				t.Fatalf("tenant admin adding a member: %s", r.Raw)
			}

			// A tenant keeps an owner: the last one cannot be removed, by itself or by a
			// platform admin; with a second owner, either may go.
			removeMember := `mutation($m: ID!) { removeMember(id: $m) }`
			for who, token := range map[string]string{"the owner itself": owner, "a platform admin": admin} {
				if r := h.post(token, removeMember, map[string]any{"m": own.Membership.ID}); len(r.Errors) == 0 || r.Errors[0].code() != "BAD_USER_INPUT" {
					t.Fatalf("%s removing the last owner: %s", who, r.Raw)
				}
			}
			var second struct{ AddMember struct{ ID string } }
			h.post(owner, `mutation($t: ID!) { addMember(input: {tenantID: $t, subject: "own-owner-2", role: owner}) { id } }`,
				map[string]any{"t": own.Tenant.ID}).decode(t, &second)
			if r := h.post(owner, removeMember, map[string]any{"m": own.Membership.ID}); len(r.Errors) > 0 {
				t.Fatalf("an owner leaving while another stays: %s", r.Raw)
			}
			secondOwner := h.token("own-owner-2", auth.RoleCustomer)
			if r := h.post(secondOwner, removeMember, map[string]any{"m": second.AddMember.ID}); len(r.Errors) == 0 || r.Errors[0].code() != "BAD_USER_INPUT" {
				t.Fatalf("the remaining owner removing itself: %s", r.Raw)
			}
			// Members who are not owners are not held to it.
			if r := h.post(secondOwner, removeMember, map[string]any{"m": f.memberID(own.Tenant.ID, "own-admin")}); len(r.Errors) > 0 {
				t.Fatalf("owner removing the tenant admin: %s", r.Raw)
			}
		})
	}
}

// Two owners removing each other at the same instant: one of them stays. Without the
// tenant's row lock both counted the other as the owner left, and both removals passed.
func TestOwnersRemovingEachOtherKeepAnOwner(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			const rounds = 15
			remove := `mutation($m: ID!) { removeMember(id: $m) }`
			raced := 0
			for round := range rounds {
				slug := fmt.Sprintf("duel-%d", round)
				a := f.tenant(slug, slug+"-a", membership.RoleOwner)
				b, err := h.client.Membership.Create().SetTenantID(a.Tenant.ID).SetSubject(slug + "-b").SetRole(membership.RoleOwner).Save(f.ctx)
				f.check(err)
				reqs := []*http.Request{
					h.request(h.token(slug+"-a", auth.RoleCustomer), remove, map[string]any{"m": b.ID}),
					h.request(h.token(slug+"-b", auth.RoleCustomer), remove, map[string]any{"m": a.Membership.ID}),
				}
				resps := make([]gqlResponse, len(reqs))
				errs := make([]error, len(reqs))
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i, req := range reqs {
					wg.Go(func() {
						<-start
						resps[i], errs[i] = h.do(req)
					})
				}
				close(start)
				wg.Wait()
				removed, kept := 0, 0
				for i, r := range resps {
					switch {
					case errs[i] != nil:
						t.Fatalf("round %d: %v", round, errs[i])
					case len(r.Errors) == 0:
						removed++
					case r.Errors[0].code() == "BAD_USER_INPUT":
						kept++
					case r.Errors[0].code() != "FORBIDDEN":
						// The last owner is kept (BAD_USER_INPUT), or the loser was no longer
						// a member when its request was authorized (FORBIDDEN).
						t.Fatalf("round %d: refused with %s, want BAD_USER_INPUT or FORBIDDEN", round, r.Raw)
					}
				}
				owners := h.client.Membership.Query().Where(membership.TenantID(a.Tenant.ID), membership.RoleEQ(membership.RoleOwner)).CountX(f.ctx)
				if removed != 1 || owners != 1 {
					t.Fatalf("round %d: %d removals passed, %d owners left; want 1 and 1", round, removed, owners)
				}
				raced += kept
			}
			// The rule itself, not only authorization, must have decided some rounds, or
			// the requests never overlapped and the test proved nothing.
			if raced == 0 {
				t.Fatalf("in %d rounds the two removals never overlapped", rounds)
			}
		})
	}
}
