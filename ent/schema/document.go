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

// Document is a training document attached to a config.
type Document struct{ ent.Schema }

// Mixin of the Document.
func (Document) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("doc"), TimeMixin{}} }

// Fields of the Document.
func (Document) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("config_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID")),
		field.String("filename").NotEmpty().MaxLen(255).Annotations(entgql.OrderField("FILENAME")),
		field.String("content_type").NotEmpty().MaxLen(255),
		field.Int64("size").NonNegative(),
		field.String("sha256").MaxLen(64),
		// Stored in the database for now; storage_ref names an external object later.
		field.Bytes("content").Optional().Annotations(entgql.Skip()),
		field.String("storage_ref").Optional().MaxLen(1024).Annotations(entgql.Skip()),
		field.Enum("status").Values("uploaded", "processing", "ready", "failed").Default("uploaded"),
	}
}

// Edges of the Document.
func (Document) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("config", AgentConfig.Type).Ref("documents").Field("config_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the Document.
func (Document) Indexes() []ent.Index { return []ent.Index{tenantIndex("config_id")} }

// Annotations of the Document.
func (Document) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the Document.
func (Document) Policy() ent.Policy { return writableBy(auth.RoleCustomer) }

// Interceptors of the Document.
func (Document) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
