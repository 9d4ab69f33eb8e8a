package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// Record is what the gateway needs of an APIKey row.
type Record struct {
	ID        pulid.ID
	TenantID  pulid.ID
	ProjectID pulid.ID
	ConfigID  pulid.ID
	Kind      Kind
	Scopes    []Scope
	ExpiresAt *time.Time
	// RevokedAt is when the key stops working. Revocation sets it to now; rotation sets it to
	// now+grace, so a RevokedAt in the future means "valid until then" and needs no second
	// column or a job to flip it.
	RevokedAt *time.Time
}

// Allows reports whether the key carries scope. A publishable key never allows anything but
// widget:invoke, whatever its row says: it is public.
func (r Record) Allows(scope Scope) bool {
	if r.Kind == KindPublishable && scope != ScopeWidgetInvoke {
		return false
	}
	return slices.Contains(r.Scopes, scope)
}

// LiveAt reports why the record is not usable at now, or nil.
func (r Record) LiveAt(now time.Time) error {
	if r.RevokedAt != nil && !now.Before(*r.RevokedAt) {
		return ErrRevoked
	}
	if r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) {
		return ErrExpired
	}
	return nil
}

// Store reads and touches key rows; the ent-backed adapter lives outside this package.
type Store interface {
	// LookupByHash returns the row whose hash column equals hash, or ErrNotFound. It must
	// return revoked and expired rows too: Verify tells those apart from unknown keys.
	LookupByHash(ctx context.Context, hash string) (Record, error)
	// TouchLastUsed sets last_used_at = at for the ids (never moving it backwards).
	TouchLastUsed(ctx context.Context, ids []pulid.ID, at time.Time) error
}

// VerifierOptions tune a Verifier. Zero values take the defaults.
type VerifierOptions struct {
	// CacheTTL bounds how long a row is trusted without a new lookup. It is a backstop only:
	// revocation on this replica calls Invalidate, other replicas will be told by a broker.
	// Default 30s.
	CacheTTL time.Duration
	// NegativeTTL is how long "no such hash" is remembered, to absorb floods of one unknown
	// key. It is kept short (default and maximum 1s) because a key minted a moment ago on
	// another replica must work here at once. Negative values disable negative caching.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; beyond it, entries are evicted. Default 100 000.
	MaxEntries int
	// LookupTimeout bounds one store lookup. The lookup is shared by every caller waiting for
	// the same hash, so it does not run under any one caller's context. Default 5s.
	LookupTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives anomalies. Default slog.Default().
	Logger *slog.Logger
	// Toucher, when set, is told about every successful Verify (for last_used_at).
	Toucher *Toucher
}

// Verifier decides whether a key may be used: signature, then the row (cached), then liveness.
type Verifier struct {
	keyring       *Keyring
	store         Store
	cache         *cache
	group         singleflight.Group
	lookupTimeout time.Duration
	now           func() time.Time
	log           *slog.Logger
	toucher       *Toucher
	// parse is keyring.Parse; tests count its calls through it.
	parse func(key string) (Claims, error)
}

// NewVerifier builds a Verifier.
func NewVerifier(keyring *Keyring, store Store, opts VerifierOptions) *Verifier {
	if keyring == nil || store == nil {
		panic("apikey: NewVerifier needs a keyring and a store")
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 30 * time.Second
	}
	switch {
	case opts.NegativeTTL == 0 || opts.NegativeTTL > time.Second:
		opts.NegativeTTL = time.Second
	case opts.NegativeTTL < 0:
		opts.NegativeTTL = 0
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Verifier{
		keyring:       keyring,
		store:         store,
		cache:         newCache(opts.MaxEntries, opts.CacheTTL, opts.NegativeTTL),
		lookupTimeout: opts.LookupTimeout,
		now:           opts.Now,
		log:           opts.Logger,
		toucher:       opts.Toucher,
		parse:         keyring.Parse,
	}
}

// Verify returns the row and claims of a usable key. Errors: those of Parse, ErrUnknownKey,
// ErrRevoked, ErrExpired, or a wrapped store error (the gateway should answer 503, not 401).
// The returned Record and Claims are the caller's to keep.
//
// The cache is consulted first, by the SHA-256 of the whole key string: an entry exists only
// for a key that passed Parse (signature, issuer, audience, kind, claims) before, and an
// identical hash means this very string, so its signature need not be checked again. Only
// what depends on the clock is: the JWT's exp and nbf here, the row's revocation and expiry
// below. A miss parses and verifies the signature before anything is looked up, so a bad
// key never reaches the cache or the database.
func (v *Verifier) Verify(ctx context.Context, key string) (Record, Claims, error) {
	if len(key) > MaxKeyLen {
		// Not worth hashing: Parse refuses it.
		_, err := v.parse(key)
		return Record{}, Claims{}, err
	}
	hash := HashKey(key)
	e, hit := v.cache.get(hash, v.now())
	var claims Claims
	if hit && e.claimsCurrent(v.keyring.now()) {
		// The entry is shared with every caller of this key: hand out a copy.
		claims = cloneClaims(e.claims)
	} else {
		// A miss, or cached claims that may have expired (the check above has no leeway):
		// Parse decides, exactly as if nothing were cached.
		var err error
		if claims, err = v.parse(key); err != nil {
			return Record{}, Claims{}, err
		}
		if e, err = v.lookup(ctx, hash, claims); err != nil {
			return Record{}, Claims{}, err
		}
	}
	if !e.found {
		return Record{}, Claims{}, ErrUnknownKey
	}
	rec := e.rec
	// The row was found by the hash of this very key, so a mismatch means the row is wrong
	// (or was written for another key): refuse rather than guess which side to trust.
	if rec.TenantID != claims.TenantID || rec.ConfigID != claims.ConfigID ||
		rec.ProjectID != claims.ProjectID || rec.Kind != claims.Kind {
		v.log.ErrorContext(ctx, "apikey: row does not match key claims",
			slog.String("key_id", string(rec.ID)), slog.String("jti", claims.ID))
		return Record{}, Claims{}, fmt.Errorf("%w: row does not match claims", ErrUnknownKey)
	}
	now := v.now()
	if err := rec.LiveAt(now); err != nil {
		return Record{}, Claims{}, err
	}
	if v.toucher != nil {
		v.toucher.Touch(rec.ID, now)
	}
	rec.Scopes = slices.Clone(rec.Scopes)
	return rec, claims, nil
}

// Invalidate forgets what the cache knows of hash, so that the next Verify reads the row
// again. Call it after revoking or rotating a key (and, through a broker, on every replica).
func (v *Verifier) Invalidate(hash string) {
	v.cache.invalidate(hash)
	// A lookup already in flight may have read the row before the change: later callers must
	// not join it.
	v.group.Forget(hash)
}

// InvalidateAll drops every cached key: the next use of each is looked up again. Called
// when the channel that carries other replicas' revocations was interrupted.
func (v *Verifier) InvalidateAll() {
	v.cache.invalidateAll()
}

// lookup returns what is known of hash (its row, or that there is none) from the cache, or
// from the store once per hash however many callers miss at the same time. claims are the
// parsed claims of the key whose hash this is; they are cached with the answer, so the next
// Verify of the key need not parse it. The error is a store failure or ctx's.
func (v *Verifier) lookup(ctx context.Context, hash string, claims Claims) (entry, error) {
	now := v.now()
	if e, ok := v.cache.get(hash, now); ok {
		return e, nil
	}
	ch := v.group.DoChan(hash, func() (any, error) {
		// A caller that missed the cache just before the previous lookup filled it, and
		// came here just after that lookup ended, takes the answer from the cache rather
		// than reading the store a second time.
		if e, ok := v.cache.get(hash, v.now()); ok {
			return e, nil
		}
		// Taken before the read: if Invalidate runs while the store is being read, the
		// (possibly stale) answer is not cached.
		gen := v.cache.generation(hash)
		// The caller keeps its claims: the cache gets its own copy.
		claims := cloneClaims(claims)
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.lookupTimeout)
		defer cancel()
		rec, err := v.store.LookupByHash(lctx, hash)
		switch {
		case errors.Is(err, ErrNotFound):
			e := entry{claims: claims}
			v.cache.put(hash, e, gen, v.now())
			return e, nil
		case err != nil:
			// Not cached: the next call tries the store again.
			return nil, err
		}
		e := entry{rec: rec, found: true, claims: claims}
		v.cache.put(hash, e, gen, v.now())
		return e, nil
	})
	select {
	case <-ctx.Done():
		return entry{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return entry{}, fmt.Errorf("apikey: look up key: %w", res.Err)
		}
		return res.Val.(entry), nil
	}
}
