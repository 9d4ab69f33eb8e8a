package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/graph/generated"
	"github.com/gsvdev/agentregistry/graph/model"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/documents"
)

// MaxUploadBytes bounds a multipart GraphQL request: one document and its operation.
const MaxUploadBytes = documents.MaxSize + 64<<10

// Options configure the GraphQL server.
type Options struct {
	// Services are what mutations call (see Services).
	Services Services
	// LiveUsage feeds the usageStats subscription.
	LiveUsage LiveUsage
	// Links are the outside URLs (widget host, Waldur).
	Links Links

	MaxComplexity int
	MaxDepth      int
	// MaxTokens bounds a document's length in GraphQL tokens; zero takes the default
	// (DefaultMaxTokens).
	MaxTokens     int
	MaxPageSize   int
	Introspection bool
	// OriginAllowed reports whether a browser page from r's Origin may open a websocket:
	// the portal's CORS policy, so that HTTP and websockets admit the same origins,
	// scheme included. Same-origin pages and clients that send no Origin (not browsers)
	// always may; nil admits only those.
	OriginAllowed func(r *http.Request) bool
	// Authenticate turns a connection_init payload into a context with a Viewer.
	Authenticate func(ctx context.Context, payload map[string]any) (context.Context, error)
	// RefreshViewer re-reads a websocket viewer's tenant memberships as its operations
	// start (auth.Authenticator.Refresh); nil keeps those of connection_init. A connection
	// reuses what it read for WSMembershipTTL (default 5s), so that the subscriptions a
	// dashboard opens together share one lookup.
	RefreshViewer   func(ctx context.Context, v *auth.Viewer) (*auth.Viewer, error)
	WSMembershipTTL time.Duration
	// Websocket limits; zero values take the defaults (10s, 15s, 20, 10).
	WSInitTimeout time.Duration
	// WSPingInterval is how often the server pings each connection: graphql-transport-ws
	// clients must answer with a pong within two intervals or are disconnected (a peer
	// that vanished without closing would otherwise hold its subscriptions and its place
	// under MaxConnectionsPerUser until TCP gives up); legacy graphql-ws clients get the
	// protocol's one-way keep-alive ("ka").
	WSPingInterval          time.Duration
	MaxSubscriptionsPerConn int
	MaxConnectionsPerUser   int
	// ObserveOperation records an operation's outcome (metrics); may be nil. For the
	// usageStats subscription it runs once per rendering of a message, which subscribers
	// sending the same request share (sharedrender.go), not once per message sent.
	ObserveOperation func(name, opType string, d time.Duration, failed bool)
	Logger           *slog.Logger
}

// DefaultMaxTokens is the longest accepted document, in tokens: five times GraphiQL's
// introspection query (under 200), and far above the portal's queries. Validating a
// document of repeated fields took 43 ms at 1,000 tokens and 177 ms at 2,000.
const DefaultMaxTokens = 1000

// NewHandler returns the /graphql handler: POST, GET (queries only) and websocket
// (graphql-transport-ws and the legacy graphql-ws subprotocol) transports.
func NewHandler(client *ent.Client, opts Options) http.Handler {
	cfg := generated.Config{Resolvers: NewResolver(client, opts.Services, opts.LiveUsage, opts.Links)}
	cfg.Directives.HasRole = hasRole
	srv := handler.New(generated.NewExecutableSchema(cfg))

	guard := newWSGuard(coderWebsocket{AcceptOptions: websocket.AcceptOptions{
		// The guard checks the Origin (wsGuard.Middleware), scheme included, which
		// coder/websocket's host patterns cannot.
		InsecureSkipVerify: true,
	}}, opts.OriginAllowed, wsLimits{
		InitTimeout:          orDefault(opts.WSInitTimeout, 10*time.Second),
		MaxSubscriptions:     orDefault(opts.MaxSubscriptionsPerConn, 20),
		MaxConnectionsPerSub: orDefault(opts.MaxConnectionsPerUser, 10),
		MembershipTTL:        orDefault(opts.WSMembershipTTL, 5*time.Second),
	})
	ping := orDefault(opts.WSPingInterval, 15*time.Second)
	srv.AddTransport(transport.Websocket{
		Implementation: guard,
		InitFunc:       wsInit(opts.Authenticate, guard),
		CloseFunc:      wsClosed,
		// The guard enforces the init timeout with the protocol's own close code (4408).
		KeepAlivePingInterval: ping, // legacy graphql-ws
		PingPongInterval:      ping, // graphql-transport-ws: a missing pong closes the connection
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.AddTransport(transport.MultipartForm{MaxUploadSize: MaxUploadBytes, MaxMemory: 4 << 20})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	// Validation runs before any extension and costs more than linear time in the document
	// (gqlparser's overlapping-fields rule; see DefaultMaxTokens), so the only bound that
	// comes early enough is the parser's.
	srv.SetParserTokenLimit(orDefault(opts.MaxTokens, DefaultMaxTokens))
	if opts.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	srv.Use(nullConditions{})                                                // before anything that collects fields
	srv.Use(expansionLimit{max: max(minExpandedFields, opts.MaxComplexity)}) // before the walks whose cost it bounds
	srv.Use(extension.FixedComplexityLimit(opts.MaxComplexity))
	srv.Use(depthLimit{max: opts.MaxDepth})
	srv.SetErrorPresenter(presentError(opts.Logger))
	srv.SetRecoverFunc(recoverPanic(opts.Logger))
	srv.Use(subscriptionIDs{})
	if opts.RefreshViewer != nil {
		srv.AroundOperations(refreshViewer(opts.RefreshViewer, presentError(opts.Logger)))
	}
	srv.AroundOperations(shareRenders{record: opts.ObserveOperation}.aroundOperations)
	srv.AroundFields(requireViewer)
	srv.AroundFields(capPageSize(opts.MaxPageSize))
	if opts.ObserveOperation != nil {
		srv.AroundResponses(observe(opts.ObserveOperation))
	}
	return guard.Middleware(srv)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// requireViewer answers every root field except introspection with UNAUTHENTICATED when
// the request carries no valid token. Checking root fields (not the whole operation)
// lets GraphiQL load the schema before a token is pasted, when introspection is on. It is
// a field middleware (not a root-field one) so that the error nulls non-null fields the
// way the GraphQL spec says.
func requireViewer(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Parent == nil || fc.Parent.Parent != nil || auth.FromContext(ctx) != nil ||
		strings.HasPrefix(fc.Field.Name, "__") {
		return next(ctx)
	}
	err := auth.AuthError(ctx)
	if err == nil || !errors.Is(err, auth.ErrUnavailable) {
		err = errUnauthenticated
	}
	return nil, err
}

// refreshViewer gives each operation of a websocket the viewer's memberships of now. The
// connection authenticated once, at connection_init, and may live for as long as its
// token; an HTTP request authenticates each time and passes through untouched. An
// operation started after its person left a tenant is then refused like a request, while
// the ones already running end with the token.
func refreshViewer(refresh func(context.Context, *auth.Viewer) (*auth.Viewer, error), present graphql.ErrorPresenterFunc) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		slot, _ := ctx.Value(guardSlotKey{}).(*guardSlot)
		v := auth.FromContext(ctx)
		if slot == nil || slot.conn == nil || v == nil {
			return next(ctx)
		}
		fresh, err := slot.conn.memberships(ctx, v, refresh)
		if err != nil {
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{present(ctx, err)}})
		}
		return next(auth.NewContext(ctx, fresh))
	}
}

// hasRole implements @hasRole: platform admins pass every role check.
func hasRole(ctx context.Context, _ any, next graphql.Resolver, role model.Role) (any, error) {
	v := auth.FromContext(ctx)
	if v == nil {
		return nil, errUnauthenticated
	}
	if !v.IsAdmin() && !v.HasRole(role.AuthRole()) {
		return nil, errForbidden
	}
	return next(ctx)
}

// wsInit authenticates a websocket in connection_init (failure closes with 4403), admits
// it under the per-person connection cap (4429 when over) and arms the close at the
// token's expiry: a subscription never outlives the credential that opened it.
func wsInit(authenticate func(context.Context, map[string]any) (context.Context, error), guard *wsGuard) transport.WebsocketInitFunc {
	return func(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		if authenticate == nil {
			return transport.WithWebsocketCloseCode(ctx, CloseForbidden), nil, errors.New("forbidden")
		}
		authed, err := authenticate(ctx, payload)
		v := auth.FromContext(authed)
		if err != nil || v == nil {
			return transport.WithWebsocketCloseCode(ctx, CloseForbidden), nil, errors.New("forbidden")
		}
		release, err := guard.admit(ctx, v.Subject, v.Expiry)
		if err != nil {
			return transport.WithWebsocketCloseCode(ctx, CloseTooManyInits), nil, err
		}
		return context.WithValue(authed, releaseKey{}, release), nil, nil
	}
}

type releaseKey struct{}

// wsClosed gives back the connection's place under the per-person cap.
func wsClosed(ctx context.Context, _ int) {
	if release, ok := ctx.Value(releaseKey{}).(func()); ok {
		release()
	}
}

// observe reports each operation's name, type, duration and whether it failed.
func observe(record func(name, opType string, d time.Duration, failed bool)) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		if !graphql.HasOperationContext(ctx) {
			return resp
		}
		oc := graphql.GetOperationContext(ctx)
		opType := "unknown"
		if oc.Operation != nil {
			opType = string(oc.Operation.Operation)
		}
		failed := resp == nil || len(resp.Errors) > 0
		record(oc.OperationName, opType, time.Since(oc.Stats.OperationStart), failed)
		return resp
	}
}
