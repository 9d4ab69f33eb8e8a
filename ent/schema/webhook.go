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
)

// WebhookEvent is the inbox of every received Waldur/Stripe event; (source, external_id)
// dedupes replays. Platform admins only.
type WebhookEvent struct{ ent.Schema }

// Mixin of the WebhookEvent.
func (WebhookEvent) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("whe"), TimeMixin{}} }

// Fields of the WebhookEvent.
func (WebhookEvent) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("source").Values("waldur", "stripe").Immutable(),
		field.String("external_id").NotEmpty().MaxLen(255).Immutable(),
		field.String("type").MaxLen(255).Immutable(),
		field.JSON("payload", json.RawMessage{}).Immutable().Annotations(entgql.Skip()),
		field.Enum("status").Values("received", "processing", "processed", "failed", "ignored").Default("received"),
		field.Int("attempts").NonNegative().Default(0),
		field.String("error").Optional().MaxLen(1000),
		field.Time("processed_at").Optional().Nillable(),
	}
}

// Indexes of the WebhookEvent.
func (WebhookEvent) Indexes() []ent.Index {
	return []ent.Index{index.Fields("source", "external_id").Unique(), index.Fields("status")}
}

// Annotations of the WebhookEvent.
func (WebhookEvent) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the WebhookEvent.
func (WebhookEvent) Policy() ent.Policy { return systemOnlyMutations() }

// Interceptors of the WebhookEvent.
func (WebhookEvent) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterAdminOnly()} }

// UsageReport is the outbox of usage sent to Waldur or Stripe: one row per
// (subscription, period, component, target), updated as month-to-date totals change.
type UsageReport struct{ ent.Schema }

// Mixin of the UsageReport.
func (UsageReport) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("urp"), TimeMixin{}} }

// Fields of the UsageReport.
func (UsageReport) Fields() []ent.Field {
	return []ent.Field{
		tenantField(),
		field.String("subscription_id").GoType(pulid.ID("")).Immutable().Annotations(entgql.Type("ID")),
		field.Time("period_start").Immutable(),
		field.Time("period_end").Immutable(),
		field.String("component").NotEmpty().MaxLen(64).Immutable(),
		field.Int64("amount").NonNegative().Default(0),
		field.Enum("target").Values("waldur", "stripe").Immutable(),
		field.Enum("status").Values("pending", "sent", "failed").Default("pending"),
		field.String("external_ref").Optional().MaxLen(255),
		field.Int("attempts").NonNegative().Default(0),
		field.String("last_error").Optional().MaxLen(1000),
		field.Time("sent_at").Optional().Nillable(),
	}
}

// Edges of the UsageReport.
func (UsageReport) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("subscription", Subscription.Type).Field("subscription_id").Unique().Required().Immutable().Annotations(closedEdge()),
	}
}

// Indexes of the UsageReport.
func (UsageReport) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("subscription_id", "period_start", "component", "target").Unique(),
		index.Fields("status"),
		tenantIndex(),
	}
}

// Annotations of the UsageReport.
func (UsageReport) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the UsageReport.
func (UsageReport) Policy() ent.Policy { return systemOnlyMutations() }

// Interceptors of the UsageReport.
func (UsageReport) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterOwned()} }
