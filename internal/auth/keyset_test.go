package auth_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/auth/authtest"
	"github.com/gsvdev/agentregistry/internal/auth/devissuer"
)

// rotatingIssuer is a realm whose signing key can be replaced (Keycloak's key rotation) and
// which counts the JWKS requests it serves.
type rotatingIssuer struct {
	url     string
	current atomic.Pointer[devissuer.Issuer]
	fetches atomic.Int64
	// jwks, when set, answers the JWKS requests instead of the current issuer.
	jwks atomic.Pointer[func(http.ResponseWriter)]
}

func newRotatingIssuer(t *testing.T) *rotatingIssuer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	ri := &rotatingIssuer{url: "http://" + srv.Listener.Addr().String() + authtest.RealmPath}
	ri.rotate(t)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, devissuer.JWKSPath) {
			ri.fetches.Add(1)
			if answer := ri.jwks.Load(); answer != nil {
				(*answer)(w)
				return
			}
		}
		ri.current.Load().Handler().ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return ri
}

// rotate replaces the realm's key: from now on the JWKS holds only the new one.
func (ri *rotatingIssuer) rotate(t *testing.T) *devissuer.Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := devissuer.New(ri.url, key)
	if err != nil {
		t.Fatal(err)
	}
	ri.current.Store(iss)
	return iss
}

func (ri *rotatingIssuer) authenticator(refetch time.Duration) *auth.Authenticator {
	return auth.NewAuthenticator(auth.Config{
		IssuerURL:      ri.url,
		ClientIDs:      []string{authtest.APIClient, authtest.WebClient},
		RoleClient:     authtest.APIClient,
		JWKSRefetch:    refetch,
		DiscoveryRetry: 50 * time.Millisecond,
	}, nil, nil)
}

func mint(t *testing.T, iss *devissuer.Issuer) string {
	t.Helper()
	tok, err := iss.Mint(authtest.NewClaims().Map(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signedBy forges a token with the given header kid ("" = none), signed by key.
func signedBy(t *testing.T, iss string, kid string, key *rsa.PrivateKey) string {
	header := map[string]any{"alg": "RS256", "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	claims := authtest.NewClaims().Map()
	claims["iss"] = iss
	claims["iat"] = time.Now().Unix()
	claims["exp"] = time.Now().Add(5 * time.Minute).Unix()
	return forge(t, header, claims, func(in []byte) []byte {
		h := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	})
}

// Forged tokens must not turn into requests to Keycloak: one under a held kid is decided by
// that key, and those naming unknown keys share one fetch per refetch interval.
func TestForgedTokensDoNotFloodTheIssuer(t *testing.T) {
	ri := newRotatingIssuer(t)
	const refetch = 300 * time.Millisecond
	a := ri.authenticator(refetch)
	ctx := context.Background()
	real := ri.current.Load()
	if _, err := a.Authenticate(ctx, mint(t, real)); err != nil {
		t.Fatalf("genuine token rejected: %v", err)
	}
	if n := ri.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for the first token, want 1", n)
	}
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(refetch) // a fetch is allowed again: only the forgeries' own rules hold it back

	// The real kid with another key's signature: no fetch at all.
	for range 20 {
		v, err := a.Authenticate(ctx, signedBy(t, ri.url, real.KeyID(), attacker))
		assertRejected(t, v, err)
	}
	if n := ri.fetches.Load(); n != 1 {
		t.Fatalf("forgeries under the held kid caused %d JWKS fetches, want none", n-1)
	}

	// Unknown kids and no kid, many at once: one fetch for all of them in the interval.
	var wg sync.WaitGroup
	for i := range 40 {
		kid := fmt.Sprintf("attacker-%d", i)
		if i%4 == 0 {
			kid = ""
		}
		wg.Go(func() {
			v, err := a.Authenticate(ctx, signedBy(t, ri.url, kid, attacker))
			assertRejected(t, v, err)
		})
	}
	wg.Wait()
	if n := ri.fetches.Load(); n != 2 {
		t.Fatalf("40 forgeries under unknown kids caused %d JWKS fetches, want 1", n-1)
	}
	// Genuine tokens are still served from the held key meanwhile.
	if _, err := a.Authenticate(ctx, mint(t, real)); err != nil {
		t.Fatalf("genuine token rejected after the forgeries: %v", err)
	}
	if n := ri.fetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times in all, want 2", n)
	}
}

// A rotated realm key is picked up: a token under the new kid makes the service fetch the
// JWKS again, at once if the last fetch is older than the refetch interval, else not.
func TestRotatedKeyIsPickedUp(t *testing.T) {
	ctx := context.Background()
	t.Run("within the interval", func(t *testing.T) {
		ri := newRotatingIssuer(t)
		a := ri.authenticator(time.Hour)
		if _, err := a.Authenticate(ctx, mint(t, ri.current.Load())); err != nil {
			t.Fatalf("genuine token rejected: %v", err)
		}
		v, err := a.Authenticate(ctx, mint(t, ri.rotate(t)))
		assertRejected(t, v, err)
		if n := ri.fetches.Load(); n != 1 {
			t.Fatalf("a token under a new kid fetched the JWKS within the interval (%d fetches)", n)
		}
	})
	t.Run("after the interval", func(t *testing.T) {
		ri := newRotatingIssuer(t)
		const refetch = 200 * time.Millisecond
		a := ri.authenticator(refetch)
		old := ri.current.Load()
		if _, err := a.Authenticate(ctx, mint(t, old)); err != nil {
			t.Fatalf("genuine token rejected: %v", err)
		}
		time.Sleep(refetch)
		if _, err := a.Authenticate(ctx, mint(t, ri.rotate(t))); err != nil {
			t.Fatalf("first token under the rotated key rejected: %v", err)
		}
		if n := ri.fetches.Load(); n != 2 {
			t.Fatalf("JWKS fetched %d times, want 2", n)
		}
		// The key rotated away is gone from the JWKS, so its tokens now fail.
		v, err := a.Authenticate(ctx, mint(t, old))
		assertRejected(t, v, err)
	})
}

// While the JWKS cannot be had, tokens are not judged invalid: the issuer is unavailable
// (503, not 401), the fetch is retried after the short discovery retry interval, not
// hammered meanwhile, and the first success lets the same token in.
func TestJWKSOutageIsUnavailable(t *testing.T) {
	ri := newRotatingIssuer(t)
	down := func(w http.ResponseWriter) { http.Error(w, "down", http.StatusServiceUnavailable) }
	ri.jwks.Store(&down)
	a := ri.authenticator(time.Hour)
	ctx := context.Background()
	tok := mint(t, ri.current.Load())
	for range 5 {
		if v, err := a.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnavailable) || v != nil {
			t.Fatalf("JWKS down: viewer %v, err %v; want ErrUnavailable", v, err)
		}
	}
	if n := ri.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times in the retry interval, want 1", n)
	}
	ri.jwks.Store(nil)
	time.Sleep(60 * time.Millisecond) // the test issuer's retry interval is 50 ms
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("token rejected once the JWKS is back: %v", err)
	}
}

// A JWKS also holding keys this service cannot use (Keycloak can publish EdDSA keys, and
// encryption keys) still verifies tokens of the keys it can; a key published for
// encryption does not verify tokens.
func TestJWKSKeysThatCannotBeUsedAreSkipped(t *testing.T) {
	ri := newRotatingIssuer(t)
	iss := ri.current.Load()
	encKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed448 := map[string]any{"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": base64.RawURLEncoding.EncodeToString(make([]byte, 57))}
	enc := jose.JSONWebKey{Key: &encKey.PublicKey, KeyID: "enc-key", Algorithm: "RSA-OAEP", Use: "enc"}
	sig := jose.JSONWebKey{Key: iss.PublicKey(), KeyID: iss.KeyID(), Algorithm: "RS256", Use: "sig"}
	body, err := json.Marshal(map[string]any{"keys": []any{ed448, enc, sig}})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/json"); _, _ = w.Write(body) }
	ri.jwks.Store(&answer)
	a := ri.authenticator(time.Hour)
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, mint(t, iss)); err != nil {
		t.Fatalf("token of the signing key rejected beside keys that cannot be used: %v", err)
	}
	v, err := a.Authenticate(ctx, signedBy(t, ri.url, "enc-key", encKey))
	assertRejected(t, v, err)
}

// A JWKS with no signing key the service can use is an outage of the issuer's keys, not
// a verdict on the token: ErrUnavailable, as when the JWKS cannot be fetched.
func TestJWKSWithoutUsableKeyIsUnavailable(t *testing.T) {
	ri := newRotatingIssuer(t)
	ed448 := map[string]any{"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": base64.RawURLEncoding.EncodeToString(make([]byte, 57))}
	for name, body := range map[string]any{
		"only an Ed448 key": map[string]any{"keys": []any{ed448}},
		"an error document": map[string]any{"error": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			answer := func(w http.ResponseWriter) { _, _ = w.Write(b) }
			ri.jwks.Store(&answer)
			a := ri.authenticator(time.Hour)
			if v, err := a.Authenticate(context.Background(), mint(t, ri.current.Load())); !errors.Is(err, auth.ErrUnavailable) || v != nil {
				t.Fatalf("viewer %v, err %v; want ErrUnavailable", v, err)
			}
		})
	}
}
