package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gsvdev/agentregistry/internal/apikey"
	"github.com/gsvdev/agentregistry/internal/langflow"
)

// Error codes. They are part of the public contract (customer pages switch on them), so
// they never change spelling; new situations get new codes.
const (
	CodeBadRequest           = "BAD_REQUEST"
	CodeUnauthenticated      = "UNAUTHENTICATED"
	CodeForbidden            = "FORBIDDEN"
	CodeNotFound             = "NOT_FOUND"
	CodeSubscriptionInactive = "SUBSCRIPTION_INACTIVE"
	CodeIdempotentReplay     = "IDEMPOTENT_REPLAY"
	CodeAgentNotProvisioned  = "AGENT_NOT_PROVISIONED"
	CodeRateLimited          = "RATE_LIMITED"
	CodeQuotaExceeded        = "QUOTA_EXCEEDED"
	CodeRuntimeError         = "RUNTIME_ERROR"
	CodeRuntimeUnavailable   = "RUNTIME_UNAVAILABLE"
	CodeRuntimeTimeout       = "RUNTIME_TIMEOUT"
	CodeUsageNotRecorded     = "USAGE_NOT_RECORDED"
	CodeInternal             = "INTERNAL"
	// CodeClientClosed is only ever metered and logged: the caller left before the answer,
	// so nobody reads a response carrying it.
	CodeClientClosed = "CLIENT_CLOSED_REQUEST"
)

// statusClientClosed is nginx's 499, the customary status of a request the client gave up on.
const statusClientClosed = 499

// apiError is a failure of one call as the caller sees it: a status, a stable code and a
// message safe to show. The cause (a key's real rejection reason, a Langflow detail) goes
// to the log only.
type apiError struct {
	status  int
	code    string
	message string
	// retryAfter, when positive, becomes a Retry-After header (quota; rate limits write
	// theirs through ratelimit.Headers).
	retryAfter time.Duration
	cause      error
	// metered is set when the call's usage was already handled (or failed to be).
	metered bool
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.code + ": " + e.message + ": " + e.cause.Error()
	}
	return e.code + ": " + e.message
}

func newError(status int, code, message string, cause error) *apiError {
	return &apiError{status: status, code: code, message: message, cause: cause}
}

func badRequest(message string) *apiError {
	return newError(http.StatusBadRequest, CodeBadRequest, message, nil)
}

func forbidden(message string) *apiError {
	return newError(http.StatusForbidden, CodeForbidden, message, nil)
}

// unauthenticated has one message for every reason, so that a caller cannot tell a revoked
// key from a forged one; the reason is only logged.
func unauthenticated(cause error) *apiError {
	return newError(http.StatusUnauthorized, CodeUnauthenticated, "missing or invalid API key", cause)
}

func unavailable(message string, cause error) *apiError {
	return newError(http.StatusServiceUnavailable, CodeRuntimeUnavailable, message, cause)
}

func internalError(cause error) *apiError {
	return newError(http.StatusInternalServerError, CodeInternal, "internal error", cause)
}

// canceled is what a call whose client went away is metered as.
func canceled(cause error) *apiError {
	return newError(statusClientClosed, CodeClientClosed, "request canceled by the client", cause)
}

// verifyError maps apikey.Verifier errors: every key problem is a 401, a store failure is
// a 503 (the key may be fine, we cannot tell), a caller that left is a 499.
func verifyError(err error) *apiError {
	switch {
	case errors.Is(err, apikey.ErrMalformed), errors.Is(err, apikey.ErrBadSignature),
		errors.Is(err, apikey.ErrExpired), errors.Is(err, apikey.ErrWrongKind),
		errors.Is(err, apikey.ErrUnknownKey), errors.Is(err, apikey.ErrRevoked),
		errors.Is(err, apikey.ErrNotFound):
		return unauthenticated(err)
	case errors.Is(err, context.Canceled):
		return canceled(err)
	default:
		return unavailable("the key store is unavailable, try again", err)
	}
}

// limiterError maps a Limiter failure. ratelimit.ErrUnavailable is the fail-closed limiter
// refusing to decide; anything else (an invalid plan limit) is ours, but still not the
// caller's fault, so it is a 503 too rather than letting the call through unlimited.
func limiterError(err error) *apiError {
	if errors.Is(err, context.Canceled) {
		return canceled(err)
	}
	return unavailable("rate limiting is unavailable, try again", err)
}

// runtimeError maps a Langflow client error. The message is ours, never Langflow's
// detail: a detail can carry a flow's internals even after tracebacks are stripped.
func runtimeError(err error) *apiError {
	switch langflow.KindOf(err) {
	case langflow.ErrTimeout:
		return newError(http.StatusGatewayTimeout, CodeRuntimeTimeout, "the agent did not answer in time", err)
	case langflow.ErrUnavailable:
		return newError(http.StatusServiceUnavailable, CodeRuntimeUnavailable, "the agent runtime is unavailable, try again later", err)
	case langflow.ErrCanceled:
		return canceled(err)
	case "":
		if errors.Is(err, context.Canceled) {
			return canceled(err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return newError(http.StatusGatewayTimeout, CodeRuntimeTimeout, "the agent did not answer in time", err)
		}
		return internalError(err)
	default:
		// ErrUpstream, ErrStreamIncomplete, and ErrBadRequest / ErrNotFound: the body was
		// validated here and the flow id comes from our database, so a 4xx from Langflow
		// is a provisioning or flow problem, not the caller's.
		return newError(http.StatusBadGateway, CodeRuntimeError, "the agent runtime failed to answer", err)
	}
}

// errorBody is the JSON error shape of the gateway's own routes.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func nativeErrorBody(e *apiError, requestID string) errorBody {
	var b errorBody
	b.Error.Code, b.Error.Message, b.RequestID = e.code, e.message, requestID
	return b
}
