package apikey_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

type verifyEnv struct {
	clk   *clock
	kr    *apikey.Keyring
	store *fakeStore
	v     *apikey.Verifier
}

func newVerifyEnv(t testing.TB, opts apikey.VerifierOptions) *verifyEnv {
	t.Helper()
	clk := newClock(t0)
	e := &verifyEnv{clk: clk, kr: newKeyring(t, clk), store: newFakeStore()}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e.v = apikey.NewVerifier(e.kr, e.store, opts)
	return e
}

// mint mints a key and stores the row that mod shapes (nil mod: store nothing).
func (e *verifyEnv) mint(t testing.TB, kind apikey.Kind, mod func(*apikey.Record)) (apikey.Minted, apikey.Record) {
	t.Helper()
	p := mintParams(kind, newIDs())
	m := mustMint(t, e.kr, p)
	rec := recordFor(p)
	if mod != nil {
		mod(&rec)
		e.store.put(m.Hash, rec)
	}
	return m, rec
}

func TestVerify(t *testing.T) {
	keep := func(*apikey.Record) {}
	for _, tc := range []struct {
		name    string
		kind    apikey.Kind
		mod     func(*apikey.Record) // nil: the hash is not in the store
		key     func(m apikey.Minted) string
		wantErr error
	}{
		{"live secret key", apikey.KindSecret, keep, nil, nil},
		{"live publishable key", apikey.KindPublishable, keep, nil, nil},
		{"no expiry on the row", apikey.KindSecret, func(r *apikey.Record) { r.ExpiresAt = nil }, nil, nil},
		{"unknown hash: a valid signature alone is not enough", apikey.KindSecret, nil, nil, apikey.ErrUnknownKey},
		{"revoked", apikey.KindSecret, func(r *apikey.Record) { r.RevokedAt = ptr(t0.Add(-time.Hour)) }, nil, apikey.ErrRevoked},
		{"revoked this very instant", apikey.KindSecret, func(r *apikey.Record) { r.RevokedAt = ptr(t0) }, nil, apikey.ErrRevoked},
		{"rotated, grace over", apikey.KindSecret, func(r *apikey.Record) { r.RevokedAt = ptr(t0.Add(-time.Second)) }, nil, apikey.ErrRevoked},
		{"rotated, within grace", apikey.KindSecret, func(r *apikey.Record) { r.RevokedAt = ptr(t0.Add(time.Hour)) }, nil, nil},
		{"row expired before the jwt", apikey.KindSecret, func(r *apikey.Record) { r.ExpiresAt = ptr(t0.Add(-time.Second)) }, nil, apikey.ErrExpired},
		{"row of another tenant", apikey.KindSecret, func(r *apikey.Record) { r.TenantID = pulid.MustNew("ten") }, nil, apikey.ErrUnknownKey},
		{"row of another config", apikey.KindSecret, func(r *apikey.Record) { r.ConfigID = pulid.MustNew("cfg") }, nil, apikey.ErrUnknownKey},
		{"row of another project", apikey.KindSecret, func(r *apikey.Record) { r.ProjectID = pulid.MustNew("prj") }, nil, apikey.ErrUnknownKey},
		{"row of another kind", apikey.KindPublishable, func(r *apikey.Record) { r.Kind = apikey.KindSecret }, nil, apikey.ErrUnknownKey},
		{"bad signature never reaches the store", apikey.KindSecret, keep, func(m apikey.Minted) string { return m.Key + "x" }, apikey.ErrBadSignature},
		{"forged with a leaked secret: signature fine, hash unknown", apikey.KindSecret, keep, func(m apikey.Minted) string {
			c := claimsMap(newIDs())
			return apikey.PrefixSecret + sign(t, jwt.SigningMethodHS256, secret1, "k1", c)
		}, apikey.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newVerifyEnv(t, apikey.VerifierOptions{})
			m, want := e.mint(t, tc.kind, tc.mod)
			key := m.Key
			if tc.key != nil {
				key = tc.key(m)
			}
			rec, claims, err := e.v.Verify(context.Background(), key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if (errors.Is(err, apikey.ErrBadSignature) || errors.Is(err, apikey.ErrMalformed)) && e.store.lookups.Load() != 0 {
				t.Errorf("a key that does not parse reached the store")
			}
			if err != nil {
				if rec.ID != "" || claims.ID != "" {
					t.Errorf("error with a non-zero result: %+v %+v", rec, claims)
				}
				return
			}
			if rec.ID != want.ID || claims.ID != m.JTI || claims.TenantID != want.TenantID {
				t.Errorf("got record %+v claims %+v", rec, claims)
			}
		})
	}
}

func TestVerifyStoreFailure(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	boom := errors.New("db down")
	e.store.err = boom
	_, _, err := e.v.Verify(context.Background(), m.Key)
	if !errors.Is(err, boom) || errors.Is(err, apikey.ErrUnknownKey) {
		t.Fatalf("err = %v, want the store error and not ErrUnknownKey", err)
	}
	// A failure is not cached: once the store is back the key works.
	e.store.mu.Lock()
	e.store.err = nil
	e.store.mu.Unlock()
	if _, _, err := e.v.Verify(context.Background(), m.Key); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if n := e.store.lookups.Load(); n != 2 {
		t.Fatalf("lookups = %d, want 2", n)
	}
}

func TestVerifyCache(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: 30 * time.Second})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	ctx := context.Background()
	for _, step := range []struct {
		name        string
		advance     time.Duration
		wantLookups int64
	}{
		{"first call reads the store", 0, 1},
		{"second call is served from the cache", 0, 1},
		{"still cached just before the TTL", 29 * time.Second, 1},
		{"TTL backstop: read again", time.Second, 2},
		{"cached again", 0, 2},
	} {
		e.clk.Advance(step.advance)
		if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if n := e.store.lookups.Load(); n != step.wantLookups {
			t.Fatalf("%s: lookups = %d, want %d", step.name, n, step.wantLookups)
		}
	}
}

func TestVerifyCachedRowStillChecksTheClock(t *testing.T) {
	// Rows are cached, not decisions: a grace period ends on time even while cached.
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	m, _ := e.mint(t, apikey.KindSecret, func(r *apikey.Record) { r.RevokedAt = ptr(t0.Add(time.Minute)) })
	if _, _, err := e.v.Verify(context.Background(), m.Key); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	if _, _, err := e.v.Verify(context.Background(), m.Key); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked", err)
	}
	if n := e.store.lookups.Load(); n != 1 {
		t.Fatalf("lookups = %d, want 1", n)
	}
}

func TestInvalidate(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	m, rec := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	ctx := context.Background()
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatal(err)
	}
	rec.RevokedAt = ptr(t0)
	e.store.put(m.Hash, rec)
	// Without Invalidate the cached row is still trusted (this is what the broker fixes
	// across replicas).
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatalf("before Invalidate: %v", err)
	}
	e.v.Invalidate(m.Hash)
	if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("after Invalidate: err = %v, want ErrRevoked", err)
	}
}

func TestInvalidateDuringLookupIsNotUndone(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	m, rec := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	e.store.gate, e.store.entered = make(chan struct{}), make(chan struct{}, 1)
	ctx := context.Background()

	done := make(chan error, 1)
	go func() { _, _, err := e.v.Verify(ctx, m.Key); done <- err }()
	<-e.store.entered
	// The lookup has the live row in hand; the key is revoked before it returns.
	rec.RevokedAt = ptr(t0)
	e.store.put(m.Hash, rec)
	e.v.Invalidate(m.Hash)
	// A Verify starting now must not join the stale lookup: it reads the row again.
	after := make(chan error, 1)
	go func() { _, _, err := e.v.Verify(ctx, m.Key); after <- err }()
	select {
	case <-e.store.entered:
	case <-time.After(500 * time.Millisecond):
		// It joined the in-flight lookup; the assertion below reports it.
	}
	close(e.store.gate)
	if err := <-done; err != nil {
		t.Fatalf("in-flight Verify: %v", err) // it started before the revocation
	}
	if err := <-after; !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("Verify after Invalidate: err = %v, want ErrRevoked (joined the stale lookup)", err)
	}
	if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("err = %v, want ErrRevoked: the stale row was cached", err)
	}
}

func TestNegativeCacheIsShort(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	m, rec := e.mint(t, apikey.KindSecret, nil)
	ctx := context.Background()
	if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrUnknownKey) || e.store.lookups.Load() != 1 {
		t.Fatalf("repeat within the negative TTL: err %v, lookups %d", err, e.store.lookups.Load())
	}
	// The row appears (created on another replica); a second later the key works.
	e.store.put(m.Hash, rec)
	e.clk.Advance(time.Second)
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
}

func TestNegativeCacheDisabled(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{NegativeTTL: -1})
	m, rec := e.mint(t, apikey.KindSecret, nil)
	ctx := context.Background()
	if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Fatal(err)
	}
	e.store.put(m.Hash, rec)
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatalf("without negative caching the new row is seen at once: %v", err)
	}
}

func TestConcurrentMissHitsStoreOnce(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	e.store.gate, e.store.entered = make(chan struct{}), make(chan struct{}, 1)

	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, _, err := e.v.Verify(context.Background(), m.Key)
			errs <- err
		})
	}
	<-e.store.entered
	// Give the other callers time to pile up behind the first lookup.
	time.Sleep(50 * time.Millisecond)
	close(e.store.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.store.lookups.Load(); got != 1 {
		t.Fatalf("lookups = %d, want 1", got)
	}
}

func TestVerifyCallerCancelDoesNotFailOthers(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	e.store.gate, e.store.entered = make(chan struct{}), make(chan struct{}, 1)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, _, err := e.v.Verify(ctx, m.Key); first <- err }()
	<-e.store.entered
	second := make(chan error, 1)
	go func() { _, _, err := e.v.Verify(context.Background(), m.Key); second <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: err = %v", err)
	}
	close(e.store.gate)
	if err := <-second; err != nil {
		t.Fatalf("the other caller failed with the first one's cancel: %v", err)
	}
}

func TestVerifyUnderEviction(t *testing.T) {
	// A tiny cache still gives right answers; it only costs lookups.
	e := newVerifyEnv(t, apikey.VerifierOptions{MaxEntries: 1})
	var keys []string
	for range 200 {
		m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
		keys = append(keys, m.Key)
	}
	for range 2 {
		for _, k := range keys {
			if _, _, err := e.v.Verify(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := e.store.lookups.Load(); n <= 200 {
		t.Fatalf("lookups = %d: nothing was evicted", n)
	}
}

func TestVerifyReturnsACopy(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	rec, _, err := e.v.Verify(context.Background(), m.Key)
	if err != nil {
		t.Fatal(err)
	}
	rec.Scopes[0] = "mutated"
	rec, _, err = e.v.Verify(context.Background(), m.Key)
	if err != nil || rec.Scopes[0] == "mutated" {
		t.Fatalf("cache shared its scopes with a caller: %v %v", rec.Scopes, err)
	}
}

func TestRecordAllows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rec   apikey.Record
		scope apikey.Scope
		want  bool
	}{
		{"secret with invoke", apikey.Record{Kind: apikey.KindSecret, Scopes: []apikey.Scope{apikey.ScopeInvoke}}, apikey.ScopeInvoke, true},
		{"secret without usage:read", apikey.Record{Kind: apikey.KindSecret, Scopes: []apikey.Scope{apikey.ScopeInvoke}}, apikey.ScopeUsageRead, false},
		{"publishable with widget:invoke", apikey.Record{Kind: apikey.KindPublishable, Scopes: []apikey.Scope{apikey.ScopeWidgetInvoke}}, apikey.ScopeWidgetInvoke, true},
		{"publishable row wrongly holding invoke", apikey.Record{Kind: apikey.KindPublishable, Scopes: []apikey.Scope{apikey.ScopeWidgetInvoke, apikey.ScopeInvoke}}, apikey.ScopeInvoke, false},
		{"no scopes", apikey.Record{Kind: apikey.KindSecret}, apikey.ScopeInvoke, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rec.Allows(tc.scope); got != tc.want {
				t.Fatalf("Allows(%q) = %v", tc.scope, got)
			}
		})
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	e := newVerifyEnv(b, apikey.VerifierOptions{CacheTTL: time.Hour, Toucher: apikey.NewToucher(newFakeStore(), apikey.ToucherOptions{})})
	m, _ := e.mint(b, apikey.KindSecret, func(*apikey.Record) {})
	ctx := context.Background()
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if n := e.store.lookups.Load(); n != 1 {
		b.Fatalf("lookups = %d", n)
	}
}

func TestVerifyCachedKeySkipsParse(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	parses := apikey.CountParses(e.v)
	m, rec := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	ctx := context.Background()
	for i := range 3 {
		got, claims, err := e.v.Verify(ctx, m.Key)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got.ID != rec.ID || claims.ID != m.JTI || claims.TenantID != rec.TenantID || claims.Kind != apikey.KindSecret {
			t.Fatalf("call %d: record %+v claims %+v", i, got, claims)
		}
	}
	if n := parses.Load(); n != 1 {
		t.Fatalf("parses = %d, want 1: a cached key was parsed again", n)
	}
	if n := e.store.lookups.Load(); n != 1 {
		t.Fatalf("lookups = %d, want 1", n)
	}
	// Once the row's TTL is over the key is parsed again along with the new lookup.
	e.clk.Advance(time.Hour)
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatal(err)
	}
	if p, l := parses.Load(), e.store.lookups.Load(); p != 2 || l != 2 {
		t.Fatalf("after the TTL: parses = %d, lookups = %d, want 2 and 2", p, l)
	}
}

func TestVerifyBadKeysAreNeverCached(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	parses := apikey.CountParses(e.v)
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	for i := range 3 {
		if _, _, err := e.v.Verify(context.Background(), m.Key+"x"); !errors.Is(err, apikey.ErrBadSignature) {
			t.Fatalf("call %d: err = %v, want ErrBadSignature", i, err)
		}
	}
	if p, l := parses.Load(), e.store.lookups.Load(); p != 3 || l != 0 {
		t.Fatalf("parses = %d, lookups = %d, want 3 and 0: a bad key was remembered", p, l)
	}
	// The good key next to it is unaffected.
	if _, _, err := e.v.Verify(context.Background(), m.Key); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCachedKeyExpiresWithItsJWT(t *testing.T) {
	// The row never expires and stays cached for a day: only the JWT's exp can refuse the
	// key, and it must, on time, although the key is cached.
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: 24 * time.Hour})
	p := mintParams(apikey.KindSecret, newIDs())
	p.ExpiresAt = t0.Add(time.Hour)
	m := mustMint(t, e.kr, p)
	rec := recordFor(p)
	rec.ExpiresAt = nil
	e.store.put(m.Hash, rec)
	ctx := context.Background()
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour - time.Second)
	if _, _, err := e.v.Verify(ctx, m.Key); err != nil {
		t.Fatalf("a second before exp: %v", err)
	}
	e.clk.Advance(time.Second)
	for i := range 2 {
		if _, _, err := e.v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrExpired) {
			t.Fatalf("at exp, call %d: err = %v, want ErrExpired", i, err)
		}
	}
	if n := e.store.lookups.Load(); n != 1 {
		t.Fatalf("lookups = %d, want 1: the refusal must come from the cached key's exp", n)
	}
}

func TestVerifyCachedKeyKeepsTheKeyringLeeway(t *testing.T) {
	// The cache's own exp check has no leeway; past exp but within the keyring's leeway,
	// Parse decides as it would without a cache.
	clk := newClock(t0)
	kr, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "k1", Secret: secret1}},
		apikey.KeyringOptions{Issuer: testIss, Audience: testAud, Now: clk.Now, Leeway: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	store := newFakeStore()
	v := apikey.NewVerifier(kr, store, apikey.VerifierOptions{CacheTTL: 24 * time.Hour, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	p := mintParams(apikey.KindSecret, newIDs())
	p.ExpiresAt = t0.Add(time.Hour)
	m := mustMint(t, kr, p)
	rec := recordFor(p)
	rec.ExpiresAt = nil
	store.put(m.Hash, rec)
	ctx := context.Background()
	if _, _, err := v.Verify(ctx, m.Key); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour + 30*time.Second)
	if _, _, err := v.Verify(ctx, m.Key); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	clk.Advance(30 * time.Second)
	if _, _, err := v.Verify(ctx, m.Key); !errors.Is(err, apikey.ErrExpired) {
		t.Fatalf("past the leeway: err = %v, want ErrExpired", err)
	}
}

func TestVerifyCachedClaimsAreACopy(t *testing.T) {
	e := newVerifyEnv(t, apikey.VerifierOptions{CacheTTL: time.Hour})
	m, _ := e.mint(t, apikey.KindSecret, func(*apikey.Record) {})
	ctx := context.Background()
	exp := t0.Add(90 * 24 * time.Hour) // mintParams
	for i := range 4 {
		_, claims, err := e.v.Verify(ctx, m.Key)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if claims.Scopes[0] == "mutated" || claims.Audience[0] == "mutated" || !claims.ExpiresAt.Equal(exp) {
			t.Fatalf("call %d: the cache shared its claims with a caller: %+v", i, claims)
		}
		// What one caller does with its claims must not reach the cache.
		claims.Scopes[0], claims.Audience[0] = "mutated", "mutated"
		claims.ExpiresAt.Time = exp.Add(time.Hour)
	}
}
