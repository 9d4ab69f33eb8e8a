package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// defaultJWKSRefetch is the least time between two JWKS requests caused by tokens the held
// keys do not verify; Keycloak's own adapters wait 10 s (min-time-between-jwks-requests).
const defaultJWKSRefetch = 10 * time.Second

// maxJWKSBytes bounds the JWKS document read from the issuer. A realm's set is a few KiB.
const maxJWKSBytes = 1 << 20

// errKeyRefetchTooSoon rejects a token that names a key the set does not hold while the
// last fetch is younger than the refetch interval.
var errKeyRefetchTooSoon = errors.New("token's key is not in the JWKS, which was fetched too recently to fetch again")

// keySet is the issuer's signing keys (an oidc.KeySet): fetched from jwks_uri on first use
// and again when a token is signed with a key it does not hold (Keycloak rotated its realm
// key), but never twice within the refetch interval.
//
// go-oidc's RemoteKeySet fetches the JWKS again for every token its cached keys do not
// verify, a forged signature under a real kid included, so every forged token sent to the
// portal became a request to Keycloak. Here a token whose kid names a held key is decided
// by that key alone, and the other misses share one fetch per interval: a new key is
// picked up at once unless a fetch happened in the last interval (then its tokens fail
// until the interval is over, which a client retries through).
type keySet struct {
	uri     string
	client  *http.Client
	algs    []jose.SignatureAlgorithm
	refetch time.Duration
	now     func() time.Time

	keys atomic.Pointer[jose.JSONWebKeySet] // nil until the first successful fetch
	// fetching serialises fetches (a one-slot semaphore, so a waiting request can give up
	// when its own context ends); lastFetch is guarded by it.
	fetching  chan struct{}
	lastFetch time.Time // the last attempt, failed ones too: a failing JWKS is not hammered either
}

func newKeySet(uri string, client *http.Client, algs []string, refetch time.Duration) *keySet {
	if refetch <= 0 {
		refetch = defaultJWKSRefetch
	}
	ja := make([]jose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		ja[i] = jose.SignatureAlgorithm(a)
	}
	return &keySet{uri: uri, client: client, algs: ja, refetch: refetch, now: time.Now, fetching: make(chan struct{}, 1)}
}

// VerifySignature implements oidc.KeySet: it returns the payload of a JWS that one of the
// issuer's keys verifies.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	held := k.keys.Load()
	if held != nil {
		payload, holds := verifyWith(held, jws, kid)
		if payload != nil {
			return payload, nil
		}
		if holds {
			// The key the token names is held and does not verify it: a forgery (Keycloak
			// gives a new key a new kid), which a fetch would not change.
			return nil, errors.New("signature does not verify")
		}
	}
	keys, err := k.fetchAfter(ctx, held)
	if err != nil {
		return nil, err
	}
	if payload, _ := verifyWith(keys, jws, kid); payload != nil {
		return payload, nil
	}
	return nil, errors.New("no key of the issuer verifies the signature")
}

// verifyWith returns the payload if a key of set named kid (any key, without a kid)
// verifies jws, and whether the set holds a key of that kid at all.
func verifyWith(set *jose.JSONWebKeySet, jws *jose.JSONWebSignature, kid string) (payload []byte, holds bool) {
	for i := range set.Keys {
		key := &set.Keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		holds = kid != ""
		if p, err := jws.Verify(key); err == nil {
			return p, holds
		}
	}
	return nil, holds
}

// fetchAfter returns the keys fetched after held was (concurrent misses share one fetch),
// fetching them unless the last fetch is younger than the refetch interval.
func (k *keySet) fetchAfter(ctx context.Context, held *jose.JSONWebKeySet) (*jose.JSONWebKeySet, error) {
	select {
	case k.fetching <- struct{}{}:
		defer func() { <-k.fetching }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if cur := k.keys.Load(); cur != held {
		return cur, nil // fetched while this request waited
	}
	if !k.lastFetch.IsZero() && k.now().Sub(k.lastFetch) < k.refetch {
		return nil, errKeyRefetchTooSoon
	}
	k.lastFetch = k.now()
	// The fetch outlives the request that caused it, as discovery does: a client hanging
	// up must not leave every other request without keys until the interval is over.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	set, err := k.fetch(fctx)
	if err != nil {
		return nil, err
	}
	k.keys.Store(set)
	return set, nil
}

func (k *keySet) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching jwks: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks larger than %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding jwks: %w", err)
	}
	return &set, nil
}
