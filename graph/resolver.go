// Package graph is the config portal's GraphQL API: the schema (graph/schema), gqlgen's
// output (graph/generated, graph/model: generated, never edited) and the resolvers, which
// stay thin: tenant isolation is in ent/schema's privacy rules and interceptors, business
// rules in ent hooks and the internal/ services.
package graph

import (
	"github.com/gsvdev/agentregistry/ent"
)

// Resolver is the root resolver; its dependencies are passed in by server.
type Resolver struct {
	client *ent.Client
}

// NewResolver returns the root resolver.
func NewResolver(client *ent.Client) *Resolver {
	return &Resolver{client: client}
}
