package auth

import (
	"context"

	"github.com/gsvdev/agentregistry/ent/privacy"
)

// SystemContext marks ctx as the service acting on its own behalf (seed, gateway lookups,
// webhook processing): tenant filters and privacy policies let it through. It must never
// wrap a context that carries a caller's request without a reason written next to it.
func SystemContext(ctx context.Context) context.Context {
	return privacy.DecisionContext(ctx, privacy.Allow)
}
