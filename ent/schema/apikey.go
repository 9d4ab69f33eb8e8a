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

// APIKey is a key that may invoke one config. Only the SHA-256 of the whole key is
// stored; prefix and last4 are for display.
type APIKey struct{ ent.Schema }

// Mixin of the APIKey.
func (APIKey) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("key"), TimeMixin{}} }

// Fields of the APIKey.
func (APIKey) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("project_id").GoType(pulid.ID("")).Optional().Nillable().Immutable().Annotations(entgql.Type("ID")),
		field.String("config_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID")),
		field.String("name").NotEmpty().MaxLen(100).Annotations(entgql.OrderField("NAME")),
		field.Enum("kind").Values("secret", "publishable").Immutable(),
		field.String("prefix").MaxLen(32).Immutable(),
		field.String("last4").MaxLen(4).Immutable(),
		field.String("key_hash").MaxLen(64).Unique().Immutable().Sensitive().Annotations(entgql.Skip()),
		field.String("jti").MaxLen(64).Immutable().Annotations(entgql.Skip()),
		field.Strings("scopes"),
		field.Time("expires_at").Optional().Nillable(),
		// A revoked_at in the future is a rotation's grace period: the key works until then.
		field.Time("revoked_at").Optional().Nillable(),
		field.Time("last_used_at").Optional().Nillable().Annotations(entgql.OrderField("LAST_USED_AT")),
		field.String("created_by").Optional().MaxLen(255),
		field.String("replaced_by_id").GoType(pulid.ID("")).Optional().Nillable().Annotations(entgql.Type("ID")),
	}
}

// Edges of the APIKey.
func (APIKey) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("config", AgentConfig.Type).Ref("api_keys").Field("config_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the APIKey.
func (APIKey) Indexes() []ent.Index {
	return []ent.Index{tenantIndex("config_id"), index.Fields("config_id")}
}

// Annotations of the APIKey.
func (APIKey) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField("apiKeys"), entgql.MultiOrder()}
}

// Policy of the APIKey.
func (APIKey) Policy() ent.Policy { return writableBy(auth.RoleCustomer) }

// Interceptors of the APIKey.
func (APIKey) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
