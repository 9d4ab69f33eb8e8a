// Package apikey mints, parses and verifies the API keys that authenticate machine calls to
// the invoke gateway.
//
// A key is a kind prefix followed by an HS256 JWT: "ar_sk_live_<jwt>" for secret keys and
// "ar_pk_live_<jwt>" for publishable widget keys. The signature only proves that we minted
// the key; whether it may still be used is decided by its row (found by the SHA-256 of the
// whole key string), so that revocation works and a leaked signing secret alone cannot forge
// a usable key. The package does not know ent: the Store interface is implemented elsewhere.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// Kind tells secret keys (server to server) from publishable keys (embedded in web pages).
// The values are the ones stored in the APIKey.kind column.
type Kind string

// Key kinds.
const (
	KindSecret      Kind = "secret"
	KindPublishable Kind = "publishable"
)

// Prefixes of the key string. "live" leaves room for test-mode keys later without making
// today's keys ambiguous.
const (
	PrefixSecret      = "ar_sk_live_"
	PrefixPublishable = "ar_pk_live_"
)

// Prefix returns the key-string prefix of the kind, or "" for an unknown kind.
func (k Kind) Prefix() string {
	switch k {
	case KindSecret:
		return PrefixSecret
	case KindPublishable:
		return PrefixPublishable
	}
	return ""
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k.Prefix() != "" }

// Scope is one permission a key carries.
type Scope string

// The scopes the gateway knows. Unknown scopes are rejected everywhere rather than ignored,
// so that a typo never silently produces a key that can do less (or more) than intended.
const (
	ScopeInvoke       Scope = "invoke"
	ScopeWidgetInvoke Scope = "widget:invoke"
	ScopeUsageRead    Scope = "usage:read"
)

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool {
	switch s {
	case ScopeInvoke, ScopeWidgetInvoke, ScopeUsageRead:
		return true
	}
	return false
}

// ParseScope validates a scope name coming from user input.
func ParseScope(s string) (Scope, error) {
	if sc := Scope(s); sc.Valid() {
		return sc, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidScope, s)
}

// MaxKeyLen bounds what Parse accepts: our keys are a few hundred bytes, and nothing larger
// should reach the JSON decoder or the HMAC.
const MaxKeyLen = 4096

// minSecretLen is the HS256 key size (RFC 7518 §3.2 asks for at least the hash length).
const minSecretLen = 32

// Errors. The gateway maps all of them to 401 except store failures; they are distinct so that
// logs and metrics can tell a typo from an attack from a revoked key.
var (
	// ErrMalformed: not one of our keys (bad prefix, bad encoding, too long, missing or
	// invalid claims, wrong issuer or audience).
	ErrMalformed = errors.New("apikey: malformed key")
	// ErrBadSignature: the signature does not verify, the algorithm is not HS256, or the
	// kid is not in the keyring.
	ErrBadSignature = errors.New("apikey: bad signature")
	// ErrExpired: past the JWT exp or the row's expires_at.
	ErrExpired = errors.New("apikey: key expired")
	// ErrWrongKind: the prefix does not match the kind the key was minted as (a publishable
	// key dressed as a secret one), or the kind does not allow the scopes it carries.
	ErrWrongKind = errors.New("apikey: wrong key kind")
	// ErrUnknownKey: the signature is fine but no row has this hash (never stored, deleted, or
	// forged with a leaked signing secret).
	ErrUnknownKey = errors.New("apikey: unknown key")
	// ErrRevoked: the row is revoked, or was rotated and its grace period is over.
	ErrRevoked = errors.New("apikey: key revoked")
	// ErrNotFound is what a Store returns when no row has the hash.
	ErrNotFound = errors.New("apikey: not found")
	// ErrInvalidScope: Mint was asked for an unknown scope or one the kind may not carry.
	ErrInvalidScope = errors.New("apikey: invalid scope")
)

// SigningKey is one HS256 secret and the kid that names it in token headers.
type SigningKey struct {
	ID     string
	Secret []byte
}

// String keeps the secret out of logs and error messages.
func (k SigningKey) String() string { return "apikey.SigningKey{ID:" + k.ID + ", Secret:[redacted]}" }

// GoString keeps the secret out of %#v.
func (k SigningKey) GoString() string { return k.String() }

// LogValue keeps the secret out of slog output.
func (k SigningKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// KeyringOptions are what a keyring checks besides signatures.
type KeyringOptions struct {
	// Issuer and Audience are required in every key and must equal these values. They also
	// are the defaults for MintParams.
	Issuer   string
	Audience string
	// Leeway tolerates clock skew between replicas when checking exp. Default 0.
	Leeway time.Duration
	// Now is the clock (tests inject one). Default time.Now.
	Now func() time.Time
}

// Keyring signs with its first key and verifies with all of them, so that a signing secret
// can be rotated without invalidating the keys already handed out: put the new secret first,
// keep the old ones until every key they signed has been re-minted or has expired.
type Keyring struct {
	signing  SigningKey
	byKID    map[string][]byte
	issuer   string
	audience string
	now      func() time.Time
	parser   *jwt.Parser
}

// Minter mints keys; resolvers depend on this rather than on *Keyring so tests can fake it.
type Minter interface {
	Mint(MintParams) (Minted, error)
}

var _ Minter = (*Keyring)(nil)

// NewKeyring builds a keyring. keys[0] signs; kids must be unique and secrets at least 32
// bytes; Issuer and Audience are required because Parse insists on both.
func NewKeyring(keys []SigningKey, opts KeyringOptions) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("apikey: keyring needs at least one signing key")
	}
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("apikey: keyring needs an issuer and an audience")
	}
	if opts.Leeway < 0 {
		return nil, errors.New("apikey: negative leeway")
	}
	kr := &Keyring{
		byKID:    make(map[string][]byte, len(keys)),
		issuer:   opts.Issuer,
		audience: opts.Audience,
		now:      opts.Now,
	}
	if kr.now == nil {
		kr.now = time.Now
	}
	for i, k := range keys {
		if err := validKID(k.ID); err != nil {
			return nil, err
		}
		if len(k.Secret) < minSecretLen {
			return nil, fmt.Errorf("apikey: secret of kid %q is %d bytes, need at least %d", k.ID, len(k.Secret), minSecretLen)
		}
		if _, dup := kr.byKID[k.ID]; dup {
			return nil, fmt.Errorf("apikey: duplicate kid %q", k.ID)
		}
		// Copy: the caller's slice must not be able to change a secret under us.
		kr.byKID[k.ID] = slices.Clone(k.Secret)
		if i == 0 {
			kr.signing = SigningKey{ID: k.ID, Secret: kr.byKID[k.ID]}
		}
	}
	// One parser for all calls: jwt.Parser is read-only after construction.
	kr.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(kr.issuer),
		jwt.WithAudience(kr.audience),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(kr.now),
		// Strict base64 stops the same token from having several spellings (and hashes).
		jwt.WithStrictDecoding(),
	)
	return kr, nil
}

// ParseKeyring builds a keyring from "kid:secret,kid2:secret2" (the form an environment
// variable takes). The first pair signs. Secrets are taken as raw bytes and may contain ':'
// but not ','.
func ParseKeyring(spec string, opts KeyringOptions) (*Keyring, error) {
	var keys []SigningKey
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kid, secret, ok := strings.Cut(part, ":")
		if !ok {
			// Do not echo the part: it is probably a secret without its kid.
			return nil, errors.New("apikey: keyring entry without \"kid:\"")
		}
		keys = append(keys, SigningKey{ID: strings.TrimSpace(kid), Secret: []byte(secret)})
	}
	return NewKeyring(keys, opts)
}

func validKID(kid string) error {
	if kid == "" || len(kid) > 64 {
		return fmt.Errorf("apikey: kid must be 1..64 characters: %q", kid)
	}
	for _, r := range kid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("apikey: kid may hold only letters, digits, '-', '_', '.': %q", kid)
		}
	}
	return nil
}

// String keeps secrets out of logs.
func (kr *Keyring) String() string {
	kids := make([]string, 0, len(kr.byKID))
	kids = append(kids, kr.signing.ID)
	for kid := range kr.byKID {
		if kid != kr.signing.ID {
			kids = append(kids, kid)
		}
	}
	slices.Sort(kids[1:])
	return "apikey.Keyring{signing:" + kr.signing.ID + ", kids:" + strings.Join(kids, ",") + "}"
}

// Claims are the JWT claims of a key.
type Claims struct {
	// Kind is set in every key we mint so that a publishable key cannot pass Parse with a
	// secret prefix (the JWT would be unchanged and its signature still valid). It may be
	// absent only from legacy secret keys of the seeds' format.
	Kind      Kind     `json:"kind,omitempty"`
	TenantID  pulid.ID `json:"tenant_id"`
	ProjectID pulid.ID `json:"project_id,omitempty"`
	// ConfigID keeps the seeds' claim name.
	ConfigID pulid.ID `json:"config_uuid"`
	Scopes   []Scope  `json:"scopes"`
	jwt.RegisteredClaims
}

// MintParams describe a new key.
type MintParams struct {
	Kind      Kind
	TenantID  pulid.ID
	ProjectID pulid.ID // optional
	ConfigID  pulid.ID
	Scopes    []Scope
	// ExpiresAt is required: the JWT must carry exp, and keys that live forever are the ones
	// nobody remembers to revoke. Precision is one second.
	ExpiresAt time.Time
	// Issuer and Audience default to the keyring's.
	Issuer   string
	Audience string
}

// Minted is a new key. Key is shown to the user once and never stored; the rest is stored.
type Minted struct {
	Key    string
	Hash   string // hex SHA-256 of Key: the lookup column
	Prefix string // kind prefix + first 6 characters of the JWT, for display
	Last4  string // last 4 characters of Key (of the signature), for display
	JTI    string
}

// Mint signs a new key with the keyring's first secret.
func (kr *Keyring) Mint(p MintParams) (Minted, error) {
	prefix := p.Kind.Prefix()
	if prefix == "" {
		return Minted{}, fmt.Errorf("apikey: unknown kind %q", p.Kind)
	}
	if !p.TenantID.Valid() || !p.ConfigID.Valid() {
		return Minted{}, errors.New("apikey: tenant and config ids are required and must be well formed")
	}
	if p.ProjectID != "" && !p.ProjectID.Valid() {
		return Minted{}, errors.New("apikey: malformed project id")
	}
	scopes, err := checkScopes(p.Kind, p.Scopes)
	if err != nil {
		return Minted{}, err
	}
	now := kr.now()
	if p.ExpiresAt.IsZero() {
		return Minted{}, errors.New("apikey: an expiry is required")
	}
	if !p.ExpiresAt.After(now) {
		return Minted{}, errors.New("apikey: expiry is in the past")
	}
	iss, aud := p.Issuer, p.Audience
	if iss == "" {
		iss = kr.issuer
	}
	if aud == "" {
		aud = kr.audience
	}
	claims := Claims{
		Kind:      p.Kind,
		TenantID:  p.TenantID,
		ProjectID: p.ProjectID,
		ConfigID:  p.ConfigID,
		Scopes:    scopes,
		RegisteredClaims: jwt.RegisteredClaims{
			// 128 random bits: the jti is what makes two keys with equal claims differ.
			ID:        rand.Text(),
			Issuer:    iss,
			Audience:  jwt.ClaimStrings{aud},
			ExpiresAt: jwt.NewNumericDate(p.ExpiresAt),
			IssuedAt:  jwt.NewNumericDate(now),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kr.signing.ID
	signed, err := tok.SignedString(kr.signing.Secret)
	if err != nil {
		return Minted{}, fmt.Errorf("apikey: sign: %w", err)
	}
	key := prefix + signed
	return Minted{
		Key:  key,
		Hash: HashKey(key),
		// The JWT header is the same for every key of one kid, so these 6 characters mostly
		// say which kind and kid; Last4 is what tells keys apart in a list.
		Prefix: key[:len(prefix)+6],
		Last4:  key[len(key)-4:],
		JTI:    claims.ID,
	}, nil
}

// checkScopes validates and de-duplicates scopes. Publishable keys live in web pages where
// anyone can read them, so they may only ever carry widget:invoke.
func checkScopes(kind Kind, in []Scope) ([]Scope, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: at least one scope is required", ErrInvalidScope)
	}
	out := make([]Scope, 0, len(in))
	for _, s := range in {
		if !s.Valid() {
			return nil, fmt.Errorf("%w: unknown scope %q", ErrInvalidScope, s)
		}
		if kind == KindPublishable && s != ScopeWidgetInvoke {
			return nil, fmt.Errorf("%w: a publishable key may only carry %q, not %q", ErrInvalidScope, ScopeWidgetInvoke, s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// HashKey is the hex SHA-256 of the whole key string, prefix included: the only form in
// which a key is stored.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Parse checks a key's prefix, signature and claims. It does not consult the store: a key
// that parses may still be revoked or unknown (see Verifier).
func (kr *Keyring) Parse(key string) (Claims, error) {
	if len(key) > MaxKeyLen {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxKeyLen)
	}
	var kind Kind
	var token string
	switch {
	case strings.HasPrefix(key, PrefixSecret):
		kind, token = KindSecret, key[len(PrefixSecret):]
	case strings.HasPrefix(key, PrefixPublishable):
		kind, token = KindPublishable, key[len(PrefixPublishable):]
	default:
		return Claims{}, fmt.Errorf("%w: unknown prefix", ErrMalformed)
	}

	var c Claims
	_, err := kr.parser.ParseWithClaims(token, &c, kr.keyFunc)
	if err != nil {
		return Claims{}, mapJWTError(err)
	}

	switch {
	case c.Kind == "" && kind == KindSecret:
		// Legacy secret key without the kind claim: the prefix decides.
	case c.Kind != kind:
		return Claims{}, fmt.Errorf("%w: minted as %q, presented as %q", ErrWrongKind, c.Kind, kind)
	}
	c.Kind = kind
	if c.TenantID == "" || c.ConfigID == "" || c.ID == "" {
		return Claims{}, fmt.Errorf("%w: missing tenant_id, config_uuid or jti", ErrMalformed)
	}
	if _, err := checkScopes(kind, c.Scopes); err != nil {
		if kind == KindPublishable {
			return Claims{}, fmt.Errorf("%w: %w", ErrWrongKind, err)
		}
		return Claims{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return c, nil
}

// errUnknownKID is wrapped by the jwt library in ErrTokenUnverifiable.
var errUnknownKID = errors.New("unknown kid")

func (kr *Keyring) keyFunc(t *jwt.Token) (any, error) {
	// WithValidMethods already rejected other algorithms; this keeps the guarantee local.
	if t.Method != jwt.SigningMethodHS256 {
		return nil, fmt.Errorf("unexpected method %v", t.Header["alg"])
	}
	kid, _ := t.Header["kid"].(string)
	secret, ok := kr.byKID[kid]
	if !ok {
		return nil, errUnknownKID
	}
	return secret, nil
}

// mapJWTError turns the jwt library's errors into ours. Signature problems come first: the
// library checks the signature before the claims, and a forged token must never be reported
// as merely expired.
func mapJWTError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	default:
		// Missing exp/iss/aud, wrong issuer or audience, not valid yet: signed by us but not a
		// key this deployment accepts.
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
}
