package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/testsupport/fixtures"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
)

const fixtureName = "DERIVED_kc26_portal_access_token_claims.json"

// keycloakFixture returns the claims of the Keycloak 26 access-token fixture from
// ../shared next to the module root. Outside CI a checkout without ../shared skips; in CI
// the fixture is required, so the matrix can never pass vacuously.
func keycloakFixture(t *testing.T) map[string]any {
	t.Helper()
	var claims map[string]any
	if err := json.Unmarshal(fixtures.Read(t, "keycloak", fixtureName), &claims); err != nil {
		t.Fatalf("keycloak fixture: %v", err)
	}
	return claims
}

// fixtureClaims returns the fixture re-targeted at iss, issued now, valid for 5 minutes.
func fixtureClaims(t *testing.T, iss string) map[string]any {
	c := keycloakFixture(t)
	c["iss"] = iss
	c["iat"] = time.Now().Unix()
	c["auth_time"] = time.Now().Add(-10 * time.Second).Unix()
	c["exp"] = time.Now().Add(5 * time.Minute).Unix()
	return c
}

// forge builds a compact JWS by hand, for tokens no honest library would produce.
func forge(t *testing.T, header, claims map[string]any, sign func(signingInput []byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

func assertRejected(t *testing.T, v *auth.Viewer, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("token accepted (viewer %+v), want rejection", v)
	}
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v, want ErrUnauthenticated", err)
	}
	if err.Error() != "invalid or expired token" {
		t.Fatalf("err text %q leaks detail; want the generic message", err.Error())
	}
	if v != nil {
		t.Fatalf("viewer %+v returned with an error", v)
	}
}

// TestAuthenticateMatrix: the fixture token passes, and each mutation of it (or forgery) is
// rejected with the generic error. Every case mutates one thing of a token that is shown to
// pass first, so a rejection cannot come from an unrelated defect.
func TestAuthenticateMatrix(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	ctx := context.Background()

	base := fixtureClaims(t, iss.URL())
	good := iss.Token(t, base)
	v, err := a.Authenticate(ctx, good)
	if err != nil {
		t.Fatalf("fixture token rejected: %v", err)
	}
	if v.Subject != "4332085e-b944-4acc-9eb1-27d8f5405f3e" || v.Email != "test-user@example.org" || v.Name != "Test User" {
		t.Fatalf("viewer = %+v", v)
	}
	if want := time.Unix(base["exp"].(int64), 0); !v.Expiry.Equal(want) {
		t.Fatalf("Expiry = %v, want %v", v.Expiry, want)
	}
	// The fixture's only portal-api role is "tenant-admin", which is not a platform role.
	if len(v.Roles) != 0 {
		t.Fatalf("Roles = %v, want none", v.Roles)
	}

	with := func(kv ...any) string {
		c := fixtureClaims(t, iss.URL())
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return iss.Token(t, c)
	}
	now := time.Now()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// A well-formed token from an issuer with the same URL but another key: its kid (the
	// key's thumbprint) is not in the JWKS.
	unknownKid := func() string {
		other, err := devissuer.New(iss.URL(), otherKey)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := other.Mint(fixtureClaims(t, iss.URL()), 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	pubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(iss.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	// Same kid as the real key, but signed by another key: the JWKS lookup succeeds and
	// only the signature check can catch it.
	sameKidOtherKey := func() string {
		header := map[string]any{"alg": "RS256", "typ": "JWT", "kid": iss.KeyID()}
		return forge(t, header, fixtureClaims(t, iss.URL()), func(in []byte) []byte {
			h := sha256.Sum256(in)
			sig, err := rsa.SignPKCS1v15(rand.Reader, otherKey, crypto.SHA256, h[:])
			if err != nil {
				t.Fatal(err)
			}
			return sig
		})
	}
	goodParts := strings.Split(good, ".")
	tampered := fixtureClaims(t, iss.URL())
	tampered["sub"] = "someone-else"

	cases := []struct {
		name  string
		token string
	}{
		{"expired", with("exp", now.Add(-time.Minute).Unix(), "iat", now.Add(-6*time.Minute).Unix())},
		{"nbf far in the future", with("nbf", now.Add(10*time.Minute).Unix())},
		// go-oidc tolerates nbf up to 5 minutes ahead; our 60 s skew must catch this one.
		{"nbf two minutes ahead", with("nbf", now.Add(2*time.Minute).Unix())},
		{"iat in the future", with("iat", now.Add(2*time.Minute).Unix())},
		{"wrong issuer", with("iss", "https://sso.example.test/realms/acme")},
		{"wrong audience and wrong azp", with("aud", []string{"other-api", "account"}, "azp", "other-web")},
		{"wrong audience string and no azp", with("aud", "account", "azp", nil)},
		{"ID token (typ ID)", with("typ", "ID", "aud", "portal-web")},
		{"refresh token (typ Refresh)", with("typ", "Refresh")},
		{"no typ", with("typ", nil)},
		{"no sub", with("sub", nil)},
		{"no exp", with("exp", nil)},
		{"alg none", forge(t, map[string]any{"alg": "none", "typ": "JWT"}, fixtureClaims(t, iss.URL()),
			func([]byte) []byte { return nil })},
		{"HS256 keyed with the RSA public key (alg confusion)", forge(t,
			map[string]any{"alg": "HS256", "typ": "JWT", "kid": iss.KeyID()}, fixtureClaims(t, iss.URL()),
			func(in []byte) []byte { m := hmac.New(sha256.New, pubPEM); m.Write(in); return m.Sum(nil) })},
		{"unknown kid", unknownKid()},
		{"known kid, other key", sameKidOtherKey()},
		{"tampered payload, original signature", goodParts[0] + "." +
			base64.RawURLEncoding.EncodeToString(mustJSON(t, tampered)) + "." + goodParts[2]},
		{"garbled header", "!!!" + goodParts[0][3:] + "." + goodParts[1] + "." + goodParts[2]},
		{"garbage", "not-a-jwt"},
		{"empty", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := a.Authenticate(ctx, tc.token)
			assertRejected(t, v, err)
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuthenticateAudience: azp alone or one aud value alone is enough (Keycloak puts
// "account" in aud unless an audience mapper is set, and aud may be a bare string).
func TestAuthenticateAudience(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	cases := []struct {
		name string
		azp  any
		aud  any
		ok   bool
	}{
		{"azp only (aud just account)", "portal-web", "account", true},
		{"aud array only", "other-web", []string{"account", "portal-api"}, true},
		{"aud string only", "other-web", "portal-api", true},
		{"neither", "other-web", []string{"account"}, false},
		{"neither, no aud", "other-web", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := iss.Token(t, authtest.NewClaims().Set("azp", tc.azp).Set("aud", tc.aud).Map())
			v, err := a.Authenticate(context.Background(), tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			assertRejected(t, v, err)
		})
	}
}

// TestAuthenticateClockSkew: iat/nbf within 60 s ahead are ordinary skew and pass.
func TestAuthenticateClockSkew(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	ahead := authtest.UnixIn(30 * time.Second)
	tok := iss.Token(t, authtest.NewClaims().Set("iat", ahead).Set("nbf", ahead).Map())
	if _, err := a.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("token 30 s ahead rejected: %v", err)
	}
}

func TestAuthenticateRoles(t *testing.T) {
	iss := authtest.NewIssuer(t)
	cases := []struct {
		name   string
		names  map[auth.Role]string
		claims *authtest.Claims
		want   []auth.Role
	}{
		{"no portal roles", nil, authtest.NewClaims(), nil},
		{"realm role", nil, authtest.NewClaims().RealmRoles("platform-admin"), []auth.Role{auth.RolePlatformAdmin}},
		{"client role of the role client", nil, authtest.NewClaims().ClientRoles("portal-api", "provider"),
			[]auth.Role{auth.RoleProvider}},
		{"client role of another client is ignored", nil,
			authtest.NewClaims().ClientRoles("portal-web", "platform-admin").ClientRoles("account", "customer"), nil},
		{"realm and client roles combine, deduplicated", nil,
			authtest.NewClaims().RealmRoles("customer").ClientRoles("portal-api", "customer", "provider"),
			[]auth.Role{auth.RoleCustomer, auth.RoleProvider}},
		{"unknown roles ignored", nil,
			authtest.NewClaims().RealmRoles("admin", "offline_access").ClientRoles("portal-api", "tenant-admin"), nil},
		{"mapped names", map[auth.Role]string{auth.RolePlatformAdmin: "portal-admin", auth.RoleProvider: "seller"},
			authtest.NewClaims().RealmRoles("portal-admin").ClientRoles("portal-api", "seller", "customer"),
			[]auth.Role{auth.RoleCustomer, auth.RolePlatformAdmin, auth.RoleProvider}},
		// Once platform-admin is renamed, a role that merely carries the canonical name (say,
		// one a realm admin created by accident) must not grant it.
		{"canonical name no longer counts once mapped", map[auth.Role]string{auth.RolePlatformAdmin: "portal-admin"},
			authtest.NewClaims().RealmRoles("platform-admin"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := iss.Config()
			cfg.RoleNames = tc.names
			v, err := auth.NewAuthenticator(cfg, nil, nil).Authenticate(context.Background(), iss.Token(t, tc.claims.Map()))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.Roles, tc.want) {
				t.Fatalf("Roles = %v, want %v", v.Roles, tc.want)
			}
		})
	}
}

func TestAuthenticateTenantClaim(t *testing.T) {
	iss := authtest.NewIssuer(t)
	orgObject := map[string]any{
		"tenant-b": map[string]any{"id": "42c3e46f-2477-44d7-a85b-d3b43f6b31fa", "attr1": []any{"value1"}},
		"tenant-a": map[string]any{"id": "0c7b5d0e-0000-4000-8000-000000000001"},
	}
	groups := []string{"/tenants/tenant-a/admins", "/tenants/tenant-b", "/tenants/tenant-a/members", "/staff/tenants/x", "/tenants", "tenants/y"}
	cases := []struct {
		name   string
		kind   string
		claims *authtest.Claims
		want   []string
	}{
		{"organization list", auth.TenantClaimOrganization, authtest.NewClaims().Organizations("tenant-a", "tenant-b"),
			[]string{"tenant-a", "tenant-b"}},
		{"organization object", auth.TenantClaimOrganization, authtest.NewClaims().Set("organization", orgObject),
			[]string{"tenant-a", "tenant-b"}},
		{"organization absent", auth.TenantClaimOrganization, authtest.NewClaims(), nil},
		{"organization malformed", auth.TenantClaimOrganization, authtest.NewClaims().Set("organization", 42), nil},
		{"groups paths", auth.TenantClaimGroups, authtest.NewClaims().Groups(groups...), []string{"tenant-a", "tenant-b"}},
		{"groups ignored when claim is organization", auth.TenantClaimOrganization,
			authtest.NewClaims().Groups(groups...), nil},
		{"no tenant claim configured", "", authtest.NewClaims().Organizations("tenant-a").Groups(groups...), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := iss.Config()
			cfg.TenantClaim = tc.kind
			v, err := auth.NewAuthenticator(cfg, nil, nil).Authenticate(context.Background(), iss.Token(t, tc.claims.Map()))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.ClaimedTenants, tc.want) {
				t.Fatalf("ClaimedTenants = %q, want %q", v.ClaimedTenants, tc.want)
			}
		})
	}
}

type memberFunc func(ctx context.Context, v *auth.Viewer) ([]auth.TenantMembership, error)

func (f memberFunc) Memberships(ctx context.Context, v *auth.Viewer) ([]auth.TenantMembership, error) {
	return f(ctx, v)
}

func TestAuthenticateMemberships(t *testing.T) {
	iss := authtest.NewIssuer(t)
	cfg := iss.Config()
	cfg.TenantClaim = auth.TenantClaimOrganization
	tok := iss.Token(t, authtest.NewClaims().Subject("user-1").Organizations("tenant-a").Map())
	tenant := pulid.ID("tnt_01JD3ZK5N8W6Q2R7T9V4X1Y3Z5")

	t.Run("source sees claims and fills Tenants", func(t *testing.T) {
		src := memberFunc(func(_ context.Context, v *auth.Viewer) ([]auth.TenantMembership, error) {
			if v.Subject != "user-1" || !slices.Equal(v.ClaimedTenants, []string{"tenant-a"}) {
				t.Errorf("source got viewer %+v", v)
			}
			return []auth.TenantMembership{{TenantID: tenant, Role: auth.TenantAdmin}}, nil
		})
		v, err := auth.NewAuthenticator(cfg, src, nil).Authenticate(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if !v.MemberOf(tenant) || len(v.Tenants) != 1 {
			t.Fatalf("Tenants = %+v", v.Tenants)
		}
	})
	t.Run("source failure is unavailable, not unauthenticated", func(t *testing.T) {
		src := memberFunc(func(context.Context, *auth.Viewer) ([]auth.TenantMembership, error) {
			return nil, errors.New("db down")
		})
		v, err := auth.NewAuthenticator(cfg, src, nil).Authenticate(context.Background(), tok)
		if v != nil || !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("v=%v err=%v, want ErrUnavailable", v, err)
		}
	})
	t.Run("nil source leaves Tenants empty", func(t *testing.T) {
		v, err := auth.NewAuthenticator(cfg, nil, nil).Authenticate(context.Background(), tok)
		if err != nil || len(v.Tenants) != 0 {
			t.Fatalf("v=%+v err=%v", v, err)
		}
	})
}

// TestRejectionLogged: the reason reaches the debug log, the token never does.
func TestRejectionLogged(t *testing.T) {
	iss := authtest.NewIssuer(t)
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := auth.NewAuthenticator(iss.Config(), nil, logger)
	tok := iss.Token(t, authtest.NewClaims().Set("typ", "ID").Map())
	if _, err := a.Authenticate(context.Background(), tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v", err)
	}
	out := buf.String()
	if !strings.Contains(out, "token rejected") || !strings.Contains(out, `typ \"ID\"`) {
		t.Fatalf("reason not logged: %s", out)
	}
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(out, part) {
			t.Fatalf("log contains part of the token: %s", out)
		}
	}
}

// TestLazyDiscovery: an Authenticator built while nothing listens at the issuer (as in --dev,
// where this process serves the issuer itself) reports ErrUnavailable, then works once the
// issuer listens, without being rebuilt.
func TestLazyDiscovery(t *testing.T) {
	iss := authtest.NewUnstartedIssuer(t)
	cfg := iss.Config()
	cfg.DiscoveryRetry = 200 * time.Millisecond
	a := auth.NewAuthenticator(cfg, nil, nil)
	tok := iss.Token(t, authtest.NewClaims().Map())

	v, err := a.Authenticate(context.Background(), tok)
	if v != nil || !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("before listen: v=%v err=%v, want ErrUnavailable", v, err)
	}
	iss.Start()
	// The failure is cached for the retry interval: the issuer is up, but not asked yet.
	if _, err := a.Authenticate(context.Background(), tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("within backoff: err = %v, want cached ErrUnavailable", err)
	}
	time.Sleep(cfg.DiscoveryRetry + 50*time.Millisecond)
	v, err = a.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatalf("after listen: %v", err)
	}
	if v.Subject == "" {
		t.Fatalf("viewer = %+v", v)
	}
}

// TestViewerName: Keycloak omits name when the user has no first/last name; the username is
// then the best display name.
func TestViewerName(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	cases := []struct {
		name   string
		claims *authtest.Claims
		want   string
	}{
		{"name", authtest.NewClaims(), "Test User"},
		{"preferred_username fallback", authtest.NewClaims().Set("name", nil), "test-user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := a.Authenticate(context.Background(), iss.Token(t, tc.claims.Map()))
			if err != nil {
				t.Fatal(err)
			}
			if v.Name != tc.want {
				t.Fatalf("Name = %q, want %q", v.Name, tc.want)
			}
		})
	}
}

// TestConcurrentFirstUse: the first burst of requests races into discovery; all must succeed
// (run with -race to check the lazy state).
func TestConcurrentFirstUse(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := iss.Authenticator(nil)
	tok := iss.Token(t, authtest.NewClaims().Map())
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			_, err := a.Authenticate(context.Background(), tok)
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
