package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// Subscription is a tenant's access to an agent under a plan. tenant_id is the buyer;
// provider_tenant_id (copied from the agent by a hook) lets the provider see it too.
type Subscription struct{ ent.Schema }

// Mixin of the Subscription.
func (Subscription) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("sub"), TimeMixin{}} }

// Fields of the Subscription.
func (Subscription) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		providerTenantField(),
		field.String("project_id").GoType(pulid.ID("")).Optional().Nillable().Annotations(entgql.Type("ID")),
		field.String("agent_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID")),
		field.String("plan_id").GoType(pulid.ID("")).Annotations(entgql.Type("ID")),
		field.Enum("status").Values("pending", "active", "past_due", "suspended", "canceled").Default("pending").
			Annotations(entgql.OrderField("STATUS")),
		field.Enum("source").Values("waldur", "stripe", "manual").Default("manual"),
		field.String("waldur_resource_uuid").Optional().Nillable().Unique().MaxLen(64),
		field.String("waldur_order_uuid").Optional().Nillable().MaxLen(64),
		field.String("stripe_subscription_id").Optional().Nillable().Unique().MaxLen(255),
		field.Time("current_period_start").Optional().Nillable(),
		field.Time("current_period_end").Optional().Nillable(),
		field.Time("canceled_at").Optional().Nillable(),
	}
}

// Edges of the Subscription.
func (Subscription) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("subscriptions").Field("tenant_id").Unique().Required().Immutable().Annotations(closedEdge()),
		edge.To("project", Project.Type).Field("project_id").Unique().Annotations(closedEdge()),
		edge.From("agent", Agent.Type).Ref("subscriptions").Field("agent_id").Unique().Required().Immutable().Annotations(closedEdge()),
		edge.From("plan", Plan.Type).Ref("subscriptions").Field("plan_id").Unique().Required().Annotations(closedEdge()),
		edge.To("config", AgentConfig.Type).Unique().Annotations(closedEdge()),
	}
}

// Indexes of the Subscription.
func (Subscription) Indexes() []ent.Index {
	return []ent.Index{
		tenantIndex("status"),
		index.Fields("provider_tenant_id"),
		index.Fields("agent_id"),
	}
}

// Annotations of the Subscription.
func (Subscription) Annotations() []schema.Annotation {
	return []schema.Annotation{
		// "Subscription" is GraphQL's root type for live queries, hence the GraphQL name.
		entgql.Type("AgentSubscription"),
		entgql.RelayConnection(),
		entgql.QueryField("subscriptions"),
		entgql.MultiOrder(),
	}
}

// Hooks of the Subscription.
func (Subscription) Hooks() []ent.Hook { return []ent.Hook{copyProviderTenant()} }

// Policy of the Subscription.
func (Subscription) Policy() ent.Policy { return adminWrites() }

// Interceptors of the Subscription: buyer and provider.
func (Subscription) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterShared()} }
