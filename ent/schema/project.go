package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Project is a Waldur project inside a tenant.
type Project struct{ ent.Schema }

// Mixin of the Project.
func (Project) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("prj"), TimeMixin{}} }

// Fields of the Project.
func (Project) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("name").NotEmpty().MaxLen(200).Annotations(entgql.OrderField("NAME")),
		field.String("waldur_project_uuid").Optional().Nillable().Unique().MaxLen(64),
	}
}

// Edges of the Project.
func (Project) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("projects").Field("tenant_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the Project.
func (Project) Indexes() []ent.Index { return []ent.Index{tenantIndex("name")} }

// Annotations of the Project.
func (Project) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the Project.
func (Project) Policy() ent.Policy { return adminWrites() }

// Interceptors of the Project.
func (Project) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
