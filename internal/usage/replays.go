package usage

import (
	"context"
	"fmt"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/usagerecord"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Replays answers whether a request id was already recorded (the gateway refuses to run
// an answered Idempotency-Key again). One indexed lookup, made only for calls that carry
// the header.
type Replays struct{ client *ent.Client }

// NewReplays returns a Replays reading through client.
func NewReplays(client *ent.Client) *Replays { return &Replays{client: client} }

// Seen reports whether a usage record with requestID exists. The id is derived from the
// verified key's row, so reading as the system reveals nothing across tenants.
func (r *Replays) Seen(ctx context.Context, requestID string) (bool, error) {
	ok, err := r.client.UsageRecord.Query().Where(usagerecord.RequestID(requestID)).Exist(auth.SystemContext(ctx))
	if err != nil {
		return false, fmt.Errorf("usage: replay lookup: %w", err)
	}
	return ok, nil
}
