// Package ratelimit enforces the per-key and per-tenant request rates of the invoke gateway
// (plans carry "rpm per key" and "rpm per tenant") with GCRA, the generic cell rate algorithm.
//
// GCRA keeps one number per key, the theoretical arrival time (TAT) of the next request, so it
// is exact, O(1) in memory and needs no background refill. A limit of Rate requests per Period
// admits one request every Period/Rate (the emission interval) and lets up to Burst requests
// through at once; Burst defaults to Rate, so a client that was idle for a minute may spend the
// whole minute's budget in one go, which is what "N requests per minute" means to a buyer. A
// rejected request changes nothing, so hammering a limit does not push the retry time further.
//
// Two backends implement Limiter:
//
//   - Memory: in process, exact under concurrency (mutex-protected shards of TATs, a janitor
//     evicts keys whose TAT is in the past, which is the same state as an absent key). Use it for
//     a single replica.
//   - Redis: github.com/go-redis/redis_rate (GCRA in a Lua script, using the Redis server's clock),
//     so every replica shares one budget. When Redis cannot be reached it fails open by default:
//     the request is allowed, the Result is marked Degraded and the outage is logged at most once
//     per RedisOptions.LogEvery. A few minutes of unenforced rpm is cheaper than paying customers'
//     agents going dark, and monthly quotas are enforced separately from the database. Set
//     RedisOptions.FailClosed to answer with an error wrapping ErrUnavailable (the gateway's 503).
//
// AllowAll evaluates several limits (per key and per tenant) for one request and reports the most
// restrictive result. A request rejected by one limit must not spend the budget of the others
// (otherwise one key hammering the tenant limit would also drain its own budget, or one noisy key
// at its own limit would drain the tenant's budget for every other key). Memory does this exactly:
// all checks are decided and committed under the locks together. Redis first peeks every limit
// (redis_rate AllowN with n=0, which changes nothing) and consumes only if all have room; two
// requests racing at the very edge of a budget can still pass the peek together and one of them
// then be rejected by a later limit after an earlier one was consumed. That over-consumption is
// bounded by the number of requests of one tenant in flight at the same instant, and we accept it
// rather than write and maintain our own multi-key Lua script.
//
// Headers writes the RateLimit-Policy / RateLimit fields of draft-ietf-httpapi-ratelimit-headers,
// the older RateLimit-Limit / -Remaining / -Reset triple and Retry-After on rejection.
package ratelimit
