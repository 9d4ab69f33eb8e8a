package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gsvdev/agentregistry/internal/langflow"
)

// invokeResponse is the gateway's answer, also the data of a stream's end event.
type invokeResponse struct {
	Output    string    `json:"output"`
	SessionID string    `json:"session_id"`
	RequestID string    `json:"request_id"`
	Usage     usageBody `json:"usage"`
}

type usageBody struct {
	InputTokens  int   `json:"input_tokens"`
	OutputTokens int   `json:"output_tokens"`
	ElapsedMS    int64 `json:"elapsed_ms"`
}

func (c *call) nativeResponse(res langflow.RunResult) invokeResponse {
	return invokeResponse{
		Output:    res.Text,
		SessionID: c.input.session,
		RequestID: c.requestID,
		Usage: usageBody{
			InputTokens:  res.InputTokens,
			OutputTokens: res.OutputTokens,
			ElapsedMS:    max(c.g.d.Now().Sub(c.start).Milliseconds(), 0),
		},
	}
}

// body is the success body in the route's dialect.
func (c *call) body(res langflow.RunResult) any {
	if c.format == formatCompat {
		return compatResponse(c.input, res.Text)
	}
	return c.nativeResponse(res)
}

func (c *call) writeSuccess(res langflow.RunResult) {
	writeJSON(c.w, http.StatusOK, c.body(res))
}

// writeError answers a failure in the route's dialect.
func (c *call) writeError(e *apiError) {
	h := c.w.Header()
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	if e.status == http.StatusUnauthorized && c.format == formatNative {
		h.Set("WWW-Authenticate", `Bearer realm="agent-gateway"`)
	}
	if c.format == formatCompat {
		writeJSON(c.w, e.status, compatError{Detail: e.message})
		return
	}
	writeJSON(c.w, e.status, nativeErrorBody(e, c.requestID))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"INTERNAL","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail meters a failed call and answers it.
func (c *call) fail(e *apiError) {
	c.meterFailure(e)
	c.logFailure(e)
	if e.status == statusClientClosed {
		return // nobody is listening
	}
	if c.sse != nil && c.sse.started {
		c.sse.errorEvent(e)
		return
	}
	c.writeError(e)
}

func (c *call) logFailure(e *apiError) {
	level := slog.LevelInfo
	if e.status >= 500 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("request_id", c.requestID),
		slog.Int("status", e.status),
		slog.String("code", e.code),
	}
	if c.verified {
		attrs = append(attrs, slog.String("key_id", string(c.rec.ID)), slog.String("tenant_id", string(c.rec.TenantID)),
			slog.String("config_id", string(c.rec.ConfigID)))
	}
	if e.cause != nil {
		attrs = append(attrs, slog.String("reason", e.cause.Error()))
	}
	c.g.d.Logger.LogAttrs(c.r.Context(), level, "gateway: call refused or failed", attrs...)
}
