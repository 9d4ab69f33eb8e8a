// Package devissuer is a minimal local OIDC issuer: discovery document, JWKS and token minting
// in Keycloak's shape. It backs both --dev and the tests, so that dev and test tokens go
// through exactly the verification path production tokens do (auth.Authenticator), instead
// of a "dev mode" bypass that could leak into production.
//
// It only ever runs on loopback: a signing service reachable from the network would let
// anyone mint tokens for a realm that trusts it.
package devissuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gsvdev/agentregistry/internal/auth"
)

// Keycloak-shaped defaults for minted tokens.
const (
	// DefaultClientID is the azp of minted tokens: the browser client that obtains them.
	DefaultClientID = "portal-web"
	// DefaultAudience is put in aud next to "account", as Keycloak's audience mapper does.
	DefaultAudience = "portal-api"
	// DefaultTTL is used when Mint is given ttl 0 (Keycloak's default access token lifespan).
	DefaultTTL = 5 * time.Minute

	// JWKSPath and DiscoveryPath are relative to the issuer URL; JWKSPath is Keycloak's.
	JWKSPath      = "/protocol/openid-connect/certs"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Issuer signs tokens with one RSA key and serves the documents needed to verify them.
// It is immutable after New and safe for concurrent use.
type Issuer struct {
	issuer string // issuer URL without trailing slash, exactly what tokens carry in iss
	path   string // URL path of the issuer, without trailing slash
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	jwks   []byte
	disco  []byte
}

// New returns an issuer for issuerURL (e.g. http://127.0.0.1:8080/realms/dev) signing with
// key. It refuses any issuer URL whose host is not loopback.
func New(issuerURL string, key *rsa.PrivateKey) (*Issuer, error) {
	if key == nil {
		return nil, errors.New("devissuer: nil key")
	}
	u, err := url.Parse(issuerURL)
	if err != nil {
		return nil, fmt.Errorf("devissuer: issuer URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("devissuer: issuer URL %q must be http(s)", issuerURL)
	}
	if !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("devissuer: refusing non-loopback issuer host %q", u.Hostname())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("devissuer: issuer URL %q must not have userinfo, query or fragment", issuerURL)
	}
	iss := strings.TrimSuffix(issuerURL, "/")

	// The kid is the RFC 7638 thumbprint so it is stable for a persisted key (tokens minted
	// before a restart still find their key) and changes when the key does.
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devissuer: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	pub.KeyID = kid

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("devissuer: signer: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, fmt.Errorf("devissuer: jwks: %w", err)
	}
	disco, err := json.Marshal(map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              iss + JWKSPath,
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
	})
	if err != nil {
		return nil, fmt.Errorf("devissuer: discovery: %w", err)
	}
	return &Issuer{
		issuer: iss,
		path:   strings.TrimSuffix(u.EscapedPath(), "/"),
		key:    key,
		kid:    kid,
		signer: signer,
		jwks:   jwks,
		disco:  disco,
	}, nil
}

// isLoopback reports whether host (without port) is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL returns the issuer URL, as carried in iss.
func (i *Issuer) URL() string { return i.issuer }

// KeyID returns the kid of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// PublicKey returns the verification key.
func (i *Issuer) PublicKey() *rsa.PublicKey { return &i.key.PublicKey }

// Handler serves the discovery document and the JWKS at their full paths under the issuer
// URL's path (so mount it without stripping the prefix); anything else is 404.
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var body []byte
		switch r.URL.EscapedPath() {
		case i.path + DiscoveryPath:
			body = i.disco
		case i.path + JWKSPath:
			body = i.jwks
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Short cache: a restarted dev server with a new key must be picked up quickly.
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(body)
	})
}

// Mint signs claims (RS256, with kid) on top of Keycloak-shaped defaults: iss, typ "Bearer",
// azp DefaultClientID, aud [DefaultAudience, "account"], iat now, exp now+ttl (DefaultTTL if
// ttl is 0; a negative ttl mints an expired token), a random jti and sub. Given claims
// override the defaults; a nil value removes the claim, so tests can build malformed tokens.
func (i *Issuer) Mint(claims map[string]any, ttl time.Duration) (string, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	now := time.Now()
	c := map[string]any{
		"iss": i.issuer,
		"typ": "Bearer",
		"azp": DefaultClientID,
		"aud": []string{DefaultAudience, "account"},
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": newUUID(),
		"sub": newUUID(),
	}
	maps.Copy(c, claims)
	maps.DeleteFunc(c, func(_ string, v any) bool { return v == nil })
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("devissuer: claims: %w", err)
	}
	jws, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// DevToken mints an access token for a person holding role (none if role is ""), as Keycloak
// would issue it to clientID: the role is a client role of roleClient (a realm role if
// roleClient is ""), and aud names roleClient and "account" the way Keycloak's audience
// resolution does.
func (i *Issuer) DevToken(role auth.Role, subject, email, clientID, roleClient string, ttl time.Duration) (string, error) {
	username, _, _ := strings.Cut(email, "@")
	aud := []string{"account"}
	if roleClient != "" {
		aud = []string{roleClient, "account"}
	}
	realmRoles := []string{"offline_access", "uma_authorization"}
	resource := map[string]any{
		"account": map[string]any{"roles": []string{"manage-account", "view-profile"}},
	}
	if role != "" {
		if roleClient == "" {
			realmRoles = append(realmRoles, string(role))
		} else {
			resource[roleClient] = map[string]any{"roles": []string{string(role)}}
		}
	}
	return i.Mint(map[string]any{
		"sub":                subject,
		"azp":                clientID,
		"aud":                aud,
		"email":              email,
		"email_verified":     true,
		"preferred_username": username,
		"name":               username,
		"scope":              "openid email profile",
		"realm_access":       map[string]any{"roles": realmRoles},
		"resource_access":    resource,
	}, ttl)
}

// newUUID returns a random (version 4) UUID, the shape Keycloak uses for sub and jti.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
