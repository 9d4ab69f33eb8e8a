package graph

import (
	"context"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/usage/report"
)

func reportFilter(in *model.UsageFilter) report.Filter {
	if in == nil {
		return report.Filter{}
	}
	f := report.Filter{TenantID: in.TenantID, ProviderTenantID: in.ProviderTenantID, ConfigID: in.ConfigID, AgentID: in.AgentID, KeyID: in.KeyID}
	if in.From != nil {
		f.From = *in.From
	}
	if in.To != nil {
		f.To = *in.To
	}
	return f
}

func (r *Resolver) usage(ctx context.Context, in *model.UsageFilter, by model.UsageGroupBy) ([]*model.UsageRow, error) {
	rows, err := r.svc.Reports.Usage(ctx, reportFilter(in), report.GroupBy(by))
	if err != nil {
		return nil, err
	}
	out := make([]*model.UsageRow, len(rows))
	for i, row := range rows {
		m := &model.UsageRow{
			Requests: int(row.Requests), Errors: int(row.Errors), InputTokens: int(row.InputTokens),
			OutputTokens: int(row.OutputTokens), AvgMs: row.AvgMs, P95Ms: row.P95Ms,
		}
		switch by {
		case model.UsageGroupByDay:
			m.Day = ptr(row.Day)
		case model.UsageGroupByAgent:
			m.AgentID = ptr(row.AgentID)
		case model.UsageGroupByKey:
			if row.KeyID != "" {
				m.KeyID = ptr(row.KeyID)
			}
		}
		out[i] = m
	}
	return out, nil
}

func (r *Resolver) quota(ctx context.Context, subscriptionID pulid.ID) (*report.QuotaUse, error) {
	q, err := r.svc.Reports.Quota(ctx, subscriptionID)
	if err != nil {
		return nil, err
	}
	return &q, nil
}

func (r *Resolver) recentCalls(ctx context.Context, in *model.UsageFilter, first *int) ([]*ent.UsageRecord, error) {
	limit := 50
	if first != nil {
		limit = *first
	}
	return r.svc.Reports.Recent(ctx, reportFilter(in), limit)
}

func ptr[T any](v T) *T { return &v }
