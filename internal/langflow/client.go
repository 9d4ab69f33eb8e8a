// Package langflow is the client of the Langflow runtime: running flows
// (plain and streamed), creating and deleting flows, and probing health.
//
// Every failure is an *Error whose Kind (ErrBadRequest, ErrNotFound,
// ErrUpstream, ErrUnavailable, ErrTimeout, ErrStreamIncomplete, ErrCanceled)
// is stable and errors.Is-able, with a short sanitized Detail. Each Client
// owns a circuit breaker so a dead Langflow costs callers microseconds, not
// a connect timeout each.
package langflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults, sized for a gateway serving hundreds of concurrent invokes.
const (
	DefaultTimeout             = 60 * time.Second
	DefaultDialTimeout         = 5 * time.Second
	DefaultMaxConnsPerHost     = 256
	DefaultMaxResponseBytes    = 16 << 20
	DefaultMaxEventBytes       = 4 << 20
	DefaultBreakerFailures     = 5
	DefaultBreakerOpenDuration = 30 * time.Second
)

// Options configures a Client. Zero values take the defaults above.
type Options struct {
	// BaseURL of Langflow, e.g. "http://langflow:7860" (a path prefix is
	// kept: health endpoints are resolved against it too).
	BaseURL string
	// APIKey is sent as x-api-key on API calls. It is never logged and never
	// appears in errors (any echo of it in a Langflow detail is redacted).
	APIKey string

	// HTTPClient replaces the built-in client entirely (the transport
	// settings below are then ignored). Its Timeout should be zero: the
	// client applies Timeout per call through the context, which also
	// covers streams.
	HTTPClient *http.Client
	// MaxConnsPerHost and MaxIdleConnsPerHost bound the connection pool;
	// both default to 256 so concurrent invokes reuse connections instead
	// of queueing or re-dialing.
	MaxConnsPerHost     int
	MaxIdleConnsPerHost int
	// DialTimeout bounds connecting to Langflow (default 5s).
	DialTimeout time.Duration
	// DialContext overrides dialing (tests count dials with it).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Timeout bounds a whole Run, flow create/delete and health probes, and
	// is also the transport's ResponseHeaderTimeout (default 60s).
	Timeout time.Duration
	// StreamTimeout bounds a whole Stream (default: Timeout).
	StreamTimeout time.Duration

	// MaxResponseBytes caps a buffered response body (default 16 MiB).
	MaxResponseBytes int64
	// MaxEventBytes caps one stream line and one stream event (default
	// 4 MiB; the "end" event carries the whole result).
	MaxEventBytes int

	// Breaker configures the per-client circuit breaker.
	Breaker BreakerSettings
}

// String keeps the API key out of anything that prints Options with %v.
func (o Options) String() string {
	key := ""
	if o.APIKey != "" {
		key = "[redacted]"
	}
	return fmt.Sprintf("langflow.Options{BaseURL: %q, APIKey: %q, Timeout: %s}", o.BaseURL, key, o.Timeout)
}

// GoString is String for %#v.
func (o Options) GoString() string { return o.String() }

// BreakerSettings configures the circuit breaker. Only upstream failures
// count: 5xx answers, connect errors, timeouts, unparseable answers and
// truncated streams. 4xx answers and caller cancellations do not, because
// they say nothing about Langflow's health.
type BreakerSettings struct {
	// ConsecutiveFailures opens the breaker (default 5).
	ConsecutiveFailures uint32
	// OpenDuration is how long an open breaker rejects calls before letting
	// probes through (default 30s).
	OpenDuration time.Duration
	// HalfOpenRequests is how many probes may run while half-open; that many
	// consecutive successes close the breaker (default 1).
	HalfOpenRequests uint32
	// OnStateChange, if set, is told about transitions ("closed", "open",
	// "half-open"), e.g. to export a metric.
	OnStateChange func(from, to string)
}

// Client talks to one Langflow. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	apiKey    string
	http      *http.Client
	timeout   time.Duration
	streamTTL time.Duration
	maxBody   int64
	maxEvent  int
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	transport *http.Transport // nil when the caller supplied HTTPClient
	bodies    sync.Pool       // *bytes.Buffer, see readBody
}

// New builds a Client. It fails only on an unusable BaseURL.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("langflow: BaseURL must be an absolute http(s) URL, got %q", opts.BaseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	c := &Client{
		base:      u,
		apiKey:    opts.APIKey,
		timeout:   orDuration(opts.Timeout, DefaultTimeout),
		maxBody:   opts.MaxResponseBytes,
		maxEvent:  opts.MaxEventBytes,
		streamTTL: opts.StreamTimeout,
	}
	if c.streamTTL <= 0 {
		c.streamTTL = c.timeout
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxResponseBytes
	}
	if c.maxEvent <= 0 {
		c.maxEvent = DefaultMaxEventBytes
	}
	if opts.HTTPClient != nil {
		c.http = opts.HTTPClient
	} else {
		c.transport = newTransport(opts, c.timeout)
		c.http = &http.Client{Transport: c.transport}
	}

	bs := opts.Breaker
	failures := bs.ConsecutiveFailures
	if failures == 0 {
		failures = DefaultBreakerFailures
	}
	st := gobreaker.Settings{
		Name:        "langflow " + u.Host,
		MaxRequests: bs.HalfOpenRequests,
		Timeout:     orDuration(bs.OpenDuration, DefaultBreakerOpenDuration),
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
	}
	if cb := bs.OnStateChange; cb != nil {
		st.OnStateChange = func(_ string, from, to gobreaker.State) { cb(from.String(), to.String()) }
	}
	c.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return c, nil
}

func newTransport(opts Options, headerTimeout time.Duration) *http.Transport {
	maxConns := opts.MaxConnsPerHost
	if maxConns <= 0 {
		maxConns = DefaultMaxConnsPerHost
	}
	maxIdle := opts.MaxIdleConnsPerHost
	if maxIdle <= 0 {
		maxIdle = maxConns
	}
	dial := opts.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: orDuration(opts.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
		dial = d.DialContext
	} else if opts.DialTimeout > 0 {
		inner := dial
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
			defer cancel()
			return inner(ctx, network, addr)
		}
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxConnsPerHost:       maxConns,
		MaxIdleConnsPerHost:   maxIdle,
		MaxIdleConns:          maxIdle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   orDuration(opts.DialTimeout, DefaultDialTimeout),
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Close releases idle connections of the built-in transport.
func (c *Client) Close() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// BreakerState reports "closed", "open" or "half-open" (for readiness
// endpoints and metrics).
func (c *Client) BreakerState() string { return c.breaker.State().String() }

// redact removes the API key from text that came from Langflow, in case an
// error message echoes the key we sent.
func (c *Client) redact(s string) string {
	if len(c.apiKey) < 4 {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[redacted]")
}

// endpoint joins the base URL and an already-escaped API path.
func (c *Client) endpoint(path string, query string) string {
	s := c.base.String() + path
	if query != "" {
		s += "?" + query
	}
	return s
}

// callbackError marks an error returned by a caller's callback so the
// breaker ignores it and it reaches the caller unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// guard runs fn under the circuit breaker and converts whatever fn returns
// into an *Error (or the caller's own callback error).
func (c *Client) guard(ctx context.Context, op string, fn func() error) error {
	// Snapshot before Allow: a canceled probe must not close a half-open
	// breaker, because it proved nothing about Langflow.
	halfOpen := c.breaker.State() == gobreaker.StateHalfOpen
	done, err := c.breaker.Allow()
	if err != nil {
		return &Error{Kind: ErrUnavailable, Op: op, Detail: "circuit breaker open after repeated langflow failures", cause: err}
	}
	err = fn()
	if err == nil {
		done(true)
		return nil
	}
	var cbErr callbackError
	if errors.As(err, &cbErr) {
		done(true)
		return cbErr.err
	}
	le := classifyTransport(ctx, op, err, c.redact)
	done(!countsAsFailure(le, halfOpen))
	return le
}

// countsAsFailure decides what the breaker learns from an error: only
// evidence that Langflow itself is unhealthy.
func countsAsFailure(e *Error, halfOpen bool) bool {
	switch {
	case e.Kind == ErrCanceled:
		return halfOpen
	case e.Status >= 400 && e.Status < 500:
		return false
	case e.Kind == ErrBadRequest || e.Kind == ErrNotFound:
		return false
	default:
		return true
	}
}

// do sends one request and returns the response if it is 2xx; otherwise it
// reads the bounded body and returns an *Error with the parsed detail.
func (c *Client) do(ctx context.Context, op, method, path, query string, body []byte, accept string, withKey bool) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), rd)
	if err != nil {
		return nil, &Error{Kind: ErrBadRequest, Op: op, Detail: sanitize(err.Error(), c.redact)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if withKey && c.apiKey != "" {
		req.Header.Set("x-api-key", c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	// The error body only feeds a 200-character detail: 64 KiB is plenty.
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if rerr != nil && ctx.Err() != nil {
		return nil, rerr
	}
	return nil, &Error{
		Kind:   kindForStatus(resp.StatusCode),
		Op:     op,
		Status: resp.StatusCode,
		Detail: parseDetail(resp.StatusCode, resp.Header.Get("Content-Type"), raw, c.redact),
	}
}

// maxPooledBody is the largest body buffer readBody keeps for reuse; a rare
// huge answer should not stay pinned in the pool.
const maxPooledBody = 256 << 10

// readBody reads a whole 2xx body, refusing bodies over the limit rather
// than parsing a truncated document, and hands it to use. The bytes live in
// one of the client's reused buffers and are valid only until use returns:
// every caller decodes what it needs and drops the rest, and a fresh buffer
// per call (Langflow answers run to tens of KB) would be the largest thing
// an invoke hands the garbage collector.
func (c *Client) readBody(op string, r io.Reader, use func(raw []byte) error) error {
	buf, _ := c.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			c.bodies.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(io.LimitReader(r, c.maxBody+1)); err != nil {
		return err
	}
	if int64(buf.Len()) > c.maxBody {
		return &Error{Kind: ErrUpstream, Op: op, Detail: fmt.Sprintf("langflow response exceeds %d bytes", c.maxBody)}
	}
	return use(buf.Bytes())
}

// Health checks liveness: GET {base}/health answers 2xx. It bypasses the
// breaker so probes always report the real state.
func (c *Client) Health(ctx context.Context) error {
	return c.probe(ctx, "health", "/health", false)
}

// Ready checks readiness: GET {base}/health_check answers 2xx and its
// "status" (when present) is "ok". Langflow checks its database and chat
// service there and answers 500 when one fails.
func (c *Client) Ready(ctx context.Context) error {
	return c.probe(ctx, "ready", "/health_check", true)
}

func (c *Client) probe(ctx context.Context, op, path string, checkStatus bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// No API key: the health routes are public and the key should travel
	// only where it is needed.
	resp, err := c.do(ctx, op, http.MethodGet, path, "", nil, "application/json", false)
	if err != nil {
		le := classifyTransport(ctx, op, err, c.redact)
		if le.Status != 0 && le.Kind != ErrTimeout {
			// Any non-2xx from a probe means "not healthy", whatever the code.
			le.Kind = ErrUnavailable
		}
		return le
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return classifyTransport(ctx, op, err, c.redact)
	}
	if checkStatus {
		var body struct {
			Status *string `json:"status"`
		}
		if json.Unmarshal(raw, &body) == nil && body.Status != nil && *body.Status != "ok" {
			return &Error{Kind: ErrUnavailable, Op: op, Status: resp.StatusCode, Detail: parseDetail(resp.StatusCode, "application/json", raw, c.redact)}
		}
	}
	return nil
}
