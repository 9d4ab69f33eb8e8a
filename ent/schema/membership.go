package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
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
