package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/gsvdev/agentregistry/internal/pubsub"
)

// RevocationTopic carries the hashes of revoked or rotated keys between replicas.
const RevocationTopic = "apikey.revoked"

// CacheInvalidator is the verifier's cache as seen by Revocations.
type CacheInvalidator interface {
	Invalidate(hash string)
	InvalidateAll()
}

// Revocations makes a revocation take effect on every replica: the local cache drops
// the key at once, and the hash goes out on the bus to the others (which drop it within
// the bus's delivery time, well under a second). When the bus reconnects after a loss,
// messages may have been missed, so the whole local cache is dropped. The cache's short
// TTL remains the backstop if the bus is down.
type Revocations struct {
	bus    pubsub.Bus
	local  CacheInvalidator
	logger *slog.Logger
}

// NewRevocations subscribes local to the bus; stop ends the subscription.
func NewRevocations(bus pubsub.Bus, local CacheInvalidator, logger *slog.Logger) (r *Revocations, stop func()) {
	r = &Revocations{bus: bus, local: local, logger: logger}
	cancelSub := bus.Subscribe(RevocationTopic, func(p []byte) { local.Invalidate(string(p)) })
	cancelRe := bus.OnReconnect(local.InvalidateAll)
	return r, func() { cancelSub(); cancelRe() }
}

// Invalidate implements Invalidator.
func (r *Revocations) Invalidate(hash string) {
	r.local.Invalidate(hash)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.bus.Publish(ctx, RevocationTopic, []byte(hash)); err != nil {
		// The row is revoked; other replicas pick it up when their cache entry expires.
		r.logger.Warn("publish key revocation", "error", err.Error())
	}
}
