package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
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

// errJWKSDown is the answer while a failed fetch is younger than the retry interval.
var errJWKSDown = errors.New("the issuer's JWKS could not be fetched; retrying later")

// keySet is the issuer's signing keys (an oidc.KeySet): fetched from jwks_uri on first use
// and again when a token is signed with a key it does not hold (Keycloak rotated its realm
// key), but never twice within the refetch interval.
//
// go-oidc's RemoteKeySet fetches the JWKS again for every token its cached keys do not
// verify, a forged signature under a real kid included, so every forged token sent to the
// portal became a request to Keycloak. Here a token whose kid names a held key is decided
// by that key alone, and the other misses share one fetch per interval: a new key is
// picked up at once unless a fetch happened in the last interval, and then its tokens are
// refused until the interval is over. A failed fetch is retried sooner (the discovery
// retry interval), and until one succeeds the Authenticator reports the issuer
// unavailable rather than every token invalid.
type keySet struct {
	uri     string
	client  *http.Client
	algs    []jose.SignatureAlgorithm
	refetch time.Duration // after a successful fetch
	retry   time.Duration // after a failed one
	log     *slog.Logger

	keys atomic.Pointer[jose.JSONWebKeySet] // nil until the first successful fetch
	// fetching serialises fetches (a one-slot semaphore, so a waiting request can give up
	// when its own context ends); lastFetch and lastFailed are guarded by it.
	fetching   chan struct{}
	lastFetch  time.Time
	lastFailed bool
}

func newKeySet(uri string, client *http.Client, algs []string, refetch, retry time.Duration, log *slog.Logger) *keySet {
	if refetch <= 0 {
		refetch = defaultJWKSRefetch
	}
	ja := make([]jose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		ja[i] = jose.SignatureAlgorithm(a)
	}
	return &keySet{uri: uri, client: client, algs: ja, refetch: refetch, retry: min(retry, refetch), log: log,
		fetching: make(chan struct{}, 1)}
}

// ready makes sure keys are held, fetching them if none are. It fails only when none can
// be had: then no token can be checked, which is the issuer's outage, not the callers'.
func (k *keySet) ready(ctx context.Context) error {
	if k.keys.Load() != nil {
		return nil
	}
	_, err := k.fetchAfter(ctx, nil)
	return err
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
// fetching them unless the last fetch is younger than the refetch interval, or after a
// failed fetch, the retry interval.
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
	wait, tooSoon := k.refetch, errKeyRefetchTooSoon
	if k.lastFailed {
		wait, tooSoon = k.retry, errJWKSDown
	}
	if !k.lastFetch.IsZero() && time.Since(k.lastFetch) < wait {
		return nil, tooSoon
	}
	// The fetch outlives the request that caused it, as discovery does: a client hanging
	// up must not leave every other request without keys until the interval is over.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	set, err := k.fetch(fctx)
	k.lastFetch, k.lastFailed = time.Now(), err != nil
	if err != nil {
		k.log.Warn("auth: fetching the issuer's JWKS failed; will retry", "jwks_uri", k.uri, "retry_in", k.retry, "err", err)
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
	// Key by key: a key this service cannot use (an Ed448 or secp256k1 key, say) is
	// skipped, as go-oidc does, instead of failing the whole set and every token with it.
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decoding jwks: %w", err)
	}
	set := &jose.JSONWebKeySet{}
	skipped := 0
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			skipped++
			continue
		}
		set.Keys = append(set.Keys, key)
	}
	if !slices.ContainsFunc(set.Keys, func(k jose.JSONWebKey) bool { return k.Use == "" || k.Use == "sig" }) {
		// Not a key set this service can check a token with: a failed fetch (503, retried
		// soon), not a set that makes every token invalid until the next refetch.
		return nil, fmt.Errorf("jwks holds no signing key this service can use (%d of %d skipped)", skipped, len(doc.Keys))
	}
	if skipped > 0 {
		k.log.Warn("auth: skipped JWKS keys this service cannot use", "skipped", skipped, "kept", len(set.Keys))
	}
	return set, nil
}
