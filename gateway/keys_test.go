package gateway_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
)

// algNone rebuilds a valid key with "alg": "none" and no signature.
func algNone(t *testing.T, key string) string {
	t.Helper()
	prefix := apikey.PrefixSecret
	jwt := strings.TrimPrefix(key, prefix)
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`))
	return prefix + header + "." + parts[1] + "."
}

func TestKeyFailures(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, envOptions{driver: driver})
		f := e.seed(fixtureOptions{origins: []string{"https://shop.example.com"}})
		good := e.secret(f)
		if r := e.invoke(good, `{"input":"hi"}`); r.status != 200 {
			t.Fatalf("good key: %d %s", r.status, r.body)
		}

		otherRing, err := apikey.NewKeyring([]apikey.SigningKey{{ID: "k1", Secret: []byte(strings.Repeat("o", 32))}},
			apikey.KeyringOptions{Issuer: testIssuer, Audience: testAudience})
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := otherRing.Mint(apikey.MintParams{Kind: apikey.KindSecret, TenantID: f.buyer, ConfigID: f.config,
			Scopes: []apikey.Scope{apikey.ScopeInvoke}, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		unstored, err := e.keyring.Mint(apikey.MintParams{Kind: apikey.KindSecret, TenantID: f.buyer, ConfigID: f.config,
			Scopes: []apikey.Scope{apikey.ScopeInvoke}, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		flipped := []byte(good)
		if flipped[len(flipped)-2] == 'A' {
			flipped[len(flipped)-2] = 'B'
		} else {
			flipped[len(flipped)-2] = 'A'
		}
		revoked, revokedID := e.key(f, apikey.KindSecret)
		if _, err := e.keys.Revoke(sys(), revokedID); err != nil {
			t.Fatal(err)
		}
		rotated, rotatedID := e.key(f, apikey.KindSecret)
		if _, err := e.keys.Rotate(sys(), rotatedID, time.Minute, "test"); err != nil {
			t.Fatal(err)
		}
		if r := e.invoke(rotated, `{"input":"hi"}`); r.status != 200 {
			t.Fatalf("a rotated key works during its grace period: %d", r.status)
		}
		e.clock.Advance(2 * time.Minute)
		exp := time.Now().Add(2*time.Minute + time.Hour)
		expiring, err := e.keys.Create(sys(), keys.CreateParams{ConfigID: f.config, Name: "short", Kind: apikey.KindSecret, ExpiresAt: &exp})
		if err != nil {
			t.Fatal(err)
		}
		if r := e.invoke(expiring.Secret, `{"input":"hi"}`); r.status != 200 {
			t.Fatalf("key before expiry: %d", r.status)
		}
		rowsBefore := len(e.usageRows())
		e.clock.Advance(2 * time.Hour)

		unauthenticated := map[string]func() response{
			"missing":           func() response { return e.invoke("", `{"input":"hi"}`) },
			"not a key":         func() response { return e.invoke("hello", `{"input":"hi"}`) },
			"malformed jwt":     func() response { return e.invoke(apikey.PrefixSecret+"abc.def", `{"input":"hi"}`) },
			"basic auth":        func() response { return e.invoke("", `{"input":"hi"}`, "Authorization", "Basic Zm9vOmJhcg==") },
			"bad signature":     func() response { return e.invoke(string(flipped), `{"input":"hi"}`) },
			"other secret":      func() response { return e.invoke(foreign.Key, `{"input":"hi"}`) },
			"never stored":      func() response { return e.invoke(unstored.Key, `{"input":"hi"}`) },
			"alg none":          func() response { return e.invoke(algNone(t, good), `{"input":"hi"}`) },
			"expired":           func() response { return e.invoke(expiring.Secret, `{"input":"hi"}`) },
			"revoked":           func() response { return e.invoke(revoked, `{"input":"hi"}`) },
			"rotated, no grace": func() response { return e.invoke(rotated, `{"input":"hi"}`) },
			"secret as public": func() response {
				return e.invoke(apikey.PrefixPublishable+strings.TrimPrefix(good, apikey.PrefixSecret), `{"input":"hi"}`)
			},
		}
		var message string
		for name, call := range unauthenticated {
			t.Run(name, func(t *testing.T) {
				r := call()
				if r.status != http.StatusUnauthorized || r.code(t) != "UNAUTHENTICATED" {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				m := r.json(t)["error"].(map[string]any)["message"].(string)
				if message == "" {
					message = m
				} else if m != message {
					t.Fatalf("401 messages differ (%q vs %q): they must not tell reasons apart", m, message)
				}
				if r.header.Get("X-Request-Id") == "" {
					t.Error("401 without X-Request-Id")
				}
			})
		}
		if n := len(e.usageRows()); n != rowsBefore {
			t.Fatalf("invalid keys were metered: %d rows, want %d", n, rowsBefore)
		}

		// Valid keys without the right scope or origin: 403, and metered.
		readOnly, _ := e.key(f, apikey.KindSecret, apikey.ScopeUsageRead)
		pub, _ := e.key(f, apikey.KindPublishable)
		forbidden := map[string]func() response{
			"usage:read only":        func() response { return e.invoke(readOnly, `{"input":"hi"}`) },
			"publishable, foreign":   func() response { return e.invoke(pub, `{"input":"hi"}`, "Origin", "https://evil.example.net") },
			"publishable, no origin": func() response { return e.invoke(pub, `{"input":"hi"}`) },
			"publishable, lookalike": func() response { return e.invoke(pub, `{"input":"hi"}`, "Origin", "https://shop.example.com.evil.net") },
		}
		for name, call := range forbidden {
			t.Run(name, func(t *testing.T) {
				r := call()
				if r.status != http.StatusForbidden || r.code(t) != "FORBIDDEN" {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				if r.header.Get("Access-Control-Allow-Origin") != "" {
					t.Error("a foreign origin may not read the answer")
				}
			})
		}
		if n := len(e.usageRows()); n != rowsBefore+len(forbidden) {
			t.Fatalf("403s must be metered: %d rows, want %d", n, rowsBefore+len(forbidden))
		}

		r := e.invoke(pub, `{"input":"hi","session_id":"visitor-1"}`, "Origin", "https://shop.example.com")
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
			t.Fatalf("publishable key from its origin: %d %q %s", r.status, r.header.Get("Access-Control-Allow-Origin"), r.body)
		}
	})
}

func TestWildcardOrigin(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.seed(fixtureOptions{origins: []string{"https://*.example.com"}})
	pub, _ := e.key(f, apikey.KindPublishable)
	for origin, want := range map[string]int{
		"https://www.example.com":      200,
		"https://a.b.example.com":      200,
		"https://example.com":          403,
		"http://www.example.com":       403,
		"https://www.example.com:8443": 403,
		"https://wwwexample.com":       403,
		"null":                         403,
	} {
		r := e.invoke(pub, `{"input":"hi"}`, "Origin", origin)
		if r.status != want {
			t.Errorf("%s: %d, want %d", origin, r.status, want)
		}
	}
}

func TestKeyStoreDownIs503(t *testing.T) {
	store := &failingStore{}
	e := newEnv(t, envOptions{store: func(s apikey.Store) apikey.Store { store.Store = s; return store }})
	f := e.seed(fixtureOptions{})
	key := e.secret(f)
	store.fail.Store(true)
	r := e.invoke(key, `{"input":"hi"}`)
	if r.status != http.StatusServiceUnavailable || r.code(t) != "RUNTIME_UNAVAILABLE" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "database") {
		t.Fatalf("store error leaked: %s", r.body)
	}
	store.fail.Store(false)
	if r := e.invoke(key, `{"input":"hi"}`); r.status != 200 {
		t.Fatalf("after recovery: %d", r.status)
	}
}
