package apikey_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
)

const (
	testIss = "https://registry.example.test"
	testAud = "agent-gateway"
)

var (
	secret1 = []byte(strings.Repeat("a", 32))
	secret2 = []byte(strings.Repeat("b", 40))
	t0      = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
)

// clock is a settable time source shared by the code under test and the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *clock { return &clock{now: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newKeyring(t testing.TB, clk *clock, keys ...apikey.SigningKey) *apikey.Keyring {
	t.Helper()
	if len(keys) == 0 {
		keys = []apikey.SigningKey{{ID: "k1", Secret: secret1}}
	}
	kr, err := apikey.NewKeyring(keys, apikey.KeyringOptions{Issuer: testIss, Audience: testAud, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

type ids struct{ tenant, project, config pulid.ID }

func newIDs() ids {
	return ids{tenant: pulid.MustNew("ten"), project: pulid.MustNew("prj"), config: pulid.MustNew("cfg")}
}

func mintParams(kind apikey.Kind, id ids) apikey.MintParams {
	scopes := []apikey.Scope{apikey.ScopeInvoke, apikey.ScopeUsageRead}
	if kind == apikey.KindPublishable {
		scopes = []apikey.Scope{apikey.ScopeWidgetInvoke}
	}
	return apikey.MintParams{
		Kind: kind, TenantID: id.tenant, ProjectID: id.project, ConfigID: id.config,
		Scopes: scopes, ExpiresAt: t0.Add(90 * 24 * time.Hour),
	}
}

func mustMint(t testing.TB, kr *apikey.Keyring, p apikey.MintParams) apikey.Minted {
	t.Helper()
	m, err := kr.Mint(p)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return m
}

// recordFor is the row the lead's adapter would have stored for a minted key.
func recordFor(p apikey.MintParams) apikey.Record {
	exp := p.ExpiresAt
	return apikey.Record{
		ID: pulid.MustNew("key"), TenantID: p.TenantID, ProjectID: p.ProjectID, ConfigID: p.ConfigID,
		Kind: p.Kind, Scopes: p.Scopes, ExpiresAt: &exp,
	}
}

// claimsMap is a valid secret-key payload that cases then break.
func claimsMap(id ids) jwt.MapClaims {
	return jwt.MapClaims{
		"kind":        "secret",
		"tenant_id":   string(id.tenant),
		"project_id":  string(id.project),
		"config_uuid": string(id.config),
		"scopes":      []string{"invoke"},
		"jti":         "jti-1",
		"iss":         testIss,
		"aud":         testAud,
		"exp":         t0.Add(time.Hour).Unix(),
		"iat":         t0.Unix(),
	}
}

// sign builds a token by hand, for the shapes Mint refuses to produce.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeStore is an in-memory Store that counts lookups and can hold them until released.
type fakeStore struct {
	mu      sync.Mutex
	rows    map[string]apikey.Record
	err     error
	lookups atomic.Int64
	// gate, when set, makes LookupByHash signal entered and wait for release.
	gate    chan struct{}
	entered chan struct{}

	touchMu sync.Mutex
	touches []touchCall
	// touchErr fails TouchLastUsed (after recording the call); touchGate holds it.
	touchErr  error
	touchGate chan struct{}
}

type touchCall struct {
	ids []pulid.ID
	at  time.Time
}

func newFakeStore() *fakeStore { return &fakeStore{rows: map[string]apikey.Record{}} }

func (s *fakeStore) put(hash string, r apikey.Record) {
	s.mu.Lock()
	s.rows[hash] = r
	s.mu.Unlock()
}

func (s *fakeStore) LookupByHash(ctx context.Context, hash string) (apikey.Record, error) {
	s.lookups.Add(1)
	// Read first, then wait: a held lookup has the row as it was when it started.
	s.mu.Lock()
	r, ok := s.rows[hash]
	err := s.err
	s.mu.Unlock()
	if s.gate != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		select {
		case <-s.gate:
		case <-ctx.Done():
			return apikey.Record{}, ctx.Err()
		}
	}
	if err != nil {
		return apikey.Record{}, err
	}
	if !ok {
		return apikey.Record{}, apikey.ErrNotFound
	}
	return r, nil
}

func (s *fakeStore) TouchLastUsed(ctx context.Context, ids []pulid.ID, at time.Time) error {
	if s.touchGate != nil {
		select {
		case <-s.touchGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	s.touches = append(s.touches, touchCall{ids: append([]pulid.ID(nil), ids...), at: at})
	return s.touchErr
}

func (s *fakeStore) touchCalls() []touchCall {
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	return append([]touchCall(nil), s.touches...)
}

// touchesOf counts the writes that included id.
func (s *fakeStore) touchesOf(id pulid.ID) int {
	s.touchMu.Lock()
	defer s.touchMu.Unlock()
	n := 0
	for _, c := range s.touches {
		for _, x := range c.ids {
			if x == id {
				n++
			}
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// eventually polls cond for up to 2s; the Toucher's Run works on a real ticker.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
