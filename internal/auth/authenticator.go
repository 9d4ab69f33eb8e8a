package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// ErrUnauthenticated is returned (and only this, never a wrapped detail) for every rejected
// token. The text is deliberately generic: telling a caller *why* a forged token failed
// (wrong kid, wrong alg, wrong audience...) only helps them iterate on the forgery. The real
// reason is logged at debug level instead.
var ErrUnauthenticated = errors.New("invalid or expired token")

// ErrUnavailable means the token could not be checked at all (issuer discovery failed, or the
// membership source failed). It is not the caller's fault, so it maps to 503, not 401.
var ErrUnavailable = errors.New("authentication temporarily unavailable")

// Tenant claim kinds understood by Config.TenantClaim.
const (
	// TenantClaimOrganization reads Keycloak's "organization" claim: a list of aliases (the
	// mapper's default) or an object keyed by alias (when id/attributes are added).
	TenantClaimOrganization = "organization"
	// TenantClaimGroups reads "groups" with full paths; /tenants/<slug>/... names tenant <slug>.
	TenantClaimGroups = "groups"
)

// Defaults; see Config.
const (
	defaultDiscoveryRetry   = 5 * time.Second
	discoveryTimeout        = 10 * time.Second
	defaultHTTPTimeout      = 10 * time.Second
	clockSkew               = 60 * time.Second
	keycloakAccessTokenType = "Bearer"
)

// supportedAlgs are the only signature algorithms accepted. Listing them explicitly (instead of
// trusting the discovery document) keeps "none" and the HS* family out for good: an HMAC
// "signature" keyed with the public RSA key is the classic algorithm-confusion forgery.
var supportedAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.PS256}

// Config says which Keycloak realm and clients to trust.
type Config struct {
	// IssuerURL is the realm URL, e.g. https://sso.example.org/realms/acme. Tokens must carry
	// exactly this iss.
	IssuerURL string
	// ClientIDs are accepted either as azp (the client that obtained the token) or in aud.
	// Keycloak puts "account" in aud unless an audience mapper is configured, so azp alone
	// must be enough. Empty means no token is accepted (fail closed).
	ClientIDs []string
	// RoleClient names the resource_access.<client> entry whose roles count (e.g.
	// "portal-api"). Roles of other clients are ignored. Empty: only realm roles count.
	RoleClient string
	// RoleNames maps a canonical role to its name in Keycloak. Roles not listed keep their
	// canonical name.
	RoleNames map[Role]string
	// TenantClaim is TenantClaimOrganization, TenantClaimGroups or "" (no tenant claim).
	TenantClaim string
	// HTTPClient is used for discovery and JWKS. Nil means a client with a 10 s timeout
	// (never http.DefaultClient, which has none and would let a hung issuer pin requests).
	HTTPClient *http.Client
	// DiscoveryRetry is how long a failed discovery is remembered before the next attempt,
	// so a down issuer is not hammered by every request. Zero means 5 s.
	DiscoveryRetry time.Duration
	// JWKSRefetch is the least time between two fetches of the issuer's keys caused by
	// tokens signed with a key the service does not hold (a rotation, or a forgery), so
	// that forged tokens cannot make the service flood the issuer. Zero means 10 s. A failed
	// fetch is retried after DiscoveryRetry instead.
	JWKSRefetch time.Duration
}

// MembershipSource turns a freshly authenticated viewer into tenant memberships (Membership
// rows, possibly seeded from v.ClaimedTenants).
type MembershipSource interface {
	Memberships(ctx context.Context, v *Viewer) ([]TenantMembership, error)
}

// Authenticator verifies Keycloak access tokens and builds Viewers. It is safe for concurrent
// use. Discovery is lazy: in --dev the issuer is served by this very process, which is not
// listening yet when the Authenticator is built, and in production Keycloak may simply be
// down at start; neither should stop the service from booting.
type Authenticator struct {
	cfg     Config
	members MembershipSource
	log     *slog.Logger
	client  *http.Client
	retry   time.Duration
	roleMap map[string]Role // Keycloak role name -> canonical role

	issuer atomic.Pointer[issuer] // set once discovery succeeded
	// sem serialises discovery attempts (a one-slot semaphore rather than a mutex so a waiting
	// request can give up when its own context ends). failedAt/failErr are guarded by it.
	sem      chan struct{}
	failedAt time.Time
	failErr  error
}

// NewAuthenticator returns an Authenticator for cfg. It does no network I/O. members may be
// nil (viewers then have no Tenants); logger may be nil (nothing is logged).
func NewAuthenticator(cfg Config, members MembershipSource, logger *slog.Logger) *Authenticator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	retry := cfg.DiscoveryRetry
	if retry <= 0 {
		retry = defaultDiscoveryRetry
	}
	cfg.ClientIDs = slices.Clone(cfg.ClientIDs)
	if len(cfg.ClientIDs) == 0 {
		logger.Warn("auth: no client IDs configured; every token will be rejected")
	}
	switch cfg.TenantClaim {
	case "", TenantClaimOrganization, TenantClaimGroups:
	default:
		// Ignoring an unknown claim kind only ever grants fewer tenants, so it is safe.
		logger.Warn("auth: unknown tenant claim kind ignored", "tenant_claim", cfg.TenantClaim)
		cfg.TenantClaim = ""
	}
	return &Authenticator{
		cfg:     cfg,
		members: members,
		log:     logger,
		client:  client,
		retry:   retry,
		roleMap: buildRoleMap(cfg.RoleNames),
		sem:     make(chan struct{}, 1),
	}
}

// buildRoleMap inverts RoleNames. Known roles without an entry keep their canonical name, so
// the zero Config works against a realm that uses the canonical names.
func buildRoleMap(names map[Role]string) map[string]Role {
	m := make(map[string]Role)
	for _, r := range []Role{RolePlatformAdmin, RoleProvider, RoleCustomer} {
		if _, ok := names[r]; !ok {
			m[string(r)] = r
		}
	}
	for r, kc := range names {
		if kc != "" {
			m[kc] = r
		}
	}
	return m
}

// issuer is what discovery found: the verifier and the signing keys it checks with.
type issuer struct {
	verifier *oidc.IDTokenVerifier
	keys     *keySet
}

// getIssuer returns the issuer, discovering it if needed. A failure is cached for the retry
// interval and reported as ErrUnavailable.
func (a *Authenticator) getIssuer(ctx context.Context) (*issuer, error) {
	if v := a.issuer.Load(); v != nil {
		return v, nil
	}
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	case <-ctx.Done():
		return nil, ErrUnavailable
	}
	if v := a.issuer.Load(); v != nil { // someone else discovered while we waited
		return v, nil
	}
	if a.failErr != nil && time.Since(a.failedAt) < a.retry {
		return nil, ErrUnavailable
	}
	// Discovery outlives the request that triggered it: a client hanging up mid-discovery
	// must not poison the cache for everyone else for the retry interval.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(oidc.ClientContext(dctx, a.client), a.cfg.IssuerURL)
	if err != nil {
		a.failedAt, a.failErr = time.Now(), err
		a.log.Warn("auth: OIDC discovery failed; will retry", "issuer", a.cfg.IssuerURL,
			"retry_in", a.retry, "err", err)
		return nil, ErrUnavailable
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil || meta.JWKSURI == "" {
		a.failedAt, a.failErr = time.Now(), errors.New("discovery document has no jwks_uri")
		a.log.Warn("auth: OIDC discovery document has no jwks_uri; will retry", "issuer", a.cfg.IssuerURL,
			"retry_in", a.retry)
		return nil, ErrUnavailable
	}
	// Our keySet rather than go-oidc's RemoteKeySet, which asks the issuer again for every
	// token it cannot verify (keyset.go). SkipClientIDCheck: go-oidc can only check one aud
	// value; Keycloak access tokens need "azp or aud in a set", which verify does itself.
	keys := newKeySet(meta.JWKSURI, a.client, supportedAlgs, a.cfg.JWKSRefetch, a.retry, a.log)
	v := &issuer{
		verifier: oidc.NewVerifier(a.cfg.IssuerURL, keys, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: supportedAlgs}),
		keys:     keys,
	}
	a.issuer.Store(v)
	a.failErr = nil
	a.log.Info("auth: OIDC issuer discovered", "issuer", a.cfg.IssuerURL)
	return v, nil
}

// accessClaims are the Keycloak access-token claims the portal reads.
type accessClaims struct {
	Subject           string              `json:"sub"`
	Type              string              `json:"typ"`
	AuthorizedParty   string              `json:"azp"`
	NotBefore         *float64            `json:"nbf"`
	IssuedAt          *float64            `json:"iat"`
	Email             string              `json:"email"`
	Name              string              `json:"name"`
	PreferredUsername string              `json:"preferred_username"`
	RealmAccess       roleList            `json:"realm_access"`
	ResourceAccess    map[string]roleList `json:"resource_access"`
	Organization      json.RawMessage     `json:"organization"`
	Groups            []string            `json:"groups"`
}

type roleList struct {
	Roles []string `json:"roles"`
}

// Authenticate verifies rawToken and returns the Viewer it names. A rejected token yields
// ErrUnauthenticated; an issuer or membership source that cannot be reached yields
// ErrUnavailable. Neither error carries detail; the reason is logged at debug level.
func (a *Authenticator) Authenticate(ctx context.Context, rawToken string) (*Viewer, error) {
	iss, err := a.getIssuer(ctx)
	if err != nil {
		return nil, err
	}
	// Without any key no token can be checked: the issuer's outage, not the caller's fault.
	if err := iss.keys.ready(ctx); err != nil {
		return nil, ErrUnavailable
	}
	v, reason := a.verify(ctx, iss.verifier, rawToken)
	if reason != nil {
		// Never log the token: it is a bearer credential and may still be valid elsewhere.
		a.log.Debug("auth: token rejected", "reason", reason.Error())
		return nil, ErrUnauthenticated
	}
	return a.Refresh(ctx, v)
}

// Refresh returns a copy of v with its tenant memberships read again (v is not
// modified). Authenticate reads them once per token check; a connection that
// authenticated once and lives on (a websocket) calls Refresh as each of its operations
// starts, so that a person removed from a tenant, or a tenant suspended, since
// connection_init is treated as an HTTP request would treat them. A membership source
// that cannot be reached yields ErrUnavailable.
func (a *Authenticator) Refresh(ctx context.Context, v *Viewer) (*Viewer, error) {
	if a.members == nil || v == nil {
		return v, nil
	}
	tenants, err := a.members.Memberships(ctx, v)
	if err != nil {
		a.log.Error("auth: membership lookup failed", "sub", v.Subject, "err", err)
		return nil, ErrUnavailable
	}
	cp := *v
	cp.Tenants = tenants
	return &cp, nil
}

// verify returns the viewer, or the (internal, loggable) reason the token is rejected.
func (a *Authenticator) verify(ctx context.Context, verifier *oidc.IDTokenVerifier, rawToken string) (*Viewer, error) {
	if rawToken == "" {
		return nil, errors.New("empty token")
	}
	// Signature (alg allow-list, JWKS kid), iss and exp are checked by go-oidc.
	tok, err := verifier.Verify(ctx, rawToken)
	if err != nil {
		return nil, err
	}
	var c accessClaims
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	// Keycloak signs ID tokens (typ "ID") and refresh tokens with the same realm key; only an
	// access token says what the bearer may do.
	if c.Type != keycloakAccessTokenType {
		return nil, fmt.Errorf("typ %q is not an access token", c.Type)
	}
	if c.Subject == "" {
		return nil, errors.New("missing sub")
	}
	// go-oidc has already normalised aud (a string or a list, RFC 7519 §4.1.3) into a slice.
	if !slices.Contains(a.cfg.ClientIDs, c.AuthorizedParty) &&
		!slices.ContainsFunc(tok.Audience, func(s string) bool { return slices.Contains(a.cfg.ClientIDs, s) }) {
		return nil, fmt.Errorf("neither azp %q nor aud %q is an accepted client", c.AuthorizedParty, tok.Audience)
	}
	// go-oidc tolerates nbf up to 5 minutes ahead and ignores iat; a token from the future
	// means a skewed or hostile issuer, so allow only ordinary clock skew.
	limit := time.Now().Add(clockSkew)
	if c.NotBefore != nil && unixTime(*c.NotBefore).After(limit) {
		return nil, errors.New("nbf is in the future")
	}
	if c.IssuedAt != nil && unixTime(*c.IssuedAt).After(limit) {
		return nil, errors.New("iat is in the future")
	}

	v := &Viewer{
		Subject: c.Subject,
		Email:   c.Email,
		Name:    c.Name,
		Expiry:  tok.Expiry,
		Roles:   a.roles(&c),
	}
	if v.Name == "" {
		v.Name = c.PreferredUsername
	}
	v.ClaimedTenants = a.claimedTenants(&c)
	return v, nil
}

func unixTime(f float64) time.Time { return time.Unix(int64(f), 0) }

// roles maps realm roles and the RoleClient's client roles to canonical roles; names the
// portal does not know (default-roles-*, offline_access...) are ignored.
func (a *Authenticator) roles(c *accessClaims) []Role {
	names := slices.Clone(c.RealmAccess.Roles)
	if a.cfg.RoleClient != "" {
		names = append(names, c.ResourceAccess[a.cfg.RoleClient].Roles...)
	}
	var out []Role
	for _, n := range names {
		if r, ok := a.roleMap[n]; ok && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// claimedTenants extracts tenant slugs from the configured claim. Malformed shapes yield no
// tenants rather than an error: the claim only ever adds tenants, so ignoring it is safe.
func (a *Authenticator) claimedTenants(c *accessClaims) []string {
	var slugs []string
	add := func(s string) {
		if s != "" && !slices.Contains(slugs, s) {
			slugs = append(slugs, s)
		}
	}
	switch a.cfg.TenantClaim {
	case TenantClaimOrganization:
		if len(c.Organization) == 0 {
			return nil
		}
		var list []string
		var obj map[string]json.RawMessage
		var one string
		switch {
		case json.Unmarshal(c.Organization, &list) == nil:
			for _, s := range list {
				add(s)
			}
		case json.Unmarshal(c.Organization, &obj) == nil:
			for alias := range obj {
				add(alias)
			}
			slices.Sort(slugs) // map order is random; keep Viewers deterministic
		case json.Unmarshal(c.Organization, &one) == nil:
			add(one)
		default:
			a.log.Debug("auth: organization claim has an unexpected shape; ignored")
		}
	case TenantClaimGroups:
		for _, g := range c.Groups {
			rest, ok := strings.CutPrefix(g, "/tenants/")
			if !ok {
				continue
			}
			slug, _, _ := strings.Cut(rest, "/")
			add(slug)
		}
	}
	return slugs
}
