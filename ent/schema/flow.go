package schema

import (
	"encoding/json"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Flow is one imported version of an agent's Langflow flow. tenant_id is the provider.
type Flow struct{ ent.Schema }

// Mixin of the Flow.
func (Flow) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("flw"), TimeMixin{}} }

// Fields of the Flow.
func (Flow) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("agent_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID")),
		field.Int("version").Positive().Immutable().Annotations(entgql.OrderField("VERSION")),
		// The export with its secrets stripped. Not in GraphQL: it can be megabytes.
		field.JSON("definition", json.RawMessage{}).Annotations(entgql.Skip()),
		field.String("checksum").MaxLen(64).Immutable(),
		field.JSON("validation_report", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.String("runtime_flow_id").Optional().Nillable().MaxLen(64),
		field.Enum("runtime_status").
			Values("not_provisioned", "provisioning", "provisioned", "failed", "deprovisioned").
			Default("not_provisioned"),
		field.String("runtime_error").Optional().MaxLen(500),
	}
}

// Edges of the Flow.
func (Flow) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("agent", Agent.Type).Ref("flows").Field("agent_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the Flow.
func (Flow) Indexes() []ent.Index {
	return []ent.Index{index.Fields("agent_id", "version").Unique(), tenantIndex()}
}

// Annotations of the Flow.
func (Flow) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the Flow.
func (Flow) Policy() ent.Policy { return writableBy(auth.RoleProvider) }

// Interceptors of the Flow: providers only; buyers never see flow internals.
func (Flow) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
