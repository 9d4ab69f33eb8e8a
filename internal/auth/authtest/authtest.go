// Package authtest gives other packages' tests real, verifiable Keycloak-shaped tokens: a
// devissuer behind an httptest server on 127.0.0.1, and an auth.Config that trusts it. Tests
// therefore exercise the production verification path rather than a stubbed Viewer.
package authtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
)

// Client IDs of the test realm, as in the Keycloak fixtures: the browser client obtains the
// token (azp), the API client is its audience and holds the portal's client roles.
const (
	WebClient = "portal-web"
	APIClient = "portal-api"
	// RealmPath is the issuer path under the test server, Keycloak-style.
	RealmPath = "/realms/test"
)

// Issuer is a running test issuer. It is closed by t.Cleanup.
type Issuer struct {
	*devissuer.Issuer
	srv *httptest.Server
	t   testing.TB
}

// NewIssuer starts a devissuer on a fresh 127.0.0.1 port with a fresh key.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := NewUnstartedIssuer(t)
	i.Start()
	return i
}

// NewUnstartedIssuer is NewIssuer without Start: its address is chosen but nothing listens
// there yet (connections are refused), as in --dev where the issuer is served by the process
// that builds the Authenticator. Start listens on that same address.
func NewUnstartedIssuer(t testing.TB) *Issuer {
	t.Helper()
	// 2048 bits like Keycloak; a fresh key per issuer keeps tests independent.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("authtest: generate key: %v", err)
	}
	srv := httptest.NewUnstartedServer(nil)
	iss, err := devissuer.New("http://"+srv.Listener.Addr().String()+RealmPath, key)
	if err != nil {
		srv.Close()
		t.Fatalf("authtest: %v", err)
	}
	srv.Config.Handler = iss.Handler()
	// Release the port so that connections are refused rather than left hanging in the
	// accept backlog; Start binds it again.
	_ = srv.Listener.Close()
	t.Cleanup(srv.Close)
	return &Issuer{Issuer: iss, srv: srv, t: t}
}

// Start binds the issuer's address again and serves. Another process could in principle take
// the port in between; that fails the test rather than hanging it.
func (i *Issuer) Start() {
	i.t.Helper()
	l, err := net.Listen("tcp", i.srv.Listener.Addr().String())
	if err != nil {
		i.t.Fatalf("authtest: listen: %v", err)
	}
	i.srv.Listener = l
	i.srv.Start()
}

// Config returns an auth.Config that accepts this issuer's tokens (clients portal-api and
// portal-web, client roles of portal-api, no tenant claim). A failed discovery is retried
// after 50 ms instead of 5 s so tests that start the issuer late do not sleep.
func (i *Issuer) Config() auth.Config {
	return auth.Config{
		IssuerURL:      i.URL(),
		ClientIDs:      []string{APIClient, WebClient},
		RoleClient:     APIClient,
		DiscoveryRetry: 50 * time.Millisecond,
	}
}

// Authenticator returns an authenticator for Config with the given membership source (may be
// nil) and no logging.
func (i *Issuer) Authenticator(members auth.MembershipSource) *auth.Authenticator {
	return auth.NewAuthenticator(i.Config(), members, nil)
}

// Token mints a token from claims over Keycloak-shaped defaults (see devissuer.Mint), valid
// for 5 minutes unless claims set exp. A nil claim value removes that claim.
func (i *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	tok, err := i.Mint(claims, 0)
	if err != nil {
		t.Fatalf("authtest: mint: %v", err)
	}
	return tok
}

// RoleToken mints a token for subject holding role as a portal-api client role ("" = none).
func (i *Issuer) RoleToken(t testing.TB, role auth.Role, subject string) string {
	t.Helper()
	return i.Token(t, NewClaims().Subject(subject).ClientRoles(APIClient, string(role)).Map())
}

// Claims builds access-token claims in Keycloak 25/26 shape. Methods modify and return the
// builder; Map returns a copy to pass to Token.
type Claims struct{ m map[string]any }

// NewClaims returns the claims of a plain Keycloak 26 access token for a portal user without
// portal roles: azp portal-web, aud [portal-api, account], default realm roles, the account
// client's roles, sid but no session_state (dropped in Keycloak 25). iss, iat, exp and jti
// are left to the issuer.
func NewClaims() *Claims {
	return &Claims{m: map[string]any{
		"sub":                "4332085e-b944-4acc-9eb1-27d8f5405f3e",
		"typ":                "Bearer",
		"azp":                WebClient,
		"aud":                []any{APIClient, "account"},
		"sid":                "c90c8e0d-aabb-4c71-b8a8-e88792cacd96",
		"acr":                "1",
		"scope":              "openid email profile",
		"allowed-origins":    []any{"http://localhost:3000"},
		"email":              "test-user@example.org",
		"email_verified":     true,
		"name":               "Test User",
		"preferred_username": "test-user",
		"given_name":         "Test",
		"family_name":        "User",
		"realm_access": map[string]any{
			"roles": []any{"default-roles-test", "offline_access", "uma_authorization"},
		},
		"resource_access": map[string]any{
			"account": map[string]any{"roles": []any{"manage-account", "view-profile"}},
		},
	}}
}

// Subject sets sub.
func (c *Claims) Subject(sub string) *Claims { return c.Set("sub", sub) }

// Email sets email.
func (c *Claims) Email(email string) *Claims { return c.Set("email", email) }

// RealmRoles adds realm roles.
func (c *Claims) RealmRoles(roles ...string) *Claims {
	ra, _ := c.m["realm_access"].(map[string]any)
	if ra == nil {
		ra = map[string]any{}
	}
	existing, _ := ra["roles"].([]any)
	ra["roles"] = appendStrings(existing, roles)
	return c.Set("realm_access", ra)
}

// ClientRoles adds roles of client to resource_access (empty role names are skipped).
func (c *Claims) ClientRoles(client string, roles ...string) *Claims {
	rs, _ := c.m["resource_access"].(map[string]any)
	if rs == nil {
		rs = map[string]any{}
	}
	entry, _ := rs[client].(map[string]any)
	if entry == nil {
		entry = map[string]any{}
	}
	existing, _ := entry["roles"].([]any)
	if all := appendStrings(existing, roles); len(all) > 0 {
		entry["roles"] = all
		rs[client] = entry
	}
	return c.Set("resource_access", rs)
}

// Organizations sets the organization claim as Keycloak's default mapper does: a list of
// aliases. Use Set("organization", map...) for the object shape.
func (c *Claims) Organizations(aliases ...string) *Claims {
	return c.Set("organization", appendStrings(nil, aliases))
}

// Groups sets groups (full paths, e.g. /tenants/acme/admins).
func (c *Claims) Groups(paths ...string) *Claims { return c.Set("groups", appendStrings(nil, paths)) }

// Set sets any claim; a nil value removes it from the minted token.
func (c *Claims) Set(name string, value any) *Claims {
	c.m[name] = value
	return c
}

// Map returns a deep copy of the claims, so later builder calls do not change it.
func (c *Claims) Map() map[string]any { return deepCopy(c.m).(map[string]any) }

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	default:
		return v
	}
}

func appendStrings(dst []any, src []string) []any {
	for _, s := range src {
		if s != "" {
			dst = append(dst, s)
		}
	}
	return dst
}

// Members is a MembershipSource keyed by subject, for tests that need tenants without a
// database.
type Members map[string][]auth.TenantMembership

// Memberships implements auth.MembershipSource.
func (m Members) Memberships(_ context.Context, v *auth.Viewer) ([]auth.TenantMembership, error) {
	return m[v.Subject], nil
}

// UnixIn returns the NumericDate d from now, for exp/nbf/iat claims (negative d: the past).
func UnixIn(d time.Duration) int64 { return time.Now().Add(d).Unix() }
