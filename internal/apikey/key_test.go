package apikey_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gsvdev/agentregistry/internal/apikey"
)

func TestMintParseRoundTrip(t *testing.T) {
	clk := newClock(t0)
	kr := newKeyring(t, clk)
	for _, tc := range []struct {
		kind   apikey.Kind
		prefix string
	}{
		{apikey.KindSecret, "ar_sk_live_"},
		{apikey.KindPublishable, "ar_pk_live_"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			id := newIDs()
			p := mintParams(tc.kind, id)
			m := mustMint(t, kr, p)

			if !strings.HasPrefix(m.Key, tc.prefix) {
				t.Errorf("key %q lacks prefix %q", m.Key, tc.prefix)
			}
			if m.Hash != apikey.HashKey(m.Key) || len(m.Hash) != 64 {
				t.Errorf("hash %q is not the hex sha256 of the key", m.Hash)
			}
			if m.Prefix != m.Key[:len(tc.prefix)+6] {
				t.Errorf("prefix %q", m.Prefix)
			}
			if m.Last4 != m.Key[len(m.Key)-4:] {
				t.Errorf("last4 %q", m.Last4)
			}
			if m.JTI == "" {
				t.Error("empty jti")
			}

			c, err := kr.Parse(m.Key)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Kind != tc.kind || c.TenantID != id.tenant || c.ProjectID != id.project || c.ConfigID != id.config {
				t.Errorf("claims %+v do not match %+v", c, id)
			}
			if !slices.Equal(c.Scopes, p.Scopes) {
				t.Errorf("scopes %v, want %v", c.Scopes, p.Scopes)
			}
			if c.ID != m.JTI || c.Issuer != testIss || !slices.Equal(c.Audience, jwt.ClaimStrings{testAud}) {
				t.Errorf("registered claims %+v", c.RegisteredClaims)
			}
			if !c.ExpiresAt.Time.Equal(p.ExpiresAt) || !c.IssuedAt.Time.Equal(t0) {
				t.Errorf("exp %v iat %v", c.ExpiresAt, c.IssuedAt)
			}

			// Two keys with equal parameters must still differ (jti).
			if m2 := mustMint(t, kr, p); m2.Key == m.Key || m2.Hash == m.Hash {
				t.Error("two mints gave the same key")
			}
		})
	}
}

func TestMintRejects(t *testing.T) {
	clk := newClock(t0)
	kr := newKeyring(t, clk)
	id := newIDs()
	for _, tc := range []struct {
		name    string
		mod     func(*apikey.MintParams)
		wantErr error // nil: any error
	}{
		{"publishable with invoke", func(p *apikey.MintParams) {
			p.Kind, p.Scopes = apikey.KindPublishable, []apikey.Scope{apikey.ScopeInvoke}
		}, apikey.ErrInvalidScope},
		{"publishable with widget and usage:read", func(p *apikey.MintParams) {
			p.Kind, p.Scopes = apikey.KindPublishable, []apikey.Scope{apikey.ScopeWidgetInvoke, apikey.ScopeUsageRead}
		}, apikey.ErrInvalidScope},
		{"unknown scope", func(p *apikey.MintParams) { p.Scopes = []apikey.Scope{"admin"} }, apikey.ErrInvalidScope},
		{"no scopes", func(p *apikey.MintParams) { p.Scopes = nil }, apikey.ErrInvalidScope},
		{"unknown kind", func(p *apikey.MintParams) { p.Kind = "test" }, nil},
		{"no expiry", func(p *apikey.MintParams) { p.ExpiresAt = time.Time{} }, nil},
		{"expiry in the past", func(p *apikey.MintParams) { p.ExpiresAt = t0.Add(-time.Second) }, nil},
		{"no tenant", func(p *apikey.MintParams) { p.TenantID = "" }, nil},
		{"malformed config", func(p *apikey.MintParams) { p.ConfigID = "cfg_nope" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mintParams(apikey.KindSecret, id)
			tc.mod(&p)
			m, err := kr.Mint(p)
			if err == nil {
				t.Fatalf("Mint succeeded: %q", m.Key)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	clk := newClock(t0)
	kr := newKeyring(t, clk)
	id := newIDs()
	sk := mustMint(t, kr, mintParams(apikey.KindSecret, id)).Key
	pk := mustMint(t, kr, mintParams(apikey.KindPublishable, id)).Key
	jwtOf := func(key string) string { return key[len(apikey.PrefixSecret):] }
	hs256 := func(mod func(jwt.MapClaims)) string {
		c := claimsMap(id)
		mod(c)
		return apikey.PrefixSecret + sign(t, jwt.SigningMethodHS256, secret1, "k1", c)
	}
	// Flip a character in the middle of the signature: the last one may only carry padding
	// bits, which strict decoding rejects as malformed instead.
	sig := strings.LastIndexByte(sk, '.') + 5
	swap := "A"
	if sk[sig] == 'A' {
		swap = "B"
	}
	flipped := sk[:sig] + swap + sk[sig+1:]

	for _, tc := range []struct {
		name    string
		key     string
		wantErr error
	}{
		{"empty", "", apikey.ErrMalformed},
		{"not a key", "hello world", apikey.ErrMalformed},
		{"bare jwt", jwtOf(sk), apikey.ErrMalformed},
		{"wrong prefix", "ar_xk_live_" + jwtOf(sk), apikey.ErrMalformed},
		{"test-mode prefix", "ar_sk_test_" + jwtOf(sk), apikey.ErrMalformed},
		{"truncated", sk[:len(sk)/2], apikey.ErrMalformed},
		{"longer than 4KB", apikey.PrefixSecret + strings.Repeat("a", apikey.MaxKeyLen), apikey.ErrMalformed},
		{"garbage base64", apikey.PrefixSecret + "!!!.@@@.###", apikey.ErrMalformed},
		{"garbage json", apikey.PrefixSecret + "e30.bm90IGpzb24.c2ln", apikey.ErrMalformed},
		{"bad signature", flipped, apikey.ErrBadSignature},
		{"signature removed", sk[:strings.LastIndexByte(sk, '.')+1], apikey.ErrBadSignature},
		{"another secret, same kid", apikey.PrefixSecret + sign(t, jwt.SigningMethodHS256, secret2, "k1", claimsMap(id)), apikey.ErrBadSignature},
		{"unknown kid", apikey.PrefixSecret + sign(t, jwt.SigningMethodHS256, secret1, "k9", claimsMap(id)), apikey.ErrBadSignature},
		{"no kid", apikey.PrefixSecret + sign(t, jwt.SigningMethodHS256, secret1, "", claimsMap(id)), apikey.ErrBadSignature},
		{"alg none", apikey.PrefixSecret + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", claimsMap(id)), apikey.ErrBadSignature},
		{"HS512 with the right secret", apikey.PrefixSecret + sign(t, jwt.SigningMethodHS512, secret1, "k1", claimsMap(id)), apikey.ErrBadSignature},
		{"RS256", apikey.PrefixSecret + sign(t, jwt.SigningMethodRS256, rsaKey(t), "k1", claimsMap(id)), apikey.ErrBadSignature},
		{"expired", hs256(func(c jwt.MapClaims) { c["exp"] = t0.Add(-time.Second).Unix() }), apikey.ErrExpired},
		{"missing exp", hs256(func(c jwt.MapClaims) { delete(c, "exp") }), apikey.ErrMalformed},
		{"missing iss", hs256(func(c jwt.MapClaims) { delete(c, "iss") }), apikey.ErrMalformed},
		{"missing aud", hs256(func(c jwt.MapClaims) { delete(c, "aud") }), apikey.ErrMalformed},
		{"wrong iss", hs256(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }), apikey.ErrMalformed},
		{"wrong aud", hs256(func(c jwt.MapClaims) { c["aud"] = "portal" }), apikey.ErrMalformed},
		{"missing tenant", hs256(func(c jwt.MapClaims) { delete(c, "tenant_id") }), apikey.ErrMalformed},
		{"missing config", hs256(func(c jwt.MapClaims) { delete(c, "config_uuid") }), apikey.ErrMalformed},
		{"missing jti", hs256(func(c jwt.MapClaims) { delete(c, "jti") }), apikey.ErrMalformed},
		{"unknown scope", hs256(func(c jwt.MapClaims) { c["scopes"] = []string{"invoke", "root"} }), apikey.ErrMalformed},
		{"no scopes", hs256(func(c jwt.MapClaims) { delete(c, "scopes") }), apikey.ErrMalformed},
		{"publishable key with a secret prefix", apikey.PrefixSecret + pk[len(apikey.PrefixPublishable):], apikey.ErrWrongKind},
		{"secret key with a publishable prefix", apikey.PrefixPublishable + jwtOf(sk), apikey.ErrWrongKind},
		{"legacy secret key with a publishable prefix", apikey.PrefixPublishable + jwtOf(hs256(func(c jwt.MapClaims) { delete(c, "kind") })), apikey.ErrWrongKind},
		{"publishable key carrying invoke", apikey.PrefixPublishable + jwtOf(hs256(func(c jwt.MapClaims) { c["kind"] = "publishable" })), apikey.ErrWrongKind},
		{"unknown kind claim", hs256(func(c jwt.MapClaims) { c["kind"] = "root" }), apikey.ErrWrongKind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kr.Parse(tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse: err = %v, want %v (claims %+v)", err, tc.wantErr, c)
			}
		})
	}

	// The hand-signing helper itself must produce keys that pass, or the cases above prove
	// nothing.
	t.Run("control: hand-signed valid key", func(t *testing.T) {
		if _, err := kr.Parse(hs256(func(jwt.MapClaims) {})); err != nil {
			t.Fatal(err)
		}
		legacy := hs256(func(c jwt.MapClaims) { delete(c, "kind") })
		if c, err := kr.Parse(legacy); err != nil || c.Kind != apikey.KindSecret {
			t.Fatalf("legacy secret key: kind %q, err %v", c.Kind, err)
		}
	})
}

func TestParseExpiresWithClock(t *testing.T) {
	clk := newClock(t0)
	kr := newKeyring(t, clk)
	p := mintParams(apikey.KindSecret, newIDs())
	p.ExpiresAt = t0.Add(time.Hour)
	m := mustMint(t, kr, p)
	if _, err := kr.Parse(m.Key); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	clk.Advance(time.Hour)
	if _, err := kr.Parse(m.Key); !errors.Is(err, apikey.ErrExpired) {
		t.Fatalf("at exp: err = %v, want ErrExpired", err)
	}
}

func TestSigningSecretRotation(t *testing.T) {
	clk := newClock(t0)
	k1 := apikey.SigningKey{ID: "k1", Secret: secret1}
	k2 := apikey.SigningKey{ID: "k2", Secret: secret2}
	old := newKeyring(t, clk, k1)
	rotated := newKeyring(t, clk, k2, k1)

	oldKey := mustMint(t, old, mintParams(apikey.KindSecret, newIDs())).Key
	newKey := mustMint(t, rotated, mintParams(apikey.KindSecret, newIDs())).Key

	for _, tc := range []struct {
		name    string
		kr      *apikey.Keyring
		key     string
		wantErr error
	}{
		{"old key, rotated keyring", rotated, oldKey, nil},
		{"new key, rotated keyring", rotated, newKey, nil},
		{"new key, old keyring (kid unknown)", old, newKey, apikey.ErrBadSignature},
		{"old key after the old secret is dropped", newKeyring(t, clk, k2), oldKey, apikey.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.kr.Parse(tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}

	t.Run("the first key signs", func(t *testing.T) {
		tok, _, err := jwt.NewParser().ParseUnverified(newKey[len(apikey.PrefixSecret):], jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		if tok.Header["kid"] != "k2" || tok.Header["alg"] != "HS256" {
			t.Fatalf("header %v", tok.Header)
		}
	})
}

func TestParseKeyring(t *testing.T) {
	s32 := strings.Repeat("s", 32)
	opts := apikey.KeyringOptions{Issuer: testIss, Audience: testAud}
	for _, tc := range []struct {
		name    string
		spec    string
		opts    apikey.KeyringOptions
		wantErr bool
	}{
		{"one", "k1:" + s32, opts, false},
		{"two, spaces, secret with a colon", " k2:" + s32 + ":x , k1:" + s32, opts, false},
		{"empty", "", opts, true},
		{"only commas", ",,", opts, true},
		{"short secret", "k1:" + s32[:31], opts, true},
		{"no kid", s32, opts, true},
		{"empty kid", ":" + s32, opts, true},
		{"kid with a space", "k 1:" + s32, opts, true},
		{"duplicate kid", "k1:" + s32 + ",k1:" + s32 + "x", opts, true},
		{"no issuer", "k1:" + s32, apikey.KeyringOptions{Audience: testAud}, true},
		{"no audience", "k1:" + s32, apikey.KeyringOptions{Issuer: testIss}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := apikey.ParseKeyring(tc.spec, tc.opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), s32[:20]) {
				t.Errorf("error leaks the secret: %v", err)
			}
			if kr != nil {
				for _, s := range []string{kr.String(), fmt.Sprintf("%v %+v", kr, kr)} {
					if strings.Contains(s, s32[:20]) {
						t.Errorf("keyring prints its secret: %s", s)
					}
				}
			}
		})
	}

	t.Run("SigningKey does not print its secret", func(t *testing.T) {
		k := apikey.SigningKey{ID: "k1", Secret: []byte(s32)}
		for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k)} {
			if strings.Contains(s, s32) {
				t.Errorf("printed secret: %s", s)
			}
		}
	})

	t.Run("parsed keyring mints with its first kid and verifies", func(t *testing.T) {
		kr, err := apikey.ParseKeyring("k2:"+s32+"2,k1:"+s32, opts)
		if err != nil {
			t.Fatal(err)
		}
		p := mintParams(apikey.KindSecret, newIDs())
		p.ExpiresAt = time.Now().Add(time.Hour)
		if _, err := kr.Parse(mustMint(t, kr, p).Key); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want apikey.Scope
		ok   bool
	}{
		{"invoke", apikey.ScopeInvoke, true},
		{"widget:invoke", apikey.ScopeWidgetInvoke, true},
		{"usage:read", apikey.ScopeUsageRead, true},
		{"Invoke", "", false},
		{"", "", false},
	} {
		got, err := apikey.ParseScope(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseScope(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, apikey.ErrInvalidScope) {
			t.Errorf("ParseScope(%q): err %v is not ErrInvalidScope", tc.in, err)
		}
	}
}
