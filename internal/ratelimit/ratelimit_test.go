package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The properties every backend must have, run against Memory and Redis (see memory_test.go and
// redis_test.go for the factories). newLimiter returns a fresh limiter and a key namespace that no
// other test uses.
type factory func(t *testing.T) (Limiter, string)

func runConformance(t *testing.T, newLimiter factory) {
	t.Run("ExactUnderConcurrency", func(t *testing.T) {
		l, ns := newLimiter(t)
		allowed, rejected := hammer(t, 200, func(context.Context) (Result, error) {
			return l.Allow(context.Background(), ns+"k", PerMinute(50))
		})
		if allowed != 50 || rejected != 150 {
			t.Fatalf("allowed %d rejected %d, want exactly 50 and 150", allowed, rejected)
		}
	})

	t.Run("KeyIsolation", func(t *testing.T) {
		l, ns := newLimiter(t)
		ctx := context.Background()
		spend(t, l, ns+"a", PerMinute(3), 3)
		if r := mustAllow(t, l, ns+"a", PerMinute(3)); r.Allowed {
			t.Fatal("a: 4th request of 3/min allowed")
		}
		r, err := l.Allow(ctx, ns+"b", PerMinute(3))
		if err != nil || !r.Allowed || r.Remaining != 2 {
			t.Fatalf("b after a was exhausted: %+v %v, want allowed with 2 remaining", r, err)
		}
	})

	t.Run("RejectionHasRetryAfter", func(t *testing.T) {
		l, ns := newLimiter(t)
		lim := PerMinute(2)
		first := mustAllow(t, l, ns+"k", lim)
		if !first.Allowed || first.Remaining != 1 || first.RetryAfter != 0 || first.Degraded {
			t.Fatalf("first: %+v", first)
		}
		if first.ResetAfter <= 0 || first.ResetAfter > 30*time.Second {
			t.Fatalf("first ResetAfter %v, want (0, 30s]", first.ResetAfter)
		}
		mustAllow(t, l, ns+"k", lim)
		r := mustAllow(t, l, ns+"k", lim)
		if r.Allowed || r.Remaining != 0 {
			t.Fatalf("third of 2/min: %+v", r)
		}
		// One request is worth 30s; a little of it has passed since the first.
		if r.RetryAfter < 29*time.Second || r.RetryAfter > 30*time.Second {
			t.Fatalf("RetryAfter %v, want about 30s", r.RetryAfter)
		}
		if r.Limit != lim {
			t.Fatalf("Limit %+v, want %+v", r.Limit, lim)
		}
	})

	t.Run("BurstDefaultsToRate", func(t *testing.T) {
		l, ns := newLimiter(t)
		lim := Limit{Rate: 4, Period: time.Minute}
		r := mustAllow(t, l, ns+"k", lim)
		if r.Remaining != 3 || r.Limit.Burst != 4 {
			t.Fatalf("%+v, want Remaining 3 and Burst 4", r)
		}
	})

	t.Run("InvalidLimit", func(t *testing.T) {
		l, ns := newLimiter(t)
		for _, lim := range []Limit{{}, {Rate: 1}, {Period: time.Second}, {Rate: 1, Period: time.Second, Burst: -1}, {Rate: 10, Period: 5}} {
			if _, err := l.Allow(context.Background(), ns+"k", lim); !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("Allow(%+v) error %v, want ErrInvalidLimit", lim, err)
			}
		}
		if _, err := l.AllowAll(context.Background(), Check{ns + "k", Limit{Rate: -1, Period: time.Second}}); !errors.Is(err, ErrInvalidLimit) {
			t.Errorf("AllowAll error %v, want ErrInvalidLimit", err)
		}
	})

	t.Run("AllowAllTenantRejectionKeepsKeyBudget", func(t *testing.T) {
		l, ns := newLimiter(t)
		ctx := context.Background()
		tenant := Check{ns + "tenant", PerMinute(2)}
		keyA := Check{ns + "key:a", PerMinute(5)}
		keyB := Check{ns + "key:b", PerMinute(5)}
		for i := range 2 {
			r, err := l.AllowAll(ctx, keyA, tenant)
			if err != nil || !r.Allowed {
				t.Fatalf("request %d: %+v %v", i, r, err)
			}
		}
		for range 3 {
			r, err := l.AllowAll(ctx, keyA, tenant)
			if err != nil || r.Allowed {
				t.Fatalf("tenant exhausted but allowed: %+v %v", r, err)
			}
			if r.Limit != tenant.Limit || r.RetryAfter <= 0 {
				t.Fatalf("rejection should describe the tenant limit with a wait: %+v", r)
			}
		}
		// Key a spent 2 of 5; the 3 tenant rejections must not have cost it anything.
		if r := mustAllow(t, l, keyA.Key, keyA.Limit); !r.Allowed || r.Remaining != 2 {
			t.Fatalf("key a after tenant rejections: %+v, want allowed with 2 remaining", r)
		}
		// And the tenant limit applies to the other keys of the tenant.
		if r, err := l.AllowAll(ctx, keyB, tenant); err != nil || r.Allowed {
			t.Fatalf("key b under exhausted tenant: %+v %v", r, err)
		}
	})

	t.Run("AllowAllKeyRejectionKeepsTenantBudget", func(t *testing.T) {
		l, ns := newLimiter(t)
		ctx := context.Background()
		tenant := Check{ns + "tenant", PerMinute(10)}
		noisy := Check{ns + "key:noisy", PerMinute(2)}
		quiet := Check{ns + "key:quiet", PerMinute(10)}
		allowed := 0
		for range 6 {
			r, err := l.AllowAll(ctx, noisy, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if r.Allowed {
				allowed++
			} else if r.Limit != noisy.Limit {
				t.Fatalf("rejection should describe the key limit: %+v", r)
			}
		}
		if allowed != 2 {
			t.Fatalf("noisy key allowed %d, want 2", allowed)
		}
		// The tenant spent 2 of 10, so another key of it gets 8.
		for i := range 8 {
			if r, err := l.AllowAll(ctx, quiet, tenant); err != nil || !r.Allowed {
				t.Fatalf("quiet request %d: %+v %v", i, r, err)
			}
		}
		if r, err := l.AllowAll(ctx, quiet, tenant); err != nil || r.Allowed {
			t.Fatalf("11th tenant request allowed: %+v %v", r, err)
		}
	})

	t.Run("AllowAllReportsMostRestrictive", func(t *testing.T) {
		l, ns := newLimiter(t)
		ctx := context.Background()
		key := Check{ns + "key", PerMinute(10)}
		tenant := Check{ns + "tenant", PerMinute(3)}
		r, err := l.AllowAll(ctx, key, tenant)
		if err != nil || !r.Allowed || r.Limit != tenant.Limit || r.Remaining != 2 {
			t.Fatalf("%+v %v, want the tenant limit with 2 remaining", r, err)
		}
		r, err = l.AllowAll(ctx, key, Check{ns + "none", Limit{}})
		if err != nil || !r.Allowed || r.Limit != key.Limit || r.Remaining != 8 {
			t.Fatalf("zero limit not skipped: %+v %v", r, err)
		}
		r, err = l.AllowAll(ctx)
		if err != nil || !r.Allowed || !r.Limit.IsZero() {
			t.Fatalf("no checks: %+v %v", r, err)
		}
	})

	t.Run("AllowAllExactUnderConcurrency", func(t *testing.T) {
		l, ns := newLimiter(t)
		tenant := Check{ns + "tenant", PerMinute(50)}
		var n atomic.Int64
		allowed, _ := hammer(t, 200, func(ctx context.Context) (Result, error) {
			key := Check{fmt.Sprintf("%skey:%d", ns, n.Add(1)%4), PerMinute(100)}
			return l.AllowAll(ctx, key, tenant)
		})
		if allowed != 50 {
			t.Fatalf("allowed %d, want exactly the tenant's 50", allowed)
		}
	})
}

// hammer runs n calls at once (released together) and counts the outcomes; any error or degraded
// result fails the test, since it would make the count meaningless.
func hammer(t *testing.T, n int, call func(context.Context) (Result, error)) (allowed, rejected int) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ok    atomic.Int64
		no    atomic.Int64
		errs  = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			r, err := call(context.Background())
			switch {
			case err != nil:
				errs <- err
			case r.Degraded:
				errs <- errors.New("degraded result")
			case r.Allowed:
				ok.Add(1)
			default:
				no.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return int(ok.Load()), int(no.Load())
}

func mustAllow(t *testing.T, l Limiter, key string, lim Limit) Result {
	t.Helper()
	r, err := l.Allow(context.Background(), key, lim)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func spend(t *testing.T, l Limiter, key string, lim Limit, n int) {
	t.Helper()
	for i := range n {
		if r := mustAllow(t, l, key, lim); !r.Allowed {
			t.Fatalf("request %d of %d rejected: %+v", i+1, n, r)
		}
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		want map[string]string
	}{
		{
			name: "allowed",
			r:    Result{Allowed: true, Limit: PerMinute(50), Remaining: 49, ResetAfter: 1200 * time.Millisecond},
			want: map[string]string{
				"RateLimit-Policy":    "50;w=60",
				"RateLimit":           "limit=50, remaining=49, reset=2",
				"RateLimit-Limit":     "50",
				"RateLimit-Remaining": "49",
				"RateLimit-Reset":     "2",
			},
		},
		{
			name: "rejected",
			r:    Result{Limit: PerMinute(50), RetryAfter: 1100 * time.Millisecond, ResetAfter: 59 * time.Second},
			want: map[string]string{
				"RateLimit-Policy":    "50;w=60",
				"RateLimit":           "limit=50, remaining=0, reset=59",
				"RateLimit-Limit":     "50",
				"RateLimit-Remaining": "0",
				"RateLimit-Reset":     "59",
				"Retry-After":         "2",
			},
		},
		{
			name: "rejected with a sub-second wait still says 1",
			r:    Result{Limit: Limit{Rate: 10, Period: 1500 * time.Millisecond}, RetryAfter: time.Millisecond},
			want: map[string]string{
				"RateLimit-Policy":    "10;w=2",
				"RateLimit":           "limit=10, remaining=0, reset=0",
				"RateLimit-Limit":     "10",
				"RateLimit-Remaining": "0",
				"RateLimit-Reset":     "0",
				"Retry-After":         "1",
			},
		},
		{
			name: "degraded",
			r:    Result{Allowed: true, Limit: PerMinute(50), Degraded: true},
			want: map[string]string{"RateLimit-Policy": "50;w=60"},
		},
		{
			name: "no limit",
			r:    Result{Allowed: true},
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			Headers(h, tt.r)
			if len(h) != len(tt.want) {
				t.Errorf("got %d headers %v, want %d", len(h), h, len(tt.want))
			}
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestMostRestrictive(t *testing.T) {
	a := Result{Allowed: true, Remaining: 5}
	b := Result{Allowed: true, Remaining: 2}
	c := Result{RetryAfter: time.Second}
	d := Result{RetryAfter: 3 * time.Second}
	if got := mostRestrictive([]Result{a, b}); got != b {
		t.Errorf("allowed: %+v, want fewest remaining", got)
	}
	if got := mostRestrictive([]Result{a, c, b, d}); got != d {
		t.Errorf("rejected: %+v, want longest wait", got)
	}
	if got := mostRestrictive(nil); !got.Allowed {
		t.Errorf("empty: %+v", got)
	}
}
