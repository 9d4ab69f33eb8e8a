package auth_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
}

func newRotatingIssuer(t *testing.T) *rotatingIssuer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	ri := &rotatingIssuer{url: "http://" + srv.Listener.Addr().String() + authtest.RealmPath}
	ri.rotate(t)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, devissuer.JWKSPath) {
			ri.fetches.Add(1)
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
		IssuerURL:   ri.url,
		ClientIDs:   []string{authtest.APIClient, authtest.WebClient},
		RoleClient:  authtest.APIClient,
		JWKSRefetch: refetch,
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
// JWKS again, at once if the last fetch is older than the interval, else once it is.
func TestRotatedKeyIsPickedUp(t *testing.T) {
	ri := newRotatingIssuer(t)
	const refetch = 300 * time.Millisecond
	a := ri.authenticator(refetch)
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, mint(t, ri.current.Load())); err != nil {
		t.Fatalf("genuine token rejected: %v", err)
	}

	// Rotated right after a fetch: the new key's tokens wait out the interval.
	fetchedAt := time.Now()
	rotated := ri.rotate(t)
	tok := mint(t, rotated)
	v, err := a.Authenticate(ctx, tok)
	if time.Since(fetchedAt) < refetch {
		assertRejected(t, v, err)
		if n := ri.fetches.Load(); n != 1 {
			t.Fatalf("a token under a new kid fetched the JWKS within the interval (%d fetches)", n)
		}
	}
	time.Sleep(time.Until(fetchedAt.Add(refetch)))
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("token under the rotated key rejected after the interval: %v", err)
	}
	if n := ri.fetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}

	// Long after the last fetch, a rotation is picked up by its first token.
	time.Sleep(refetch)
	again := ri.rotate(t)
	if _, err := a.Authenticate(ctx, mint(t, again)); err != nil {
		t.Fatalf("first token under a key rotated after the interval rejected: %v", err)
	}
	// The key rotated away is gone from the JWKS, so its tokens now fail.
	v, err = a.Authenticate(ctx, tok)
	assertRejected(t, v, err)
}
