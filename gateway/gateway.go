package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/ratelimit"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// KeyVerifier decides whether an API key may be used; *apikey.Verifier implements it.
type KeyVerifier interface {
	Verify(ctx context.Context, key string) (apikey.Record, apikey.Claims, error)
}

// QuotaCounter reports a config's month-to-date usage; *usage.QuotaCounter implements it.
type QuotaCounter interface {
	MonthToDate(ctx context.Context, tenantID, configID pulid.ID) (requests, tokens int64, err error)
}

// Runtime runs flows; *langflow.Client implements it.
type Runtime interface {
	Run(ctx context.Context, flowID string, req langflow.RunRequest) (langflow.RunResult, error)
	Stream(ctx context.Context, flowID string, req langflow.RunRequest, onToken func(chunk string) error) (langflow.RunResult, error)
	Ready(ctx context.Context) error
}

// ReplayChecker reports whether a usage record with the request id exists;
// *usage.Replays implements it.
type ReplayChecker interface {
	Seen(ctx context.Context, requestID string) (bool, error)
}

// Recorder stores usage events; *usage.Recorder implements it. Record must return nil only
// once the event is durable (or was a replay): the gateway answers 2xx only after that.
type Recorder interface {
	Record(ctx context.Context, ev usage.Event) error
}

var (
	_ KeyVerifier  = (*apikey.Verifier)(nil)
	_ QuotaCounter = (*usage.QuotaCounter)(nil)
	_ Runtime      = (*langflow.Client)(nil)
	_ Recorder     = (*usage.Recorder)(nil)
)

// Defaults of Deps' optional fields.
const (
	DefaultMaxInputBytes = 32 << 10
	DefaultMaxBodyBytes  = 256 << 10
	DefaultRecordTimeout = 10 * time.Second
	DefaultHealthTimeout = 2 * time.Second
	// DefaultVisitorRPM bounds one widget visitor (publishable keys): a person typing into a
	// chat box does not send more, and a script reusing a page's key is slowed down long
	// before it reaches the tenant's limit.
	DefaultVisitorRPM = 20
)

// Deps is everything the gateway needs. Verifier, Resolver, Limiter, Quota, Runtime and
// Recorder are required; the rest have defaults.
type Deps struct {
	Verifier KeyVerifier
	Resolver Resolver
	Limiter  ratelimit.Limiter
	Quota    QuotaCounter
	Runtime  Runtime
	Recorder Recorder
	// Replays tells whether a request id was already recorded; with it, a call repeating
	// an answered Idempotency-Key is refused instead of run again unbilled. Optional.
	Replays ReplayChecker
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now. It times calls and decides the quota month.
	Now func() time.Time
	// RequestID reads the request id the server's middleware put in the context (see
	// requestID for when it is used); nil or "" means the gateway makes one.
	RequestID func(ctx context.Context) string
	// VisitorLimit bounds each widget visitor of a publishable key; the zero value means
	// ratelimit.PerMinute(DefaultVisitorRPM).
	VisitorLimit ratelimit.Limit
	// MaxInputBytes caps the input text (default 32 KiB); MaxBodyBytes the whole body
	// (default 256 KiB, tweaks included).
	MaxInputBytes int
	MaxBodyBytes  int64
	// RecordTimeout bounds waiting for a usage record to commit (default 10s).
	RecordTimeout time.Duration
	// HealthTimeout bounds the runtime readiness probe of the health route (default 2s).
	HealthTimeout time.Duration
}

// Gateway serves the invoke routes. It is safe for concurrent use.
type Gateway struct {
	d Deps
}

// New checks deps and fills in defaults.
func New(d Deps) (*Gateway, error) {
	switch {
	case d.Verifier == nil, d.Resolver == nil, d.Limiter == nil, d.Quota == nil, d.Runtime == nil, d.Recorder == nil:
		return nil, errors.New("gateway: Verifier, Resolver, Limiter, Quota, Runtime and Recorder are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.RequestID == nil {
		d.RequestID = func(context.Context) string { return "" }
	}
	if d.VisitorLimit.IsZero() {
		d.VisitorLimit = ratelimit.PerMinute(DefaultVisitorRPM)
	}
	if d.MaxInputBytes <= 0 {
		d.MaxInputBytes = DefaultMaxInputBytes
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if int64(d.MaxInputBytes) > d.MaxBodyBytes {
		return nil, errors.New("gateway: MaxInputBytes exceeds MaxBodyBytes")
	}
	if d.RecordTimeout <= 0 {
		d.RecordTimeout = DefaultRecordTimeout
	}
	if d.HealthTimeout <= 0 {
		d.HealthTimeout = DefaultHealthTimeout
	}
	return &Gateway{d: d}, nil
}

// Endpoint is one route of the gateway, for a server that wraps each in its own
// instrumentation: mux.Handle(e.Pattern, instrument(e.Route, e.Handler)).
type Endpoint struct {
	// Pattern is an http.ServeMux pattern (method and path).
	Pattern string
	// Route is the low-cardinality name for logs and metrics.
	Route   string
	Handler http.Handler
}

// Route names.
const (
	RouteInvoke = "/api/agent-gateway/invoke/"
	RouteHealth = "/api/agent-gateway/health/"
	RouteCompat = "/api/v1/run/{config_id}"
)

// Endpoints lists the gateway's routes. The invoke and health routes answer with and
// without their trailing slash ("{$}" keeps the slashed form from matching subpaths).
func (g *Gateway) Endpoints() []Endpoint {
	invoke := http.HandlerFunc(g.serveInvoke)
	preflight := http.HandlerFunc(g.servePreflight)
	health := http.HandlerFunc(g.serveHealth)
	compat := http.HandlerFunc(g.serveCompat)
	compatPreflight := http.HandlerFunc(g.serveCompatPreflight)
	return []Endpoint{
		{"POST /api/agent-gateway/invoke/{$}", RouteInvoke, invoke},
		{"POST /api/agent-gateway/invoke", RouteInvoke, invoke},
		{"OPTIONS /api/agent-gateway/invoke/{$}", RouteInvoke, preflight},
		{"OPTIONS /api/agent-gateway/invoke", RouteInvoke, preflight},
		{"GET /api/agent-gateway/health/{$}", RouteHealth, health},
		{"GET /api/agent-gateway/health", RouteHealth, health},
		{"POST /api/v1/run/{config_id}", RouteCompat, compat},
		{"OPTIONS /api/v1/run/{config_id}", RouteCompat, compatPreflight},
	}
}

// Routes mounts every endpoint on mux.
func (g *Gateway) Routes(mux *http.ServeMux) {
	for _, e := range g.Endpoints() {
		mux.Handle(e.Pattern, e.Handler)
	}
}

// Handler is a mux holding only the gateway's routes.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	g.Routes(mux)
	return mux
}
