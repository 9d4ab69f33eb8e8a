package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Plan is a price and its limits. tenant_id is the provider.
type Plan struct{ ent.Schema }

// Mixin of the Plan.
func (Plan) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("pln"), TimeMixin{}} }

// Fields of the Plan. Zero limits mean "no limit".
func (Plan) Fields() []ent.Field {
	return []ent.Field{
		derivedTenantField(),
		field.String("agent_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID"), entgql.Skip(entgql.SkipMutationCreateInput)),
		field.String("name").NotEmpty().MaxLen(200).Annotations(entgql.OrderField("NAME")),
		field.Int64("price_amount").NonNegative().Default(0).Annotations(entgql.OrderField("PRICE")),
		field.String("currency").MaxLen(3).MinLen(3).Default("EUR"),
		field.Enum("interval").Values("month", "year").Default("month"),
		field.Int64("requests_per_month").NonNegative().Default(0),
		field.Int64("tokens_per_month").NonNegative().Default(0),
		field.Int("rpm_per_key").NonNegative().Default(60),
		field.Int("rpm_per_tenant").NonNegative().Default(600),
		field.Strings("tweakable_fields").Optional(),
		// Status moves only through archivePlan.
		field.Enum("status").Values("active", "archived").Default("active").Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.String("stripe_price_id").Optional().Nillable().Unique().MaxLen(255).Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.String("waldur_plan_uuid").Optional().Nillable().Unique().MaxLen(64).Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Edges of the Plan.
func (Plan) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("agent", Agent.Type).Ref("plans").Field("agent_id").Unique().Required().Immutable().Annotations(closedEdge()),
		edge.To("subscriptions", Subscription.Type).Annotations(closedEdge()),
	}
}

// Indexes of the Plan.
func (Plan) Indexes() []ent.Index {
	return []ent.Index{index.Fields("agent_id", "name").Unique(), tenantIndex()}
}

// Annotations of the Plan.
func (Plan) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField(),
		entgql.Mutations(entgql.MutationCreate(), entgql.MutationUpdate())}
}

// Policy of the Plan.
func (Plan) Policy() ent.Policy { return writableBy(auth.RoleProvider) }

// Interceptors of the Plan: the provider, and buyers subscribed to its agent.
func (Plan) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterCatalog("agent_id")} }
