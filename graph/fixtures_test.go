package graph_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/apikey"
	"github.com/gsvdev/agentregistry/ent/membership"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/usagereport"
	"github.com/gsvdev/agentregistry/ent/webhookevent"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// fixtures creates rows as system code (auth.SystemContext), the way the Waldur order
// processor and the seed do.
type fixtures struct {
	t   *testing.T
	ctx context.Context
	c   *ent.Client
}

var fixtureSeq atomic.Int64

func newFixtures(t *testing.T, c *ent.Client) *fixtures {
	return &fixtures{t: t, ctx: auth.SystemContext(context.Background()), c: c}
}

func (f *fixtures) check(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("fixture: %v", err)
	}
}

func uniqueHex() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d-%d", time.Now().UnixNano(), fixtureSeq.Add(1)))
	return hex.EncodeToString(sum[:])
}

// member is a tenant with one project and one Membership row binding subject to it.
type member struct {
	Subject    string
	Tenant     *ent.Tenant
	Project    *ent.Project
	Membership *ent.Membership
}

// tenant creates a tenant named after marker, its project, and subject's membership.
func (f *fixtures) tenant(marker, subject string, role membership.Role) *member {
	f.t.Helper()
	t, err := f.c.Tenant.Create().SetName("Tenant " + marker).SetSlug(marker).Save(f.ctx)
	f.check(err)
	p, err := f.c.Project.Create().SetTenantID(t.ID).SetName("Project " + marker).Save(f.ctx)
	f.check(err)
	m, err := f.c.Membership.Create().SetTenantID(t.ID).SetSubject(subject).
		SetEmail(marker + "@example.org").SetRole(role).Save(f.ctx)
	f.check(err)
	return &member{Subject: subject, Tenant: t, Project: p, Membership: m}
}

// product is an agent with its plans and flows.
type product struct {
	Agent *ent.Agent
	Plans []*ent.Plan
	Flows []*ent.Flow
}

// agents creates n agents of tenant t in bulk, each with the given number of plans and
// flows (three INSERTs whatever n is).
func (f *fixtures) agents(t *ent.Tenant, marker string, n, plans, flows int) []*product {
	f.t.Helper()
	seq := fixtureSeq.Add(1)
	ab := make([]*ent.AgentCreate, n)
	for i := range ab {
		ab[i] = f.c.Agent.Create().SetTenantID(t.ID).
			SetName(fmt.Sprintf("Agent %s %d-%d", marker, seq, i)).
			SetSlug(fmt.Sprintf("%s-agent-%d-%d", marker, seq, i)).
			SetDescription("description " + marker)
	}
	as, err := f.c.Agent.CreateBulk(ab...).Save(f.ctx)
	f.check(err)
	out := make([]*product, n)
	var pb []*ent.PlanCreate
	var fb []*ent.FlowCreate
	for i, a := range as {
		out[i] = &product{Agent: a}
		for j := range plans {
			pb = append(pb, f.c.Plan.Create().SetTenantID(t.ID).SetAgentID(a.ID).
				SetName(fmt.Sprintf("Plan %s %d", marker, j)))
		}
		for j := range flows {
			fb = append(fb, f.c.Flow.Create().SetTenantID(t.ID).SetAgentID(a.ID).SetVersion(j+1).
				SetDefinition(json.RawMessage(`{}`)).SetChecksum(marker+"-checksum").
				SetRuntimeError(marker+" flow internals"))
		}
	}
	if len(pb) > 0 {
		ps, err := f.c.Plan.CreateBulk(pb...).Save(f.ctx)
		f.check(err)
		for i, p := range ps {
			out[i/plans].Plans = append(out[i/plans].Plans, p)
		}
	}
	if len(fb) > 0 {
		fs, err := f.c.Flow.CreateBulk(fb...).Save(f.ctx)
		f.check(err)
		for i, fl := range fs {
			out[i/flows].Flows = append(out[i/flows].Flows, fl)
		}
	}
	return out
}

// purchase is a buyer's subscription with everything hanging off it.
type purchase struct {
	Subscription *ent.Subscription
	Config       *ent.AgentConfig
	Document     *ent.Document
	APIKeys      []*ent.APIKey
	UsageRecord  *ent.UsageRecord
	UsageDaily   *ent.UsageDaily
	UsageReport  *ent.UsageReport
}

// subscribe makes buyer subscribe to p under its first plan, with a config (whose system
// prompt names marker), one document, keys API keys and one row of each usage table.
func (f *fixtures) subscribe(buyer *member, p *product, marker string, keys int) *purchase {
	f.t.Helper()
	seq := fixtureSeq.Add(1)
	s, err := f.c.Subscription.Create().SetTenantID(buyer.Tenant.ID).SetProjectID(buyer.Project.ID).
		SetAgentID(p.Agent.ID).SetPlanID(p.Plans[0].ID).
		SetWaldurOrderUUID(fmt.Sprintf("%s-order-%d", marker, seq)).Save(f.ctx)
	f.check(err)
	cfg, err := f.c.AgentConfig.Create().SetTenantID(buyer.Tenant.ID).SetSubscriptionID(s.ID).
		SetDisplayName("Config " + marker).SetSystemPrompt(marker + " secret system prompt").Save(f.ctx)
	f.check(err)
	doc, err := f.c.Document.Create().SetTenantID(buyer.Tenant.ID).SetConfigID(cfg.ID).
		SetFilename(marker + "-handbook.pdf").SetContentType("application/pdf").SetSize(3).
		SetSha256(uniqueHex()).SetContent([]byte("pdf")).Save(f.ctx)
	f.check(err)
	out := &purchase{Subscription: s, Config: cfg, Document: doc}
	kb := make([]*ent.APIKeyCreate, keys)
	for i := range kb {
		kb[i] = f.c.APIKey.Create().SetTenantID(buyer.Tenant.ID).SetProjectID(buyer.Project.ID).
			SetConfigID(cfg.ID).SetName(fmt.Sprintf("Key %s %d", marker, i)).SetKind(apikey.KindSecret).
			SetPrefix("ar_sk_live_").SetLast4("ab12").SetKeyHash(uniqueHex()).SetJti(uniqueHex()[:32]).
			SetScopes([]string{"invoke"})
	}
	out.APIKeys, err = f.c.APIKey.CreateBulk(kb...).Save(f.ctx)
	f.check(err)
	var keyID pulid.ID
	if keys > 0 {
		keyID = out.APIKeys[0].ID
	}
	now := time.Now().UTC().Truncate(time.Second)
	out.UsageRecord, err = f.c.UsageRecord.Create().SetRequestID(fmt.Sprintf("%s-req-%d", marker, seq)).
		SetTenantID(buyer.Tenant.ID).SetProviderTenantID(p.Agent.TenantID).SetConfigID(cfg.ID).
		SetAgentID(p.Agent.ID).SetAPIKeyID(keyID).SetStatus(200).SetStartedAt(now).
		SetErrorCode(marker + "-code").Save(f.ctx)
	f.check(err)
	out.UsageDaily, err = f.c.UsageDaily.Create().SetTenantID(buyer.Tenant.ID).
		SetProviderTenantID(p.Agent.TenantID).SetConfigID(cfg.ID).SetAgentID(p.Agent.ID).
		SetAPIKeyID(marker + "-daily").SetDay(now.Truncate(24 * time.Hour)).SetRequests(1).Save(f.ctx)
	f.check(err)
	out.UsageReport, err = f.c.UsageReport.Create().SetTenantID(buyer.Tenant.ID).SetSubscriptionID(s.ID).
		SetPeriodStart(now.AddDate(0, 0, -1)).SetPeriodEnd(now).SetComponent(marker + "-requests").
		SetTarget(usagereport.TargetWaldur).SetExternalRef(marker + "-ref").Save(f.ctx)
	f.check(err)
	return out
}

// webhook stores an inbox event whose external id and type name marker.
func (f *fixtures) webhook(marker string) *ent.WebhookEvent {
	f.t.Helper()
	w, err := f.c.WebhookEvent.Create().SetSource(webhookevent.SourceWaldur).
		SetExternalID(fmt.Sprintf("%s-event-%d", marker, fixtureSeq.Add(1))).SetType(marker + ".order").
		SetPayload(json.RawMessage(`{"x":1}`)).SetError(marker + " failure").Save(f.ctx)
	f.check(err)
	return w
}

// world is a tenant with a row of every type, independent of every other tenant: it
// subscribes to its own agent.
type world struct {
	Marker string
	*member
	*product
	*purchase
	Webhook *ent.WebhookEvent
}

func (f *fixtures) world(marker, subject string) *world {
	f.t.Helper()
	m := f.tenant(marker, subject, membership.RoleOwner)
	p := f.agents(m.Tenant, marker, 1, 1, 1)[0]
	return &world{Marker: marker, member: m, product: p, purchase: f.subscribe(m, p, marker, 1), Webhook: f.webhook(marker)}
}

// row is one stored row: its GraphQL type and id.
type row struct {
	Type string
	ID   string
}

// rows lists one row of every entity type in the world.
func (w *world) rows() []row {
	return []row{
		{"Tenant", string(w.Tenant.ID)},
		{"Project", string(w.Project.ID)},
		{"Membership", string(w.Membership.ID)},
		{"Agent", string(w.Agent.ID)},
		{"Flow", string(w.Flows[0].ID)},
		{"Plan", string(w.Plans[0].ID)},
		{"AgentSubscription", string(w.Subscription.ID)},
		{"AgentConfig", string(w.Config.ID)},
		{"Document", string(w.Document.ID)},
		{"APIKey", string(w.APIKeys[0].ID)},
		{"UsageRecord", string(w.UsageRecord.ID)},
		{"UsageDaily", string(w.UsageDaily.ID)},
		{"UsageReport", string(w.UsageReport.ID)},
		{"WebhookEvent", string(w.Webhook.ID)},
	}
}

// ids is the set of the world's ids.
func (w *world) ids() map[string]bool {
	out := map[string]bool{}
	for _, r := range w.rows() {
		out[r.ID] = true
	}
	return out
}

// memberID is the id of subject's membership in tenant.
func (f *fixtures) memberID(tenant pulid.ID, subject string) pulid.ID {
	f.t.Helper()
	id, err := f.c.Membership.Query().Where(membership.TenantID(tenant), membership.Subject(subject)).OnlyID(f.ctx)
	f.check(err)
	return id
}
