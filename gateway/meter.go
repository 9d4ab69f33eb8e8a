package gateway

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gsvdev/agentregistry/ent/schema/pulid"
	"github.com/gsvdev/agentregistry/internal/langflow"
	"github.com/gsvdev/agentregistry/internal/usage"
)

// Every call that got past key verification is metered, failed ones included: the
// record is what the buyer's usage page, the quota and billing all count. Calls with an
// invalid key have no tenant to bill and are only logged. Records are written with a
// context that ignores the caller's cancellation, so hanging up does not dodge the meter.

// event builds the usage event of the call.
func (c *call) event(t *Target, status int, code string) usage.Event {
	return usage.Event{
		RequestID:        c.requestID,
		TenantID:         t.TenantID,
		ProviderTenantID: t.ProviderTenantID,
		ConfigID:         t.ConfigID,
		AgentID:          t.AgentID,
		APIKeyID:         c.rec.ID,
		Status:           status,
		ElapsedMS:        max(c.g.d.Now().Sub(c.start).Milliseconds(), 0),
		StartedAt:        c.start,
		ErrorCode:        code,
	}
}

func (c *call) record(ev usage.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), c.g.d.RecordTimeout)
	defer cancel()
	return c.g.d.Recorder.Record(ctx, ev)
}

// recordSuccess commits the record of an answered call. If it cannot, the call is
// answered 503 USAGE_NOT_RECORDED: an unbilled 2xx is not an option.
func (c *call) recordSuccess(res langflow.RunResult) *apiError {
	ev := c.event(c.target, http.StatusOK, "")
	ev.InputTokens, ev.OutputTokens = int64(res.InputTokens), int64(res.OutputTokens)
	ev.TokensEstimated = !res.TokensReported
	if err := c.record(ev); err != nil {
		e := newError(http.StatusServiceUnavailable, CodeUsageNotRecorded, "the call could not be metered and was not billed; retry with the same Idempotency-Key", err)
		// Metering already failed for this request id; meterFailure must not try again.
		e.metered = true
		return e
	}
	return nil
}

// meterFailure records a failed call. Tokens are 0, except when part of an answer was
// already streamed to the caller: that much was produced and delivered, so it is billed
// (estimated, with the input).
func (c *call) meterFailure(e *apiError) {
	if e.metered || !c.verified {
		return
	}
	t := c.targetForMetering()
	if t == nil {
		c.g.d.Logger.LogAttrs(c.r.Context(), slog.LevelWarn, "gateway: failed call not metered: its config could not be loaded",
			slog.String("request_id", c.requestID), slog.String("config_id", string(c.configIDForLog())), slog.String("code", e.code))
		return
	}
	ev := c.event(t, e.status, e.code)
	if c.streamed.Len() > 0 {
		ev.InputTokens = int64(langflow.EstimateTokens(c.input.input))
		ev.OutputTokens = int64(langflow.EstimateTokens(c.streamed.String()))
		ev.TokensEstimated = true
	}
	if err := c.record(ev); err != nil {
		c.g.d.Logger.LogAttrs(c.r.Context(), slog.LevelError, "gateway: usage of a failed call not recorded",
			slog.String("request_id", c.requestID), slog.String("code", e.code), slog.Any("error", err))
	}
}

// targetForMetering is the config a failed call is billed to. A call refused before its
// config was loaded (wrong scope) still got past key verification, so it is metered too:
// the config is loaded for that, from the cache as a rule.
func (c *call) targetForMetering() *Target {
	if c.target != nil || !c.verified {
		return c.target
	}
	t, err := c.g.d.Resolver.Resolve(context.WithoutCancel(c.r.Context()), c.rec.ConfigID)
	if err != nil || t.TenantID != c.rec.TenantID {
		return nil
	}
	return &t
}

// configIDForLog is what a log line names when no target exists.
func (c *call) configIDForLog() pulid.ID {
	if c.target != nil {
		return c.target.ConfigID
	}
	return c.rec.ConfigID
}
