package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/privacy"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Error codes carried in extensions.code. Clients switch on them; they never change.
const (
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeNotFound        = "NOT_FOUND"
	CodeBadUserInput    = "BAD_USER_INPUT"
	CodeConflict        = "CONFLICT"
	CodeRateLimited     = "RATE_LIMITED"
	CodeInternal        = "INTERNAL"
)

// Error is an error meant for the client: its message is safe to show.
type Error struct {
	Code    string
	Message string
	// Field is the input path of a BAD_USER_INPUT problem ("input.name").
	Field string
}

func (e *Error) Error() string { return e.Message }

// Errorf-style constructors for the common cases.
var (
	errUnauthenticated = &Error{Code: CodeUnauthenticated, Message: "authentication required"}
	errForbidden       = &Error{Code: CodeForbidden, Message: "not allowed"}
)

// presentError maps every error a resolver can return onto a stable code. Anything not
// known to be safe becomes INTERNAL with a generic message, and the real error goes to
// the log with the request id: driver messages name tables, constraints and values.
func presentError(logger *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		// Parse and validation errors from gqlgen already carry their own code.
		var already *gqlerror.Error
		if errors.As(err, &already) && already.Extensions["code"] != nil && !errors.As(err, new(*Error)) {
			return gqlErr
		}
		if field, ok := argumentPath(ctx, gqlErr); ok {
			gqlErr.Message = "invalid value for " + field
			gqlErr.Extensions = map[string]any{"code": CodeBadUserInput, "field": field}
			return gqlErr
		}
		code, msg, field := classify(err)
		if code == CodeInternal {
			logger.ErrorContext(ctx, "graphql resolver error", "error", err.Error(), "path", gqlErr.Path.String())
		}
		gqlErr.Message = msg
		gqlErr.Extensions = map[string]any{"code": code}
		if field != "" {
			gqlErr.Extensions["field"] = field
		}
		return gqlErr
	}
}

// classify returns the code, the client-safe message and the input field of err.
func classify(err error) (code, msg, field string) {
	var appErr *Error
	var validation *ent.ValidationError
	switch {
	case errors.As(err, &appErr):
		return appErr.Code, appErr.Message, appErr.Field
	case errors.Is(err, auth.ErrUnauthenticated):
		return CodeUnauthenticated, "authentication required", ""
	case errors.Is(err, auth.ErrUnavailable):
		return CodeInternal, "authentication temporarily unavailable", ""
	case ent.IsNotFound(err):
		return CodeNotFound, "not found", ""
	case errors.Is(err, privacy.Deny):
		return CodeForbidden, "not allowed", ""
	case errors.As(err, &validation):
		return CodeBadUserInput, "invalid value for " + validation.Name, validation.Name
	case ent.IsConstraintError(err):
		return CodeConflict, "conflicts with an existing record", ""
	default:
		return CodeInternal, "internal error", ""
	}
}

// recoverPanic turns a resolver panic into an INTERNAL error; the process keeps serving.
func recoverPanic(logger *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "graphql resolver panic", "panic", p)
		return &Error{Code: CodeInternal, Message: "internal error"}
	}
}
