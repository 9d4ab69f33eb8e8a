package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/rs/cors"

	"github.com/gsvdev/agentregistry/graph"
	"github.com/gsvdev/agentregistry/internal/auth"
	"github.com/gsvdev/agentregistry/internal/catalog"
	"github.com/gsvdev/agentregistry/internal/documents"
	"github.com/gsvdev/agentregistry/internal/langflow/provision"
	"github.com/gsvdev/agentregistry/internal/seed"
	"github.com/gsvdev/agentregistry/internal/subscriptions"
	"github.com/gsvdev/agentregistry/internal/usage/report"
)

// routes is the service's URL map. Every room hands over an http.Handler; this is the
// one place they are mounted and wrapped in the shared middleware.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.Handler) {
		mux.Handle(pattern, s.metrics.Instrument(route, h))
	}

	handle("GET /healthz", "/healthz", http.HandlerFunc(Healthz))
	handle("GET /readyz", "/readyz", ReadyzWithLog(map[string]func(context.Context) error{
		"database": s.db.Ping,
	}, 2*time.Second, s.logger))
	handle("GET /metrics", "/metrics", s.metrics.Handler())

	gql := graph.NewHandler(s.db.Client, graph.Options{
		Services: graph.Services{
			Catalog:       catalog.New(s.db.Client, nil),
			Subscriptions: subscriptions.New(s.db.Client),
			Keys:          s.keys,
			Provisioning:  provision.New(s.db.Client, s.langflow),
			Documents:     s.documents,
			Reports:       report.New(s.db.Client, report.Options{Retention: s.cfg.UsageRetention}),
		},
		Links:                   graph.Links{PublicURL: s.publicURL(), WaldurURL: s.cfg.WaldurURL},
		LiveUsage:               s.live,
		MaxComplexity:           s.cfg.GraphQLMaxComplexity,
		MaxDepth:                s.cfg.GraphQLMaxDepth,
		MaxPageSize:             s.cfg.GraphQLMaxPageSize,
		Introspection:           s.cfg.IntrospectionEnabled,
		OriginAllowed:           s.portalCORS().OriginAllowed,
		WSInitTimeout:           s.cfg.WSInitTimeout,
		WSPingInterval:          s.cfg.WSPingInterval,
		MaxSubscriptionsPerConn: s.cfg.WSMaxSubscriptionsPerConnection,
		MaxConnectionsPerUser:   s.cfg.WSMaxConnectionsPerUser,
		Authenticate:            s.auth.FromInitPayload,
		RefreshViewer:           s.auth.Refresh,
		ObserveOperation:        s.metrics.ObserveGraphQL,
		Logger:                  s.logger,
	})
	handle("/graphql", "/graphql", s.portalCORS().Handler(s.auth.Middleware(gql)))
	handle(documents.DownloadPath, "/api/documents/{id}/content", s.portalCORS().Handler(s.auth.Middleware(s.documents.Handler())))

	if s.cfg.PlaygroundEnabled {
		var opts []playground.GraphiqlConfigOption
		if s.dev != nil {
			// Dev only: the playground opens with the demo customer's token filled in.
			opts = append(opts, playground.WithGraphiqlUiHeaders(map[string]string{
				"Authorization": "Bearer " + s.dev.token(auth.RoleCustomer, seed.CustomerSubject, "customer@demo.test"),
			}))
		}
		handle("GET /playground", "/playground", playground.Handler("agentregistry", "/graphql", opts...))
	}
	for _, e := range s.gateway.Endpoints() {
		handle(e.Pattern, e.Route, e.Handler)
	}
	for _, e := range s.widget.Endpoints() {
		handle(e.Pattern, e.Route, e.Handler)
	}

	if s.dev != nil {
		handle(devIssuerPath+"/", "/dev/oidc", s.dev.issuer.Handler())
		if s.dev.runtime != nil {
			handle(devLangflowPath+"/", devLangflowPath, http.StripPrefix(devLangflowPath, s.dev.runtime))
		}
	}

	return Chain(mux,
		RequestIDMiddleware,
		AccessLog(s.logger),
		Recover(s.logger),
		limitBodies(s.cfg.MaxBodyBytes, graph.MaxUploadBytes),
	)
}

// limitBodies caps request bodies at n, except multipart GraphQL requests (document
// uploads), which may carry one document.
func limitBodies(n, uploads int64) Middleware {
	small, large := LimitBody(n), LimitBody(max(n, uploads))
	return func(next http.Handler) http.Handler {
		smallH, largeH := small(next), large(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/graphql" && strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
				largeH.ServeHTTP(w, r)
				return
			}
			smallH.ServeHTTP(w, r)
		})
	}
}

// publicURL is where browsers reach this service: PUBLIC_URL, or in dev the listen
// address.
func (s *Server) publicURL() string {
	if s.cfg.PublicURL != "" || s.dev == nil {
		return s.cfg.PublicURL
	}
	return "http://" + s.Addr()
}

// portalOrigins are the browser origins allowed to call /graphql.
func (s *Server) portalOrigins() []string {
	if len(s.cfg.CORSAllowedOrigins) == 0 && s.cfg.Dev {
		return []string{"http://127.0.0.1:*", "http://localhost:*"}
	}
	return s.cfg.CORSAllowedOrigins
}

func (s *Server) portalCORS() *cors.Cors {
	opts := cors.Options{
		AllowedOrigins: s.portalOrigins(),
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowedHeaders: []string{"Authorization", "Content-Type", "X-Request-Id"},
		ExposedHeaders: []string{"X-Request-Id"},
		MaxAge:         600,
	}
	if len(opts.AllowedOrigins) == 0 {
		// rs/cors reads an empty list as "every origin"; the documented default is none
		// (same-origin only).
		opts.AllowOriginFunc = func(string) bool { return false }
	}
	return cors.New(opts)
}
