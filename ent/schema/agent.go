package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gsvdev/agentregistry/internal/auth"
)

// Agent is a provider's product. tenant_id is the provider.
type Agent struct{ ent.Schema }

// Mixin of the Agent.
func (Agent) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("agt"), TimeMixin{}} }

// Fields of the Agent.
func (Agent) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("name").NotEmpty().MaxLen(200).Annotations(entgql.OrderField("NAME")),
		field.String("slug").NotEmpty().MaxLen(63).Match(slugPattern),
		field.Text("description").Default("").MaxLen(10000),
		field.String("category").Default("").MaxLen(64).Annotations(entgql.OrderField("CATEGORY")),
		// Status moves only through publishAgent / unpublishAgent / archiveAgent.
		field.Enum("status").Values("draft", "published", "archived").Default("draft").Annotations(entgql.OrderField("STATUS"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.String("waldur_offering_uuid").Optional().Nillable().Unique().MaxLen(64).Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Edges of the Agent.
func (Agent) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("agents").Field("tenant_id").Unique().Required().Immutable().Annotations(closedEdge()),
		edge.To("flows", Flow.Type).Annotations(closedEdge()),
		edge.To("plans", Plan.Type).Annotations(closedEdge()),
		edge.To("subscriptions", Subscription.Type).Annotations(closedEdge()),
	}
}

// Indexes of the Agent.
func (Agent) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tenant_id", "slug").Unique(), tenantIndex("status")}
}

// Annotations of the Agent.
func (Agent) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField(), entgql.MultiOrder(),
		entgql.Mutations(entgql.MutationCreate(), entgql.MutationUpdate())}
}

// Policy of the Agent.
func (Agent) Policy() ent.Policy { return writableBy(auth.RoleProvider) }

// Interceptors of the Agent: the provider, and buyers that subscribe to it.
func (Agent) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterCatalog("id")} }
