package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/gateway"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// flakyDriver is a database that can be made to fail or to answer slowly, and counts the
// statements it was sent.
type flakyDriver struct {
	dialect.Driver
	fail       atomic.Bool
	delay      atomic.Int64 // nanoseconds
	statements atomic.Int64
}

var errDBDown = errors.New("database is down")

func (d *flakyDriver) before(ctx context.Context) error {
	d.statements.Add(1)
	if wait := time.Duration(d.delay.Load()); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if d.fail.Load() {
		return errDBDown
	}
	return nil
}

func (d *flakyDriver) Query(ctx context.Context, query string, args, v any) error {
	if err := d.before(ctx); err != nil {
		return err
	}
	return d.Driver.Query(ctx, query, args, v)
}

func (d *flakyDriver) Exec(ctx context.Context, query string, args, v any) error {
	if err := d.before(ctx); err != nil {
		return err
	}
	return d.Driver.Exec(ctx, query, args, v)
}

// fakeClock is a settable clock for the resolver's TTLs.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// flakyResolver is an EntResolver over a flakyDriver, on a fixture of e's database.
func flakyResolver(e *env, opts gateway.EntResolverOptions) (*gateway.EntResolver, *flakyDriver, *fakeClock) {
	drv := &flakyDriver{Driver: entsql.OpenDB(e.db.Dialect, e.db.SQL)}
	clk := &fakeClock{now: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	opts.Now = clk.Now
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	return gateway.NewEntResolver(ent.NewClient(ent.Driver(drv)), opts), drv, clk
}

func setPrompt(t *testing.T, e *env, f fixture, prompt string) {
	t.Helper()
	if err := e.client.AgentConfig.UpdateOneID(f.config).SetSystemPrompt(prompt).Exec(sys()); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 5s (background reloads run on their own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestEntResolverServesStaleWhileTheDatabaseFails(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "v1"})
	r, drv, clk := flakyResolver(e, gateway.EntResolverOptions{TTL: 10 * time.Second, MaxStale: time.Minute})
	ctx := context.Background()
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v1" {
		t.Fatalf("first load: %v %q", err, got.SystemPrompt)
	}

	drv.fail.Store(true)
	clk.Advance(11 * time.Second) // past the TTL
	before := drv.statements.Load()
	for i := range 3 {
		got, err := r.Resolve(ctx, f.config)
		if err != nil || got.SystemPrompt != "v1" || got.ConfigID != f.config {
			t.Fatalf("call %d with the database down: %v %+v, want the last good config", i, err, got)
		}
	}
	// One reload was tried, not one per call: the others wait for the retry interval.
	if n := drv.statements.Load() - before; n != 1 {
		t.Fatalf("%d statements while down, want 1", n)
	}
	clk.Advance(2 * time.Second) // TTL/5: the retry interval
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	if n := drv.statements.Load() - before; n != 2 {
		t.Fatalf("%d statements after the retry interval, want 2", n)
	}

	// The database is back: the next due reload serves (and caches) the fresh config.
	setPrompt(t, e, f, "v2")
	drv.fail.Store(false)
	clk.Advance(2 * time.Second)
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v2" {
		t.Fatalf("after recovery: %v %q", err, got.SystemPrompt)
	}

	// Stale is bounded: past MaxStale a config that cannot be reloaded fails.
	drv.fail.Store(true)
	clk.Advance(10*time.Second + time.Minute)
	if _, err := r.Resolve(ctx, f.config); !errors.Is(err, errDBDown) {
		t.Fatalf("past MaxStale: err = %v, want the database error", err)
	}
}

func TestEntResolverNeverLoadedConfigFails(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	r, drv, _ := flakyResolver(e, gateway.EntResolverOptions{})
	drv.fail.Store(true)
	_, err := r.Resolve(context.Background(), f.config)
	if !errors.Is(err, errDBDown) || errors.Is(err, gateway.ErrConfigNotFound) {
		t.Fatalf("err = %v, want the database error", err)
	}

	// Through the gateway: 503 RUNTIME_UNAVAILABLE, and Langflow is not called.
	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	t.Cleanup(func() { _ = limiter.Close() })
	gw, err := gateway.New(gateway.Deps{
		Verifier: e.verifier, Resolver: r, Limiter: limiter,
		Quota:   usage.NewQuotaCounter(usage.NewQuota(e.client), usage.QuotaCounterOptions{Logger: discardLogger()}),
		Runtime: e.lf, Recorder: e.recorder, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	e.srv = srv
	resp := e.invoke(e.secret(f), `{"input":"hi"}`)
	if resp.status != http.StatusServiceUnavailable || resp.code(t) != gateway.CodeRuntimeUnavailable {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	if e.rt.Calls() != 0 {
		t.Fatal("Langflow was called without a config")
	}
}

// A load that panics (a bug meeting a row it did not expect) fails that call with 503;
// it must not take the process down. singleflight re-raises the panics of DoChan loads on
// a goroutine of their own, which ends the process unless the load recovers.
func TestEntResolverPanickingLoadFailsTheCallOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{})
	var boom atomic.Bool
	e.client.AgentConfig.Intercept(ent.TraverseFunc(func(context.Context, ent.Query) error {
		if boom.Load() {
			panic("unexpected row: secret-looking detail")
		}
		return nil
	}))
	secret := e.secret(f)
	boom.Store(true)
	resp := e.invoke(secret, `{"input":"hi"}`)
	if resp.status != http.StatusServiceUnavailable || resp.code(t) != gateway.CodeRuntimeUnavailable {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	if strings.Contains(string(resp.body), "secret-looking") || strings.Contains(string(resp.body), "panic") {
		t.Fatalf("the answer shows the panic: %s", resp.body)
	}
	if e.rt.Calls() != 0 {
		t.Fatal("Langflow was called without a config")
	}

	// The failure was not cached: once the load works, so does the call.
	boom.Store(false)
	if resp := e.invoke(secret, `{"input":"hi"}`); resp.status != http.StatusOK {
		t.Fatalf("after the panic: status %d: %s", resp.status, resp.body)
	}
}

func TestEntResolverRefreshesAheadInTheBackground(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "v1"})
	r, drv, clk := flakyResolver(e, gateway.EntResolverOptions{TTL: 10 * time.Second})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	setPrompt(t, e, f, "v2")
	// A slow database: a call that waited for it would take two seconds (four statements).
	drv.delay.Store(int64(500 * time.Millisecond))
	clk.Advance(8*time.Second + time.Millisecond) // in the last fifth of the TTL
	start := time.Now()
	got, err := r.Resolve(ctx, f.config)
	if err != nil || got.SystemPrompt != "v1" {
		t.Fatalf("in the refresh window: %v %q, want the cached config", err, got.SystemPrompt)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("Resolve waited %s for the background reload", d)
	}
	// The reload finishes in the background; the entry is fresh again without a call
	// ever waiting.
	waitFor(t, "the background reload", func() bool {
		got, _ := r.Resolve(ctx, f.config)
		return got.SystemPrompt == "v2"
	})
	clk.Advance(5 * time.Second) // past the old entry's expiry, within the new one's TTL
	drv.delay.Store(0)
	before := drv.statements.Load()
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v2" {
		t.Fatalf("after the refresh: %v %q", err, got.SystemPrompt)
	}
	if n := drv.statements.Load() - before; n != 0 {
		t.Fatalf("a refreshed entry ran %d statements", n)
	}
}

func TestEntResolverSlowReloadServesStale(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "v1"})
	r, drv, clk := flakyResolver(e, gateway.EntResolverOptions{TTL: 10 * time.Second, ReloadWait: 20 * time.Millisecond})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	setPrompt(t, e, f, "v2")
	drv.delay.Store(int64(500 * time.Millisecond))
	clk.Advance(time.Minute) // idle past the TTL: the reload is waited for, briefly
	start := time.Now()
	got, err := r.Resolve(ctx, f.config)
	if err != nil || got.SystemPrompt != "v1" {
		t.Fatalf("slow reload: %v %q, want the stale config", err, got.SystemPrompt)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("Resolve waited %s, ReloadWait is 20ms", d)
	}
	waitFor(t, "the reload to land", func() bool {
		got, _ := r.Resolve(ctx, f.config)
		return got.SystemPrompt == "v2"
	})

}

// A reload that finishes within ReloadWait is waited for: the fresh config, not the
// stale one. (ReloadWait is generous here: with 20 ms, a reload under -race on a busy
// CI machine sometimes took longer, and the test failed on the machine, not the code.)
func TestEntResolverFastReloadIsWaitedFor(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "v1"})
	r, _, clk := flakyResolver(e, gateway.EntResolverOptions{TTL: 10 * time.Second, ReloadWait: 5 * time.Second})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	setPrompt(t, e, f, "v3")
	clk.Advance(time.Minute)
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v3" {
		t.Fatalf("fast reload: %v %q, want v3", err, got.SystemPrompt)
	}
}

func TestEntResolverInvalidateBeatsABackgroundReload(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{systemPrompt: "v1"})
	r, drv, clk := flakyResolver(e, gateway.EntResolverOptions{TTL: 10 * time.Second})
	ctx := context.Background()
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	// A background reload reads v1 slowly; the config changes and is invalidated
	// meanwhile: the reload's stale answer must not be cached.
	drv.delay.Store(int64(200 * time.Millisecond))
	clk.Advance(9 * time.Second)
	if _, err := r.Resolve(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	setPrompt(t, e, f, "v2")
	r.Invalidate(f.config)
	drv.delay.Store(0)
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v2" {
		t.Fatalf("after Invalidate: %v %q", err, got.SystemPrompt)
	}
	time.Sleep(300 * time.Millisecond) // the old reload ends
	if got, err := r.Resolve(ctx, f.config); err != nil || got.SystemPrompt != "v2" {
		t.Fatalf("the invalidated reload was cached: %v %q", err, got.SystemPrompt)
	}
}
