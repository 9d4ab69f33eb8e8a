package graph

import (
	"context"

	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// LiveUsage is the live-usage hub the usageStats subscription reads.
type LiveUsage interface {
	Subscribe(ctx context.Context, f live.Filter) (<-chan *live.Stats, error)
}

// usageFilter checks the filter against the viewer when the subscription starts, and
// returns the hub's filter. It must name one of the viewer's tenants, as buyer
// (tenantID) or as seller (providerTenantID); only a platform admin may watch
// everything. Every other dimension only narrows (an event must match all of them), so
// once one of the viewer's tenants is named, nothing else can widen the view: a provider
// may name a buyer of its agents beside its own tenant, as the usage query lets it.
func usageFilter(ctx context.Context, in model.UsageStatsFilter) (live.Filter, error) {
	v := auth.FromContext(ctx)
	if v == nil {
		return live.Filter{}, errUnauthenticated
	}
	f := live.Filter{
		TenantID: deref(in.TenantID), ProviderTenantID: deref(in.ProviderTenantID),
		ConfigID: deref(in.ConfigID), AgentID: deref(in.AgentID), KeyID: deref(in.KeyID),
	}
	if v.IsAdmin() {
		return f, nil
	}
	buyer := f.TenantID != "" && v.MemberOf(f.TenantID)
	seller := f.ProviderTenantID != "" && v.MemberOf(f.ProviderTenantID)
	switch {
	case buyer || seller:
		return f, nil
	case f.TenantID != "" || f.ProviderTenantID != "":
		return live.Filter{}, errForbidden
	default:
		return live.Filter{}, &Error{Code: CodeForbidden, Message: "name one of your tenants as tenantID or providerTenantID"}
	}
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// usageStats subscribes to the hub once the filter is authorized. The channel goes
// through feedFrom so that subscribers of one filter share renderings (sharedrender.go).
func (r *Resolver) usageStats(ctx context.Context, in model.UsageStatsFilter) (<-chan *live.Stats, error) {
	if r.live == nil {
		return nil, errNotConfigured
	}
	f, err := usageFilter(ctx, in)
	if err != nil {
		return nil, err
	}
	if slot, ok := ctx.Value(guardSlotKey{}).(*guardSlot); ok && slot.conn != nil {
		// The connection's subscriptions get their messages together, and it writes
		// them in one batch (wsbatch.go).
		ctx = live.WithCohort(ctx, slot.conn.id)
	}
	src, err := r.live.Subscribe(ctx, f)
	if err != nil {
		return nil, err
	}
	return feedFrom(ctx, src), nil
}
