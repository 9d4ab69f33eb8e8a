package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// target is one thing to drive: the same request shape every time, so the
// gateway and the bare proxy are compared on equal work.
type target struct {
	name   string
	url    string
	body   []byte
	header http.Header
	// trackIDs keeps the X-Request-Id of every 2xx answer, to check each
	// one against usage_records afterwards.
	trackIDs bool
}

// result is one run's measurements. Latencies are kept whole and sorted at
// the end (HDR-style percentiles without the histogram: a few hundred
// thousand durations fit in memory easily).
type result struct {
	target, mode string
	elapsed      time.Duration
	lat          []time.Duration
	ok, errs     int // 2xx, and everything else (non-2xx or no answer)
	dropped      int // open loop only: sends skipped because too many were in flight
	statuses     map[int]int
	firstErr     string
	ids          []string // X-Request-Id of 2xx answers (trackIDs only)
}

func (r *result) rps() float64 { return float64(r.ok+r.errs) / r.elapsed.Seconds() }

func (r *result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p/100+0.5) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

// newClient keeps a pool as large as the concurrency so the generator
// never measures its own reconnects; Proxy is nil so an HTTP_PROXY in the
// environment cannot route loopback traffic elsewhere.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// do sends one request and reads the whole answer (so the connection is
// reused and the server's full write is part of the latency).
func do(ctx context.Context, c *http.Client, t target) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return 0, "", err
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id"), err
}

// collector merges the samples of many goroutines.
type collector struct {
	mu  sync.Mutex
	res *result
}

func newCollector(t target, mode string) *collector {
	return &collector{res: &result{target: t.name, mode: mode, statuses: map[int]int{}}}
}

func (c *collector) add(lat []time.Duration, ids []string, codes map[int]int, ok, errs int, firstErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.lat = append(c.res.lat, lat...)
	c.res.ids = append(c.res.ids, ids...)
	c.res.ok += ok
	c.res.errs += errs
	for k, v := range codes {
		c.res.statuses[k] += v
	}
	if c.res.firstErr == "" {
		c.res.firstErr = firstErr
	}
}

func (c *collector) finish(elapsed time.Duration) *result {
	r := c.res
	r.elapsed = elapsed
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	return r
}

// closedLoop runs `workers` goroutines that each send the next request as
// soon as the previous answer arrives, until d has passed: the maximum
// throughput at that concurrency.
func closedLoop(ctx context.Context, c *http.Client, t target, workers int, d time.Duration) *result {
	col := newCollector(t, fmt.Sprintf("closed c=%d", workers))
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ids []string
			codes := map[int]int{}
			ok, errs := 0, 0
			firstErr := ""
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				code, id, err := do(ctx, c, t)
				lat = append(lat, time.Since(t0))
				codes[code]++
				switch {
				case err == nil && code/100 == 2:
					ok++
					if t.trackIDs {
						ids = append(ids, id)
					}
				default:
					errs++
					if firstErr == "" {
						firstErr = fmt.Sprintf("status %d err %v", code, err)
					}
				}
			}
			col.add(lat, ids, codes, ok, errs, firstErr)
		}()
	}
	wg.Wait()
	return col.finish(time.Since(start))
}

// maxInFlight bounds the open loop's goroutines: when the target stalls,
// the generator skips sends (counted as dropped) instead of growing without
// bound.
const maxInFlight = 4096

// openLoop sends at a fixed rate for d whatever the answers do. Each
// latency is measured from the request's scheduled time, not from when it
// was actually sent, so a stalled target (or generator) shows up in the
// percentiles instead of silently lowering the offered rate (coordinated
// omission).
func openLoop(ctx context.Context, c *http.Client, t target, rate int, d time.Duration) *result {
	col := newCollector(t, fmt.Sprintf("open %d/s", rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / interval)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	dropped := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		select {
		case sem <- struct{}{}:
		default:
			dropped++
			continue
		}
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			defer func() { <-sem }()
			code, id, err := do(ctx, c, t)
			lat := time.Since(at)
			ok, errs, fe := 0, 0, ""
			var ids []string
			if err == nil && code/100 == 2 {
				ok = 1
				if t.trackIDs {
					ids = []string{id}
				}
			} else {
				errs = 1
				fe = fmt.Sprintf("status %d err %v", code, err)
			}
			col.add([]time.Duration{lat}, ids, map[int]int{code: 1}, ok, errs, fe)
		}(at)
	}
	wg.Wait()
	r := col.finish(time.Since(start))
	r.dropped = dropped
	r.errs += dropped
	return r
}
