package schema

import (
	"context"
	"errors"
	"fmt"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	gen "github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/hook"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/privacy"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/tenant"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Membership is a person's role in a tenant. Subject is empty until a person invited by
// email logs in for the first time.
type Membership struct{ ent.Schema }

// Mixin of the Membership.
func (Membership) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("mem"), TimeMixin{}} }

// Fields of the Membership.
func (Membership) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("subject").Optional().Nillable().MaxLen(255),
		field.String("email").Optional().MaxLen(320).Annotations(entgql.OrderField("EMAIL")),
		field.Enum("role").Values("owner", "admin", "member").Default("member"),
	}
}

// Edges of the Membership.
func (Membership) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("memberships").Field("tenant_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the Membership: one row per person and tenant; login looks rows up by subject.
func (Membership) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "subject").Unique(),
		index.Fields("subject"),
		index.Fields("email"),
	}
}

// Annotations of the Membership.
func (Membership) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the Membership.
func (Membership) Policy() ent.Policy { return memberManagers() }

// Interceptors of the Membership.
func (Membership) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }

// Hooks of the Membership.
func (Membership) Hooks() []ent.Hook { return []ent.Hook{keepAnOwner()} }

// keepAnOwner refuses to remove a tenant's last owner: nobody but a platform admin could
// then manage its members, keys or subscriptions. The service itself (the system
// context) is not held to it. Removing an owner must run in a transaction, in which the
// tenant's row is locked before its owners are counted: two owners removing each other
// at the same instant would otherwise both see the other one stay, and both succeed.
func keepAnOwner() ent.Hook {
	return hook.On(func(next ent.Mutator) ent.Mutator {
		return hook.MembershipFunc(func(ctx context.Context, m *gen.MembershipMutation) (ent.Value, error) {
			if d, ok := privacy.DecisionFromContext(ctx); ok && errors.Is(d, privacy.Allow) {
				return next.Mutate(ctx, m)
			}
			// The rows named. For a delete by id these are not yet narrowed to what the
			// caller may delete, hence the role check below before anything is said.
			ids, err := m.IDs(ctx)
			if err != nil || len(ids) == 0 {
				return next.Mutate(ctx, m)
			}
			sys := auth.SystemContext(ctx)
			client := m.Client().Membership
			tenants, err := client.Query().Where(membership.IDIn(ids...), membership.RoleEQ(membership.RoleOwner)).
				Unique(true).Select(membership.FieldTenantID).Strings(sys)
			if err != nil {
				return nil, fmt.Errorf("membership: owners being removed: %w", err)
			}
			v := auth.FromContext(ctx)
			var held []pulid.ID
			for _, t := range tenants {
				// Only owners and platform admins may remove an owner (tenantManager): for
				// anyone else the delete finds nothing, and saying more would tell a
				// stranger who the tenant's owners are. Those who may are told.
				if v.IsAdmin() || v.RoleIn(pulid.ID(t)) == auth.TenantOwner {
					held = append(held, pulid.ID(t))
				}
			}
			if err := lockTenants(sys, m, held); err != nil {
				return nil, err
			}
			for _, t := range held {
				left, err := client.Query().Where(membership.TenantID(t), membership.RoleEQ(membership.RoleOwner),
					membership.IDNotIn(ids...)).Count(sys)
				if err != nil {
					return nil, fmt.Errorf("membership: owners left: %w", err)
				}
				if left == 0 {
					return nil, apperr.Precondition("a tenant keeps at least one owner: make someone else an owner first")
				}
			}
			return next.Mutate(ctx, m)
		})
	}, ent.OpDelete|ent.OpDeleteOne)
}

// lockTenants locks the tenants' rows until m's transaction ends, so that whoever removes
// an owner of one of them next counts its owners after this removal is committed. That
// needs PostgreSQL's default READ COMMITTED isolation, where each statement sees what was
// committed before it: under REPEATABLE READ the count would still see the snapshot taken
// before the lock.
//
// FOR NO KEY UPDATE, not FOR UPDATE: two removals still exclude each other, but inserts
// that reference the tenant (they take FOR KEY SHARE) are not held up by a removal.
//
// Outside a transaction the lock would be released at once, so that is refused: a
// programming error (removeMember runs in one), which the client sees as INTERNAL.
func lockTenants(ctx context.Context, m *gen.MembershipMutation, ids []pulid.ID) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := m.Tx(); err != nil {
		return errors.New("membership: removing an owner must run in a transaction")
	}
	_, err := m.Client().Tenant.Query().Where(tenant.IDIn(ids...)).Order(tenant.ByID()).
		Select(tenant.FieldID).Modify(func(s *sql.Selector) {
		// SQLite has no row locks; its transactions start immediate (database.Open),
		// holding the database's write lock, which serialises them as well.
		if s.Dialect() != dialect.SQLite {
			s.For(sql.LockNoKeyUpdate)
		}
	}).Strings(ctx)
	if err != nil {
		return fmt.Errorf("membership: locking tenants: %w", err)
	}
	return nil
}
