package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// AgentConfig is the buyer's configuration of one subscription: persona, tweaks, widget
// settings and the browser origins allowed to call it. It is the buyer's alone: the
// provider never reads a buyer's system prompt.
type AgentConfig struct{ ent.Schema }

// Mixin of the AgentConfig.
func (AgentConfig) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("cfg"), TimeMixin{}} }

// Fields of the AgentConfig.
func (AgentConfig) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("subscription_id").GoType(pulid.ID("")).Unique().Immutable().Annotations(entgql.Type("ID")),
		field.String("display_name").Default("").MaxLen(100),
		field.Text("system_prompt").Default("").MaxLen(20000),
		field.String("greeting").Default("").MaxLen(1000),
		field.String("avatar_url").Default("").MaxLen(2048),
		field.JSON("tweaks", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.Enum("widget_theme").Values("light", "dark", "auto").Default("light"),
		field.String("widget_position").Default("bottom-right").Match(widgetPositionPattern),
		field.String("widget_primary_color").Default("").MaxLen(32),
		field.String("widget_title").Default("").MaxLen(100),
		field.Strings("allowed_origins").Optional(),
	}
}

// Edges of the AgentConfig.
func (AgentConfig) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("subscription", Subscription.Type).Ref("config").Field("subscription_id").Unique().Required().Immutable().Annotations(closedEdge()),
		edge.To("documents", Document.Type).Annotations(closedEdge()),
		edge.To("api_keys", APIKey.Type).Annotations(closedEdge()),
	}
}

// Indexes of the AgentConfig.
func (AgentConfig) Indexes() []ent.Index { return []ent.Index{tenantIndex()} }

// Annotations of the AgentConfig.
func (AgentConfig) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField("agentConfigs"),
		entgql.Mutations(entgql.MutationUpdate())}
}

// Policy of the AgentConfig.
func (AgentConfig) Policy() ent.Policy { return writableBy(auth.RoleCustomer) }

// Interceptors of the AgentConfig.
func (AgentConfig) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
