package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configures NewRedis. The zero value fails open and logs to slog.Default().
type RedisOptions struct {
	// Prefix namespaces the keys (redis_rate stores them as "rate:" + Prefix + key); empty means
	// "agentregistry:".
	Prefix string
	// FailClosed makes Allow/AllowAll return an error wrapping ErrUnavailable when Redis cannot be
	// reached. The default (false) fails open: the request is allowed and Result.Degraded set.
	// It is spelled as the exception so that the zero value is the documented default.
	FailClosed bool
	// Logger receives the fail-open warnings; nil means slog.Default().
	Logger *slog.Logger
	// LogEvery bounds the fail-open warnings to one per interval (with a count of the suppressed
	// ones), so an outage at thousands of requests a second does not flood the logs; 0 means 10s.
	LogEvery time.Duration
}

// Redis is a GCRA limiter whose state lives in Redis, so all replicas share one budget per key.
// Each decision is one Lua script run (redis_rate), atomic in Redis and timed by the Redis
// server's clock, so replicas' clock skew does not matter.
//
// Call timeouts are the client's (DialTimeout, ReadTimeout, PoolTimeout, MaxRetries); configure
// them short for the gateway, since fail-open only helps if failing is fast.
type Redis struct {
	rl         *redis_rate.Limiter
	prefix     string
	failClosed bool
	warn       *throttledLog
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter backed by client. It does not contact Redis.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "agentregistry:"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10 * time.Second
	}
	return &Redis{
		rl:         redis_rate.NewLimiter(client),
		prefix:     opts.Prefix,
		failClosed: opts.FailClosed,
		warn:       &throttledLog{logger: opts.Logger, every: opts.LogEvery},
	}
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	if err := limit.validate(); err != nil {
		return Result{}, err
	}
	limit = limit.normalized()
	res, err := r.rl.Allow(ctx, r.prefix+key, rateLimit(limit))
	if err != nil {
		return r.unavailable(ctx, limit, err)
	}
	return fromRedis(limit, res), nil
}

// AllowAll implements Limiter: peek every check (AllowN with n=0 changes nothing), and only if all
// have room consume them in order. See the package documentation for the race this leaves.
func (r *Redis) AllowAll(ctx context.Context, checks ...Check) (Result, error) {
	checks, err := active(checks)
	if err != nil {
		return Result{}, err
	}
	switch len(checks) {
	case 0:
		return Result{Allowed: true}, nil
	case 1:
		// One limit needs no peek: a GCRA rejection consumes nothing.
		return r.Allow(ctx, checks[0].Key, checks[0].Limit)
	}

	results := make([]Result, len(checks))
	allowed := true
	for i, c := range checks {
		res, err := r.rl.AllowN(ctx, r.prefix+c.Key, rateLimit(c.Limit), 0)
		if err != nil {
			return r.unavailable(ctx, c.Limit, err)
		}
		results[i] = fromPeek(c.Limit, res)
		allowed = allowed && results[i].Allowed
	}
	if !allowed {
		return mostRestrictive(results), nil
	}

	for i, c := range checks {
		res, err := r.rl.Allow(ctx, r.prefix+c.Key, rateLimit(c.Limit))
		if err != nil {
			return r.unavailable(ctx, c.Limit, err)
		}
		results[i] = fromRedis(c.Limit, res)
		if !results[i].Allowed {
			// Lost a race since the peek: stop here so at least the later checks are not spent.
			return mostRestrictive(results[:i+1]), nil
		}
	}
	return mostRestrictive(results), nil
}

// unavailable turns a Redis failure into the configured fail-open or fail-closed answer.
func (r *Redis) unavailable(ctx context.Context, limit Limit, err error) (Result, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller gave up (client gone, request deadline): not an outage, nothing to decide.
		return Result{Limit: limit}, fmt.Errorf("ratelimit: %w", ctxErr)
	}
	if r.failClosed {
		return Result{Limit: limit}, fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	r.warn.log(err)
	return Result{Allowed: true, Limit: limit, Degraded: true}, nil
}

func rateLimit(l Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period}
}

// fromRedis converts the answer to a request of cost 1.
func fromRedis(l Limit, res *redis_rate.Result) Result {
	r := Result{
		Allowed:    res.Allowed > 0,
		Limit:      l,
		Remaining:  res.Remaining,
		ResetAfter: max(res.ResetAfter, 0),
	}
	if !r.Allowed {
		r.Remaining = 0
		// redis_rate reports -1 when allowed and the positive wait otherwise; never tell a
		// rejected client to retry immediately.
		r.RetryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return r
}

// fromPeek converts the answer to a request of cost 0 (redis_rate then reports Allowed=0 and
// RetryAfter=-1 whatever the state): one more request fits iff Remaining >= 1, and its wait
// follows from the TAT: ResetAfter = TAT - now, and a request is admitted once
// TAT + interval - burst*interval <= now.
func fromPeek(l Limit, res *redis_rate.Result) Result {
	r := Result{
		Allowed:    res.Remaining >= 1,
		Limit:      l,
		Remaining:  res.Remaining,
		ResetAfter: max(res.ResetAfter, 0),
	}
	if !r.Allowed {
		r.Remaining = 0
		wait := r.ResetAfter + l.interval() - time.Duration(l.Burst)*l.interval()
		r.RetryAfter = max(wait, time.Millisecond)
	}
	return r
}

// throttledLog logs at most once per interval and counts what it held back.
type throttledLog struct {
	logger *slog.Logger
	every  time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

func (t *throttledLog) log(err error) {
	t.mu.Lock()
	now := time.Now()
	if now.Before(t.next) {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := t.suppressed
	t.suppressed = 0
	t.next = now.Add(t.every)
	t.mu.Unlock()
	t.logger.Warn("ratelimit: redis unavailable, allowing requests unlimited (fail open)",
		"error", err, "suppressed", suppressed)
}
