package schema

import (
	"fmt"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// UsageRecord is one gateway call: billing data. Ids of what it refers to are plain
// columns, not foreign keys: the record must outlive a deleted key or config, and the
// invoke path should not pay for foreign-key checks.
type UsageRecord struct{ ent.Schema }

// Mixin of the UsageRecord.
func (UsageRecord) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("use")} }

// Fields of the UsageRecord.
func (UsageRecord) Fields() []ent.Field {
	return []ent.Field{
		field.String("request_id").NotEmpty().MaxLen(128).Unique().Immutable(),
		tenantField(),
		providerTenantField(),
		idField("config_id"),
		idField("agent_id"),
		field.String("api_key_id").GoType(pulid.ID("")).Optional().Immutable().Annotations(entgql.Type("ID")),
		field.Int("status").Immutable(),
		field.Int64("input_tokens").NonNegative().Default(0).Immutable(),
		field.Int64("output_tokens").NonNegative().Default(0).Immutable(),
		field.Bool("tokens_estimated").Default(false).Immutable(),
		field.Int64("elapsed_ms").NonNegative().Default(0).Immutable(),
		field.Time("started_at").Immutable().Annotations(entgql.OrderField("STARTED_AT")),
		field.String("error_code").Optional().MaxLen(64).Immutable(),
	}
}

// Indexes of the UsageRecord: the portal's "recent calls" and the quota count.
func (UsageRecord) Indexes() []ent.Index {
	return []ent.Index{
		tenantIndex("started_at"),
		index.Fields("config_id", "started_at"),
		index.Fields("provider_tenant_id", "started_at"),
		// Retention deletes by age; the live dashboards of an agent or a key, and the
		// admin's, load their last minute by time.
		index.Fields("started_at"),
		index.Fields("agent_id", "started_at"),
		index.Fields("api_key_id", "started_at"),
	}
}

// Annotations of the UsageRecord.
func (UsageRecord) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the UsageRecord: written by the gateway only.
func (UsageRecord) Policy() ent.Policy { return systemOnlyMutations() }

// Interceptors of the UsageRecord: buyer and provider.
func (UsageRecord) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterShared()} }

// UsageDaily is the rollup of usage per (tenant, config, key, day).
type UsageDaily struct{ ent.Schema }

// Mixin of the UsageDaily.
func (UsageDaily) Mixin() []ent.Mixin { return []ent.Mixin{PrefixedID("udy")} }

// Fields of the UsageDaily.
func (UsageDaily) Fields() []ent.Field {
	return append([]ent.Field{
		tenantField(),
		providerTenantField(),
		idField("config_id"),
		idField("agent_id"),
		// "" when calls came without a key (never, today); kept non-null for the unique index.
		field.String("api_key_id").Default("").MaxLen(40).Immutable(),
		field.Time("day").Immutable().Annotations(entgql.OrderField("DAY")),
		field.Int64("requests").NonNegative().Default(0),
		field.Int64("errors").NonNegative().Default(0),
		field.Int64("input_tokens").NonNegative().Default(0),
		field.Int64("output_tokens").NonNegative().Default(0),
		field.Int64("total_ms").NonNegative().Default(0),
	}, latencyBuckets()...)
}

// LatencyBoundsMS are the upper bounds (milliseconds) of the latency histogram kept in
// each daily rollup, so that p95 comes from the rollups whatever the raw row count. A
// call lands in the first bucket whose bound is at least its elapsed time; the last
// bucket (lat_inf) is open-ended. Columns rather than a JSON array: the recorder's
// upsert adds to each with plain arithmetic, on SQLite and PostgreSQL alike.
var LatencyBoundsMS = []int64{25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600}

func latencyBuckets() []ent.Field {
	fields := make([]ent.Field, 0, len(LatencyBoundsMS)+1)
	for _, b := range LatencyBoundsMS {
		fields = append(fields, field.Int64(fmt.Sprintf("lat_le_%d", b)).NonNegative().Default(0).Annotations(entgql.Skip()))
	}
	return append(fields, field.Int64("lat_inf").NonNegative().Default(0).Annotations(entgql.Skip()))
}

// Indexes of the UsageDaily.
func (UsageDaily) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "config_id", "api_key_id", "day").Unique(),
		index.Fields("provider_tenant_id", "day"),
		index.Fields("config_id", "day"),
	}
}

// Annotations of the UsageDaily.
func (UsageDaily) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection()}
}

// Policy of the UsageDaily.
func (UsageDaily) Policy() ent.Policy { return systemOnlyMutations() }

// Interceptors of the UsageDaily.
func (UsageDaily) Interceptors() []ent.Interceptor { return []ent.Interceptor{filterShared()} }
