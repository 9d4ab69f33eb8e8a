package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Tenant is an organisation (a Waldur customer): buyers and providers alike.
type Tenant struct{ ent.Schema }

// Mixin of the Tenant.
func (Tenant) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("tnt"), TimeMixin{}} }

// Fields of the Tenant.
func (Tenant) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().MaxLen(200).Annotations(entgql.OrderField("NAME")),
		field.String("slug").NotEmpty().MaxLen(63).Match(slugPattern).Unique().Annotations(entgql.OrderField("SLUG")),
		// Billing identities: other tenants (a buyer's seller, a provider's buyers) see a
		// tenant's name, not these.
		field.String("waldur_customer_uuid").Optional().Nillable().Unique().MaxLen(64).Annotations(adminOnly()),
		field.String("stripe_customer_id").Optional().Nillable().Unique().MaxLen(255).Annotations(adminOnly()),
		field.Enum("status").Values("active", "suspended", "closed").Default("active"),
	}
}

// Edges of the Tenant.
func (Tenant) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("projects", Project.Type).Annotations(closedEdge()),
		edge.To("memberships", Membership.Type).Annotations(closedEdge()),
		edge.To("agents", Agent.Type).Annotations(closedEdge()),
		edge.To("subscriptions", Subscription.Type).Annotations(closedEdge()),
	}
}

// Annotations of the Tenant.
func (Tenant) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		// Listing every tenant is the platform admin's; members reach theirs through viewer.
		entgql.QueryField().Directives(adminRole()),
		entgql.MultiOrder(),
		entgql.Mutations(entgql.MutationCreate(), entgql.MutationUpdate()),
	}
}

// Policy of the Tenant.
func (Tenant) Policy() ent.Policy { return tenantPolicy() }

// Interceptors of the Tenant.
func (Tenant) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterTenants()} }
