package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"entgo.io/ent/schema/mixin"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// IDMixin gives an entity an opaque, prefixed id (see package pulid). The prefix is
// recorded as an annotation so that the generated IDToType can route node(id:).
type IDMixin struct {
	mixin.Schema
	prefix string
}

// PrefixedID returns the id mixin for an entity whose ids start with prefix.
func PrefixedID(prefix string) IDMixin { return IDMixin{prefix: prefix} }

// Fields of the IDMixin.
func (m IDMixin) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").
			GoType(pulid.ID("")).
			DefaultFunc(func() pulid.ID { return pulid.MustNew(m.prefix) }).
			Immutable().
			MaxLen(40),
	}
}

// Annotations of the IDMixin.
func (m IDMixin) Annotations() []schema.Annotation {
	return []schema.Annotation{PrefixAnnotation{Prefix: m.prefix}}
}

// PrefixAnnotation carries an entity's id prefix to the code generator.
type PrefixAnnotation struct {
	Prefix string
}

// Name implements schema.Annotation.
func (PrefixAnnotation) Name() string { return "PULID" }

// TimeMixin records when a row was created and last changed.
type TimeMixin struct{ mixin.Schema }

// Fields of the TimeMixin.
func (TimeMixin) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(time.Now).Immutable().
			Annotations(entgql.OrderField("CREATED_AT"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now).
			Annotations(entgql.OrderField("UPDATED_AT"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// tenantField is the owning tenant of a row. Every tenant-scoped table carries it, even
// where it could be derived through an edge, so that isolation is one indexed predicate.
func tenantField() ent.Field {
	return field.String("tenant_id").GoType(pulid.ID("")).Immutable().
		Annotations(entgql.Type("ID"), entgql.Skip(entgql.SkipMutationUpdateInput))
}

// derivedTenantField is a tenant_id that services set from the parent row (a plan's or a
// flow's agent), never from client input: the client could name another tenant's agent.
func derivedTenantField() ent.Field {
	return field.String("tenant_id").GoType(pulid.ID("")).Immutable().
		Annotations(entgql.Type("ID"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput))
}

// providerTenantField is the tenant that sells the agent a row is about. Rows that both
// the buyer and the provider may read (subscriptions, usage) carry both tenants.
func providerTenantField() ent.Field {
	return field.String("provider_tenant_id").GoType(pulid.ID("")).Immutable().
		Annotations(entgql.Type("ID"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput))
}

// idField is a reference to another entity stored without a foreign key (usage and
// billing rows outlive what they point at).
func idField(name string) ent.Field {
	return field.String(name).GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID"))
}

// tenantIndex is the index every tenant-scoped list starts from.
func tenantIndex(fields ...string) ent.Index {
	return index.Fields(append([]string{"tenant_id"}, fields...)...)
}

// closedEdge keeps an edge out of the generated GraphQL where-inputs and mutation
// inputs. Edge filters are SQL sub-queries that bypass the target's privacy filter, so
// through them a viewer could probe rows of another tenant (a provider asking which
// buyer's config contains a word); edge ids in mutation inputs would let a client attach
// rows it cannot see (another buyer's subscription to its plan). Mutations that link rows
// take the ids as explicit arguments and resolve them with the caller's privacy.
func closedEdge() schema.Annotation {
	return entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)
}

// adminRole is the @hasRole(role: PLATFORM_ADMIN) directive.
func adminRole() entgql.Directive {
	return entgql.NewDirective("hasRole",
		&ast.Argument{Name: "role", Value: &ast.Value{Raw: "PLATFORM_ADMIN", Kind: ast.EnumValue}})
}

// adminOnly restricts a GraphQL field to platform admins.
func adminOnly() schema.Annotation { return entgql.Directives(adminRole()) }
