package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// Headers describes r to the client:
//
//	RateLimit-Policy: 50;w=60
//	RateLimit: limit=50, remaining=49, reset=2
//	RateLimit-Limit: 50, RateLimit-Remaining: 49, RateLimit-Reset: 2   (older clients)
//	Retry-After: 2                                                     (only when rejected)
//
// limit is the Rate of the period named by the policy; reset is ResetAfter, the seconds until the
// full budget is back (GCRA refills continuously, so one request may fit much sooner: Retry-After
// says when). Seconds are rounded up so a client that waits as told is not rejected again.
// A degraded result (limit unknown because the store is down) only gets the policy, and a zero
// Limit (no limit applied) gets nothing.
func Headers(h http.Header, r Result) {
	if r.Limit.Rate <= 0 || r.Limit.Period <= 0 {
		return
	}
	limit := strconv.Itoa(r.Limit.Rate)
	h.Set("RateLimit-Policy", limit+";w="+strconv.FormatInt(ceilSeconds(r.Limit.Period), 10))
	if r.Degraded {
		return
	}
	remaining := strconv.Itoa(max(r.Remaining, 0))
	reset := strconv.FormatInt(ceilSeconds(r.ResetAfter), 10)
	h.Set("RateLimit", "limit="+limit+", remaining="+remaining+", reset="+reset)
	h.Set("RateLimit-Limit", limit)
	h.Set("RateLimit-Remaining", remaining)
	h.Set("RateLimit-Reset", reset)
	if !r.Allowed {
		h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(r.RetryAfter), 1), 10))
	}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
