package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"entgo.io/ent/dialect/sql"
	"golang.org/x/sync/singleflight"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/agentconfig"
	"github.com/gsvdev/agentregistry/ent/flow"
	"github.com/gsvdev/agentregistry/ent/plan"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// ErrConfigNotFound is what a Resolver returns for a config that does not exist (never
// did, or was deleted).
var ErrConfigNotFound = errors.New("gateway: config not found")

// Resolver finds what a call to a config needs.
type Resolver interface {
	Resolve(ctx context.Context, configID pulid.ID) (Target, error)
}

// PlanLimits are a plan's limits; zero means "no limit".
type PlanLimits struct {
	RPMPerKey        int
	RPMPerTenant     int
	RequestsPerMonth int64
	TokensPerMonth   int64
}

// Target is a config with everything the pipeline needs of its subscription, plan and
// agent. Targets are shared between calls through the cache: treat them as read-only
// (Tweaks in particular is never mutated; merging copies).
type Target struct {
	ConfigID         pulid.ID
	TenantID         pulid.ID // the buyer, owner of the config
	ProviderTenantID pulid.ID // the seller (subscription.provider_tenant_id)
	AgentID          pulid.ID
	SubscriptionID   pulid.ID
	PlanID           pulid.ID
	// SubscriptionStatus is the subscription's status ("active", "past_due", ...).
	SubscriptionStatus string
	// RuntimeFlowID is the Langflow flow id of the agent's latest provisioned flow; ""
	// when no version is provisioned.
	RuntimeFlowID string
	// Persona.
	DisplayName  string
	SystemPrompt string
	// Tweaks are the buyer's saved tweaks.
	Tweaks map[string]any
	// TweakableFields is the plan's allowlist ("Component-ID.field" or "field").
	TweakableFields []string
	// AllowedOrigins are the browser origins of the config (exact, or https://*.host).
	AllowedOrigins []string
	Limits         PlanLimits
}

// Active reports whether the subscription allows calls.
func (t *Target) Active() bool { return t.SubscriptionStatus == string(subscription.StatusActive) }

// EntResolverOptions tune an EntResolver.
type EntResolverOptions struct {
	// TTL is how long a resolved config is trusted (default 5s): short, because a
	// suspended subscription or a new flow version must take effect without a restart,
	// and Invalidate only reaches this replica. A config in use is reloaded in the
	// background during the last fifth of its TTL, so calls do not wait for the database.
	TTL time.Duration
	// MaxStale is how long past its TTL the last good config is still served while
	// reloading it fails or is slow (default 5m): a database outage or a slow query then
	// costs known configs nothing, and a config that was never loaded still fails.
	MaxStale time.Duration
	// ReloadWait bounds how long a call for a known config whose TTL is over (one not
	// used for a while) waits for its reload before it is answered from the stale entry
	// (default 100ms); the reload goes on in the background.
	ReloadWait time.Duration
	// MaxEntries bounds the cache (default 10 000).
	MaxEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives failed reloads (default slog.Default()).
	Logger *slog.Logger
}

// loadTimeout bounds one load; it is shared by every caller waiting for it.
const loadTimeout = 5 * time.Second

// EntResolver resolves configs from the database, as the system (the gateway has no
// viewer; the key it verified names the config), and caches them in process.
type EntResolver struct {
	client     *ent.Client
	ttl        time.Duration
	ahead      time.Duration // reload this long before expiry
	retry      time.Duration // after a reload was started, wait this long before another
	maxStale   time.Duration
	reloadWait time.Duration
	max        int
	now        func() time.Time
	log        *slog.Logger

	group singleflight.Group
	mu    sync.Mutex
	cache map[pulid.ID]resolved
	// gen counts invalidations, so that a lookup that started before one does not put
	// back the stale row it read.
	gen uint64
}

type resolved struct {
	target  Target
	err     error // only ErrConfigNotFound is cached
	expires time.Time
	// refreshAt is when the next reload is due: ahead of expires after a load, and one
	// retry interval after a reload was started (so a failing database is tried at that
	// pace, not by every call).
	refreshAt time.Time
}

// NewEntResolver returns a resolver reading through client.
func NewEntResolver(client *ent.Client, opts EntResolverOptions) *EntResolver {
	if client == nil {
		panic("gateway: NewEntResolver needs a client")
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Second
	}
	if opts.MaxStale <= 0 {
		opts.MaxStale = 5 * time.Minute
	}
	if opts.ReloadWait <= 0 {
		opts.ReloadWait = 100 * time.Millisecond
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &EntResolver{
		client: client, ttl: opts.TTL, ahead: opts.TTL / 5, retry: opts.TTL / 5,
		maxStale: opts.MaxStale, reloadWait: opts.ReloadWait, max: opts.MaxEntries,
		now: opts.Now, log: opts.Logger, cache: map[pulid.ID]resolved{},
	}
}

// Resolve implements Resolver. A cached config is answered at once, and reloaded in the
// background when its TTL nears its end. Past its TTL, a config is reloaded (once however
// many calls want it); if that fails or takes longer than ReloadWait, the last good
// config is served, up to MaxStale past its TTL. A config never loaded (or not found last
// time) waits for the database and fails with it.
func (r *EntResolver) Resolve(ctx context.Context, configID pulid.ID) (Target, error) {
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[configID]
	gen := r.gen
	due := ok && !now.Before(e.refreshAt)
	if due {
		// Claimed under the lock: one call per retry interval starts the reload.
		e.refreshAt = now.Add(r.retry)
		r.cache[configID] = e
	}
	r.mu.Unlock()
	switch {
	case ok && now.Before(e.expires):
		if due {
			r.load(ctx, configID, gen, false)
		}
		return e.target, e.err
	case ok && e.err == nil && now.Before(e.expires.Add(r.maxStale)):
		if !due {
			// A reload started less than a retry interval ago has not succeeded (yet).
			return e.target, nil
		}
		return r.reloadOrStale(ctx, configID, gen, e.target)
	}
	select {
	case <-ctx.Done():
		return Target{}, ctx.Err()
	case res := <-r.load(ctx, configID, gen, true):
		if res.Err != nil {
			return Target{}, res.Err
		}
		v := res.Val.(resolved)
		return v.target, v.err
	}
}

// reloadOrStale reloads a known config whose TTL is over, waiting at most ReloadWait:
// the fresh config if it comes in time, else the stale one.
func (r *EntResolver) reloadOrStale(ctx context.Context, configID pulid.ID, gen uint64, stale Target) (Target, error) {
	ch := r.load(ctx, configID, gen, false)
	wait := time.NewTimer(r.reloadWait)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return Target{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return stale, nil // load logged it
		}
		v := res.Val.(resolved)
		return v.target, v.err
	case <-wait.C:
		// The load carries on and fills the cache when (if) it succeeds.
		return stale, nil
	}
}

// load starts loading configID, or joins the load in flight; it does not wait. The
// result is cached (a failure is not) and delivered on the channel, which needs no
// reader.
func (r *EntResolver) load(ctx context.Context, configID pulid.ID, gen uint64, missed bool) <-chan singleflight.Result {
	return r.group.DoChan(string(configID), func() (_ any, err error) {
		// singleflight re-raises a panic of a load that DoChan callers wait for on a
		// goroutine of its own, where nothing recovers it: one bad row would stop every
		// tenant's calls. The load fails instead, like a failed read (not cached).
		defer func() {
			if p := recover(); p != nil {
				r.log.LogAttrs(ctx, slog.LevelError, "gateway: loading a config panicked",
					slog.String("config_id", string(configID)), slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
				err = fmt.Errorf("gateway: loading config %s panicked", configID)
			}
		}()
		// A caller that found no usable entry just before the previous load stored one,
		// and came here just after that load ended, takes the entry rather than reading
		// the database a second time. Reloads of a config in use (missed false) read.
		if missed {
			if e, ok := r.fresh(configID, gen); ok {
				return resolved{target: e.target, err: e.err}, nil
			}
		}
		// Not under any one caller's context: the load is shared by every waiter, and a
		// background reload outlives the call that started it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		t, err := r.read(lctx, configID)
		if err != nil && !errors.Is(err, ErrConfigNotFound) {
			r.log.LogAttrs(lctx, slog.LevelWarn, "gateway: loading a config failed",
				slog.String("config_id", string(configID)), slog.Any("error", err))
			return nil, err
		}
		now := r.now()
		r.put(configID, resolved{target: t, err: err, expires: now.Add(r.ttl), refreshAt: now.Add(r.ttl - r.ahead)}, gen)
		return resolved{target: t, err: err}, nil
	})
}

// Invalidate forgets a config, so that the next call reads it again (after the portal
// changes it, a subscription changes status, or a flow is provisioned).
func (r *EntResolver) Invalidate(configID pulid.ID) {
	r.mu.Lock()
	delete(r.cache, configID)
	r.gen++
	r.mu.Unlock()
	r.group.Forget(string(configID))
}

// fresh returns id's cached entry if it is unexpired and nothing was invalidated since
// generation gen (the caller's view of the cache).
func (r *EntResolver) fresh(id pulid.ID, gen uint64) (resolved, bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[id]
	if !ok || r.gen != gen || !now.Before(e.expires) {
		return resolved{}, false
	}
	return e, true
}

func (r *EntResolver) put(id pulid.ID, e resolved, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return
	}
	if _, exists := r.cache[id]; !exists && len(r.cache) >= r.max {
		now := r.now()
		for k, v := range r.cache {
			// Stale entries still serve while reloads fail; only those past MaxStale are
			// worth nothing.
			if !now.Before(v.expires.Add(r.maxStale)) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.max {
				break
			}
			delete(r.cache, k) // map order is random: an arbitrary victim
		}
	}
	r.cache[id] = e
}

// read reads the config with its subscription, plan and the agent's latest provisioned
// flow in one statement. It runs for every config in use every few seconds (see
// EntResolverOptions.TTL), so one round trip instead of four matters to the database,
// and the flow's definition and validation report, which are large, are never read.
func (r *EntResolver) read(ctx context.Context, configID pulid.ID) (Target, error) {
	// The key that named this config was verified: reading as the system leaks nothing,
	// and the target is only used for that key's tenant. For the same reason the joins
	// need not pass through the joined entities' tenant filters.
	ctx = auth.SystemContext(ctx)
	var rows []targetRow
	err := r.client.AgentConfig.Query().
		Where(agentconfig.ID(configID)).
		Modify(selectTarget).
		Scan(ctx, &rows)
	switch {
	case err != nil:
		return Target{}, fmt.Errorf("gateway: resolve config: %w", err)
	case len(rows) == 0:
		return Target{}, ErrConfigNotFound
	case rows[0].SubscriptionID == "" || rows[0].PlanID == "":
		return Target{}, fmt.Errorf("gateway: config %s has no subscription or plan", configID)
	}
	row := rows[0]
	var (
		tweaks             map[string]any
		tweakable, origins []string
	)
	for _, c := range []struct {
		name string
		raw  jsonColumn
		into any
	}{{"tweaks", row.Tweaks, &tweaks}, {"tweakable_fields", row.TweakableFields, &tweakable}, {"allowed_origins", row.AllowedOrigins, &origins}} {
		if err := c.raw.decode(c.into); err != nil {
			return Target{}, fmt.Errorf("gateway: config %s: decode %s: %w", configID, c.name, err)
		}
	}
	// No flow provisioned leaves RuntimeFlowID empty: the pipeline answers 409 after
	// metering, so this is no error.
	return Target{
		ConfigID:           pulid.ID(row.ConfigID),
		TenantID:           pulid.ID(row.TenantID),
		ProviderTenantID:   pulid.ID(row.ProviderTenantID),
		AgentID:            pulid.ID(row.AgentID),
		SubscriptionID:     pulid.ID(row.SubscriptionID),
		PlanID:             pulid.ID(row.PlanID),
		SubscriptionStatus: row.SubscriptionStatus,
		RuntimeFlowID:      row.RuntimeFlowID,
		DisplayName:        row.DisplayName,
		SystemPrompt:       row.SystemPrompt,
		Tweaks:             tweaks,
		TweakableFields:    tweakable,
		AllowedOrigins:     origins,
		Limits: PlanLimits{
			RPMPerKey:        row.RPMPerKey,
			RPMPerTenant:     row.RPMPerTenant,
			RequestsPerMonth: row.RequestsPerMonth,
			TokensPerMonth:   row.TokensPerMonth,
		},
	}, nil
}

// targetRow is the row selectTarget reads. A subscription or plan that is missing
// leaves its columns NULL, which scan as empty values.
type targetRow struct {
	ConfigID           string     `sql:"config_id"`
	TenantID           string     `sql:"tenant_id"`
	DisplayName        string     `sql:"display_name"`
	SystemPrompt       string     `sql:"system_prompt"`
	Tweaks             jsonColumn `sql:"tweaks"`
	AllowedOrigins     jsonColumn `sql:"allowed_origins"`
	SubscriptionID     string     `sql:"subscription_id"`
	SubscriptionStatus string     `sql:"subscription_status"`
	ProviderTenantID   string     `sql:"provider_tenant_id"`
	AgentID            string     `sql:"agent_id"`
	PlanID             string     `sql:"plan_id"`
	RPMPerKey          int        `sql:"rpm_per_key"`
	RPMPerTenant       int        `sql:"rpm_per_tenant"`
	RequestsPerMonth   int64      `sql:"requests_per_month"`
	TokensPerMonth     int64      `sql:"tokens_per_month"`
	TweakableFields    jsonColumn `sql:"tweakable_fields"`
	RuntimeFlowID      string     `sql:"runtime_flow_id"`
}

// jsonColumn is a JSON column as the drivers return it: PostgreSQL's jsonb as bytes,
// SQLite's as text or bytes depending on how the value was stored, NULL as nil. (ent's
// own scan of a JSON field into a struct accepts bytes only, and panics on text.)
type jsonColumn []byte

// Scan implements sql.Scanner.
func (j *jsonColumn) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append((*j)[:0], v...)
	case string:
		*j = append((*j)[:0], v...)
	default:
		return fmt.Errorf("JSON column holds %T", src)
	}
	return nil
}

// decode unmarshals the column into v; NULL leaves v as it is.
func (j jsonColumn) decode(v any) error {
	if j == nil {
		return nil
	}
	return json.Unmarshal(j, v)
}

// selectTarget turns the config query into: the config, LEFT JOIN its subscription,
// LEFT JOIN that subscription's plan, and the runtime id of the agent's provisioned flow
// of the highest version as a scalar subquery (which PostgreSQL and SQLite both run).
func selectTarget(s *sql.Selector) {
	sub, pl := sql.Table(subscription.Table).As("sub"), sql.Table(plan.Table).As("pl")
	fl := sql.Table(flow.Table).As("fl")
	latestFlow := sql.Select(fl.C(flow.FieldRuntimeFlowID)).From(fl).
		Where(sql.And(
			sql.ColumnsEQ(fl.C(flow.FieldAgentID), sub.C(subscription.FieldAgentID)),
			sql.EQ(fl.C(flow.FieldRuntimeStatus), flow.RuntimeStatusProvisioned.String()),
			sql.NotNull(fl.C(flow.FieldRuntimeFlowID)),
			sql.NEQ(fl.C(flow.FieldRuntimeFlowID), ""),
		)).
		OrderBy(sql.Desc(fl.C(flow.FieldVersion))).
		Limit(1)
	s.LeftJoin(sub).On(s.C(agentconfig.FieldSubscriptionID), sub.C(subscription.FieldID)).
		LeftJoin(pl).On(sub.C(subscription.FieldPlanID), pl.C(plan.FieldID))
	s.Select().
		AppendSelectAs(s.C(agentconfig.FieldID), "config_id").
		AppendSelectAs(s.C(agentconfig.FieldTenantID), "tenant_id").
		AppendSelectAs(s.C(agentconfig.FieldDisplayName), "display_name").
		AppendSelectAs(s.C(agentconfig.FieldSystemPrompt), "system_prompt").
		AppendSelectAs(s.C(agentconfig.FieldTweaks), "tweaks").
		AppendSelectAs(s.C(agentconfig.FieldAllowedOrigins), "allowed_origins").
		AppendSelectAs(sub.C(subscription.FieldID), "subscription_id").
		AppendSelectAs(sub.C(subscription.FieldStatus), "subscription_status").
		AppendSelectAs(sub.C(subscription.FieldProviderTenantID), "provider_tenant_id").
		AppendSelectAs(sub.C(subscription.FieldAgentID), "agent_id").
		AppendSelectAs(pl.C(plan.FieldID), "plan_id").
		AppendSelectAs(pl.C(plan.FieldRpmPerKey), "rpm_per_key").
		AppendSelectAs(pl.C(plan.FieldRpmPerTenant), "rpm_per_tenant").
		AppendSelectAs(pl.C(plan.FieldRequestsPerMonth), "requests_per_month").
		AppendSelectAs(pl.C(plan.FieldTokensPerMonth), "tokens_per_month").
		AppendSelectAs(pl.C(plan.FieldTweakableFields), "tweakable_fields").
		AppendSelectExprAs(latestFlow, "runtime_flow_id")
}
