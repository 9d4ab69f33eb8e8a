package graph

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/langflow/flowcheck"
)

var errNotConfigured = &Error{Code: CodeInternal, Message: "this operation is not configured on this server"}

// createKey turns the GraphQL input into a key creation under the caller's privacy.
func (r *Resolver) createKey(ctx context.Context, in model.CreateKeyInput) (*model.CreateKeyPayload, error) {
	if r.svc.Keys == nil {
		return nil, errNotConfigured
	}
	scopes := make([]apikey.Scope, 0, len(in.Scopes))
	for i, s := range in.Scopes {
		sc, err := apikey.ParseScope(s)
		if err != nil {
			return nil, apperr.Invalid(fmt.Sprintf("input.scopes[%d]", i), "unknown scope %q (invoke, widget:invoke, usage:read)", s)
		}
		scopes = append(scopes, sc)
	}
	kind := apikey.Kind(in.Kind)
	if kind == apikey.KindPublishable {
		for i, s := range scopes {
			if s != apikey.ScopeWidgetInvoke {
				return nil, apperr.Invalid(fmt.Sprintf("input.scopes[%d]", i), "publishable keys only carry widget:invoke")
			}
		}
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(time.Now()) {
		return nil, apperr.Invalid("input.expiresAt", "expiry must be in the future")
	}
	if in.Name == "" || len(in.Name) > 100 {
		return nil, apperr.Invalid("input.name", "name must be 1 to 100 characters")
	}
	created, err := r.svc.Keys.Create(ctx, keys.CreateParams{
		ConfigID: in.ConfigID, Name: in.Name, Kind: kind, Scopes: scopes,
		ExpiresAt: in.ExpiresAt, CreatedBy: auth.FromContext(ctx).Subject,
	})
	if err != nil {
		return nil, err
	}
	return &model.CreateKeyPayload{Key: created.Key, Secret: created.Secret}, nil
}

func (r *Resolver) revokeKey(ctx context.Context, id pulid.ID) (*ent.APIKey, error) {
	if r.svc.Keys == nil {
		return nil, errNotConfigured
	}
	return r.svc.Keys.Revoke(ctx, id)
}

// defaultRotationGrace lets the old key keep working for a day: long enough to roll the
// new one out to every server that uses it.
const defaultRotationGrace = 24 * time.Hour

func (r *Resolver) rotateKey(ctx context.Context, id pulid.ID, graceSeconds *int) (*model.CreateKeyPayload, error) {
	if r.svc.Keys == nil {
		return nil, errNotConfigured
	}
	grace := defaultRotationGrace
	if graceSeconds != nil {
		if *graceSeconds < 0 || *graceSeconds > 30*24*3600 {
			return nil, apperr.Invalid("graceSeconds", "grace must be between 0 and 30 days")
		}
		grace = time.Duration(*graceSeconds) * time.Second
	}
	created, err := r.svc.Keys.Rotate(ctx, id, grace, auth.FromContext(ctx).Subject)
	if err != nil {
		return nil, err
	}
	return &model.CreateKeyPayload{Key: created.Key, Secret: created.Secret}, nil
}

func (r *Resolver) provisionFlow(ctx context.Context, id pulid.ID, up bool) (*ent.Flow, error) {
	if r.svc.Provisioning == nil {
		return nil, errNotConfigured
	}
	if up {
		return r.svc.Provisioning.Provision(ctx, id)
	}
	return r.svc.Provisioning.Deprovision(ctx, id)
}

func (r *Resolver) validateFlow(definition string) *flowcheck.Report {
	rep := r.svc.Catalog.ValidateFlow([]byte(definition))
	return &rep
}

func (r *Resolver) importFlow(ctx context.Context, agentID pulid.ID, definition string) (*model.ImportFlowPayload, error) {
	f, rep, err := r.svc.Catalog.ImportFlow(ctx, agentID, []byte(definition))
	if err != nil {
		return nil, err
	}
	return &model.ImportFlowPayload{Flow: f, Report: &rep}, nil
}

// removeMember removes a membership in a transaction: removing an owner locks the
// tenant in it, so that its last owner cannot go (ent/schema keepAnOwner).
func (r *Resolver) removeMember(ctx context.Context, id pulid.ID) error {
	return database.WithTx(ctx, r.client, func(tx *ent.Tx) error {
		return tx.Membership.DeleteOneID(id).Exec(ctx)
	})
}

// addMember adds a person to a tenant by subject or email; the policy decides who may
// (platform admins, the tenant's owners and admins).
func (r *Resolver) addMember(ctx context.Context, in model.AddMemberInput) (*ent.Membership, error) {
	subject, email := strings.TrimSpace(deref(in.Subject)), strings.TrimSpace(deref(in.Email))
	switch {
	case subject == "" && email == "":
		return nil, apperr.Invalid("input.subject", "give the person's subject or email")
	case email != "" && (len(email) > 320 || !strings.Contains(email, "@")):
		return nil, apperr.Invalid("input.email", "not an email address")
	case len(subject) > 255:
		return nil, apperr.Invalid("input.subject", "subject is too long")
	}
	create := r.client.Membership.Create().SetTenantID(in.TenantID).SetRole(in.Role).SetEmail(email)
	if subject != "" {
		create.SetSubject(subject)
	}
	return create.Save(ctx)
}
