// Package keys stores API keys with ent: it is the apikey.Store the verifier reads, and
// the service behind creating, listing, revoking and rotating keys (portal mutations,
// the operator CLI, the dev seed and Waldur provisioning all go through it).
package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	entapikey "github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Invalidator drops a key from verifier caches (this replica's, and others' through the
// broker); revocation calls it after the row is committed.
type Invalidator interface {
	Invalidate(hash string)
}

// Service creates and manages keys.
type Service struct {
	client      *ent.Client
	minter      apikey.Minter
	invalidator Invalidator
	now         func() time.Time
	// DefaultTTL is the lifetime of a key created without an expiry.
	DefaultTTL time.Duration
}

// New returns a Service. invalidator may be nil until the verifier exists.
func New(client *ent.Client, minter apikey.Minter, invalidator Invalidator) *Service {
	return &Service{client: client, minter: minter, invalidator: invalidator, now: time.Now, DefaultTTL: 365 * 24 * time.Hour}
}

// SetInvalidator wires the verifier's cache once it exists.
func (s *Service) SetInvalidator(inv Invalidator) { s.invalidator = inv }

// CreateParams describe a new key.
type CreateParams struct {
	ConfigID  pulid.ID
	Name      string
	Kind      apikey.Kind
	Scopes    []apikey.Scope // default: invoke (secret) or widget:invoke (publishable)
	ExpiresAt *time.Time     // default: now + DefaultTTL
	CreatedBy string
}

// Created is a new key: Secret is shown once and never stored.
type Created struct {
	Key    *ent.APIKey
	Secret string
}

// Create mints a key for a config and stores its hash. It runs with the caller's
// context, so privacy rules decide whether the caller may create keys for that config
// (the config lookup fails for another tenant's config).
func (s *Service) Create(ctx context.Context, p CreateParams) (Created, error) {
	cfg, err := s.client.AgentConfig.Get(ctx, p.ConfigID)
	if err != nil {
		return Created{}, fmt.Errorf("keys: config: %w", err)
	}
	sub, err := s.client.Subscription.Get(auth.SystemContext(ctx), cfg.SubscriptionID)
	if err != nil {
		return Created{}, fmt.Errorf("keys: subscription of config: %w", err)
	}
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = []apikey.Scope{apikey.ScopeInvoke}
		if p.Kind == apikey.KindPublishable {
			scopes = []apikey.Scope{apikey.ScopeWidgetInvoke}
		}
	}
	expires := s.now().Add(s.DefaultTTL)
	if p.ExpiresAt != nil {
		expires = *p.ExpiresAt
	}
	var project pulid.ID
	if sub.ProjectID != nil {
		project = *sub.ProjectID
	}
	minted, err := s.minter.Mint(apikey.MintParams{
		Kind: p.Kind, TenantID: cfg.TenantID, ProjectID: project, ConfigID: cfg.ID,
		Scopes: scopes, ExpiresAt: expires,
	})
	if err != nil {
		return Created{}, fmt.Errorf("keys: mint: %w", err)
	}
	scopeNames := make([]string, len(scopes))
	for i, sc := range scopes {
		scopeNames[i] = string(sc)
	}
	create := s.client.APIKey.Create().
		SetTenantID(cfg.TenantID).SetConfigID(cfg.ID).SetName(p.Name).
		SetKind(entapikey.Kind(p.Kind)).SetPrefix(minted.Prefix).SetLast4(minted.Last4).
		SetKeyHash(minted.Hash).SetJti(minted.JTI).SetScopes(scopeNames).
		SetExpiresAt(expires).SetCreatedBy(p.CreatedBy)
	if sub.ProjectID != nil {
		create.SetProjectID(*sub.ProjectID)
	}
	row, err := create.Save(ctx)
	if err != nil {
		return Created{}, fmt.Errorf("keys: store: %w", err)
	}
	return Created{Key: row, Secret: minted.Key}, nil
}

// Revoke ends a key now. Revoking a revoked key is a no-op.
func (s *Service) Revoke(ctx context.Context, id pulid.ID) (*ent.APIKey, error) {
	return s.revokeAt(ctx, id, s.now())
}

func (s *Service) revokeAt(ctx context.Context, id pulid.ID, at time.Time) (*ent.APIKey, error) {
	k, err := s.client.APIKey.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("keys: revoke: %w", err)
	}
	if k.RevokedAt != nil && !k.RevokedAt.After(at) {
		return k, nil
	}
	k, err = k.Update().SetRevokedAt(at).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: revoke: %w", err)
	}
	if s.invalidator != nil {
		s.invalidator.Invalidate(k.KeyHash)
	}
	return k, nil
}

// Rotate creates a replacement with the same config, kind, scopes and name, and lets the
// old key live for grace more (0: it dies now).
func (s *Service) Rotate(ctx context.Context, id pulid.ID, grace time.Duration, by string) (Created, error) {
	old, err := s.client.APIKey.Get(ctx, id)
	if err != nil {
		return Created{}, fmt.Errorf("keys: rotate: %w", err)
	}
	if old.RevokedAt != nil && !old.RevokedAt.After(s.now()) {
		return Created{}, fmt.Errorf("keys: rotate: %w", apikey.ErrRevoked)
	}
	scopes := make([]apikey.Scope, len(old.Scopes))
	for i, sc := range old.Scopes {
		scopes[i] = apikey.Scope(sc)
	}
	// The replacement lives no longer than the key it replaces: rotating must not turn a
	// short-lived key into a year-long one.
	created, err := s.Create(ctx, CreateParams{ConfigID: old.ConfigID, Name: old.Name, Kind: apikey.Kind(old.Kind),
		Scopes: scopes, ExpiresAt: old.ExpiresAt, CreatedBy: by})
	if err != nil {
		return Created{}, err
	}
	if err := old.Update().SetReplacedByID(created.Key.ID).Exec(ctx); err != nil {
		return Created{}, fmt.Errorf("keys: rotate: link replacement: %w", err)
	}
	if _, err := s.revokeAt(ctx, id, s.now().Add(grace)); err != nil {
		return Created{}, err
	}
	return created, nil
}

// LookupByHash implements apikey.Store. It runs as system code: the gateway has no
// viewer, the key itself is the credential.
func (s *Service) LookupByHash(ctx context.Context, hash string) (apikey.Record, error) {
	k, err := s.client.APIKey.Query().Where(entapikey.KeyHash(hash)).Only(auth.SystemContext(ctx))
	if ent.IsNotFound(err) {
		return apikey.Record{}, apikey.ErrNotFound
	}
	if err != nil {
		return apikey.Record{}, fmt.Errorf("keys: lookup: %w", err)
	}
	return RecordOf(k), nil
}

// TouchLastUsed implements apikey.Store.
func (s *Service) TouchLastUsed(ctx context.Context, ids []pulid.ID, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.client.APIKey.Update().
		Where(entapikey.IDIn(ids...), entapikey.Or(entapikey.LastUsedAtIsNil(), entapikey.LastUsedAtLT(at))).
		SetLastUsedAt(at).Exec(auth.SystemContext(ctx))
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("keys: touch last used: %w", err)
	}
	return err
}

// RecordOf converts a row to what the verifier needs.
func RecordOf(k *ent.APIKey) apikey.Record {
	r := apikey.Record{ID: k.ID, TenantID: k.TenantID, ConfigID: k.ConfigID, Kind: apikey.Kind(k.Kind), ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt}
	if k.ProjectID != nil {
		r.ProjectID = *k.ProjectID
	}
	for _, sc := range k.Scopes {
		r.Scopes = append(r.Scopes, apikey.Scope(sc))
	}
	return r
}
