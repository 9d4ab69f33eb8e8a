package graph

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/gsvdev/agentregistry/ent"
	"github.com/gsvdev/agentregistry/ent/privacy"
	"github.com/gsvdev/agentregistry/internal/apperr"
	"github.com/gsvdev/agentregistry/internal/auth"
)

// Error codes carried in extensions.code. Clients switch on them; they never change.
const (
	CodeUnauthenticated = apperr.Unauthenticated
	CodeForbidden       = apperr.Forbidden
	CodeNotFound        = apperr.NotFound
	CodeBadUserInput    = apperr.BadUserInput
	CodeConflict        = apperr.Conflict
	CodeRateLimited     = apperr.RateLimited
	CodeInternal        = apperr.Internal
)

// Error is an error meant for the client (shared with the services): its message is
// safe to show.
type Error = apperr.Error

// Errors for the common cases.
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
		field := inputPath(validation.Name)
		return CodeBadUserInput, "invalid value for " + field, field
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

// inputPath names an ent field the way the mutation input does: widget_position ->
// input.widgetPosition (every mutation takes its fields in an argument called input).
func inputPath(column string) string {
	parts := strings.Split(column, "_")
	for i := 1; i < len(parts); i++ {
		switch p := parts[i]; p {
		case "id", "url", "uuid":
			parts[i] = strings.ToUpper(p)
		default:
			if p != "" {
				parts[i] = strings.ToUpper(p[:1]) + p[1:]
			}
		}
	}
	return "input." + strings.Join(parts, "")
}
