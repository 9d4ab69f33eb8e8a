package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/database"
	"github.com/gsvdev/agentregistry/internal/database/dbtest"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime/echotest"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/usage"
)

const (
	testIssuer   = "https://registry.example.test"
	testAudience = "https://registry.example.test/gateway"
)

var testSecret = []byte(strings.Repeat("s", 32))

// clock is real time plus an offset the test can advance, for the key verifier: expiry
// and rotation grace are decided against it while the database stamps real time.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// envOptions shape one gateway under test.
type envOptions struct {
	driver string
	// langflow overrides the Langflow client options (BaseURL defaults to the echo runtime).
	langflow langflow.Options
	echo     echoruntime.Options
	// limiter replaces the memory limiter.
	limiter ratelimit.Limiter
	// store wraps the key store (to inject failures or extra rows).
	store func(apikey.Store) apikey.Store
	// shared reuses another env's database (two gateway replicas).
	shared        *env
	visitorLimit  ratelimit.Limit
	maxInputBytes int
}

// env is one gateway wired to real rooms: a test database, the key service and verifier,
// the ent resolver, a limiter, the usage recorder and quota counter, and the echo runtime
// as Langflow, served over HTTP.
type env struct {
	t        testing.TB
	db       *database.DB
	client   *ent.Client
	clock    *clock
	keyring  *apikey.Keyring
	keys     *keys.Service
	verifier *apikey.Verifier
	resolver *gateway.EntResolver
	recorder *usage.Recorder
	rt       *echoruntime.Runtime
	lf       *langflow.Client
	gw       *gateway.Gateway
	srv      *httptest.Server
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}}
	if o.shared != nil {
		e.db, e.clock, e.keyring = o.shared.db, o.shared.clock, o.shared.keyring
	} else {
		if o.driver == "" {
			o.driver = database.DriverSQLite
		}
		e.db = dbtest.Open(t, o.driver)
		kr, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "k1", Secret: testSecret}},
			apikey.KeyringOptions{Issuer: testIssuer, Audience: testAudience, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		e.keyring = kr
	}
	e.client = e.db.Client
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	e.keys = keys.New(e.client, e.keyring, nil)
	var store apikey.Store = e.keys
	if o.store != nil {
		store = o.store(store)
	}
	e.verifier = apikey.NewVerifier(e.keyring, store, apikey.VerifierOptions{Now: e.clock.Now, Logger: logger})
	e.keys.SetInvalidator(e.verifier)
	e.resolver = gateway.NewEntResolver(e.client, gateway.EntResolverOptions{})

	quota := usage.NewQuotaCounter(usage.NewQuota(e.client), usage.QuotaCounterOptions{Logger: logger})
	e.recorder = usage.NewRecorder(e.db, usage.RecorderOptions{Quota: quota, Logger: logger})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.recorder.Close(ctx)
	})

	rt, rtSrv := echotest.Start(t, o.echo)
	e.rt = rt
	lo := o.langflow
	if lo.BaseURL == "" {
		lo.BaseURL = rtSrv.URL
	}
	if lo.Timeout == 0 {
		lo.Timeout = 10 * time.Second
	}
	lf, err := langflow.New(lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lf.Close)
	e.lf = lf

	limiter := o.limiter
	if limiter == nil {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		t.Cleanup(func() { _ = m.Close() })
		limiter = m
	}
	gw, err := gateway.New(gateway.Deps{
		Verifier: e.verifier, Resolver: e.resolver, Limiter: limiter, Quota: quota,
		Runtime: lf, Recorder: e.recorder, Logger: logger, Replays: usage.NewReplays(e.client),
		VisitorLimit: o.visitorLimit, MaxInputBytes: o.maxInputBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	e.srv = httptest.NewServer(gw.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fixtureOptions describe a provider, a buyer and the config the buyer invokes.
type fixtureOptions struct {
	rpmKey, rpmTenant int // 0: no limit
	requestsPerMonth  int64
	tokensPerMonth    int64
	tweakable         []string
	savedTweaks       map[string]any
	systemPrompt      string
	origins           []string
	subStatus         string // default active
	notProvisioned    bool
}

type fixture struct {
	provider, buyer, agent, plan, sub, config pulid.ID
	flowID                                    string
}

func sys() context.Context { return auth.SystemContext(context.Background()) }

func randSlug(prefix string) string { return prefix + "-" + strings.ToLower(rand.Text()[:10]) }

// seed creates fresh tenants and a config, so tests (and tenants within a test) never share
// rows or budgets.
func (e *env) seed(o fixtureOptions) fixture {
	e.t.Helper()
	ctx, c := sys(), e.client
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	prov, err := c.Tenant.Create().SetName("Provider").SetSlug(randSlug("prov")).Save(ctx)
	must(err)
	buyer, err := c.Tenant.Create().SetName("Buyer").SetSlug(randSlug("buyer")).Save(ctx)
	must(err)
	project, err := c.Project.Create().SetTenantID(buyer.ID).SetName("Project").Save(ctx)
	must(err)
	agent, err := c.Agent.Create().SetTenantID(prov.ID).SetName("Agent").SetSlug(randSlug("agent")).Save(ctx)
	must(err)
	flowID := "flow-" + strings.ToLower(rand.Text()[:8])
	fc := c.Flow.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetVersion(1).
		SetDefinition(json.RawMessage(`{"data":{"nodes":[],"edges":[]}}`)).SetChecksum(strings.Repeat("0", 64))
	if o.notProvisioned {
		fc.SetRuntimeStatus("not_provisioned")
	} else {
		fc.SetRuntimeFlowID(flowID).SetRuntimeStatus("provisioned")
	}
	_, err = fc.Save(ctx)
	must(err)
	plan, err := c.Plan.Create().SetTenantID(prov.ID).SetAgentID(agent.ID).SetName("Plan").
		SetRequestsPerMonth(o.requestsPerMonth).SetTokensPerMonth(o.tokensPerMonth).
		SetRpmPerKey(o.rpmKey).SetRpmPerTenant(o.rpmTenant).SetTweakableFields(o.tweakable).Save(ctx)
	must(err)
	status := o.subStatus
	if status == "" {
		status = "active"
	}
	sub, err := c.Subscription.Create().SetTenantID(buyer.ID).SetProjectID(project.ID).SetAgentID(agent.ID).
		SetPlanID(plan.ID).SetStatus("active").Save(ctx)
	must(err)
	if status != "active" {
		must(sub.Update().SetStatus(subscription.Status(status)).Exec(ctx))
	}
	cc := c.AgentConfig.Create().SetTenantID(buyer.ID).SetSubscriptionID(sub.ID).
		SetSystemPrompt(o.systemPrompt).SetAllowedOrigins(o.origins)
	if o.savedTweaks != nil {
		cc.SetTweaks(o.savedTweaks)
	}
	cfg, err := cc.Save(ctx)
	must(err)
	return fixture{provider: prov.ID, buyer: buyer.ID, agent: agent.ID, plan: plan.ID, sub: sub.ID, config: cfg.ID, flowID: flowID}
}

// key creates a key for the config through the key service.
func (e *env) key(f fixture, kind apikey.Kind, scopes ...apikey.Scope) (string, pulid.ID) {
	e.t.Helper()
	created, err := e.keys.Create(sys(), keys.CreateParams{ConfigID: f.config, Name: "test key", Kind: kind, Scopes: scopes})
	if err != nil {
		e.t.Fatal(err)
	}
	return created.Secret, created.Key.ID
}

func (e *env) secret(f fixture) string {
	k, _ := e.key(f, apikey.KindSecret)
	return k
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.body)
	}
	return m
}

// code returns error.code of a native error body.
func (r response) code(t testing.TB) string {
	t.Helper()
	m := r.json(t)
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (e *env) do(method, path string, header map[string]string, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// invoke posts a body to the invoke route with a bearer key.
func (e *env) invoke(key, body string, extra ...string) response {
	e.t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return e.do(http.MethodPost, "/api/agent-gateway/invoke/", h, body)
}

// usageRows counts the usage records.
func (e *env) usageRows() []*ent.UsageRecord {
	e.t.Helper()
	rows, err := e.client.UsageRecord.Query().Order(ent.Asc(usagerecord.FieldStartedAt)).All(sys())
	if err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// forEachDriver runs f on SQLite and, when configured, PostgreSQL.
func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range dbtest.Drivers(t) {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
