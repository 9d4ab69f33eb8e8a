package gateway_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/ent/subscription"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/langflow/echoruntime"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
)

// failingStore wraps the key store: it can fail every lookup, and can hold rows for keys
// whose config no longer exists (the database's foreign key would refuse them).
type failingStore struct {
	apikey.Store
	fail  atomic.Bool
	mu    sync.Mutex
	extra map[string]apikey.Record
}

func (s *failingStore) LookupByHash(ctx context.Context, hash string) (apikey.Record, error) {
	if s.fail.Load() {
		return apikey.Record{}, errors.New("database is down")
	}
	s.mu.Lock()
	rec, ok := s.extra[hash]
	s.mu.Unlock()
	if ok {
		return rec, nil
	}
	return s.Store.LookupByHash(ctx, hash)
}

func TestRuntimeErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)

	const traceback = "Traceback (most recent call last):\n  File \"/app/langflow/secret_module.py\", line 12, in run\nValueError: OPENAI_API_KEY=sk-live-123"
	e.rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Status: 500, Detail: "Error running graph: " + traceback, Times: 1})
	r := e.invoke(key, `{"input":"hi"}`)
	if r.status != http.StatusBadGateway || r.code(t) != "RUNTIME_ERROR" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, leak := range []string{"Traceback", "secret_module", "sk-live", "Error running graph"} {
		if strings.Contains(string(r.body), leak) {
			t.Fatalf("langflow internals leaked (%q): %s", leak, r.body)
		}
	}
	rows := e.usageRows()
	if len(rows) != 1 || rows[0].Status != 502 || rows[0].ErrorCode != "RUNTIME_ERROR" || rows[0].InputTokens != 0 {
		t.Fatalf("rows %+v", rows)
	}
}

func TestRuntimeTimeout(t *testing.T) {
	e := newEnv(t, envOptions{langflow: langflow.Options{Timeout: 150 * time.Millisecond}})
	f := e.seed(fixtureOptions{})
	e.rt.SetFault(echoruntime.Fault{PathPrefix: "/api/v1/run/", Delay: 2 * time.Second})
	start := time.Now()
	r := e.invoke(e.secret(f), `{"input":"slow"}`)
	if r.status != http.StatusGatewayTimeout || r.code(t) != "RUNTIME_TIMEOUT" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
}

func TestDeadRuntimeOpensBreaker(t *testing.T) {
	var dials atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		time.Sleep(300 * time.Millisecond) // a dead host costs time to find out
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
	}
	e := newEnv(t, envOptions{langflow: langflow.Options{
		BaseURL: "http://langflow.invalid:7860", DialContext: dial,
		Breaker: langflow.BreakerSettings{ConsecutiveFailures: 3, OpenDuration: time.Minute},
	}})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	for i := 0; i < 3; i++ {
		r := e.invoke(key, `{"input":"hi"}`)
		if r.status != http.StatusServiceUnavailable || r.code(t) != "RUNTIME_UNAVAILABLE" {
			t.Fatalf("call %d: status %d: %s", i, r.status, r.body)
		}
	}
	before := dials.Load()
	start := time.Now()
	r := e.invoke(key, `{"input":"hi"}`)
	if r.status != http.StatusServiceUnavailable || r.code(t) != "RUNTIME_UNAVAILABLE" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if dials.Load() != before {
		t.Fatal("the open breaker still dialed Langflow")
	}
	// Well under one dial: the call still meters (a database commit), but never waits
	// for Langflow.
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("a call with the breaker open took %v", d)
	}
	if n := len(e.usageRows()); n != 4 {
		t.Fatalf("usage rows %d, want 4", n)
	}
	// Health reports the runtime as not ready, without details.
	h := e.do(http.MethodGet, "/api/agent-gateway/health/", nil, "")
	if h.status != 200 || h.json(t)["runtime"].(map[string]any)["ready"] != false || strings.Contains(string(h.body), "invalid") {
		t.Fatalf("health %d %s", h.status, h.body)
	}
}

func TestConflicts(t *testing.T) {
	e := newEnv(t, envOptions{})
	inactive := e.seed(fixtureOptions{subStatus: "suspended"})
	unprovisioned := e.seed(fixtureOptions{notProvisioned: true})
	for name, c := range map[string]struct {
		f    fixture
		code string
	}{
		"suspended":       {inactive, "SUBSCRIPTION_INACTIVE"},
		"not provisioned": {unprovisioned, "AGENT_NOT_PROVISIONED"},
	} {
		r := e.invoke(e.secret(c.f), `{"input":"hi"}`)
		if r.status != http.StatusConflict || r.code(t) != c.code {
			t.Fatalf("%s: status %d: %s", name, r.status, r.body)
		}
	}
	if e.rt.Calls() != 0 {
		t.Fatal("Langflow was called")
	}
	// Reactivation takes effect once the resolver forgets the config.
	if err := e.client.Subscription.UpdateOneID(inactive.sub).SetStatus(subscription.StatusActive).Exec(sys()); err != nil {
		t.Fatal(err)
	}
	e.resolver.Invalidate(inactive.config)
	if r := e.invoke(e.secret(inactive), `{"input":"hi"}`); r.status != 200 {
		t.Fatalf("after reactivation: %d %s", r.status, r.body)
	}
}

func TestConfigNotFound(t *testing.T) {
	store := &failingStore{extra: map[string]apikey.Record{}}
	e := newEnv(t, envOptions{store: func(s apikey.Store) apikey.Store { store.Store = s; return store }})
	f := e.seed(fixtureOptions{})
	gone := pulid.MustNew("cfg")
	exp := time.Now().Add(time.Hour)
	minted, err := e.keyring.Mint(apikey.MintParams{Kind: apikey.KindSecret, TenantID: f.buyer, ConfigID: gone,
		Scopes: []apikey.Scope{apikey.ScopeInvoke}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	store.extra[minted.Hash] = apikey.Record{ID: pulid.MustNew("key"), TenantID: f.buyer, ConfigID: gone,
		Kind: apikey.KindSecret, Scopes: []apikey.Scope{apikey.ScopeInvoke}, ExpiresAt: &exp}
	r := e.invoke(minted.Key, `{"input":"hi"}`)
	if r.status != http.StatusNotFound || r.code(t) != "NOT_FOUND" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

func TestUsageNotRecorded(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.recorder.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := e.invoke(key, `{"input":"hi"}`)
	if r.status != http.StatusServiceUnavailable || r.code(t) != "USAGE_NOT_RECORDED" {
		t.Fatalf("an unrecorded call must not be a 2xx: %d %s", r.status, r.body)
	}
}

func TestLimiterFailClosedIs503(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	limiter := ratelimit.NewRedis(client, ratelimit.RedisOptions{FailClosed: true})
	e := newEnv(t, envOptions{limiter: limiter})
	f := e.seed(fixtureOptions{rpmKey: 10})
	r := e.invoke(e.secret(f), `{"input":"hi"}`)
	if r.status != http.StatusServiceUnavailable || r.code(t) != "RUNTIME_UNAVAILABLE" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if e.rt.Calls() != 0 {
		t.Fatal("Langflow was called without a rate decision")
	}
}
