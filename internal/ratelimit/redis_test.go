package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis connects to TEST_REDIS_URL. Without it the test is skipped, except under CI=true
// where a missing service is a failure, not a silent pass.
func testRedis(t testing.TB) *redis.Client {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TEST_REDIS_URL is not set (required under CI=true)")
		}
		t.Skip("TEST_REDIS_URL is not set")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", url, err)
	}
	return c
}

// testPrefix is a random key prefix whose keys are deleted when the test ends, so parallel test
// packages sharing one Redis never see each other's budgets.
func testPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "test:ratelimit:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		// redis_rate stores keys as "rate:" + key.
		iter := c.Scan(ctx, 0, "rate:"+prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			_ = c.Del(ctx, iter.Val()).Err()
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return prefix
}

func TestRedis(t *testing.T) {
	runConformance(t, func(t *testing.T) (Limiter, string) {
		c := testRedis(t)
		return NewRedis(c, RedisOptions{Prefix: testPrefix(t, c), FailClosed: true}), ""
	})
}

// Two replicas, each with its own client and limiter, share one budget through Redis.
func TestRedisExactAcrossReplicas(t *testing.T) {
	c1 := testRedis(t)
	c2 := testRedis(t)
	prefix := testPrefix(t, c1)
	replicas := []*Redis{
		NewRedis(c1, RedisOptions{Prefix: prefix, FailClosed: true}),
		NewRedis(c2, RedisOptions{Prefix: prefix, FailClosed: true}),
	}
	var mu sync.Mutex
	perReplica := map[int]int{}
	var i int
	allowed, rejected := hammer(t, 200, func(ctx context.Context) (Result, error) {
		mu.Lock()
		n := i % 2
		i++
		mu.Unlock()
		r, err := replicas[n].Allow(ctx, "k", PerMinute(50))
		if err == nil && r.Allowed {
			mu.Lock()
			perReplica[n]++
			mu.Unlock()
		}
		return r, err
	})
	if allowed != 50 || rejected != 150 {
		t.Fatalf("allowed %d rejected %d across two replicas, want exactly 50 and 150", allowed, rejected)
	}
	if perReplica[0] == 0 || perReplica[1] == 0 {
		t.Fatalf("one replica got nothing (%v): the calls did not really interleave", perReplica)
	}
}

func TestRedisRefill(t *testing.T) {
	c := testRedis(t)
	l := NewRedis(c, RedisOptions{Prefix: testPrefix(t, c), FailClosed: true})
	lim := Limit{Rate: 5, Period: time.Second} // one request per 200ms, burst 5
	spend(t, l, "k", lim, 5)
	r := mustAllow(t, l, "k", lim)
	if r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > 200*time.Millisecond {
		t.Fatalf("6th: %+v, want rejected with RetryAfter in (0, 200ms]", r)
	}
	time.Sleep(lim.Period)
	spend(t, l, "k", lim, 5)
	if r := mustAllow(t, l, "k", lim); r.Allowed {
		t.Fatalf("6th after refill allowed: %+v", r)
	}
}

// The peek of AllowAll must report a usable wait even though redis_rate reports none for n=0.
func TestRedisAllowAllRetryAfterFromPeek(t *testing.T) {
	c := testRedis(t)
	l := NewRedis(c, RedisOptions{Prefix: testPrefix(t, c), FailClosed: true})
	ctx := context.Background()
	key := Check{"key", PerMinute(10)}
	tenant := Check{"tenant", PerMinute(2)}
	for range 2 {
		if r, err := l.AllowAll(ctx, key, tenant); err != nil || !r.Allowed {
			t.Fatalf("%+v %v", r, err)
		}
	}
	r, err := l.AllowAll(ctx, key, tenant)
	if err != nil || r.Allowed {
		t.Fatalf("%+v %v", r, err)
	}
	if r.RetryAfter < 29*time.Second || r.RetryAfter > 30*time.Second || r.ResetAfter < 59*time.Second {
		t.Fatalf("peek rejection %+v, want RetryAfter about 30s and ResetAfter about 60s", r)
	}
}

// unreachable is a client for a port nothing listens on, failing fast.
func unreachable(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:        "127.0.0.1:1",
		DialTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisFailOpen(t *testing.T) {
	var logs bytes.Buffer
	l := NewRedis(unreachable(t), RedisOptions{
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		LogEvery: time.Hour,
	})
	ctx := context.Background()
	for range 5 {
		r, err := l.Allow(ctx, "k", PerMinute(1))
		if err != nil || !r.Allowed || !r.Degraded || r.Limit != PerMinute(1) {
			t.Fatalf("Allow: %+v %v, want allowed and degraded", r, err)
		}
		r, err = l.AllowAll(ctx, Check{"k", PerMinute(1)}, Check{"t", PerMinute(1)})
		if err != nil || !r.Allowed || !r.Degraded {
			t.Fatalf("AllowAll: %+v %v, want allowed and degraded", r, err)
		}
	}
	if n := strings.Count(logs.String(), "fail open"); n != 1 {
		t.Fatalf("%d warnings for 10 failures, want 1 (rate-limited logging):\n%s", n, logs.String())
	}
}

func TestRedisFailOpenLogsAgainAfterInterval(t *testing.T) {
	var logs bytes.Buffer
	l := NewRedis(unreachable(t), RedisOptions{
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		LogEvery: 50 * time.Millisecond,
	})
	_, _ = l.Allow(context.Background(), "k", PerMinute(1))
	_, _ = l.Allow(context.Background(), "k", PerMinute(1))
	time.Sleep(60 * time.Millisecond)
	_, _ = l.Allow(context.Background(), "k", PerMinute(1))
	out := logs.String()
	if n := strings.Count(out, "fail open"); n != 2 || !strings.Contains(out, "suppressed=1") {
		t.Fatalf("want 2 warnings, the second counting 1 suppressed:\n%s", out)
	}
}

func TestRedisFailClosed(t *testing.T) {
	var logs bytes.Buffer
	l := NewRedis(unreachable(t), RedisOptions{FailClosed: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	r, err := l.Allow(ctx, "k", PerMinute(1))
	if !errors.Is(err, ErrUnavailable) || r.Allowed {
		t.Fatalf("Allow: %+v %v, want ErrUnavailable", r, err)
	}
	r, err = l.AllowAll(ctx, Check{"k", PerMinute(1)}, Check{"t", PerMinute(1)})
	if !errors.Is(err, ErrUnavailable) || r.Allowed {
		t.Fatalf("AllowAll: %+v %v, want ErrUnavailable", r, err)
	}
}

// A caller that gave up is neither an outage to log nor a request to let through.
func TestRedisCanceledContextIsNotAnOutage(t *testing.T) {
	var logs bytes.Buffer
	l := NewRedis(unreachable(t), RedisOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err := l.Allow(ctx, "k", PerMinute(1))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) || r.Allowed || r.Degraded {
		t.Fatalf("%+v %v, want context.Canceled", r, err)
	}
	if logs.Len() != 0 {
		t.Fatalf("logged: %s", logs.String())
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	c := testRedis(b)
	l := NewRedis(c, RedisOptions{Prefix: testPrefix(b, c), FailClosed: true})
	keys, _ := benchNames()
	lim := PerMinute(1 << 30)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.Allow(context.Background(), keys[i%len(keys)], lim); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkRedisAllowAll(b *testing.B) {
	c := testRedis(b)
	l := NewRedis(c, RedisOptions{Prefix: testPrefix(b, c), FailClosed: true})
	keys, tenants := benchNames()
	lim := PerMinute(1 << 30)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, err := l.AllowAll(context.Background(),
				Check{keys[i%len(keys)], lim}, Check{tenants[i%len(tenants)], lim})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
