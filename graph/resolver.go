// Package graph is the config portal's GraphQL API: the schema (graph/schema), gqlgen's
// output (graph/generated, graph/model: generated, never edited) and the resolvers, which
// stay thin: tenant isolation is in ent/schema's privacy rules and interceptors, business
// rules in ent hooks and the internal/ services.
package graph

import (
	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/internal/apikey/keys"
	"github.com/gsvdev/agentregistry/internal/catalog"
	"github.com/gsvdev/agentregistry/internal/documents"
	"github.com/gsvdev/agentregistry/internal/langflow/provision"
	"github.com/gsvdev/agentregistry/internal/subscriptions"
	"github.com/gsvdev/agentregistry/internal/usage/report"
)

// Services are the internal/ services the mutations call. Catalog and Subscriptions
// default to services on the resolver's client; Keys and Provisioning need the key
// signing secrets and the Langflow client, and mutations that need them answer
// INTERNAL when they are not configured.
type Services struct {
	Catalog       *catalog.Service
	Subscriptions *subscriptions.Service
	Keys          *keys.Service
	Provisioning  *provision.Service
	Documents     *documents.Service
	Reports       *report.Service
}

// Links are the outside URLs the API hands to the portal.
type Links struct {
	// PublicURL is this service as browsers reach it (the widget snippet's host).
	PublicURL string
	// WaldurURL is the Waldur HomePort the portal links to ("" when not configured).
	WaldurURL string
}

// Resolver is the root resolver; its dependencies are passed in by server.
type Resolver struct {
	client *ent.Client
	svc    Services
	live   LiveUsage // nil: usageStats answers INTERNAL "not configured"
	links  Links
}

// NewResolver returns the root resolver.
func NewResolver(client *ent.Client, svc Services, liveUsage LiveUsage, links Links) *Resolver {
	if svc.Catalog == nil {
		svc.Catalog = catalog.New(client, nil)
	}
	if svc.Subscriptions == nil {
		svc.Subscriptions = subscriptions.New(client)
	}
	if svc.Documents == nil {
		svc.Documents = documents.New(client)
	}
	if svc.Reports == nil {
		svc.Reports = report.New(client, report.Options{})
	}
	return &Resolver{client: client, svc: svc, live: liveUsage, links: links}
}
