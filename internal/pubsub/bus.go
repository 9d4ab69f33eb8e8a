// Package pubsub is a small topic bus: in process (Memory), or across replicas through
// PostgreSQL LISTEN/NOTIFY (Postgres) or Redis PUBLISH/SUBSCRIBE (Redis).
//
// It carries two kinds of traffic: API-key cache invalidations, which must reach every
// replica within a second of a revocation, and live usage events for the usageStats
// subscription. Neither backend stores messages: a replica that is disconnected misses
// what was published meanwhile. That is why every bus reports reconnects (OnReconnect):
// a subscriber whose state is derived from messages throws it away or re-reads it from
// the database when the connection comes back, instead of trusting a gap it cannot see.
//
// All three buses deliver the same way locally: each subscription owns a bounded queue
// and a goroutine, so a slow callback never delays a publisher or other subscribers. A
// full queue drops its oldest message and counts it (Dropped): for live stats the newest
// message is the useful one, and a publisher that blocked on a stuck subscriber would
// stall the gateway.
package pubsub

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Bus publishes byte payloads to topics and fans them out to subscribers.
type Bus interface {
	// Publish sends payload to every subscriber of topic, on every replica that shares
	// the backend, this one included. It returns once the backend accepted the message,
	// not once subscribers ran. The payload is not retained after Publish returns.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe calls fn with each payload published to topic, in publish order, from a
	// goroutine owned by this subscription. fn must not modify the payload (it is shared
	// with other subscribers). For the cross-replica buses Subscribe returns once the
	// backend subscription is in effect, or after the bus's subscribe timeout when the
	// backend is unreachable (the subscription then starts when it comes back, and
	// OnReconnect hooks run). cancel is idempotent, never blocks on the backend, and
	// after it returns fn is not started again (a call already running may finish).
	Subscribe(topic string, fn func(payload []byte)) (cancel func())
	// OnReconnect registers fn to run after the bus regained its backend connection
	// following a loss, when messages may have been missed. fn runs on the bus's
	// receive goroutine, before messages received after the reconnect are delivered
	// onwards, so it must be quick (drop a cache, signal a goroutine). The Memory bus
	// never calls it. cancel unregisters fn.
	OnReconnect(fn func()) (cancel func())
	// Close stops delivery, ends every goroutine of the bus and waits for them; it must
	// not be called from a subscriber callback. Later Publish calls return ErrClosed.
	Close() error
}

var (
	// ErrClosed is returned by Publish after Close.
	ErrClosed = errors.New("pubsub: bus closed")
	// ErrPayloadTooLarge is returned by Publish when the backend cannot carry the payload
	// (PostgreSQL NOTIFY payloads must stay under 8000 bytes).
	ErrPayloadTooLarge = errors.New("pubsub: payload too large")
)

// DefaultQueueSize is the per-subscription queue bound when none is configured.
const DefaultQueueSize = 256

// defaultSubscribeTimeout bounds how long Subscribe waits for the backend: long enough for
// a healthy round trip under load, short enough that a database outage does not hang
// a GraphQL subscription start or the service's startup.
const defaultSubscribeTimeout = 5 * time.Second

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
