// Package usage meters gateway calls: the Recorder writes one UsageRecord per call and
// keeps the UsageDaily rollups in step in the same transaction (group commit, so that
// durability costs one transaction per batch rather than per call), Quota reads the
// month-to-date totals the plans limit, and QuotaCounter caches them for the invoke path.
//
// Usage is billing data: a record is written once per request id whatever happens
// (replays, retries, two replicas racing), and the rollups count exactly the records
// that exist, so that the totals reported to Waldur and Stripe can be re-derived from
// the records.
package usage

import (
	"errors"
	"fmt"
	"time"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
)

// Event is one gateway call, failed ones included.
type Event struct {
	// RequestID makes the record idempotent: a second event with the same id is
	// acknowledged but neither stored nor counted again.
	RequestID        string
	TenantID         pulid.ID // the buyer
	ProviderTenantID pulid.ID // the seller of the agent
	ConfigID         pulid.ID
	AgentID          pulid.ID
	APIKeyID         pulid.ID // "" for calls without a key
	Status           int      // HTTP status answered; >= 400 counts as an error
	InputTokens      int64
	OutputTokens     int64
	TokensEstimated  bool // counted by us, not reported by the runtime
	ElapsedMS        int64
	StartedAt        time.Time // decides the day (UTC) the call is rolled up into
	ErrorCode        string
	// CommitXID is, on PostgreSQL, the id of the transaction that stored the record
	// (pg_current_xact_id), set by the recorder once it committed; 0 where unknown
	// (SQLite, or an event from a replica that predates it). Whoever read the usage tables
	// in a snapshot can tell from it whether that snapshot already counted the call.
	CommitXID uint64
}

// ErrInvalidEvent is returned by Record for an event that cannot be stored. It is
// checked before queueing because one bad row would fail the whole batch's transaction,
// and with it the calls of every other caller in that batch.
var ErrInvalidEvent = errors.New("usage: invalid event")

// Limits of the schema (ent/schema/usage.go). Raw SQL bypasses ent's validators, so they
// are checked here.
const (
	maxRequestIDLen = 128
	maxErrorCodeLen = 64
)

// validate reports why ev cannot be stored, wrapping ErrInvalidEvent.
func (ev *Event) validate() error {
	switch {
	case ev.RequestID == "":
		return fmt.Errorf("%w: empty request id", ErrInvalidEvent)
	case len(ev.RequestID) > maxRequestIDLen:
		return fmt.Errorf("%w: request id longer than %d bytes", ErrInvalidEvent, maxRequestIDLen)
	case ev.TenantID == "" || ev.ProviderTenantID == "" || ev.ConfigID == "" || ev.AgentID == "":
		return fmt.Errorf("%w: tenant, provider tenant, config and agent are required", ErrInvalidEvent)
	case ev.InputTokens < 0 || ev.OutputTokens < 0 || ev.ElapsedMS < 0:
		return fmt.Errorf("%w: negative tokens or elapsed time", ErrInvalidEvent)
	case ev.StartedAt.IsZero():
		return fmt.Errorf("%w: no start time", ErrInvalidEvent)
	}
	return nil
}

// normalize puts ev in the form it is stored in: UTC (which also drops the monotonic
// reading, so SQLite's text timestamps of one instant compare equal) to the microsecond
// (PostgreSQL's precision: it would round 23:59:59.9999996 into the next day while the
// rollup, decided here, stays on this one), and an error code cut to the column's size
// (losing the tail of a code is better than losing the record).
func (ev *Event) normalize() {
	ev.StartedAt = ev.StartedAt.UTC().Truncate(time.Microsecond)
	if len(ev.ErrorCode) > maxErrorCodeLen {
		ev.ErrorCode = ev.ErrorCode[:maxErrorCodeLen]
	}
}

// isError reports whether the call counts as an error in the rollups.
func (ev *Event) isError() bool { return ev.Status >= 400 }

// tokens is what a plan's token quota counts.
func (ev *Event) tokens() int64 { return ev.InputTokens + ev.OutputTokens }

// dayOf is the rollup day of t: its UTC date at 00:00.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// monthOf is the first instant of t's UTC month: quotas are per calendar month in UTC.
func monthOf(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}
