package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
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
	if aerr := c.authenticate(); aerr != nil {
		return aerr
	}
	if aerr := c.authorize(); aerr != nil {
		return aerr
	}
	// The body is read now (not before the key was checked: strangers do not get to make
	// us read 256 KiB) because the visitor limit needs its session id; its errors are
	// reported after the limits and quota, in the contract's order.
	in, bodyErr := c.parseBody()
	if aerr := c.admit(in, bodyErr); aerr != nil {
		return aerr
	}
	if bodyErr != nil {
		return bodyErr
	}
	return c.execute(in)
}

// authenticate verifies the key (signature, cached row, liveness) and its scope: a secret
// key needs invoke, a publishable one widget:invoke.
func (c *call) authenticate() *apiError {
	key, kerr := extractKey(c.r)
	if kerr != nil {
		return unauthenticated(kerr)
	}
	rec, _, err := c.g.d.Verifier.Verify(c.r.Context(), key)
	if err != nil {
		return verifyError(err)
	}
	c.rec, c.verified = rec, true
	if idem := c.r.Header.Get("Idempotency-Key"); idem != "" && validIdempotencyKey(idem) {
		c.requestID = idempotentRequestID(rec.ID, idem)
		c.w.Header().Set("X-Request-Id", c.requestID)
	}
	scope := apikey.ScopeInvoke
	if rec.Kind == apikey.KindPublishable {
		scope = apikey.ScopeWidgetInvoke
	}
	if !rec.Allows(scope) {
		return forbidden(fmt.Sprintf("this key does not carry the %s scope", scope))
	}
	return nil
}

// authorize loads the key's config and checks where the call comes from: the compat
// route's path must name the key's config, and publishable keys, which live in web pages,
// may only be used from the config's origins.
func (c *call) authorize() *apiError {
	if aerr := c.resolve(); aerr != nil {
		return aerr
	}
	t := c.target
	allowOrigin(c.w.Header(), c.origin, t.AllowedOrigins)
	if c.format == formatCompat && c.pathConfig != string(c.rec.ConfigID) {
		return forbidden("this key does not belong to this flow")
	}
	if c.rec.Kind == apikey.KindPublishable {
		if c.origin == "" {
			return forbidden("a publishable key may only be used from a browser on an allowed origin")
		}
		if !originAllowed(c.origin, t.AllowedOrigins) {
			return forbidden("origin not allowed for this key")
		}
	}
	return nil
}

// admit spends the rate budgets, then checks the subscription, the agent's runtime flow
// and the monthly quota, all before Langflow is called.
func (c *call) admit(in callInput, bodyErr *apiError) *apiError {
	if aerr := c.limit(in, bodyErr); aerr != nil {
		return aerr
	}
	t := c.target
	if !t.Active() {
		return newError(http.StatusConflict, CodeSubscriptionInactive, "the subscription of this agent is not active", nil)
	}
	if t.RuntimeFlowID == "" {
		return newError(http.StatusConflict, CodeAgentNotProvisioned, "the agent is not deployed yet", nil)
	}
	return c.quota()
}

// execute validates what is left of the request, calls Langflow, meters and answers.
func (c *call) execute(in callInput) *apiError {
	if idem := c.r.Header.Get("Idempotency-Key"); idem != "" {
		if !validIdempotencyKey(idem) {
			return badRequest("Idempotency-Key must be 1-128 characters of [A-Za-z0-9._:-]")
		}
		if aerr := c.replayed(); aerr != nil {
			return aerr
		}
	}
	t := c.target
	tweaks, terr := buildTweaks(t, in.tweaks, in.user)
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
	res, err := c.g.d.Runtime.Run(c.r.Context(), t.RuntimeFlowID, req)
	if err != nil {
		return runtimeError(err)
	}
	// A 2xx means the record is committed.
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

// replayed refuses a call whose Idempotency-Key was already answered: its usage record
// exists, so running the agent again would be a free call. (Two replays racing each
// other can both run; only one is recorded. Answers are not stored for replay.)
func (c *call) replayed() *apiError {
	if c.g.d.Replays == nil {
		return nil
	}
	seen, err := c.g.d.Replays.Seen(c.r.Context(), c.requestID)
	if err != nil {
		return newError(http.StatusServiceUnavailable, CodeRuntimeUnavailable, "the service is temporarily unavailable", err)
	}
	if seen {
		return newError(http.StatusConflict, CodeIdempotentReplay, "this Idempotency-Key was already used; send a new key for a new call", nil)
	}
	return nil
}
