package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
)

// format is the wire dialect of a route: the gateway's own, or Langflow's.
type format int

const (
	formatNative format = iota
	formatCompat
)

// call is one invoke going through the pipeline.
type call struct {
	g         *Gateway
	w         http.ResponseWriter
	r         *http.Request
	format    format
	start     time.Time
	requestID string
	origin    string
	// pathConfig is the config named in the compat route's path.
	pathConfig string

	// Set as the pipeline advances.
	rec      apikey.Record
	verified bool
	target   *Target
	input    callInput
	// streamed is the text already sent to the caller as token events.
	streamed strings.Builder
	sse      *sseWriter
}

func (g *Gateway) serveInvoke(w http.ResponseWriter, r *http.Request) {
	g.serve(w, r, formatNative)
}

func (g *Gateway) serveCompat(w http.ResponseWriter, r *http.Request) {
	g.serve(w, r, formatCompat)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, f format) {
	c := &call{
		g: g, w: w, r: r, format: f, start: g.d.Now(),
		requestID: g.requestID(r), origin: r.Header.Get("Origin"),
		pathConfig: r.PathValue("config_id"),
	}
	w.Header().Set("X-Request-Id", c.requestID)
	if err := c.run(); err != nil {
		c.fail(err)
	}
}

// requestID is the id of the call: its usage record's unique key, echoed in the body and
// in X-Request-Id. The server middleware's id is used when it generated it; an id the
// caller chose (sent as X-Request-Id and adopted by the middleware) is not, because a
// caller repeating one would make every call after the first an unbilled "replay".
// Deliberate replays use Idempotency-Key, which is scoped to the key.
func (g *Gateway) requestID(r *http.Request) string {
	id := g.d.RequestID(r.Context())
	if id != "" && id != r.Header.Get("X-Request-Id") && len(id) <= 100 {
		return id
	}
	return "req_" + rand.Text()
}

// run is the pipeline. The order is the contract: nothing is spent (rate budget, quota,
// Langflow) for a caller that a cheaper check would have refused.
func (c *call) run() *apiError {
	g, ctx := c.g, c.r.Context()

	// 1. The key: signature, then the row (cached), then liveness.
	key, kerr := extractKey(c.r)
	if kerr != nil {
		return unauthenticated(kerr)
	}
	rec, _, err := g.d.Verifier.Verify(ctx, key)
	if err != nil {
		return verifyError(err)
	}
	c.rec, c.verified = rec, true
	if idem := c.r.Header.Get("Idempotency-Key"); idem != "" && validIdempotencyKey(idem) {
		c.requestID = idempotentRequestID(rec.ID, idem)
		c.w.Header().Set("X-Request-Id", c.requestID)
	}

	// 2. Scope: a secret key needs invoke, a publishable one widget:invoke.
	scope := apikey.ScopeInvoke
	if rec.Kind == apikey.KindPublishable {
		scope = apikey.ScopeWidgetInvoke
	}
	if !rec.Allows(scope) {
		return forbidden(fmt.Sprintf("this key does not carry the %s scope", scope))
	}

	// 3. The config the key was minted for.
	if aerr := c.resolve(); aerr != nil {
		return aerr
	}
	t := c.target
	allowOrigin(c.w.Header(), c.origin, t.AllowedOrigins)
	if c.format == formatCompat && c.pathConfig != string(rec.ConfigID) {
		return forbidden("this key does not belong to this flow")
	}

	// 4. Publishable keys live in web pages: only the config's origins may use them.
	if rec.Kind == apikey.KindPublishable {
		if c.origin == "" {
			return forbidden("a publishable key may only be used from a browser on an allowed origin")
		}
		if !originAllowed(c.origin, t.AllowedOrigins) {
			return forbidden("origin not allowed for this key")
		}
	}

	// The body is read now (not before the key was checked: strangers do not get to make
	// us read 256 KiB) because the visitor limit needs its session id; its errors are
	// reported after the limits and quota, in the contract's order.
	in, bodyErr := c.parseBody()

	// 5. Rate limits.
	if aerr := c.limit(in, bodyErr); aerr != nil {
		return aerr
	}

	// 6. The subscription, then the agent's runtime flow.
	if !t.Active() {
		return newError(http.StatusConflict, CodeSubscriptionInactive, "the subscription of this agent is not active", nil)
	}
	if t.RuntimeFlowID == "" {
		return newError(http.StatusConflict, CodeAgentNotProvisioned, "the agent is not deployed yet", nil)
	}

	// 7. Monthly quota, before Langflow is called.
	if aerr := c.quota(); aerr != nil {
		return aerr
	}

	// 8. The body.
	if bodyErr != nil {
		return bodyErr
	}
	if idem := c.r.Header.Get("Idempotency-Key"); idem != "" && !validIdempotencyKey(idem) {
		return badRequest("Idempotency-Key must be 1-128 characters of [A-Za-z0-9._:-]")
	}
	tweaks, terr := buildTweaks(t, in.tweaks)
	if terr != nil {
		if terr.forbidden {
			return forbidden(terr.msg)
		}
		return badRequest(terr.msg)
	}
	c.input = in
	if c.input.session == "" {
		c.input.session = rand.Text()
	}

	// 9. Langflow.
	req := langflow.RunRequest{
		InputValue: in.input,
		InputType:  "chat",
		OutputType: "chat",
		Tweaks:     tweaks,
		SessionID:  langflowSession(t, c.input.session),
	}
	if in.stream {
		return c.runStream(req)
	}
	res, err := g.d.Runtime.Run(ctx, t.RuntimeFlowID, req)
	if err != nil {
		return runtimeError(err)
	}
	// 10. Meter, then answer: a 2xx means the record is committed.
	if aerr := c.recordSuccess(res); aerr != nil {
		return aerr
	}
	c.writeSuccess(res)
	return nil
}

// langflowSession namespaces the caller's session by tenant and config: Langflow keys chat
// memory by session id alone, so two tenants (or two configs of one tenant) choosing the
// same session id must still never read each other's history.
func langflowSession(t *Target, session string) string {
	return string(t.TenantID) + ":" + string(t.ConfigID) + ":" + session
}

// resolve loads the key's config.
func (c *call) resolve() *apiError {
	t, err := c.g.d.Resolver.Resolve(c.r.Context(), c.rec.ConfigID)
	switch {
	case errors.Is(err, ErrConfigNotFound):
		return newError(http.StatusNotFound, CodeNotFound, "agent configuration not found", err)
	case errors.Is(err, context.Canceled):
		return canceled(err)
	case err != nil:
		return unavailable("the agent configuration could not be loaded, try again", err)
	case t.TenantID != c.rec.TenantID:
		// The key row and the config disagree about the tenant: never serve across
		// tenants, and never say more than "not found".
		return newError(http.StatusNotFound, CodeNotFound, "agent configuration not found",
			fmt.Errorf("key tenant %s does not own config %s", c.rec.TenantID, t.ConfigID))
	}
	c.target = &t
	return nil
}

// parseBody reads and validates the body for the route's dialect.
func (c *call) parseBody() (callInput, *apiError) {
	raw, aerr := readBody(c.r, c.g.d.MaxBodyBytes)
	if aerr != nil {
		return callInput{}, aerr
	}
	if c.format == formatCompat {
		in, aerr := parseCompat(raw, c.g.d.MaxInputBytes)
		in.stream = c.r.URL.Query().Get("stream") == "true"
		return in, aerr
	}
	in, aerr := parseInvoke(raw, c.g.d.MaxInputBytes)
	in.stream = in.stream || wantsStream(c.r)
	return in, aerr
}

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

// fail meters a failed call and answers it.
func (c *call) fail(e *apiError) {
	c.meterFailure(e)
	c.logFailure(e)
	if e.status == statusClientClosed {
		return // nobody is listening
	}
	if c.sse != nil && c.sse.started {
		c.sse.errorEvent(e)
		return
	}
	c.writeError(e)
}

func (c *call) logFailure(e *apiError) {
	level := slog.LevelInfo
	if e.status >= 500 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("request_id", c.requestID),
		slog.Int("status", e.status),
		slog.String("code", e.code),
	}
	if c.verified {
		attrs = append(attrs, slog.String("key_id", string(c.rec.ID)), slog.String("tenant_id", string(c.rec.TenantID)),
			slog.String("config_id", string(c.rec.ConfigID)))
	}
	if e.cause != nil {
		attrs = append(attrs, slog.String("reason", e.cause.Error()))
	}
	c.g.d.Logger.LogAttrs(c.r.Context(), level, "gateway: call refused or failed", attrs...)
}

// targetForMetering is the config a failed call is billed to. A call refused before its
// config was loaded (wrong scope) still got past key verification, so it is metered too:
// the config is loaded for that, from the cache as a rule.
func (c *call) targetForMetering() *Target {
	if c.target != nil || !c.verified {
		return c.target
	}
	t, err := c.g.d.Resolver.Resolve(context.WithoutCancel(c.r.Context()), c.rec.ConfigID)
	if err != nil || t.TenantID != c.rec.TenantID {
		return nil
	}
	return &t
}

// configIDForLog is what a log line names when no target exists.
func (c *call) configIDForLog() pulid.ID {
	if c.target != nil {
		return c.target.ConfigID
	}
	return c.rec.ConfigID
}
