package graph

import (
	"context"
	"errors"
	"testing"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/usage/live"
)

// Nobody subscribes to another tenant's numbers: a filter must name one of the viewer's
// own tenants, as buyer or as seller, and every other dimension only narrows that view.
// The check runs when the subscription starts, before the hub is asked for anything.
func TestUsageFilterAuthorization(t *testing.T) {
	const (
		myBuyer, mySeller = pulid.ID("tnt_mybuyer"), pulid.ID("tnt_myseller")
		other, other2     = pulid.ID("tnt_other"), pulid.ID("tnt_other2")
		cfg               = pulid.ID("cfg_someone")
	)
	member := &auth.Viewer{Subject: "u", Roles: []auth.Role{auth.RoleCustomer, auth.RoleProvider},
		Tenants: []auth.TenantMembership{{TenantID: myBuyer}, {TenantID: mySeller}}}
	admin := &auth.Viewer{Subject: "a", Roles: []auth.Role{auth.RolePlatformAdmin}}
	id := func(v pulid.ID) *pulid.ID { return &v }

	cases := []struct {
		name   string
		viewer *auth.Viewer
		in     model.UsageStatsFilter
		want   live.Filter // when code is ""
		code   string
	}{
		{"own buyer tenant", member, model.UsageStatsFilter{TenantID: id(myBuyer)}, live.Filter{TenantID: myBuyer}, ""},
		{"own seller tenant", member, model.UsageStatsFilter{ProviderTenantID: id(mySeller)}, live.Filter{ProviderTenantID: mySeller}, ""},
		{"own sales to one buyer", member, model.UsageStatsFilter{ProviderTenantID: id(mySeller), TenantID: id(other)},
			live.Filter{ProviderTenantID: mySeller, TenantID: other}, ""},
		{"own purchases from one seller", member, model.UsageStatsFilter{TenantID: id(myBuyer), ProviderTenantID: id(other)},
			live.Filter{TenantID: myBuyer, ProviderTenantID: other}, ""},
		{"own tenant narrowed by a config", member, model.UsageStatsFilter{TenantID: id(myBuyer), ConfigID: id(cfg)},
			live.Filter{TenantID: myBuyer, ConfigID: cfg}, ""},
		{"another buyer", member, model.UsageStatsFilter{TenantID: id(other)}, live.Filter{}, CodeForbidden},
		{"another seller", member, model.UsageStatsFilter{ProviderTenantID: id(other)}, live.Filter{}, CodeForbidden},
		{"two other tenants", member, model.UsageStatsFilter{TenantID: id(other), ProviderTenantID: id(other2)}, live.Filter{}, CodeForbidden},
		{"a config alone", member, model.UsageStatsFilter{ConfigID: id(cfg)}, live.Filter{}, CodeForbidden},
		{"everything", member, model.UsageStatsFilter{}, live.Filter{}, CodeForbidden},
		{"no viewer", nil, model.UsageStatsFilter{TenantID: id(myBuyer)}, live.Filter{}, CodeUnauthenticated},
		{"admin, everything", admin, model.UsageStatsFilter{}, live.Filter{}, ""},
		{"admin, any tenant", admin, model.UsageStatsFilter{TenantID: id(other)}, live.Filter{TenantID: other}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.viewer != nil {
				ctx = auth.NewContext(ctx, tc.viewer)
			}
			got, err := usageFilter(ctx, tc.in)
			if tc.code == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			var gerr *Error
			if !errors.As(err, &gerr) || gerr.Code != tc.code {
				t.Fatalf("got %+v, %v; want error %s", got, err, tc.code)
			}
		})
	}
}
