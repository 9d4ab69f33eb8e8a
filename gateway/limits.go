package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
)

// rpm is a plan's requests per minute as a Limit; 0 is "no limit".
func rpm(n int) ratelimit.Limit {
	if n <= 0 {
		return ratelimit.Limit{}
	}
	return ratelimit.PerMinute(n)
}

// limit spends one request of the key's, the tenant's and (publishable keys) the visitor's
// budgets, all or none.
func (c *call) limit(in callInput, bodyErr *apiError) *apiError {
	t := c.target
	checks := []ratelimit.Check{
		{Key: "gw:key:" + string(c.rec.ID), Limit: rpm(t.Limits.RPMPerKey)},
		{Key: "gw:tenant:" + string(t.TenantID), Limit: rpm(t.Limits.RPMPerTenant)},
	}
	if c.rec.Kind == apikey.KindPublishable {
		// A widget visitor is its chat session; a caller without one (or with a body we
		// could not read) is its address, so skipping session_id gains nothing.
		visitor := "ip:" + clientIP(c.r)
		if bodyErr == nil && in.session != "" {
			visitor = "s:" + in.session
		}
		checks = append(checks, ratelimit.Check{Key: "gw:visitor:" + string(c.rec.ID) + ":" + visitor, Limit: c.g.d.VisitorLimit})
	}
	res, err := c.g.d.Limiter.AllowAll(c.r.Context(), checks...)
	if err != nil {
		return limiterError(err)
	}
	ratelimit.Headers(c.w.Header(), res)
	if !res.Allowed {
		return newError(http.StatusTooManyRequests, CodeRateLimited, "rate limit exceeded, retry later", nil)
	}
	return nil
}

// clientIP is the peer address. Forwarded headers are not trusted here: which proxy to
// believe is the server's configuration, and a spoofed header would let a visitor pick
// a fresh budget per call.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// quota refuses a call once the plan's monthly requests or tokens are used up. Failed
// calls count as requests (they are metered), tokens only as reported or estimated.
func (c *call) quota() *apiError {
	t := c.target
	if t.Limits.RequestsPerMonth <= 0 && t.Limits.TokensPerMonth <= 0 {
		return nil
	}
	requests, tokens, err := c.g.d.Quota.MonthToDate(c.r.Context(), t.TenantID, t.ConfigID)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return canceled(err)
		}
		return unavailable("usage could not be checked, try again", err)
	}
	over := (t.Limits.RequestsPerMonth > 0 && requests >= t.Limits.RequestsPerMonth) ||
		(t.Limits.TokensPerMonth > 0 && tokens >= t.Limits.TokensPerMonth)
	if !over {
		return nil
	}
	e := newError(http.StatusTooManyRequests, CodeQuotaExceeded, "the monthly quota of the plan is used up", nil)
	e.retryAfter = untilNextMonth(c.g.d.Now())
	return e
}

// untilNextMonth is the wait until quotas reset: the first instant of the next UTC month.
func untilNextMonth(now time.Time) time.Duration {
	now = now.UTC()
	next := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
	return next.Sub(now)
}
