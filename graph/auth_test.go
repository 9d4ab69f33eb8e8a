package graph_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
)

func TestAuthThroughGraphQL(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			f := newFixtures(t, h.client)
			a := f.world("alpha", "subject-alpha")
			other := f.tenant("bravo", "subject-bravo", membership.RoleMember)
			// subject-alpha is also a plain member of bravo.
			if _, err := h.client.Membership.Create().SetTenantID(other.Tenant.ID).SetSubject(a.Subject).
				SetRole(membership.RoleAdmin).Save(f.ctx); err != nil {
				t.Fatal(err)
			}

			expired := h.issuer.Token(t, authtest.NewClaims().Subject(a.Subject).RealmRoles(string(auth.RoleCustomer)).
				Set("iat", authtest.UnixIn(-2*time.Hour)).Set("exp", authtest.UnixIn(-time.Hour)).Map())
			otherIssuer := authtest.NewIssuer(t)
			forged := otherIssuer.Token(t, authtest.NewClaims().Subject(a.Subject).RealmRoles(string(auth.RolePlatformAdmin)).Map())
			customer := h.token(a.Subject, auth.RoleCustomer)
			provider := h.token(a.Subject, auth.RoleProvider)
			admin := h.token("subject-admin", auth.RolePlatformAdmin)
			const agents = `{ agents { edges { node { id name } } } }`

			for _, c := range []struct {
				name, token, query string
			}{
				{"no token", "", agents},
				{"no token, viewer", "", `{ viewer { subject } }`},
				{"garbage token", "garbage.token.value", agents},
				{"expired token", expired, agents},
				{"token of another issuer", forged, agents},
				{"token of another issuer, tenants", forged, `{ tenants { edges { node { id } } } }`},
			} {
				t.Run("unauthenticated: "+c.name, func(t *testing.T) {
					resp := h.post(c.token, c.query, nil)
					if len(resp.Errors) == 0 || resp.Errors[0].code() != "UNAUTHENTICATED" {
						t.Fatalf("want UNAUTHENTICATED, got %s", resp.Raw)
					}
					if resp.hasData() {
						t.Errorf("data served without authentication: %s", resp.Raw)
					}
					msg := strings.ToLower(resp.Errors[0].Message)
					for _, leak := range []string{"expired", "signature", "issuer", "kid", "jwt", "token is", "malformed", "audience"} {
						if strings.Contains(msg, leak) {
							t.Errorf("message %q explains why the token failed (%q)", resp.Errors[0].Message, leak)
						}
					}
					if c.token != "" && strings.Contains(resp.Raw, c.token[:min(len(c.token), 20)]) {
						t.Errorf("response echoes the token: %s", resp.Raw)
					}
					if strings.Contains(resp.Raw, a.Marker) {
						t.Errorf("tenant data in an unauthenticated response: %s", resp.Raw)
					}
				})
			}

			for _, c := range []struct {
				name, token, code string
			}{
				{"customer", customer, "FORBIDDEN"},
				{"provider", provider, "FORBIDDEN"},
				{"admin", admin, ""},
			} {
				t.Run("tenants as "+c.name, func(t *testing.T) {
					resp := h.post(c.token, `{ tenants { edges { node { id name } } } }`, nil)
					if c.code != "" {
						if len(resp.Errors) == 0 || resp.Errors[0].code() != c.code || resp.hasData() {
							t.Fatalf("want %s and no data, got %s", c.code, resp.Raw)
						}
						if strings.Contains(resp.Raw, other.Tenant.Name) {
							t.Errorf("tenant names leaked: %s", resp.Raw)
						}
						return
					}
					if len(resp.Errors) > 0 {
						t.Fatalf("errors: %s", resp.Raw)
					}
					assertSameIDs(t, collectIDs(resp.Data), []string{string(a.Tenant.ID), string(other.Tenant.ID)})
				})
			}

			type membershipOut struct {
				Role   string
				Tenant struct{ Name string }
			}
			type viewerOut struct {
				Subject         string
				Roles           []string
				IsPlatformAdmin bool
				Memberships     []membershipOut
			}
			for _, c := range []struct {
				name  string
				token string
				want  viewerOut
			}{
				{"customer in two tenants", customer, viewerOut{
					Subject: a.Subject, Roles: []string{"CUSTOMER"},
					Memberships: []membershipOut{{Role: "owner", Tenant: struct{ Name string }{a.Tenant.Name}}, {Role: "admin", Tenant: struct{ Name string }{other.Tenant.Name}}},
				}},
				{"provider and customer", h.token(other.Subject, auth.RoleProvider, auth.RoleCustomer), viewerOut{
					Subject: other.Subject, Roles: []string{"CUSTOMER", "PROVIDER"},
					Memberships: []membershipOut{{Role: "member", Tenant: struct{ Name string }{other.Tenant.Name}}},
				}},
				{"platform admin without tenants", admin, viewerOut{
					Subject: "subject-admin", Roles: []string{"PLATFORM_ADMIN"}, IsPlatformAdmin: true, Memberships: []membershipOut{},
				}},
			} {
				t.Run("viewer as "+c.name, func(t *testing.T) {
					resp := h.post(c.token, `{ viewer { subject roles isPlatformAdmin memberships { role tenant { name } } } }`, nil)
					var got struct{ Viewer viewerOut }
					resp.decode(t, &got)
					slices.Sort(got.Viewer.Roles)
					sortMemberships := func(m []membershipOut) {
						slices.SortFunc(m, func(x, y membershipOut) int { return strings.Compare(x.Tenant.Name, y.Tenant.Name) })
					}
					sortMemberships(got.Viewer.Memberships)
					sortMemberships(c.want.Memberships)
					g, _ := json.Marshal(got.Viewer)
					w, _ := json.Marshal(c.want)
					if string(g) != string(w) {
						t.Errorf("viewer = %s\nwant     %s", g, w)
					}
				})
			}

			t.Run("introspection without a token", func(t *testing.T) {
				resp := h.post("", `{ __schema { queryType { name } } __type(name: "Agent") { name } }`, nil)
				var got struct {
					Schema struct{ QueryType struct{ Name string } } `json:"__schema"`
					Type   struct{ Name string }                     `json:"__type"`
				}
				resp.decode(t, &got)
				if got.Schema.QueryType.Name != "Query" || got.Type.Name != "Agent" {
					t.Errorf("introspection: %s", resp.Raw)
				}
			})
			t.Run("introspection mixed with data without a token", func(t *testing.T) {
				resp := h.post("", `{ __schema { queryType { name } } agents { edges { node { id } } } }`, nil)
				if len(resp.Errors) == 0 || resp.Errors[0].code() != "UNAUTHENTICATED" || strings.Contains(resp.Raw, string(a.Agent.ID)) {
					t.Errorf("want UNAUTHENTICATED for the data field, got %s", resp.Raw)
				}
			})
		})
	}
}

// TestIntrospectionDisabled: with Introspection off the schema is not served, to anyone.
func TestIntrospectionDisabled(t *testing.T) {
	for _, driver := range dbtest.Drivers(t) {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver, withoutIntrospection())
			admin := h.token("subject-admin", auth.RolePlatformAdmin)
			for _, tok := range []string{"", admin} {
				resp := h.post(tok, `{ __schema { queryType { name } } }`, nil)
				if len(resp.Errors) == 0 || strings.Contains(resp.Raw, `"Query"`) {
					t.Errorf("introspection served while disabled (token %v): %s", tok != "", resp.Raw)
				}
			}
		})
	}
}
