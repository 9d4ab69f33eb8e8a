package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is wrapped by the error a fail-closed limiter returns when its store (Redis)
// cannot be reached; the gateway answers 503 rather than 429, since the client did nothing wrong.
var ErrUnavailable = errors.New("ratelimit: limiter store unavailable")

// ErrInvalidLimit is wrapped by the error returned for a Limit that cannot be enforced.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Limit admits Rate requests per Period, up to Burst of them at once.
//
// Burst 0 means Burst = Rate: a full period's budget may be spent at once after the key was idle
// for a period, which is how buyers read "N requests per minute". A smaller Burst smooths traffic;
// a larger one lets idle credit accumulate beyond one period.
//
// The zero Limit means "no limit" in AllowAll (a plan without a per-tenant rpm, say); Allow
// rejects it with ErrInvalidLimit so a missing limit is never silently unenforced.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerMinute is n requests per minute with a burst of n.
func PerMinute(n int) Limit {
	return Limit{Rate: n, Period: time.Minute, Burst: n}
}

// IsZero reports whether l is the zero Limit ("no limit" in AllowAll).
func (l Limit) IsZero() bool { return l == Limit{} }

// String is for logs.
func (l Limit) String() string {
	return fmt.Sprintf("%d/%s (burst %d)", l.Rate, l.Period, l.normalized().Burst)
}

// normalized fills in the default Burst.
func (l Limit) normalized() Limit {
	if l.Burst == 0 {
		l.Burst = l.Rate
	}
	return l
}

// interval is the GCRA emission interval: the time one request "costs".
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

func (l Limit) validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("%w: rate %d must be positive", ErrInvalidLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: period %s must be positive", ErrInvalidLimit, l.Period)
	case l.Burst < 0:
		return fmt.Errorf("%w: burst %d must not be negative", ErrInvalidLimit, l.Burst)
	case l.interval() <= 0:
		return fmt.Errorf("%w: %d per %s is finer than a nanosecond", ErrInvalidLimit, l.Rate, l.Period)
	}
	return nil
}

// Result is the outcome of one decision.
type Result struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Limit is the limit this result describes (for AllowAll: the most restrictive one), with
	// Burst filled in.
	Limit Limit
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is how long until one request would be allowed; 0 if Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the full Burst is available again.
	ResetAfter time.Duration
	// Degraded reports that the limit was not enforced because the store was unavailable and the
	// limiter fails open; Remaining and ResetAfter are then unknown (zero).
	Degraded bool
}

// Check is one limit to enforce on one request, e.g. {Key: "key:" + keyID, Limit: plan's rpm per
// key} and {Key: "tenant:" + tenantID, Limit: plan's rpm per tenant}. Keys of different scopes must
// not collide, and a key should always be checked with the same Limit (its state is interpreted
// under whatever Limit the next call brings).
type Check struct {
	Key   string
	Limit Limit
}

// Limiter decides whether a request may proceed.
type Limiter interface {
	// Allow spends one request of key's budget under limit if there is room.
	Allow(ctx context.Context, key string, limit Limit) (Result, error)
	// AllowAll spends one request of every check's budget if all have room, and none otherwise
	// (see the package documentation for the Redis caveat). It reports the most restrictive
	// result: when rejected, the rejecting check with the longest RetryAfter; when allowed, the
	// check with the fewest Remaining. Checks with a zero Limit are skipped; with none left the
	// request is allowed with a zero Result.Limit (Headers then writes nothing).
	AllowAll(ctx context.Context, checks ...Check) (Result, error)
}

// active validates checks and drops those without a limit, normalizing the rest.
func active(checks []Check) ([]Check, error) {
	out := make([]Check, 0, len(checks))
	for _, c := range checks {
		if c.Limit.IsZero() {
			continue
		}
		if err := c.Limit.validate(); err != nil {
			return nil, fmt.Errorf("check %q: %w", c.Key, err)
		}
		c.Limit = c.Limit.normalized()
		out = append(out, c)
	}
	return out, nil
}

// mostRestrictive combines the results of the checks of one request. A rejection wins over any
// allowance and the longest wait wins among rejections, because the request can only pass once
// every limit has room; among allowances the one closest to exhaustion is what the client should
// pace itself by.
func mostRestrictive(results []Result) Result {
	if len(results) == 0 {
		return Result{Allowed: true}
	}
	best := results[0]
	degraded := false
	for i, r := range results {
		degraded = degraded || r.Degraded
		if i == 0 {
			continue
		}
		switch {
		case best.Allowed && !r.Allowed:
			best = r
		case !best.Allowed && !r.Allowed && r.RetryAfter > best.RetryAfter:
			best = r
		case best.Allowed && r.Allowed && r.Remaining < best.Remaining:
			best = r
		}
	}
	best.Degraded = degraded
	return best
}
