package harness

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

// Target is one thing to drive: the same request shape every time, so targets are
// compared on equal work.
type Target struct {
	Name   string
	URL    string
	Body   []byte
	Header http.Header
	// TrackIDs keeps the X-Request-Id of every 2xx answer, to check each one against
	// usage_records afterwards.
	TrackIDs bool
}

// Result is one run's measurements. Latencies are kept whole and sorted at the end
// (HDR-style percentiles without the histogram: a few hundred thousand durations fit in
// memory easily).
type Result struct {
	Target, Mode string
	Elapsed      time.Duration
	Lat          []time.Duration
	OK, Errs     int // 2xx, and everything else (non-2xx or no answer)
	Dropped      int // open loop only: sends skipped because too many were in flight
	Statuses     map[int]int
	FirstErr     string
	IDs          []string // X-Request-Id of 2xx answers (TrackIDs only)
}

// RPS is the offered requests per second that got an answer or an error.
func (r *Result) RPS() float64 { return float64(r.OK+r.Errs) / r.Elapsed.Seconds() }

// Pct is the p-th percentile latency (nearest rank).
func (r *Result) Pct(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	i := int(float64(len(r.Lat))*p/100+0.5) - 1
	i = max(0, min(i, len(r.Lat)-1))
	return r.Lat[i]
}

// NewClient keeps a pool as large as the concurrency so the generator never measures its
// own reconnects; Proxy is nil so an HTTP_PROXY in the environment cannot route loopback
// traffic elsewhere.
func NewClient(conns int) *http.Client {
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

// Do sends one request and reads the whole answer (so the connection is reused and the
// server's full write is part of the latency).
func Do(ctx context.Context, c *http.Client, t *Target) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return 0, "", err
	}
	for k, v := range t.Header {
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
	res *Result
}

func newCollector(name, mode string) *collector {
	return &collector{res: &Result{Target: name, Mode: mode, Statuses: map[int]int{}}}
}

func (c *collector) add(lat []time.Duration, ids []string, codes map[int]int, ok, errs int, firstErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Lat = append(c.res.Lat, lat...)
	c.res.IDs = append(c.res.IDs, ids...)
	c.res.OK += ok
	c.res.Errs += errs
	for k, v := range codes {
		c.res.Statuses[k] += v
	}
	if c.res.FirstErr == "" {
		c.res.FirstErr = firstErr
	}
}

func (c *collector) finish(elapsed time.Duration) *Result {
	r := c.res
	r.Elapsed = elapsed
	sort.Slice(r.Lat, func(i, j int) bool { return r.Lat[i] < r.Lat[j] })
	return r
}

// ClosedLoop runs `workers` goroutines that each send the next request as soon as the
// previous answer arrives, until d has passed: the maximum throughput at that
// concurrency.
func ClosedLoop(ctx context.Context, c *http.Client, t Target, workers int, d time.Duration) *Result {
	col := newCollector(t.Name, fmt.Sprintf("closed c=%d", workers))
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
				code, id, err := Do(ctx, c, &t)
				lat = append(lat, time.Since(t0))
				codes[code]++
				switch {
				case err == nil && code/100 == 2:
					ok++
					if t.TrackIDs {
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

// MaxInFlight bounds the open loop's goroutines: when the target stalls, the generator
// skips sends (counted as dropped) instead of growing without bound.
const MaxInFlight = 4096

// Answer is one open-loop call's outcome, for tools that need more than percentiles.
type Answer struct {
	Target   int // index into the targets
	Code     int
	ID       string // X-Request-Id
	Err      error
	Sched    time.Time // when the call was due
	Answered time.Time // when its whole answer had been read
}

// OpenLoop sends at a fixed rate for d whatever the answers do, cycling through targets
// (which must share a name for the result). Each latency is measured from the request's
// scheduled time, not from when it was actually sent, so a stalled target (or
// generator) shows up in the percentiles instead of silently lowering the offered rate
// (coordinated omission). onAnswer, when not nil, sees every answer (from many
// goroutines at once).
func OpenLoop(ctx context.Context, c *http.Client, targets []Target, rate int, d time.Duration, onAnswer func(Answer)) *Result {
	col := newCollector(targets[0].Name, fmt.Sprintf("open %d/s", rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / interval)
	sem := make(chan struct{}, MaxInFlight)
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
		go func(ti int, at time.Time) {
			defer wg.Done()
			defer func() { <-sem }()
			t := &targets[ti]
			code, id, err := Do(ctx, c, t)
			now := time.Now()
			lat := now.Sub(at)
			if onAnswer != nil {
				onAnswer(Answer{Target: ti, Code: code, ID: id, Err: err, Sched: at, Answered: now})
			}
			ok, errs, fe := 0, 0, ""
			var ids []string
			if err == nil && code/100 == 2 {
				ok = 1
				if t.TrackIDs {
					ids = []string{id}
				}
			} else {
				errs = 1
				fe = fmt.Sprintf("status %d err %v", code, err)
			}
			col.add([]time.Duration{lat}, ids, map[int]int{code: 1}, ok, errs, fe)
		}(i%len(targets), at)
	}
	wg.Wait()
	r := col.finish(time.Since(start))
	r.Dropped = dropped
	r.Errs += dropped
	return r
}
